// trace.js: the trace view. A virtualised waterfall (only the rows in view
// are in the DOM, so a 10,000-span trace scrolls smoothly), span detail,
// the critical path, and the trace's logs on the timeline and per span.
import { h, s as svg, mount, fmtDuration, fmtTime, colour } from './dom.js';
import * as api from './api.js';
import { link, navigate } from './app.js';

const ROW = 24;
const OVERSCAN = 12;
const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
const SEVERITY = (n) => (n >= 17 ? 'error' : n >= 13 ? 'warn' : n >= 9 ? 'info' : n >= 5 ? 'debug' : n > 0 ? 'trace' : '');

// anyValue renders an OTLP AnyValue as a string.
export function anyValue(v) {
  if (!v) return '';
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return String(v.intValue);
  if ('doubleValue' in v) return String(v.doubleValue);
  if ('boolValue' in v) return String(v.boolValue);
  if ('bytesValue' in v) return v.bytesValue;
  if ('arrayValue' in v) return `[${(v.arrayValue.values || []).map(anyValue).join(', ')}]`;
  if ('kvlistValue' in v) return `{${(v.kvlistValue.values || []).map((kv) => `${kv.key}: ${anyValue(kv.value)}`).join(', ')}}`;
  return '';
}

const attrMap = (list) => (list || []).map((kv) => [kv.key, anyValue(kv.value)]);

// nanos reads an OTLP JSON timestamp (a decimal string, or a number from
// some encoders) exactly. A double holds nanoseconds since 1970 only to
// about 256 ns, so durations are taken as the difference of these, never
// of two Numbers: a 4 ms span must read 4 ms, and filter as one.
function nanos(v) {
  try { return BigInt(v ?? 0); } catch { return BigInt(Math.round(Number(v) || 0)); }
}

// times gives a span's start and end as Numbers (absolute nanoseconds,
// for ordering and placing on a time axis) and its exact duration.
function times(sp) {
  const st = nanos(sp.startTimeUnixNano);
  const en = nanos(sp.endTimeUnixNano);
  return { start: Number(st), end: Number(en), dur: en > st ? Number(en - st) : 0, startN: st, endN: en };
}

// parseTrace flattens OTLP JSON into spans with parent links, sorted
// depth-first by start time.
export function parseTrace(td) {
  const spans = [];
  for (const rs of td.resourceSpans || []) {
    const res = attrMap(rs.resource && rs.resource.attributes);
    const service = (res.find(([k]) => k === 'service.name') || [, 'unknown_service'])[1];
    for (const ss of rs.scopeSpans || []) {
      for (const sp of ss.spans || []) {
        spans.push({
          id: sp.spanId, parent: sp.parentSpanId || '', name: sp.name, service, resource: res,
          scope: ss.scope || {}, kind: typeof sp.kind === 'number' ? KINDS[sp.kind] : String(sp.kind || '').replace('SPAN_KIND_', '').toLowerCase(),
          ...times(sp), attrs: attrMap(sp.attributes),
          events: sp.events || [], links: sp.links || [],
          error: sp.status && (sp.status.code === 2 || sp.status.code === 'STATUS_CODE_ERROR'),
          statusMessage: (sp.status && sp.status.message) || '', children: [], depth: 0, logs: [],
        });
      }
    }
  }
  const byId = new Map(spans.map((s) => [s.id, s]));
  const roots = [];
  for (const s of spans) {
    const p = byId.get(s.parent);
    if (p && p !== s) p.children.push(s); else roots.push(s);
  }
  const order = [];
  const walk = (s, d) => {
    s.depth = d;
    order.push(s);
    s.children.sort((a, b) => a.start - b.start);
    for (const c of s.children) walk(c, d + 1);
  };
  roots.sort((a, b) => a.start - b.start).forEach((r) => walk(r, 0));
  return { spans: order, byId, roots };
}

// criticalPath marks the spans that bound the trace's duration: from each
// span, the child that finished last before the span ended, then the
// child that finished before that one started, and so on.
export function criticalPath(roots) {
  const on = new Set();
  const visit = (s, limit) => {
    on.add(s.id);
    let t = Math.min(s.end, limit);
    const kids = [...s.children].sort((a, b) => b.end - a.end);
    for (const c of kids) {
      if (c.end <= t && c.end > s.start) { visit(c, t); t = c.start; }
    }
  };
  for (const r of roots) visit(r, r.end);
  return on;
}

