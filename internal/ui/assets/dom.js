// DOM helpers. Every value from telemetry goes through h() or text(),
// which create text nodes: nothing here ever parses a string as HTML.

const SVG = 'http://www.w3.org/2000/svg';

function append(el, c) {
  if (c === null || c === undefined || c === false) return;
  if (Array.isArray(c)) { c.forEach((x) => append(el, x)); return; }
  el.append(c instanceof Node ? c : document.createTextNode(String(c)));
}

function setProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'style' && typeof v === 'object') { for (const [sk, sv] of Object.entries(v)) { if (sk.startsWith('--')) el.style.setProperty(sk, sv); else el.style[sk] = sv; } }
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'href' && !/^(\/|#|https?:|blob:)/.test(String(v))) continue; // no javascript: URLs
    else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

// h builds an HTML element: h('a', {href, onclick}, 'text', child, [more]).
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

// s builds an SVG element.
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG, tag);
  setProps(el, props);
  append(el, children);
  return el;
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function mount(el, ...children) { clear(el); append(el, children); return el; }

// fmtDuration formats nanoseconds as Jaeger does: 1.23s, 45.6ms, 789µs,
// without trailing zeros (9ms, not 9.00ms).
export function fmtDuration(ns) {
  ns = Number(ns);
  if (!isFinite(ns)) return '–';
  const trim = (v, digits) => v.toFixed(digits).replace(/\.?0+$/, '');
  if (ns >= 60e9) return `${trim(ns / 60e9, 1)}m`;
  if (ns >= 1e9) return `${trim(ns / 1e9, 2)}s`;
  if (ns >= 1e6) return `${trim(ns / 1e6, ns >= 1e8 ? 0 : 2)}ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(0)}µs`;
  return `${ns}ns`;
}

// fmtMs formats a duration Tempo's search API gives in whole
// milliseconds, where a trace under one millisecond is 0 (or left out):
// "<1ms", as Grafana shows it, not "0ns".
export function fmtMs(ms) {
  ms = Number(ms || 0);
  return ms < 1 ? '<1ms' : fmtDuration(ms * 1e6);
}

export function fmtTime(ms) {
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function fmtNum(v, digits = 2) {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  return v.toFixed(digits);
}

// fmtValue shows a sample value as people read it: 9.7692, not
// 9.769239333333335; at least four decimals, or four significant digits
// below 1. NaN and ±Inf stay as Prometheus writes them.
export function fmtValue(v) {
  const n = Number(v);
  if (!isFinite(n)) return String(v);
  if (Number.isInteger(n)) return String(n);
  const opts = Math.abs(n) >= 1 ? { maximumFractionDigits: 4 } : { maximumSignificantDigits: 4 };
  return n.toLocaleString('en-US', { ...opts, useGrouping: false });
}

export function fmtPct(v) { return v === null || !isFinite(v) ? '–' : `${(v * 100).toFixed(v < 0.1 ? 2 : 1)}%`; }

// colour gives each service a stable hue, never a red one: red marks
// errors everywhere in the UI.
export function colour(name) {
  let x = 2166136261;
  for (let i = 0; i < name.length; i++) { x ^= name.charCodeAt(i); x = Math.imul(x, 16777619); }
  return `hsl(${25 + ((x >>> 0) % 310)} 62% 52%)`;
}

export function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}
