// alerts.js: the alerting rules the query API evaluates (Prometheus's
// rule manager, /api/v1/rules), each with its state, its expression
// charted over the selected range, and its active alerts with links to
// the service and its failing traces; with Alertmanagers configured, their
// silences, and which alerts they mute.
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

// matches reports whether an Alertmanager silence's matchers select the
// labels, as Alertmanager matches them: = and != on the value, =~ and !~
// on a regex anchored at both ends; a missing label is the empty string.
export function matches(silence, labels) {
  return (silence.matchers || []).every((m) => {
    const v = (labels && labels[m.name]) ?? '';
    let hit;
    if (m.isRegex) {
      try { hit = new RegExp(`^(?:${m.value})$`).test(v); } catch { hit = false; }
    } else hit = v === m.value;
    return m.isEqual === false ? !hit : hit;
  });
}

const matcherText = (m) => `${m.name}${m.isEqual === false ? '!' : '='}${m.isRegex ? '~' : ''}${JSON.stringify(m.value)}`;

function alertRow(a, silences) {
  const svc = a.labels && a.labels.service_name;
  const by = silences.filter((x) => x.status && x.status.state === 'active' && matches(x, a.labels));
  return h('tr', { class: `alert-${a.state}${by.length ? ' silenced' : ''}`, 'data-silenced': by.map((x) => x.id).join(' ') || null },
    h('td', { class: 'mono small' }, labelsOf(a.labels), by.length ? h('span', { class: 'tag small', title: by.map((x) => `${x.comment || ''} (${x.createdBy || ''})`).join('; ') }, 'silenced') : null),
    h('td', { class: 'small' }, (a.annotations && a.annotations.summary) || ''),
    h('td', {}, h('span', { class: `state state-${a.state}` }, a.state)),
    h('td', { class: 'mono small nowrap' }, a.activeAt ? fmtTime(Date.parse(a.activeAt)) : ''),
    h('td', { class: 'num', title: String(a.value) }, fmtValue(a.value)),
    h('td', { class: 'nowrap' }, svc ? [
      link(`/ui/service/${encodeURIComponent(svc)}`, { class: 'small' }, 'service'), ' · ',
      link(`/ui/traces?q=${encodeURIComponent(`{ resource.service.name = ${JSON.stringify(svc)} && status = error }`)}`, { class: 'small' }, 'failing traces'),
    ] : null));
}

function ruleCard(group, r, start, end, silences) {
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
      h('tbody', {}, r.alerts.map((a) => alertRow(a, silences)))) : h('p', { class: 'muted small' }, 'No active alerts.'));
}

export function alertsPage({ query, alive }) {
  const [start, end] = timeRange(query);
  const root = h('div', { class: 'page alerts-page' }, h('h1', {}, 'Alerts'), h('p', { class: 'muted', id: 'alerts-status' }, 'Loading…'));
  (async () => {
    let groups;
    let ams = [];
    try {
      [groups, ams] = await Promise.all([
        api.get('/api/v1/rules', { type: 'alert' }).then((r) => r.data.groups || []),
        api.get('/api/sightline/v1/silences').then((r) => r.data || []),
      ]);
    } catch (e) {
      if (alive()) mount(root, h('h1', {}, 'Alerts'), h('p', { class: 'error', role: 'alert' }, e.message));
      return;
    }
    if (!alive()) return;
    const silences = ams.flatMap((am) => am.silences || []);
    const rules = groups.flatMap((g) => (g.rules || []).filter((r) => r.type === 'alerting').map((r) => [g, r]));
    const order = { firing: 0, pending: 1, inactive: 2 };
    rules.sort(([, a], [, b]) => (order[a.state] ?? 3) - (order[b.state] ?? 3) || a.name.localeCompare(b.name));
    const n = (st) => rules.filter(([, r]) => r.state === st).length;
    mount(root, h('h1', {}, 'Alerts'),
      h('p', { class: 'muted', id: 'alerts-status' }, rules.length
        ? `${rules.length} alerting rules: ${n('firing')} firing, ${n('pending')} pending, ${n('inactive')} inactive`
        : 'No alerting rules. Rule files are set in the sightline_query extension (rules::files, docs/query.md).'),
      rules.map(([g, r]) => ruleCard(g, r, start, end, silences)),
      ams.length ? silenceSection(ams) : null);
  })();
  return root;
}

// silenceSection lists each Alertmanager's silences: active first, then
// pending, then expired, each with its matchers, end, author and comment.
function silenceSection(ams) {
  const order = { active: 0, pending: 1, expired: 2 };
  return h('section', { class: 'silences', id: 'silences' }, h('h2', {}, 'Silences'),
    ams.map((am) => {
      const list = [...(am.silences || [])].sort((a, b) => (order[a.status && a.status.state] ?? 3) - (order[b.status && b.status.state] ?? 3));
      return h('div', { class: 'card' }, h('h3', { class: 'small mono' }, am.alertmanager),
        am.error ? h('p', { class: 'error small', role: 'alert' }, am.error) : null,
        list.length ? h('table', { class: 'grid' },
          h('thead', {}, h('tr', {}, ['State', 'Matchers', 'Ends', 'Created by', 'Comment'].map((c) => h('th', {}, c)))),
          h('tbody', {}, list.map((x) => h('tr', { 'data-silence': x.id, class: `silence-${x.status && x.status.state}` },
            h('td', {}, h('span', { class: `state state-${x.status && x.status.state}` }, (x.status && x.status.state) || '')),
            h('td', { class: 'mono small' }, (x.matchers || []).map(matcherText).join(', ')),
            h('td', { class: 'mono small nowrap' }, x.endsAt ? fmtTime(Date.parse(x.endsAt)) : ''),
            h('td', { class: 'small' }, x.createdBy || ''),
            h('td', { class: 'small' }, x.comment || ''))))) : am.error ? null : h('p', { class: 'muted small' }, 'No silences.'));
    }));
}
