// alerts.js: the alerting rules the query API evaluates (Prometheus's
// rule manager, /api/v1/rules), each with its state, its expression
// charted over the selected range, and its active alerts with links to
// the service and its failing traces.
import { h, mount, fmtTime, fmtValue } from './dom.js';
import * as api from './api.js';
import { lineChart, palette } from './chart.js';
import { link, setRange, timeRange } from './app.js';

const labelsOf = (m) => `{${Object.entries(m || {}).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}}`;

async function chart(expr, start, end) {
  const step = api.stepFor(start, end);
  const range = await api.promRange(expr, start, end, step);
  const series = range.slice(0, 20).map((r, i) => ({ name: labelsOf(r.metric), colour: palette[i % palette.length], points: r.values.map(([t, v]) => [Number(t), Number(v)]), gap: step * 1.5 }));
  return series.length ? lineChart({ series, t0: start, t1: end, height: 120, onzoom: setRange }) : h('p', { class: 'muted small' }, 'The expression returns nothing in this range.');
}

function alertRow(a) {
  const svc = a.labels && a.labels.service_name;
  return h('tr', { class: `alert-${a.state}` },
    h('td', { class: 'mono small' }, labelsOf(a.labels)),
    h('td', { class: 'small' }, (a.annotations && a.annotations.summary) || ''),
    h('td', {}, h('span', { class: `state state-${a.state}` }, a.state)),
    h('td', { class: 'mono small nowrap' }, a.activeAt ? fmtTime(Date.parse(a.activeAt)) : ''),
    h('td', { class: 'num', title: String(a.value) }, fmtValue(a.value)),
    h('td', { class: 'nowrap' }, svc ? [
      link(`/ui/service/${encodeURIComponent(svc)}`, { class: 'small' }, 'service'), ' · ',
      link(`/ui/traces?q=${encodeURIComponent(`{ resource.service.name = ${JSON.stringify(svc)} && status = error }`)}`, { class: 'small' }, 'failing traces'),
    ] : null));
}

function ruleCard(group, r, start, end) {
  const plot = h('div', { class: 'rule-chart' }, h('p', { class: 'muted small' }, 'Loading…'));
  chart(r.query, start, end).then((c) => mount(plot, c)).catch((e) => mount(plot, h('p', { class: 'error small' }, e.message)));
  return h('section', { class: `rule state-${r.state}`, 'data-rule': r.name },
    h('h2', {}, h('span', { class: `state state-${r.state}` }, r.state), ' ', r.name, ' ', h('span', { class: 'muted small' }, `group ${group.name}`)),
    h('pre', { class: 'mono small expr' }, r.query),
    h('p', { class: 'small muted' }, `for ${r.duration ? `${r.duration}s` : '0s'} · health ${r.health}${r.lastError ? ` · ${r.lastError}` : ''}`,
      Object.keys(r.labels || {}).length ? ` · labels ${labelsOf(r.labels)}` : ''),
    plot,
    r.alerts && r.alerts.length ? h('table', { class: 'grid alerts' },
      h('thead', {}, h('tr', {}, ['Alert', 'Summary', 'State', 'Active since', 'Value', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, r.alerts.map(alertRow))) : h('p', { class: 'muted small' }, 'No active alerts.'));
}

export function alertsPage({ query, alive }) {
  const [start, end] = timeRange(query);
  const root = h('div', { class: 'page alerts-page' }, h('h1', {}, 'Alerts'), h('p', { class: 'muted', id: 'alerts-status' }, 'Loading…'));
  (async () => {
    let groups;
    try {
      groups = (await api.get('/api/v1/rules', { type: 'alert' })).data.groups || [];
    } catch (e) {
      if (alive()) mount(root, h('h1', {}, 'Alerts'), h('p', { class: 'error', role: 'alert' }, e.message));
      return;
    }
    if (!alive()) return;
    const rules = groups.flatMap((g) => (g.rules || []).filter((r) => r.type === 'alerting').map((r) => [g, r]));
    const order = { firing: 0, pending: 1, inactive: 2 };
    rules.sort(([, a], [, b]) => (order[a.state] ?? 3) - (order[b.state] ?? 3) || a.name.localeCompare(b.name));
    const n = (st) => rules.filter(([, r]) => r.state === st).length;
    mount(root, h('h1', {}, 'Alerts'),
      h('p', { class: 'muted', id: 'alerts-status' }, rules.length
        ? `${rules.length} alerting rules: ${n('firing')} firing, ${n('pending')} pending, ${n('inactive')} inactive`
        : 'No alerting rules. Rule files are set in the sightline_query extension (rules::files, docs/query.md).'),
      rules.map(([g, r]) => ruleCard(g, r, start, end)));
  })();
  return root;
}
