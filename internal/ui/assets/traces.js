// traces.js: TraceQL search with quick filters, a duration scatter and the
// results table.
import { h, mount, fmtMs, fmtTime, colour } from './dom.js';
import * as api from './api.js';
import { editor, savedQueries } from './editor.js';
import { scatter } from './chart.js';
import { link, navigate, timeRange } from './app.js';

const INTRINSIC_SUGGESTIONS = ['name', 'status', 'kind', 'duration', 'statusMessage', 'rootName', 'rootServiceName', 'traceDuration',
  'resource.', 'span.', 'event.name', 'link.traceID'];

// traceqlSuggest completes attribute names after a scope or a dot, and
// values after `attr =`, from the tags API.
export async function traceqlSuggest(src, caret) {
  const before = src.slice(0, caret);
  const val = /((?:resource|span)?\.[\w.:-]+|name|status|kind|rootServiceName|rootName)\s*(=|!=|=~)\s*"?([^"]*)$/.exec(before);
  if (val) {
    const tag = val[1];
    const typed = val[3];
    const values = await api.tagValues(tag);
    const from = caret - typed.length - (before.endsWith(`"${typed}`) ? 1 : 0);
    return {
      from,
      items: values.filter((v) => String(v).startsWith(typed)).map((v) => ({ label: String(v), insert: /^(error|ok|unset|server|client|producer|consumer|internal)$/.test(String(v)) && /^(status|kind)$/.test(tag) ? String(v) : JSON.stringify(String(v)) })),
    };
  }
  const word = /((?:resource|span)?\.[\w.:-]*|[A-Za-z]\w*)$/.exec(before);
  if (!word) return null;
  const typed = word[1];
  const scope = typed.startsWith('resource.') ? 'resource' : typed.startsWith('span.') ? 'span' : undefined;
  const items = [];
  if (typed.includes('.')) {
    const names = await api.tagNames(scope);
    for (const { scope: sc, tag } of names) {
      const full = `${sc === 'intrinsic' ? '' : sc === 'resource' ? 'resource.' : 'span.'}${tag}`;
      if ((full.startsWith(typed) || `.${tag}`.startsWith(typed)) && sc !== 'intrinsic') items.push({ label: full, insert: typed.startsWith('.') ? `.${tag}` : full });
    }
  } else {
    for (const t of INTRINSIC_SUGGESTIONS) if (t.startsWith(typed) && t !== typed) items.push({ label: t, insert: t });
  }
  return { from: caret - typed.length, items };
}

// buildQuery turns quick filters into TraceQL.
function buildQuery(f) {
  const c = [];
  if (f.service) c.push(`resource.service.name = ${JSON.stringify(f.service)}`);
  if (f.operation) c.push(`name = ${JSON.stringify(f.operation)}`);
  if (f.status) c.push(`status = ${f.status}`);
  if (f.min) c.push(`duration >= ${f.min}`);
  if (f.max) c.push(`duration <= ${f.max}`);
  return `{ ${c.join(' && ')} }`.replace('{  }', '{ }');
}