// traceStats summarises a trace by service and operation, as Jaeger's
// trace statistics do: spans, errors, total and average duration, and self
// time (a span's time not covered by its children), most self time first.
export function traceStats(spans) {
  const groups = new Map();
  for (const s of spans) {
    const key = `${s.service}\u0000${s.name}`;
    let g = groups.get(key);
    if (!g) {
      g = { service: s.service, name: s.name, count: 0, errors: 0, total: 0, self: 0 };
      groups.set(key, g);
    }
    const d = s.dur;
    const iv = s.children.map((c) => [Math.max(c.start, s.start), Math.min(c.end, s.end)]).filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
    let covered = 0;
    let cur = null;
    for (const [a, b] of iv) {
      if (cur && a <= cur[1]) cur[1] = Math.max(cur[1], b);
      else {
        if (cur) covered += cur[1] - cur[0];
        cur = [a, b];
      }
    }
    if (cur) covered += cur[1] - cur[0];
    g.count++;
    g.total += d;
    g.self += Math.max(0, d - covered);
    if (s.error) g.errors++;
  }
  return [...groups.values()].sort((a, b) => b.self - a.self || a.service.localeCompare(b.service) || a.name.localeCompare(b.name));
}

// flameRects lays a trace out as a flame graph: each span a bar from its
// start to its end (fractions of the trace), below its parent, on the
// first row where it overlaps no other bar, so that concurrent siblings
// each stay visible and clickable. spans come parents first.
export function flameRects(spans, tStart, total) {
  const rows = []; // per row, the [start, end) intervals placed on it
  const rowOf = new Map();
  const out = [];
  for (const sp of spans) {
    const a = sp.start;
    const b = Math.max(sp.end, sp.start + 1);
    let row = rowOf.has(sp.parent) ? rowOf.get(sp.parent) + 1 : 0;
    while (rows[row] && rows[row].some(([x, y]) => a < y && x < b)) row++;
    (rows[row] ||= []).push([a, b]);
    rowOf.set(sp.id, row);
    out.push({ id: sp.id, row, x: (sp.start - tStart) / total, w: sp.dur / total });
  }
  return out;
}

const FLAME_W = 1000;
const FLAME_ROW = 18;

function flameGraph(spans, byId, tStart, total, select) {
  const rects = flameRects(spans, tStart, total);
  const depth = Math.max(...rects.map((r) => r.row)) + 1;
  return svg('svg', { id: 'flame-graph', viewBox: `0 0 ${FLAME_W} ${depth * FLAME_ROW}`, role: 'img', 'aria-label': 'flame graph' },
    rects.map((r) => {
      const sp = byId.get(r.id);
      const x = r.x * FLAME_W;
      const w = Math.max(r.w * FLAME_W, 0.5);
      const label = `${sp.service}: ${sp.name}`;
      const fits = Math.floor((w - 6) / 6.2);
      return svg('g', { class: sp.error ? 'flame err' : 'flame', 'data-span': r.id, onclick: () => select(r.id) },
        svg('title', {}, `${label} (${fmtDuration(sp.dur)})`),
        svg('rect', { x, y: r.row * FLAME_ROW, width: w, height: FLAME_ROW - 2, rx: 2, style: { fill: colour(sp.service) } }),
        fits >= 3 ? svg('text', { x: x + 3, y: r.row * FLAME_ROW + 12 }, label.length > fits ? `${label.slice(0, fits - 1)}…` : label) : null);
    }));
}

// compareForm takes another trace's ID and opens the comparison of this
// trace (A) with it (B).
function compareForm(id) {
  const input = h('input', { id: 'compare-with', 'aria-label': 'trace ID to compare with', placeholder: 'compare with trace ID', size: 34, class: 'mono small' });
  const go = () => {
    const other = input.value.trim().toLowerCase();
    if (/^[0-9a-f]{1,32}$/.test(other)) navigate(`/ui/compare/${id}/${other}`);
    else input.setCustomValidity('a trace ID is hex'), input.reportValidity();
  };
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter') go(); });
  input.addEventListener('input', () => input.setCustomValidity(''));
  return h('span', { class: 'compare-form' }, input, h('button', { id: 'compare-go', onclick: go }, 'Compare'));
}

