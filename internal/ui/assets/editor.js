// editor.js: a query editor with syntax highlighting (a highlighted layer
// under a transparent textarea), autocomplete and error positions. The
// highlighted layer is built from text nodes only.
import { h, clear, mount } from './dom.js';

const KEYWORDS = new Set(['true', 'false', 'nil', 'by', 'select', 'with', 'count', 'avg', 'min', 'max', 'sum', 'coalesce',
  'rate', 'count_over_time', 'quantile_over_time', 'histogram_over_time', 'topk', 'bottomk', 'and', 'or', 'unless', 'without', 'on', 'ignoring',
  'group_left', 'group_right', 'offset', 'bool', 'json', 'logfmt', 'line_format', 'label_format', 'drop', 'keep']);
const INTRINSICS = new Set(['name', 'status', 'kind', 'duration', 'statusMessage', 'rootName', 'rootServiceName', 'traceDuration',
  'span:name', 'span:status', 'span:kind', 'span:duration', 'trace:rootName', 'trace:rootService', 'trace:duration', 'event:name', 'link:traceID',
  'error', 'ok', 'unset', 'server', 'client', 'producer', 'consumer', 'internal', 'nestedSetParent', 'childCount']);

const TOKEN = /("(?:[^"\\]|\\.)*"?|`[^`]*`?)|(\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d)?)|((?:resource|span|event|link|instrumentation|parent|trace)?\.[A-Za-z_][\w.:-]*|[A-Za-z_][\w:]*)|(&&|\|\||=~|!~|!=|>=|<=|>>|<<|~|\|=|[=<>!|{}()[\],+\-*/%^&])|(\s+)|(.)/gy;

// tokens splits src into [kind, text] pairs for highlighting.
export function tokens(src) {
  const out = [];
  TOKEN.lastIndex = 0;
  let m;
  while (TOKEN.lastIndex < src.length && (m = TOKEN.exec(src))) {
    let kind = 'plain';
    if (m[1] !== undefined) kind = 'string';
    else if (m[2] !== undefined) kind = 'number';
    else if (m[3] !== undefined) {
      const w = m[3];
      if (w.includes('.') || w.startsWith('.')) kind = 'attr';
      else if (KEYWORDS.has(w)) kind = 'keyword';
      else if (INTRINSICS.has(w)) kind = 'intrinsic';
      else kind = 'ident';
    } else if (m[4] !== undefined) kind = 'op';
    out.push([kind, m[0]]);
  }
  return out;
}

// errorColumn finds "line L, col C" or "L:C" in a parse error message.
export function errorPosition(msg) {
  const m = /line (\d+), col(?:umn)? (\d+)/.exec(msg) || /(?:^|\s|at )(\d+):(\d+)/.exec(msg);
  return m ? { line: Number(m[1]), col: Number(m[2]) } : null;
}

function offsetOf(src, pos) {
  const lines = src.split('\n');
  let off = 0;
  for (let i = 0; i < pos.line - 1 && i < lines.length; i++) off += lines[i].length + 1;
  return Math.min(src.length, off + pos.col - 1);
}

