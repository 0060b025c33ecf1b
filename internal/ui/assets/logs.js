// logs.js: LogQL search with quick filters, a volume histogram by
// severity, live tail, and trace links on every line that has a trace ID.
import { h, mount, fmtTime, colour } from './dom.js';
import * as api from './api.js';
import { editor } from './editor.js';
import { bars } from './chart.js';
import { link, navigate, timeRange } from './app.js';

const LEVELS = ['error', 'warn', 'info', 'debug', 'trace', 'unknown'];
const LEVEL_COLOUR = { error: '#e15759', warn: '#f28e2b', info: '#4e79a7', debug: '#76b7b2', trace: '#bab0ac', unknown: '#9c755f', critical: '#b3002d', fatal: '#b3002d' };

// volumeQuery counts a log query's lines per step and level.
function volumeQuery(q, step) {
  return `sum by (detected_level) (count_over_time(${q} [${step}s]))`;
}

function buildQuery(f) {
  let q = f.service ? `{service_name=${JSON.stringify(f.service)}}` : '{service_name=~".+"}';
  if (f.text) q += ` |= ${JSON.stringify(f.text)}`;
  if (f.level) q += ` | detected_level=${JSON.stringify(f.level)}`;
  return q;
}

// entries flattens Loki streams into lines, newest first.
function entries(data) {
  const out = [];
  for (const s of data.result || []) {
    for (const [ts, line] of s.values) out.push({ ts: BigInt(ts), line, labels: s.stream });
  }
  out.sort((a, b) => (a.ts < b.ts ? 1 : a.ts > b.ts ? -1 : 0));
  return out;
}

function lineRow(e) {
  const l = e.labels;
  const lvl = l.detected_level || l.level || l.severity || '';
  const traceID = l.trace_id;
  return h('tr', { class: `sev-${lvl}` },
    h('td', { class: 'mono small nowrap' }, fmtTime(Number(e.ts / 1000000n))),
    h('td', {}, h('span', { class: `lvl lvl-${lvl}` }, lvl)),
    h('td', {}, h('span', { class: 'svc small', style: { '--c': colour(l.service_name || '') } }, l.service_name || '')),
    h('td', { class: 'body' }, e.line),
    h('td', { class: 'nowrap' }, traceID ? link(`/ui/trace/${traceID}${l.span_id ? `?span=${l.span_id}` : ''}`, { class: 'mono small trace-link', 'data-trace': traceID }, `trace ${traceID.slice(0, 8)}`) : null));
}

export function logsPage({ query, alive }) {
  const q = query.get('query') || '{service_name=~".+"}';
  const [start, end] = timeRange(query);
  const ed = editor({ value: q, label: 'LogQL query', placeholder: '{service_name="checkout"} |= "timeout"', onsubmit: (v) => run(v) });
  const svc = h('select', { 'aria-label': 'service', id: 'l-service' }, h('option', { value: '' }, 'any service'));
  const lvl = h('select', { 'aria-label': 'severity', id: 'l-level' }, h('option', { value: '' }, 'any severity'), LEVELS.map((v) => h('option', { value: v }, v)));
  const text = h('input', { 'aria-label': 'text', id: 'l-text', placeholder: 'contains text' });
  const apply = () => run(buildQuery({ service: svc.value, level: lvl.value, text: text.value }));
  svc.addEventListener('change', apply);
  lvl.addEventListener('change', apply);
  text.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); });
  api.logLabelValues('service_name', start, end).then((vs) => { for (const v of vs) svc.append(h('option', { value: v }, v)); }).catch(() => {});

  function run(v) {
    const u = new URL(location.href);
    u.searchParams.set('query', v ?? ed.value());
    navigate(u.pathname + u.search, { replace: true });
  }

  const volume = h('section', { class: 'volume' });
  const table = h('tbody', {});
  const status = h('p', { class: 'muted', id: 'log-count' }, 'Loading…');
  const tail = h('input', { type: 'checkbox', id: 'tail' });
  let newest = 0n;
  let timer = 0;

  (async () => {
    const step = api.stepFor(start, end, 60);
    try {
      const [data, vol] = await Promise.all([api.logs(q, start, end, 1000), api.get('/loki/api/v1/query_range', {
        query: volumeQuery(q, step), start: Math.floor(start * 1e9), end: Math.ceil(end * 1e9), step,
      }).catch(() => null)]);
      if (!alive()) return;
      const lines = entries(data);
      newest = lines.length ? lines[0].ts : BigInt(Math.floor(end * 1e9));
      mount(table, lines.map(lineRow));
      status.textContent = `${lines.length} lines${lines.length >= 1000 ? ' (newest 1,000)' : ''}`;
      if (vol) {
        const groups = (vol.data.result || []).map((s) => {
          const name = s.metric.detected_level || 'unknown';
          return { name, colour: LEVEL_COLOUR[name] || '#888', points: s.values.map(([t, v]) => [Number(t), Number(v)]) };
        }).sort((a, b) => LEVELS.indexOf(a.name) - LEVELS.indexOf(b.name));
        mount(volume, bars({ groups, t0: start, t1: end, step }));
      }
    } catch (e) {
      if (!alive()) return;
      ed.setError(e.message);
      status.textContent = '';
    }
  })();

  // Live tail polls for lines newer than the newest shown, as Grafana's
  // live mode does over the query API.
  async function poll() {
    if (!alive() || !tail.checked) return;
    try {
      const from = Number(newest + 1n) / 1e9;
      const data = await api.logs(q, from, Date.now() / 1000 + 1, 500, 'forward');
      const lines = entries(data).filter((e) => e.ts > newest);
      if (lines.length && alive()) {
        newest = lines[0].ts;
        table.prepend(...lines.map(lineRow));
        status.textContent = `live: ${lines.length} new lines at ${new Date().toLocaleTimeString()}`;
      }
    } catch (e) {
      status.textContent = `live tail: ${e.message}`;
    }
    if (alive() && tail.checked) timer = setTimeout(poll, 2000);
  }
  tail.addEventListener('change', () => { clearTimeout(timer); if (tail.checked) poll(); });

  return h('div', { class: 'page' },
    h('h1', {}, 'Logs'),
    ed.el,
    h('div', { class: 'filters' }, svc, lvl, text, h('button', { onclick: () => run() }, 'Search'),
      h('label', { class: 'tail' }, tail, ' Live tail')),
    volume, status,
    h('table', { class: 'grid logs', id: 'log-lines' }, h('thead', {}, h('tr', {}, ['Time', 'Level', 'Service', 'Line', ''].map((c) => h('th', {}, c)))), table));
}