function statsTable(spans, total) {
  return h('table', { class: 'grid stats', id: 'trace-stats-table' },
    h('thead', {}, h('tr', {}, ['Service', 'Operation', 'Spans', 'Errors', 'Total', 'Avg', 'Self', 'Self % of trace'].map((c) => h('th', {}, c)))),
    h('tbody', {}, traceStats(spans).map((g) => h('tr', {},
      h('td', {}, h('span', { class: 'svc small', style: { '--c': colour(g.service) } }, g.service)),
      h('td', { class: 'mono small' }, g.name),
      h('td', { class: 'num' }, String(g.count)),
      h('td', { class: g.errors ? 'num err' : 'num' }, String(g.errors)),
      h('td', { class: 'num' }, fmtDuration(g.total)),
      h('td', { class: 'num' }, fmtDuration(g.total / g.count)),
      h('td', { class: 'num' }, fmtDuration(g.self)),
      h('td', { class: 'num' }, `${(100 * g.self / total).toFixed(1)}%`)))));
}

function kv(rows) {
  return h('table', { class: 'kv' }, h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, h('span', { class: 'val' }, v))))));
}

export function tracePage({ params, query, alive }) {
  const id = params[0].toLowerCase();
  const root = h('div', { class: 'page trace-page' }, h('p', { class: 'muted' }, 'Loading trace…'));
  (async () => {
    let raw;
    let logsRaw;
    try {
      [raw, logsRaw] = await Promise.all([api.trace(id), api.traceLogs(id).catch(() => ({}))]);
    } catch (e) {
      if (alive()) mount(root, h('h1', {}, 'Trace ', h('span', { class: 'mono' }, id)), h('p', { class: 'error', role: 'alert' }, e.message));
      return;
    }
    if (!alive()) return;
    const t0 = performance.now();
    view(root, id, raw.trace || raw, logsRaw, query.get('span'), query.get('find') || '');
    root.dataset.renderMs = String(Math.round(performance.now() - t0));
  })();
  return root;
}