// editor returns {el, value(), set(v), setError(msg)}. suggest(src, caret)
// resolves to {from, items: [{label, insert}]} or null.
export function editor({ value = '', placeholder = '', suggest, onsubmit, rows = 2, label = 'query' }) {
  const layer = h('pre', { class: 'hl', 'aria-hidden': 'true' });
  const ta = h('textarea', { class: 'ta', spellcheck: 'false', rows, placeholder, 'aria-label': label, autocapitalize: 'off', autocomplete: 'off' });
  ta.value = value;
  const list = h('ul', { class: 'suggest', role: 'listbox', hidden: true });
  const err = h('div', { class: 'editor-error', role: 'alert', hidden: true });
  const el = h('div', { class: 'editor' }, h('div', { class: 'editor-box' }, layer, ta, list), err);
  let errAt = -1;
  let items = [];
  let sel = 0;
  let from = 0;

  function paint() {
    clear(layer);
    const src = ta.value;
    let off = 0;
    for (const [kind, text] of tokens(src)) {
      if (errAt >= off && errAt < off + text.length) {
        const k = errAt - off;
        if (k > 0) layer.append(h('span', { class: `t-${kind}` }, text.slice(0, k)));
        layer.append(h('span', { class: `t-${kind} t-err` }, text.slice(k)));
      } else {
        layer.append(h('span', { class: `t-${kind}` }, text));
      }
      off += text.length;
    }
    if (errAt >= src.length && errAt >= 0) layer.append(h('span', { class: 't-err' }, ' '));
    layer.append('\n');
    layer.scrollTop = ta.scrollTop;
  }

  function close() { list.hidden = true; items = []; }

  function show() {
    clear(list);
    items.forEach((it, i) => {
      const li = h('li', { role: 'option', class: i === sel ? 'on' : '', 'aria-selected': i === sel ? 'true' : 'false' }, it.label);
      li.addEventListener('mousedown', (e) => { e.preventDefault(); sel = i; accept(); });
      list.append(li);
    });
    list.hidden = items.length === 0;
  }

  function accept() {
    const it = items[sel];
    if (!it) return;
    const caret = ta.selectionStart;
    ta.value = ta.value.slice(0, from) + it.insert + ta.value.slice(caret);
    const at = from + it.insert.length;
    ta.setSelectionRange(at, at);
    close();
    paint();
    ta.focus();
    refresh();
  }

  // narrow keeps only the shown items that still fit what is typed since
  // they were asked for, so that Tab or Enter pressed before the newer
  // suggestions arrive never inserts a stale one.
  function narrow() {
    if (list.hidden) return;
    const caret = ta.selectionStart;
    if (caret < from) { close(); return; }
    const typed = ta.value.slice(from, caret);
    items = items.filter((it) => it.insert.startsWith(typed) || it.label.startsWith(typed));
    sel = 0;
    show();
  }

  let seq = 0;
  async function refresh() {
    if (!suggest) return;
    const my = ++seq;
    const r = await suggest(ta.value, ta.selectionStart).catch(() => null);
    if (my !== seq) return;
    if (!r || !r.items.length) { close(); return; }
    items = r.items.slice(0, 50);
    from = r.from;
    sel = 0;
    show();
  }

  ta.addEventListener('input', () => { errAt = -1; err.hidden = true; paint(); narrow(); refresh(); });
  ta.addEventListener('scroll', () => { layer.scrollTop = ta.scrollTop; });
  ta.addEventListener('blur', () => setTimeout(close, 100));
  ta.addEventListener('keydown', (e) => {
    if (!list.hidden) {
      if (e.key === 'ArrowDown') { sel = (sel + 1) % items.length; show(); e.preventDefault(); return; }
      if (e.key === 'ArrowUp') { sel = (sel + items.length - 1) % items.length; show(); e.preventDefault(); return; }
      if (e.key === 'Tab' || (e.key === 'Enter' && !e.ctrlKey && !e.metaKey)) { accept(); e.preventDefault(); return; }
      if (e.key === 'Escape') { close(); e.preventDefault(); return; }
    }
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); close(); onsubmit && onsubmit(ta.value); }
  });
  paint();
  return {
    el,
    input: ta,
    value: () => ta.value,
    set(v) { ta.value = v; errAt = -1; err.hidden = true; paint(); },
    setError(msg) {
      if (!msg) { err.hidden = true; errAt = -1; paint(); return; }
      const pos = errorPosition(msg);
      errAt = pos ? offsetOf(ta.value, pos) : -1;
      err.hidden = false;
      err.textContent = msg;
      paint();
    },
  };
}

// savedQueries is the query library of one language (promql, logql,
// traceql), kept by the server for everyone using the tenant: a list to
// open a saved query from, a name box and Save to keep the editor's query
// (the same name replaces it), and Delete for the one chosen. open(query)
// runs the chosen query; current() gives the editor's query to save.
export function savedQueries({ kind, current, open }) {
  const pick = h('select', { 'aria-label': 'saved queries', class: 'saved-pick' }, h('option', { value: '' }, 'Saved queries…'));
  const name = h('input', { 'aria-label': 'name to save the query as', placeholder: 'name', size: 14, class: 'saved-name' });
  const msg = h('span', { class: 'small', role: 'status' });
  let byId = new Map();
  const load = async () => {
    try {
      const r = await fetch(`/api/sightline/v1/queries?kind=${kind}`);
      if (!r.ok) throw new Error((await r.text()).trim());
      const qs = (await r.json()).queries || [];
      byId = new Map(qs.map((q) => [q.id, q]));
      mount(pick, h('option', { value: '' }, qs.length ? `Saved queries (${qs.length})…` : 'No saved queries'), qs.map((q) => h('option', { value: q.id, title: q.query }, q.name)));
      // The query on screen, if saved, shows as chosen: Delete then
      // removes it, and Save under its name replaces it.
      const cur = current().trim();
      const same = qs.find((q) => q.query.trim() === cur);
      if (same) { pick.value = same.id; if (!name.value) name.value = same.name; }
    } catch (e) { msg.textContent = e.message; }
  };
  pick.addEventListener('change', () => { const q = byId.get(pick.value); if (q) { name.value = q.name; open(q.query); } });
  const save = async () => {
    const body = { kind, name: name.value.trim(), query: current() };
    const r = await fetch('/api/sightline/v1/queries', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (!r.ok) { let t = (await r.text()).trim(); try { t = JSON.parse(t).error || t; } catch { /* text */ } msg.textContent = t; return; }
    const q = await r.json();
    msg.textContent = `saved as "${q.name}"`;
    await load();
    pick.value = q.id;
  };
  const del = async () => {
    if (!pick.value) return;
    const r = await fetch(`/api/sightline/v1/queries/${encodeURIComponent(pick.value)}`, { method: 'DELETE' });
    msg.textContent = r.ok ? 'deleted' : (await r.text()).trim();
    await load();
  };
  name.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); save(); } });
  load();
  return h('div', { class: 'saved-queries filters' }, pick, name,
    h('button', { type: 'button', onclick: save }, 'Save query'), h('button', { type: 'button', onclick: del, title: 'delete the chosen saved query' }, 'Delete'), msg);
}
