// chart.js draws time-series, scatter and stacked-bar charts as SVG. Labels
// are SVG text nodes, so series names from telemetry stay text.
import { s, h, fmtTime } from './dom.js';

const PAD = { l: 56, r: 12, t: 10, b: 24 };

function niceTicks(min, max, n = 4) {
  if (!(max > min)) { max = min + 1; }
  const raw = (max - min) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= raw);
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) out.push(v);
  return out;
}

// tickLabels gives the y axis's ticks with labels precise enough to tell
// them apart: as many decimals as the step between ticks needs (0.001,
// 0.002; 1.05M, 1.1M), where a fixed two decimals labelled a CPU chart
// 0.00, 0.00, 0.00.
export function tickLabels(min, max) {
  const ticks = niceTicks(min, max);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
  return ticks.map((v) => {
    if (Math.abs(v) < step / 1e6) return [v, '0'];
    const a = Math.max(Math.abs(v), step);
    const [div, suf] = a >= 1e9 ? [1e9, 'G'] : a >= 1e6 ? [1e6, 'M'] : a >= 1e3 ? [1e3, 'k'] : [1, ''];
    const d = Math.min(12, Math.max(0, -Math.floor(Math.log10(step / div) + 1e-9)));
    return [v, `${(v / div).toFixed(d)}${suf}`];
  });
}

function timeTicks(t0, t1) {
  const spans = [15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  const step = spans.find((x) => (t1 - t0) / x <= 6) || 86400;
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return out;
}

const hhmm = (t) => { const d = new Date(t * 1000); return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`; };

// frame draws axes and returns scale functions.
function frame(svg, W, H, t0, t1, vmin, vmax, unit) {
  const x = (t) => PAD.l + ((t - t0) / Math.max(1e-9, t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - ((v - vmin) / Math.max(1e-12, vmax - vmin)) * (H - PAD.t - PAD.b);
  for (const [v, label] of tickLabels(vmin, vmax)) {
    svg.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(s('text', { x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, label + (unit || '')));
  }
  for (const t of timeTicks(t0, t1)) {
    svg.append(s('text', { x: x(t), y: H - 6, 'text-anchor': 'middle', class: 'tick' }, hhmm(t)));
  }
  return { x, y };
}

const canvas = (W, H) => s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart', role: 'img' });

const legendOf = (items) => h('div', { class: 'legend' }, items.map((it) => h('span', { class: 'legend-item' }, h('i', { style: { background: it.colour } }), it.name)));

// responsive draws with the container's width, and again when it changes,
// so text keeps its size at any width.
function responsive(draw, legendEl, zoom) {
  const wrap = h('div', { class: 'chart-wrap' });
  if (zoom) dragToZoom(wrap, zoom);
  let last = 0;
  const paint = () => {
    const W = Math.max(200, Math.round(wrap.clientWidth - 8));
    if (W === last) return;
    last = W;
    const svg = draw(W);
    if (wrap.firstChild && wrap.firstChild.tagName === 'svg') wrap.firstChild.replaceWith(svg); else wrap.prepend(svg);
  };
  new ResizeObserver(paint).observe(wrap);
  if (legendEl) wrap.append(legendEl);
  return wrap;
}

// dragToZoom lets a drag across a chart choose a time range, as in
// Grafana: zoom = {t0, t1, onzoom(from, to)}. The band is a plain div.
function dragToZoom(wrap, { t0, t1, onzoom }) {
  const band = h('div', { class: 'zoom-band', hidden: true });
  wrap.append(band);
  let x0 = null;
  const plotX = (e) => {
    const svg = wrap.querySelector('svg');
    const r = svg.getBoundingClientRect();
    return Math.min(Math.max(e.clientX - r.left, PAD.l), r.width - PAD.r);
  };
  const toTime = (x) => {
    const w = wrap.querySelector('svg').getBoundingClientRect().width;
    return t0 + ((x - PAD.l) / (w - PAD.l - PAD.r)) * (t1 - t0);
  };
  wrap.addEventListener('mousedown', (e) => {
    if (e.button !== 0 || e.target.closest('.dot')) return;
    x0 = plotX(e);
    e.preventDefault();
  });
  window.addEventListener('mousemove', (e) => {
    if (x0 === null) return;
    const x = plotX(e);
    Object.assign(band.style, { left: `${Math.min(x0, x) + 4}px`, width: `${Math.abs(x - x0)}px` });
    band.hidden = false;
  });
  window.addEventListener('mouseup', (e) => {
    if (x0 === null) return;
    const x = plotX(e);
    band.hidden = true;
    const [a, b] = [toTime(Math.min(x0, x)), toTime(Math.max(x0, x))];
    x0 = null;
    if (b - a >= 10) onzoom(a, b);
  });
}

// lineChart: series [{name, colour, points: [[tSec, value]]}], dots
// [{t, v, title, onclick}] drawn on top (exemplars).
export function lineChart({ series, dots = [], t0, t1, unit = '', height = 180, legend = true, onzoom }) {
  const H = height;
  const legendEl = legend && series.length ? legendOf(series.slice(0, 20)) : null;
  const draw = (W) => {
    const svg = canvas(W, H);
    let vmax = 0;
    let vmin = 0;
    for (const se of series) for (const [, v] of se.points) if (isFinite(v)) { vmax = Math.max(vmax, v); vmin = Math.min(vmin, v); }
    for (const d of dots) if (isFinite(d.v)) vmax = Math.max(vmax, d.v);
    if (vmax === vmin) vmax = vmin + 1;
    const { x, y } = frame(svg, W, H, t0, t1, vmin, vmax * 1.05, unit);
    for (const se of series) {
      let d = '';
      let pen = false;
      let prev = null;
      let run = [];
      // A point with no neighbour draws no line: mark it, as Grafana does.
      const flush = () => { if (run.length === 1) svg.append(s('circle', { cx: run[0][0], cy: run[0][1], r: 2.5, fill: se.colour })); run = []; };
      for (const [t, v] of se.points) {
        if (!isFinite(v) || (prev !== null && t - prev > (se.gap || Infinity))) { pen = false; flush(); }
        if (!isFinite(v)) continue;
        d += `${pen ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        run.push([x(t), y(v)]);
        pen = true;
        prev = t;
      }
      flush();
      svg.append(s('path', { d, class: 'line', stroke: se.colour, 'data-series': se.name }, s('title', {}, se.name)));
    }
    for (const d of dots) {
      const c = s('circle', { cx: x(d.t), cy: y(d.v), r: 4, class: 'dot', tabindex: 0, role: 'button' }, s('title', {}, d.title));
      if (d.onclick) {
        c.addEventListener('click', d.onclick);
        c.addEventListener('keydown', (e) => { if (e.key === 'Enter') d.onclick(e); });
      }
      svg.append(c);
    }
    return svg;
  };
  return responsive(draw, legendEl, onzoom && { t0, t1, onzoom });
}