export function tracesPage({ query, alive }) {
  const q = query.get('q') || '{ }';
  const limit = Number(query.get('limit')) || 100;
  const [start, end] = timeRange(query);
  const results = h('section', { class: 'results', 'aria-live': 'polite' });
  const ed = editor({ value: q, label: 'TraceQL query', placeholder: '{ resource.service.name = "checkout" && status = error }', suggest: traceqlSuggest, onsubmit: run });

  const svc = h('select', { 'aria-label': 'service', id: 'f-service' }, h('option', { value: '' }, 'any service'));
  const op = h('input', { 'aria-label': 'operation', id: 'f-operation', placeholder: 'operation', list: 'ops' });
  const st = h('select', { 'aria-label': 'status', id: 'f-status' }, ['', 'error', 'ok', 'unset'].map((v) => h('option', { value: v }, v || 'any status')));
  const min = h('input', { 'aria-label': 'min duration', id: 'f-min', placeholder: 'min e.g. 100ms', size: 10 });
  const max = h('input', { 'aria-label': 'max duration', id: 'f-max', placeholder: 'max', size: 8 });
  const applyFilters = () => { ed.set(buildQuery({ service: svc.value, operation: op.value, status: st.value, min: min.value, max: max.value })); run(); };
  for (const el of [svc, st]) el.addEventListener('change', applyFilters);
  for (const el of [op, min, max]) el.addEventListener('keydown', (e) => { if (e.key === 'Enter') applyFilters(); });
  api.tagValues('resource.service.name').then((vs) => { for (const v of vs.sort()) svc.append(h('option', { value: v }, v)); }).catch(() => {});

  function run(v) {
    const u = new URL(location.href);
    u.searchParams.set('q', (v ?? ed.value()).trim() || '{ }');
    navigate(u.pathname + u.search, { replace: true });
  }

  (async () => {
    mount(results, h('p', { class: 'muted' }, 'Searching…'));
    let r;
    const t0 = performance.now();
    try {
      r = await api.searchTraces(q, start, end, limit);
    } catch (e) {
      if (!alive()) return;
      ed.setError(e.message);
      mount(results);
      return;
    }
    if (!alive()) return;
    const traces = r.traces || [];
    const took = performance.now() - t0;
    const r0 = performance.now();
    const open = (t) => navigate(`/ui/trace/${t.traceID}`);
    const pts = traces.map((t) => {
      const errs = Object.values(t.serviceStats || {}).reduce((a, s) => a + (s.errorCount || 0), 0);
      return { t: Number(t.startTimeUnixNano) / 1e9, v: t.durationMs || 0, id: t.traceID, error: errs > 0, title: `${t.rootServiceName}: ${t.rootTraceName} ${t.durationMs} ms`, onclick: () => open(t) };
    });
    const rows = traces.map((t) => {
      const stats = Object.entries(t.serviceStats || {});
      const spans = stats.reduce((a, [, s]) => a + s.spanCount, 0);
      const errs = stats.reduce((a, [, s]) => a + (s.errorCount || 0), 0);
      return h('tr', { class: errs ? 'has-err' : '' },
        h('td', {}, link(`/ui/trace/${t.traceID}`, { class: 'mono' }, t.traceID.slice(0, 16))),
        h('td', {}, h('span', { class: 'svc', style: { '--c': colour(t.rootServiceName || '') } }, t.rootServiceName || '<root span not yet received>')),
        h('td', {}, t.rootTraceName || ''),
        h('td', { class: 'mono' }, fmtTime(Number(t.startTimeUnixNano) / 1e6)),
        h('td', { class: 'num' }, fmtMs(t.durationMs)),
        h('td', { class: 'num' }, spans || ''),
        h('td', {}, stats.map(([name]) => h('span', { class: 'svc small', style: { '--c': colour(name) } }, name))),
        h('td', { class: errs ? 'num err' : 'num' }, errs || ''));
    });
    mount(results,
      h('p', { class: 'muted', id: 'result-count' }, `${traces.length} traces${traces.length >= limit ? ` (limit ${limit})` : ''}, ${Math.round(took)} ms`),
      traces.length ? scatter({ points: pts, t0: start, t1: end, unit: 'ms' }) : null,
      traces.length ? h('table', { class: 'grid', id: 'trace-results' },
        h('thead', {}, h('tr', {}, ['Trace', 'Root service', 'Root operation', 'Start', 'Duration', 'Spans', 'Services', 'Errors'].map((c, i) => h('th', { class: [4, 5, 7].includes(i) ? 'num' : '' }, c)))),
        h('tbody', {}, rows)) : h('p', { class: 'empty' }, 'No traces match in this time range.'));
    results.dataset.renderMs = String(Math.round(performance.now() - r0));
  })();

  return h('div', { class: 'page' },
    h('h1', {}, 'Traces'),
    ed.el,
    h('div', { class: 'filters' }, svc, op, st, min, max,
      h('button', { onclick: () => run() }, 'Search')),
    savedQueries({ kind: 'traceql', current: () => ed.value(), open: (q) => run(q) }),
    results);
}
