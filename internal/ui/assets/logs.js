// logs.js: LogQL search with quick filters, a volume histogram by
// severity, live tail, and trace links on every line that has a trace ID.
import { h, mount, fmtTime, colour } from './dom.js';
import * as api from './api.js';
import { editor, savedQueries } from './editor.js';
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

// parsedFields reads a line as JSON (nested keys joined with _, as LogQL's
// json parser names them) or logfmt; other lines have none.
export function parsedFields(line) {
  const t = line.trim();
  if (t.startsWith('{')) {
    try {
      const out = [];
      const walk = (prefix, v) => {
        for (const [k, x] of Object.entries(v)) {
          const name = (prefix + k).replace(/[^A-Za-z0-9_]/g, '_');
          if (x && typeof x === 'object' && !Array.isArray(x)) walk(`${name}_`, x);
          else if (x !== null) out.push([name, typeof x === 'string' ? x : JSON.stringify(x)]);
        }
      };
      const v = JSON.parse(t);
      if (v && typeof v === 'object' && !Array.isArray(v)) { walk('', v); return { parser: 'json', fields: out }; }
    } catch { /* not JSON */ }
  }
  const out = [];
  for (const m of t.matchAll(/([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    let v = m[2];
    if (v.startsWith('"')) { try { v = JSON.parse(v); } catch { /* keep it quoted */ } }
    out.push([m[1].replace(/[^A-Za-z0-9_]/g, '_'), v]);
  }
  return out.length ? { parser: 'logfmt', fields: out } : { parser: '', fields: [] };
}

// dedupeLines folds runs of consecutive lines that are the same, as
// Grafana's deduplication does: 'exact' compares the line and its
// service, 'numbers' also ignores every run of digits (IDs, times,
// durations), 'none' keeps every line. Each result carries the count of
// lines it stands for.
export function dedupeLines(lines, mode) {
  if (mode !== 'exact' && mode !== 'numbers') return lines.map((e) => ({ e, count: 1 }));
  const key = (e) => `${e.labels.service_name || ''}\u0000${mode === 'numbers' ? e.line.replace(/\d+/g, '0') : e.line}`;
  const out = [];
  for (const e of lines) {
    const last = out[out.length - 1];
    if (last && key(last.e) === key(e)) last.count++;
    else out.push({ e, count: 1 });
  }
  return out;
}

// withFilter adds a label filter to a query, before any metric wrapper
// (logs queries here have none).
function withFilter(q, stage) {
  return `${q} ${stage}`;
}

// details is the drawer under a line: every label and parsed field with
// filter-for and filter-out, and the lines around it in its stream.
function details(e, q, run) {
  const filterButtons = (name, value, parser) => {
    const pre = parser ? `| ${parser} ` : '';
    return h('span', { class: 'filter-buttons' },
      h('button', { class: 'small filter-for', title: `show only lines with ${name}=${value}`, onclick: () => run(withFilter(q, `${pre}| ${name}=${JSON.stringify(value)}`)) }, '+'),
      h('button', { class: 'small filter-out', title: `hide lines with ${name}=${value}`, onclick: () => run(withFilter(q, `${pre}| ${name}!=${JSON.stringify(value)}`)) }, '−'));
  };
  const rows = Object.keys(e.labels).sort().map((k) => h('tr', { 'data-label': k },
    h('td', { class: 'mono small' }, k), h('td', { class: 'mono small value' }, e.labels[k]), h('td', {}, filterButtons(k, e.labels[k], ''))));
  const parsed = parsedFields(e.line);
  const prows = parsed.fields.map(([k, v]) => h('tr', { 'data-field': k },
    h('td', { class: 'mono small' }, k), h('td', { class: 'mono small value' }, v), h('td', {}, filterButtons(k, v, parsed.parser))));
  const context = h('div', { class: 'context' });
  const svc = e.labels.service_name;
  const showContext = h('button', { class: 'show-context', disabled: !svc, onclick: async () => {
    showContext.disabled = true;
    context.textContent = 'Loading…';
    // The lines around it in its service's stream, as Loki's context.
    const sel = `{service_name=${JSON.stringify(svc)}}`;
    const at = Number(e.ts) / 1e9;
    try {
      const [before, after] = await Promise.all([
        api.logs(sel, at - 3600, at + 1e-9, 11, 'backward'), api.logs(sel, at, at + 3600, 11, 'forward')]);
      const seen = new Set();
      const lines = [...entries(before), ...entries(after)].filter((x) => {
        const k = `${x.ts} ${x.line}`;
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      });
      lines.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
      mount(context, h('table', { class: 'grid logs context-lines' }, h('tbody', {}, lines.map((x) => h('tr', { class: x.ts === e.ts && x.line === e.line ? 'this-line' : '' },
        h('td', { class: 'mono small nowrap' }, fmtTime(Number(x.ts / 1000000n))), h('td', { class: 'body' }, x.line))))));
    } catch (err) {
      context.textContent = `context: ${err.message}`;
    }
  } }, 'Show context');
  return h('div', { class: 'log-details' },
    h('h3', {}, 'Labels and metadata'),
    h('table', { class: 'grid kv labels' }, h('tbody', {}, rows)),
    prows.length ? [h('h3', {}, `Fields (${parsed.parser})`), h('table', { class: 'grid kv fields' }, h('tbody', {}, prows))] : null,
    showContext, context);
}

function lineRow(e, q, run, count = 1) {
  const l = e.labels;
  const lvl = l.detected_level || l.level || l.severity || '';
  const traceID = l.trace_id;
  const row = h('tr', { class: `sev-${lvl} line`, tabindex: '0', 'aria-expanded': 'false' },
    h('td', { class: 'mono small nowrap' }, fmtTime(Number(e.ts / 1000000n))),
    h('td', {}, h('span', { class: `lvl lvl-${lvl}` }, lvl)),
    h('td', {}, h('span', { class: 'svc small', style: { '--c': colour(l.service_name || '') } }, l.service_name || '')),
    h('td', { class: 'body' }, count > 1 ? h('span', { class: 'dup', title: `${count} lines like this one in a row` }, `×${count}`) : null, e.line),
    h('td', { class: 'nowrap' }, traceID ? link(`/ui/trace/${traceID}${l.span_id ? `?span=${l.span_id}` : ''}`, { class: 'mono small trace-link', 'data-trace': traceID }, `trace ${traceID.slice(0, 8)}`) : null));
  // A click (or Enter) on the line opens its details under it.
  let drawer = null;
  const toggle = (ev) => {
    if (ev.target.closest('a, button')) return;
    if (drawer) {
      drawer.remove();
      drawer = null;
      row.setAttribute('aria-expanded', 'false');
      return;
    }
    drawer = h('tr', { class: 'details-row' }, h('td', { colspan: '5' }, details(e, q, run)));
    row.after(drawer);
    row.setAttribute('aria-expanded', 'true');
  };
  row.addEventListener('click', toggle);
  row.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') toggle(ev); });
  return row;
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
  const dedup = query.get('dedup') || 'none';
  const dedupSel = h('select', { 'aria-label': 'deduplication', id: 'l-dedup' },
    [['none', 'no dedup'], ['exact', 'dedup: exact'], ['numbers', 'dedup: ignore numbers']].map(([v, l]) => h('option', { value: v, selected: v === dedup }, l)));
  dedupSel.addEventListener('change', () => {
    const u = new URL(location.href);
    if (dedupSel.value === 'none') u.searchParams.delete('dedup'); else u.searchParams.set('dedup', dedupSel.value);
    navigate(u.pathname + u.search, { replace: true });
  });
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
      const rows = dedupeLines(lines, dedup);
      mount(table, rows.map(({ e, count }) => lineRow(e, q, run, count)));
      status.textContent = `${lines.length} lines${lines.length >= 1000 ? ' (newest 1,000)' : ''}${rows.length < lines.length ? `, ${lines.length - rows.length} folded as repeats` : ''}`;
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
        table.prepend(...lines.map((e) => lineRow(e, q, run)));
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
    h('div', { class: 'filters' }, svc, lvl, text, h('button', { onclick: () => run() }, 'Search'), dedupSel,
      h('label', { class: 'tail' }, tail, ' Live tail')),
    savedQueries({ kind: 'logql', current: () => ed.value(), open: (q) => run(q) }),
    volume, status,
    h('table', { class: 'grid logs', id: 'log-lines' }, h('thead', {}, h('tr', {}, ['Time', 'Level', 'Service', 'Line', ''].map((c) => h('th', {}, c)))), table));
}