// scatter: points [{t (sec), v, title, error, onclick}].
export function scatter({ points, t0, t1, unit = '', height = 160 }) {
  const H = height;
  const draw = (W) => {
    const svg = canvas(W, H);
    let vmax = 0;
    for (const p of points) vmax = Math.max(vmax, p.v);
    const { x, y } = frame(svg, W, H, t0, t1, 0, (vmax || 1) * 1.1, unit);
    for (const p of points) {
      const c = s('circle', { cx: x(p.t), cy: y(p.v), r: 4, class: p.error ? 'dot err' : 'dot', tabindex: 0, role: 'button', 'data-trace': p.id }, s('title', {}, p.title));
      c.addEventListener('click', p.onclick);
      svg.append(c);
    }
    return svg;
  };
  return responsive(draw);
}

// bars: stacked bars; groups [{name, colour, points: [[t, v]]}] on a shared
// step.
export function bars({ groups, t0, t1, step, height = 110 }) {
  const H = height;
  const legendEl = legendOf(groups);
  const draw = (W) => {
    const svg = canvas(W, H);
    const totals = new Map();
    for (const g of groups) for (const [t, v] of g.points) totals.set(t, (totals.get(t) || 0) + v);
    const vmax = Math.max(1, ...totals.values());
    const { x, y } = frame(svg, W, H, t0, t1, 0, vmax * 1.05, '');
    const bw = Math.max(1, x(t0 + step) - x(t0) - 1);
    const base = new Map();
    for (const g of groups) {
      for (const [t, v] of g.points) {
        const b = base.get(t) || 0;
        svg.append(s('rect', { x: x(t) - bw, y: y(b + v), width: bw, height: Math.max(0, y(b) - y(b + v)), fill: g.colour, class: 'vbar' }, s('title', {}, `${g.name}: ${v} at ${fmtTime(t * 1000)}`)));
        base.set(t, b + v);
      }
    }
    return svg;
  };
  return responsive(draw, legendEl);
}

export const palette = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