// spanFilter compiles the find box's text into a predicate over spans, as
// Grafana's span filters and Jaeger's find do: terms separated by spaces,
// all of which must hold. key=value and key!=value compare an attribute
// of the span or of its resource exactly (service= and name= the span's
// service and name, status=error its status); duration>, >=, < and <=
// take a duration (250µs, 4ms, 1.5s); any other term is text found
// anywhere in the span (service, name, ID, attributes, events), ignoring
// case. Values with spaces are quoted: name="GET /cart". Empty text gives
// null: nothing is filtered.
export function spanFilter(text) {
  const preds = [];
  const re = /([\w.@:/-]+)(!=|>=|<=|=|>|<)("(?:[^"\\]|\\.)*"|\S*)|"((?:[^"\\]|\\.)*)"|(\S+)/g;
  const unq = (v) => (v.startsWith('"') ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v);
  for (const m of String(text).matchAll(re)) {
    if (m[1]) {
      const [key, op, value] = [m[1], m[2], unq(m[3])];
      if (key === 'duration') {
        const d = parseDurationNs(value);
        if (!isFinite(d)) { preds.push(() => false); continue; }
        const cmp = { '>': (x) => x > d, '>=': (x) => x >= d, '<': (x) => x < d, '<=': (x) => x <= d, '=': (x) => x === d, '!=': (x) => x !== d }[op];
        preds.push((sp) => cmp(sp.dur));
        continue;
      }
      if (op !== '=' && op !== '!=') { preds.push(() => false); continue; }
      const get = (sp) => {
        if (key === 'service' || key === 'resource.service.name') return [sp.service];
        if (key === 'name') return [sp.name];
        if (key === 'status') return [sp.error ? 'error' : 'unset'];
        if (key === 'kind') return [sp.kind];
        const bare = key.replace(/^(span|resource)\./, '');
        const own = key.startsWith('resource.') ? [] : sp.attrs.filter(([k]) => k === bare || k === key);
        const res = key.startsWith('span.') ? [] : sp.resource.filter(([k]) => k === bare || k === key);
        return [...own, ...res].map(([, v]) => String(v));
      };
      preds.push(op === '=' ? (sp) => get(sp).includes(value) : (sp) => !get(sp).includes(value));
      continue;
    }
    const t = (m[4] ?? m[5]).toLowerCase();
    preds.push((sp) => haystack(sp).includes(t));
  }
  return preds.length ? (sp) => preds.every((p) => p(sp)) : null;
}

function parseDurationNs(v) {
  const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)$/.exec(v);
  return m ? Number(m[1]) * { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }[m[2]] : NaN;
}

// haystack is what "find in trace" searches in a span: its service, name,
// ID, attribute keys and values, and event names, lower-cased.
function haystack(s) {
  if (s.hay === undefined) {
    s.hay = [s.service, s.name, s.id, ...s.attrs.map(([k, v]) => `${k}=${v}`), ...s.events.map((e) => e.name)].join('\n').toLowerCase();
  }
  return s.hay;
}

function view(root, id, td, logsRaw, selected, findTerm) {
  const { spans, byId, roots } = parseTrace(td);
  if (!spans.length) { mount(root, h('p', { class: 'empty' }, 'Trace has no spans.')); return; }
  const tStart = Math.min(...spans.map((s) => s.start));
  // The trace's length, exactly (see nanos).
  let t0 = spans[0].startN, t1 = spans[0].endN;
  for (const s of spans) { if (s.startN < t0) t0 = s.startN; if (s.endN > t1) t1 = s.endN; }
  const total = Math.max(1, Number(t1 - t0));
  const crit = criticalPath(roots);
  const services = [...new Set(spans.map((s) => s.service))];
  const errors = spans.filter((s) => s.error).length;

  // Logs: attach to spans by span ID.
  const logs = [];
  for (const rl of logsRaw.resourceLogs || []) {
    const svc = (attrMap(rl.resource && rl.resource.attributes).find(([k]) => k === 'service.name') || [, ''])[1];
    for (const sl of rl.scopeLogs || []) {
      for (const lr of sl.logRecords || []) {
        const l = { t: Number(lr.timeUnixNano || lr.observedTimeUnixNano), span: lr.spanId || '', body: anyValue(lr.body), sev: lr.severityText || SEVERITY(lr.severityNumber || 0), service: svc, attrs: attrMap(lr.attributes) };
        logs.push(l);
        const s = byId.get(l.span);
        if (s) s.logs.push(l);
      }
    }
  }
  logs.sort((a, b) => a.t - b.t);

  const collapsed = new Set();
  let visible = [];
  // With "only matches" on, the waterfall keeps the spans that match the
  // filter and their ancestors, so each match keeps its place in the tree.
  let only = new URLSearchParams(location.search).get('only') === '1';
  let keep = null;
  const recompute = () => {
    visible = [];
    const hidden = new Set();
    for (const s of spans) {
      if (hidden.has(s.parent) || (keep && !keep.has(s.id))) { hidden.add(s.id); continue; }
      visible.push(s);
      if (collapsed.has(s.id)) hidden.add(s.id);
    }
  };
  recompute();

  const pct = (t) => `${(((t - tStart) / total) * 100).toFixed(3)}%`;
  const scroller = h('div', { class: 'wf-scroll', tabindex: 0, 'aria-label': 'spans' });
  const spacer = h('div', { class: 'wf-spacer' });
  const rowsEl = h('div', { class: 'wf-rows' });
  scroller.append(spacer, rowsEl);
  const detail = h('aside', { class: 'detail', id: 'span-detail', 'aria-live': 'polite' });
  let sel = selected && byId.get(selected) ? selected : null;

  // Find in trace, as in Jaeger: spans whose service, name, ID, attributes
  // or events contain the text are marked; Enter and Shift+Enter step
  // through them, opening collapsed parents on the way.
  let matches = [];
  let matched = new Set();
  let at = -1;
  const findCount = h('span', { class: 'muted small', id: 'find-count' });
  const findInput = h('input', { type: 'search', id: 'find', placeholder: 'Find: text, or key=value, service=, name=, duration>5ms…', 'aria-label': 'find in trace', value: findTerm, title: 'Terms separated by spaces, all of which must hold: text found anywhere in the span, key=value or key!=value on an attribute (service=, name=, status=error, kind=server), duration>5ms, <, >=, <=' });
  const onlyBox = h('input', { type: 'checkbox', id: 'find-only', checked: only });
  const counted = (n) => `${n} ${n === 1 ? 'match' : 'matches'}`;
  const find = (term) => {
    const pred = spanFilter(term.trim());
    matches = pred ? spans.filter(pred) : [];
    matched = new Set(matches.map((s) => s.id));
    at = -1;
    findCount.textContent = pred ? counted(matches.length) : '';
    keep = null;
    if (pred && only) {
      keep = new Set();
      for (const m of matches) for (let x = m; x && !keep.has(x.id); x = byId.get(x.parent)) keep.add(x.id);
    }
    recompute();
    const u = new URL(location.href);
    if (pred) u.searchParams.set('find', term); else u.searchParams.delete('find');
    if (only) u.searchParams.set('only', '1'); else u.searchParams.delete('only');
    history.replaceState(null, '', u);
  };
  const step = (d) => {
    if (!matches.length) return;
    at = (at + d + matches.length) % matches.length;
    findCount.textContent = `${at + 1} of ${counted(matches.length)}`;
    select(matches[at].id);
  };
  findInput.addEventListener('input', () => { find(findInput.value); paint(true); });
  findInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); step(e.shiftKey ? -1 : 1); }
    if (e.key === 'Escape') { findInput.value = ''; find(''); paint(true); }
  });
  onlyBox.addEventListener('change', () => { only = onlyBox.checked; find(findInput.value); paint(true); });
  const findBar = h('div', { class: 'wf-find' }, findInput, h('label', { class: 'small' }, onlyBox, ' only matches'),
    h('button', { 'aria-label': 'previous match', title: 'previous match (Shift+Enter)', onclick: () => step(-1) }, '↑'),
    h('button', { 'aria-label': 'next match', title: 'next match (Enter)', onclick: () => step(1) }, '↓'), findCount);

  function row(s, i) {
    const hasKids = s.children.length > 0;
    const toggle = hasKids
      ? h('button', { class: 'tog', 'aria-label': collapsed.has(s.id) ? 'expand' : 'collapse', 'aria-expanded': String(!collapsed.has(s.id)), onclick: (e) => { e.stopPropagation(); if (collapsed.has(s.id)) collapsed.delete(s.id); else collapsed.add(s.id); recompute(); paint(true); } }, collapsed.has(s.id) ? '▸' : '▾')
      : h('span', { class: 'tog' });
    const bar = h('div', { class: `bar${s.error ? ' err' : ''}${crit.has(s.id) ? ' crit' : ''}`, style: { left: pct(s.start), width: `max(2px, ${((s.dur / total) * 100).toFixed(3)}%)`, background: colour(s.service) } });
    const ticks = s.logs.map((l) => h('i', { class: `logtick ${l.sev.toLowerCase()}`, style: { left: pct(l.t) }, title: l.body }));
    return h('div', {
      class: `wf-row${s.id === sel ? ' sel' : ''}${s.error ? ' has-err' : ''}${matched.has(s.id) ? ' match' : ''}`,
      style: { top: `${i * ROW}px` },
      role: 'row',
      'data-span': s.id,
      onclick: () => select(s.id),
    },
    h('div', { class: 'wf-name', style: { paddingLeft: `${s.depth * 14}px` } }, toggle,
      h('span', { class: 'svc small', style: { '--c': colour(s.service) } }, s.service), ' ',
      h('span', { class: 'span-name' }, s.name), s.error ? h('span', { class: 'err-mark', title: 'error' }, ' ⚠') : null),
    h('div', { class: 'wf-track' }, bar, ticks, h('span', { class: 'wf-dur', style: { left: pct(s.end) } }, fmtDuration(s.dur))));
  }

  let lastFirst = -1;
  function paint(force) {
    spacer.style.height = `${visible.length * ROW}px`;
    scroller.style.height = `min(64vh, ${visible.length * ROW + 2}px)`;
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - OVERSCAN);
    if (!force && first === lastFirst) return;
    lastFirst = first;
    const last = Math.min(visible.length, first + Math.ceil((scroller.clientHeight || 600) / ROW) + 2 * OVERSCAN);
    const frag = [];
    for (let i = first; i < last; i++) frag.push(row(visible[i], i));
    mount(rowsEl, frag);
  }
  let raf = 0;
  scroller.addEventListener('scroll', () => { if (!raf) raf = requestAnimationFrame(() => { raf = 0; paint(false); }); });
  scroller.addEventListener('keydown', (e) => {
    const i = visible.findIndex((s) => s.id === sel);
    if (e.key === 'ArrowDown' || e.key === 'j') { select(visible[Math.min(visible.length - 1, i + 1)].id); e.preventDefault(); }
    if (e.key === 'ArrowUp' || e.key === 'k') { select(visible[Math.max(0, i - 1)].id); e.preventDefault(); }
    if ((e.key === 'ArrowLeft' || e.key === 'ArrowRight') && sel) { if (e.key === 'ArrowLeft') collapsed.add(sel); else collapsed.delete(sel); recompute(); paint(true); }
  });

  function select(spanId) {
    const s = byId.get(spanId);
    if (!s) return;
    sel = spanId;
    // Expand the span's ancestors, then scroll it into view.
    for (let p = byId.get(s.parent); p; p = byId.get(p.parent)) collapsed.delete(p.id);
    recompute();
    const i = visible.indexOf(s);
    if (i * ROW < scroller.scrollTop || i * ROW > scroller.scrollTop + scroller.clientHeight - ROW) scroller.scrollTop = Math.max(0, i * ROW - scroller.clientHeight / 3);
    paint(true);
    const u = new URL(location.href);
    u.searchParams.set('span', spanId);
    history.replaceState(null, '', u);
    showDetail(s);
  }

  function showDetail(s) {
    const exc = s.events.filter((e) => e.name === 'exception');
    mount(detail,
      h('h2', {}, h('span', { class: 'span-name' }, s.name)),
      h('p', {}, link(`/ui/service/${encodeURIComponent(s.service)}`, { class: 'svc', style: { '--c': colour(s.service) } }, s.service),
        ` ${s.kind} · ${fmtDuration(s.dur)} · starts at +${fmtDuration(s.start - tStart)}`,
        s.error ? h('span', { class: 'err' }, ` · error${s.statusMessage ? `: ${s.statusMessage}` : ''}`) : null),
      h('p', { class: 'mono small' }, `span ${s.id}${s.parent ? ` · parent ${s.parent}` : ''}`),
      h('h3', {}, 'Attributes'), s.attrs.length ? kv(s.attrs) : h('p', { class: 'muted' }, 'none'),
      exc.length ? [h('h3', {}, 'Exceptions'), exc.map((e) => {
        const a = new Map(attrMap(e.attributes));
        return h('div', { class: 'exception' }, h('strong', {}, a.get('exception.type') || 'exception'), ': ', a.get('exception.message') || '',
          a.get('exception.stacktrace') ? h('pre', { class: 'stack' }, a.get('exception.stacktrace')) : null);
      })] : null,
      h('h3', {}, `Logs (${s.logs.length})`),
      s.logs.length ? h('ul', { class: 'loglist', id: 'span-logs' }, s.logs.map((l) => h('li', { class: `sev-${l.sev.toLowerCase()}` }, h('span', { class: 'mono small' }, `+${fmtDuration(l.t - tStart)} `), h('span', { class: 'sev' }, l.sev), ' ', h('span', { class: 'body' }, l.body)))) : h('p', { class: 'muted' }, 'No logs for this span.'),
      s.events.length - exc.length > 0 ? [h('h3', {}, 'Events'), h('ul', { class: 'loglist' }, s.events.filter((e) => e.name !== 'exception').map((e) => h('li', {}, h('span', { class: 'mono small' }, `+${fmtDuration(Number(e.timeUnixNano) - tStart)} `), e.name, e.attributes && e.attributes.length ? kv(attrMap(e.attributes)) : null)))] : null,
      s.links.length ? [h('h3', {}, 'Links'), h('ul', {}, s.links.map((l) => h('li', {}, link(`/ui/trace/${l.traceId}?span=${l.spanId}`, { class: 'mono' }, `${l.traceId} / ${l.spanId}`))))] : null,
      h('h3', {}, 'Resource'), kv(s.resource),
      s.scope.name ? h('p', { class: 'muted small scope' }, `scope ${s.scope.name} ${s.scope.version || ''}`) : null);
  }

  const timelineLogs = h('div', { class: 'wf-track logs-track', title: 'the trace\'s logs' }, logs.map((l) => h('i', { class: `logtick ${l.sev.toLowerCase()}`, style: { left: pct(l.t) }, title: `${l.service}: ${l.body}`, onclick: () => l.span && select(l.span) })));
  const axis = h('div', { class: 'wf-axis' }, h('div', { class: 'wf-name' }, 'Service · operation'),
    h('div', { class: 'wf-track' }, [0, 0.25, 0.5, 0.75, 1].map((f) => h('span', { class: 'axis-tick', style: { left: `${f * 100}%` } }, fmtDuration(f * total)))));

  const logPanel = h('section', { class: 'trace-logs' }, h('h2', {}, `Logs in this trace (${logs.length})`),
    logs.length ? h('ul', { class: 'loglist', id: 'trace-logs' }, logs.map((l) => h('li', { class: `sev-${l.sev.toLowerCase()}` },
      h('span', { class: 'mono small' }, `+${fmtDuration(l.t - tStart)} `), h('span', { class: 'sev' }, l.sev), ' ',
      h('span', { class: 'svc small', style: { '--c': colour(l.service) } }, l.service), ' ', h('span', { class: 'body' }, l.body), ' ',
      l.span && byId.has(l.span) ? h('button', { class: 'linkish', 'data-span': l.span, onclick: () => select(l.span) }, `span ${l.span.slice(0, 8)}`) : null))) : h('p', { class: 'muted' }, 'No logs carry this trace ID.'));

  const rootSpan = roots[0];
  const download = () => {
    const blob = new Blob([JSON.stringify(td, null, 2)], { type: 'application/json' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `trace-${id}.json` });
    document.body.append(a);
    a.click();
    a.remove();
  };
  const idEl = h('code', { class: 'mono', id: 'trace-id' }, id);
  // Statistics and the raw OTLP JSON are built when first opened: a
  // 10,000-span trace should not pay for them up front.
  const stats = h('details', { id: 'trace-stats' }, h('summary', {}, 'Statistics by service and operation'));
  stats.addEventListener('toggle', () => { if (stats.open && !stats.querySelector('table')) stats.append(statsTable(spans, total)); });
  const flame = h('details', { id: 'flame' }, h('summary', {}, 'Flame graph'));
  flame.addEventListener('toggle', () => { if (flame.open && !flame.querySelector('svg')) flame.append(flameGraph(spans, byId, tStart, total, select)); });
  const raw = h('details', { id: 'raw-json' }, h('summary', {}, 'Raw OTLP JSON'));
  raw.addEventListener('toggle', () => { if (raw.open && !raw.querySelector('pre')) raw.append(h('pre', { class: 'mono small raw' }, JSON.stringify(td, null, 2))); });
  mount(root,
    h('div', { class: 'trace-head' },
      h('h1', {}, h('span', { class: 'svc', style: { '--c': colour(rootSpan.service) } }, rootSpan.service), ' ', h('span', { class: 'span-name' }, rootSpan.name)),
      h('p', {}, idEl, ' ',
        h('button', { onclick: (e) => { navigator.clipboard && navigator.clipboard.writeText(id).catch(() => {}); const r = document.createRange(); r.selectNodeContents(idEl); getSelection().removeAllRanges(); getSelection().addRange(r); e.target.textContent = 'Copied'; } }, 'Copy ID'), ' ',
        h('button', { onclick: download, id: 'download' }, 'Download OTLP JSON'), ' ',
        link(`/ui/service/${encodeURIComponent(rootSpan.service)}`, {}, 'Service page'), ' · ',
        compareForm(id), ' · ',
        link(`/ui/logs?query=${encodeURIComponent(`{service_name=~".+"} | trace_id="${id}"`)}`, {}, 'Logs search')),
      h('p', { class: 'muted' }, `${fmtTime(tStart / 1e6)} · ${fmtDuration(total)} · ${spans.length} spans · ${services.length} services · `,
        h('span', { class: errors ? 'err' : '' }, `${errors} errors`), ' · critical path highlighted')),
    h('div', { class: 'trace-body' },
      h('div', {}, findBar, h('div', { class: 'waterfall' }, axis, h('div', { class: 'wf-axis' }, h('div', { class: 'wf-name muted' }, `logs (${logs.length})`), timelineLogs), scroller)),
      detail),
    flame, stats, raw,
    logPanel);
  if (findTerm) find(findTerm);
  paint(true);
  if (sel) select(sel); else mount(detail, h('p', { class: 'muted' }, 'Select a span to see its attributes, events and logs.'));
}
