// map.js: the service map, from the service graph connector's metrics:
// request rate, error % and p95 latency on each client → server edge.
import { h, s, mount, fmtNum, fmtPct, fmtDuration, colour } from './dom.js';
import * as api from './api.js';
import { navigate, timeRange } from './app.js';

// layers places nodes in columns by their longest path from a source, so
// calls flow left to right. Cycles (a -> b -> c -> a) are broken first, as
// in Sugiyama's method: a depth-first walk from the services nobody calls
// (then the rest, by name) marks each call to a service still on its own
// path as a back edge, which is left out of the layering and drawn back
// below the map. Without that, a cycle would push its services one column
// further on every pass.
export function layers(nodes, edges) {
  const known = new Set(nodes);
  const out = new Map(nodes.map((n) => [n, []]));
  const callers = new Map(nodes.map((n) => [n, 0]));
  for (const e of edges) {
    if (e.client === e.server || !known.has(e.client) || !known.has(e.server)) continue;
    out.get(e.client).push(e.server);
    callers.set(e.server, callers.get(e.server) + 1);
  }
  for (const vs of out.values()) vs.sort();
  const state = new Map(); // 1: on the walk's path, 2: done
  const back = new Set();
  const post = [];
  const visit = (n) => {
    state.set(n, 1);
    for (const m of out.get(n)) {
      if (state.get(m) === 1) back.add(`${n}\u0000${m}`);
      else if (!state.has(m)) visit(m);
    }
    state.set(n, 2);
    post.push(n);
  };
  const starts = [...nodes].sort((a, b) => (callers.get(a) === 0 ? 0 : 1) - (callers.get(b) === 0 ? 0 : 1) || (a < b ? -1 : a > b ? 1 : 0));
  for (const n of starts) if (!state.has(n)) visit(n);
  // Reverse postorder is a topological order of what is left.
  const depth = new Map(nodes.map((n) => [n, 0]));
  for (let i = post.length - 1; i >= 0; i--) {
    const n = post[i];
    for (const m of out.get(n)) if (!back.has(`${n}\u0000${m}`)) depth.set(m, Math.max(depth.get(m), depth.get(n) + 1));
  }
  const cols = [];
  for (const n of nodes) (cols[depth.get(n)] ||= []).push(n);
  return Array.from(cols, (c) => (c || []).sort());
}

// crossings counts the pairs of segments between neighbouring columns that
// cross, given each column's order: per gap, the inversions of the
// segments' lower ends once they are sorted by their upper ends, counted
// with a Fenwick tree in O(s log s).
export function crossings(order, segs) {
  const idx = new Map();
  order.forEach((c) => c.forEach((n, i) => idx.set(n, i)));
  let n = 0;
  segs.forEach((layer, l) => {
    const pairs = layer.map(([a, b]) => [idx.get(a), idx.get(b)]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    const size = (order[l + 1] || []).length;
    const tree = new Int32Array(size + 1);
    pairs.forEach(([, b], seen) => {
      // Earlier segments whose lower end is below b cross this one.
      let le = 0;
      for (let i = b + 1; i > 0; i -= i & -i) le += tree[i];
      n += seen - le;
      for (let i = b + 1; i <= size; i += i & -i) tree[i]++;
    });
  });
  return n;
}

// layout draws the graph in layers, as Sugiyama's method does: columns by
// longest path; an edge that spans columns is split through a waypoint in
// each column between, so it passes between services rather than through
// them; then each column is ordered by the mean position of its
// neighbours (the barycentre), sweeping right and back, keeping the order
// with the fewest crossings. It is pure, so the browser tests call it.
//
// It returns the columns in order (waypoints are named "\u0000<n>"), each
// edge's chain of nodes and waypoints from client to server (null for an
// edge back to the same or an earlier column), and the crossings left.
export function layout(nodes, edges) {
  const cols = layers(nodes, edges);
  const col = new Map();
  cols.forEach((c, i) => c.forEach((n) => col.set(n, i)));
  const order = cols.map((c) => [...c]);
  const segs = cols.map(() => []); // segs[l]: [from in l, to in l+1]
  const left = new Map(); // neighbours in the column before
  const right = new Map(); // and after
  const add = (m, k, v) => { if (!m.has(k)) m.set(k, []); m.get(k).push(v); };
  let waypoints = 0;
  const chains = edges.map((e) => {
    const a = col.get(e.client);
    const b = col.get(e.server);
    if (b <= a) return null;
    const chain = [e.client];
    for (let l = a + 1; l < b; l++) {
      const w = `\u0000${waypoints++}`;
      order[l].push(w);
      chain.push(w);
    }
    chain.push(e.server);
    for (let i = 0; i + 1 < chain.length; i++) {
      segs[a + i].push([chain[i], chain[i + 1]]);
      add(right, chain[i], chain[i + 1]);
      add(left, chain[i + 1], chain[i]);
    }
    return chain;
  });
  const sortBy = (column, nbrs, prev) => {
    const at = new Map(prev.map((n, i) => [n, i]));
    const key = new Map(column.map((n, i) => {
      const ns = (nbrs.get(n) || []).filter((x) => at.has(x));
      return [n, ns.length ? ns.reduce((sum, x) => sum + at.get(x), 0) / ns.length : i];
    }));
    // Array.prototype.sort is stable: ties keep their order.
    column.sort((x, y) => key.get(x) - key.get(y));
  };
  let best = order.map((c) => [...c]);
  let bestN = crossings(order, segs);
  for (let pass = 0; pass < 12 && bestN > 0; pass++) {
    if (pass % 2 === 0) for (let l = 1; l < order.length; l++) sortBy(order[l], left, order[l - 1]);
    else for (let l = order.length - 2; l >= 0; l--) sortBy(order[l], right, order[l + 1]);
    const n = crossings(order, segs);
    if (n < bestN) { bestN = n; best = order.map((c) => [...c]); }
  }
  // Then swap neighbours in a column while that removes crossings (the
  // "transpose" step), which the barycentre misses on ties. A swap of u and
  // v changes only the crossings between u's edges and v's, so each trial
  // counts just those.
  const idx = new Map();
  best.forEach((c) => c.forEach((n, i) => idx.set(n, i)));
  const side = (us, vs) => {
    let n = 0;
    if (us && vs) for (const a of us) { const ia = idx.get(a); for (const b of vs) if (ia > idx.get(b)) n++; }
    return n;
  };
  // The crossings of u's and v's edges with u above v.
  const pair = (u, v) => side(left.get(u), left.get(v)) + side(right.get(u), right.get(v));
  for (let pass = 0, improved = bestN > 0; improved && pass < 50; pass++) {
    improved = false;
    for (const column of best) {
      for (let i = 0; i + 1 < column.length; i++) {
        const [u, v] = [column[i], column[i + 1]];
        const gain = pair(u, v) - pair(v, u);
        if (gain <= 0) continue;
        [column[i], column[i + 1]] = [v, u];
        idx.set(u, i + 1);
        idx.set(v, i);
        bestN -= gain;
        improved = true;
      }
    }
  }
  return { cols: best, chains, crossings: bestN };
}

export const isWaypoint = (n) => n.startsWith('\u0000');

// placeLabels puts each label where it overlaps no other label and no
// box in avoid: at the first of its candidate points (along its own edge,
// best first) that is free, or else below its first candidate, just far
// enough down. Labels are placed in the order given, so the caller puts
// the important ones first. labels: [{w, h, at: [[x, y], ...], edge}],
// where (x, y) is the middle of the label's baseline; each gets x and y.
// An avoid box with an edge key (a piece of that edge's curve) does not
// keep that edge's own label away: a label sits on its own curve.
export function placeLabels(labels, avoid = []) {
  const placed = [...avoid];
  const box = (l, x, y) => ({ x: x - l.w / 2, y: y - l.h + 3, w: l.w, h: l.h });
  const free = (b, edge) => !placed.some((o) => (o.edge === undefined || o.edge !== edge) && b.x < o.x + o.w && o.x < b.x + b.w && b.y < o.y + o.h && o.y < b.y + b.h);
  for (const l of labels) {
    let spot = l.at.find(([x, y]) => free(box(l, x, y), l.edge));
    if (!spot) {
      const [x, y0] = l.at[0];
      let y = y0;
      while (!free(box(l, x, y), l.edge)) y += 2;
      spot = [x, y];
    }
    [l.x, l.y] = spot;
    placed.push(box(l, l.x, l.y));
  }
  return labels;
}

// bezier is the point at t on a cubic curve with level tangents from
// (x1, y1) to (x2, y2), the curve every hop of the map is drawn with.
function bezier(x1, y1, x2, y2, t) {
  const cx = (x1 + x2) / 2;
  const u = 1 - t;
  return [u ** 3 * x1 + 3 * u * u * t * cx + 3 * u * t * t * cx + t ** 3 * x2, (u ** 3 + 3 * u * u * t) * y1 + (3 * u * t * t + t ** 3) * y2];
}

const NW = 140; // node width
const NH = 38; // node height
const GX = 180; // gap between columns: room for an edge label
const GY = 34; // gap between services in a column
const WH = 22; // height of a waypoint's slot
const LH = 14; // label line height

export function mapPage({ query, alive }) {
  const [start, end] = timeRange(query);
  const w = `${Math.max(60, Math.min(3600, Math.round((end - start) / 4)))}s`;
  const box = h('div', { class: 'map', id: 'service-map' }, h('p', { class: 'muted' }, 'Loading…'));
  const showIdle = query.get('idle') === '1';
  const idleBox = h('input', { type: 'checkbox', id: 'map-idle', checked: showIdle, onchange: (e) => { const u = new URL(location.href); if (e.target.checked) u.searchParams.set('idle', '1'); else u.searchParams.delete('idle'); navigate(u.pathname + u.search, { replace: true }); } });
  const idleCount = h('span', { class: 'muted' });
  (async () => {
    let req;
    let failed;
    let p95;
    try {
      [req, failed, p95] = await Promise.all([
        api.prom(`sum by (client, server) (rate(traces_service_graph_request_total[${w}]))`, end),
        api.prom(`sum by (client, server) (rate(traces_service_graph_request_failed_total[${w}]))`, end),
        api.prom(`histogram_quantile(0.95, sum by (client, server, le) (rate(traces_service_graph_request_server_seconds_bucket[${w}])))`, end),
      ]);
    } catch (e) {
      if (alive()) mount(box, h('p', { class: 'error' }, e.message));
      return;
    }
    if (!alive()) return;
    const key = (m) => `${m.client}\u0000${m.server}`;
    const fail = new Map(failed.result.map((r) => [key(r.metric), Number(r.value[1])]));
    const lat = new Map(p95.result.map((r) => [key(r.metric), Number(r.value[1])]));
    const edges = req.result.map((r) => ({ client: r.metric.client, server: r.metric.server, rate: Number(r.value[1]), errors: (fail.get(key(r.metric)) || 0) / (Number(r.value[1]) || 1), p95: lat.get(key(r.metric)) }));
    const nodes = [...new Set(edges.flatMap((e) => [e.client, e.server]))].sort();
    if (!nodes.length) { mount(box, h('p', { class: 'empty' }, 'No service graph yet: it appears once client and server spans of the same calls arrive.')); return; }
    // Calls seen in the range but idle in the rate's window are left out
    // unless asked for (idle=1); their services stay on the map.
    const idle = edges.filter((e) => !(e.rate > 0)).length;
    idleBox.parentElement.hidden = idle === 0;
    idleCount.textContent = ` (${idle})`;
    mount(box, drawMap(nodes, showIdle ? edges : edges.filter((e) => e.rate > 0)));
  })();
  return h('div', { class: 'page' }, h('h1', {}, 'Service map'), h('p', { class: 'muted' }, `Calls between services over the last ${w} of the range, from the service graph metrics. Each edge reads requests/s · failed % · p95 latency; its width follows the rate, and red edges fail more than 5% of calls. Hover an edge or a service to pick it out; click a service to open it.`),
    h('div', { class: 'filters', hidden: true }, h('label', { class: 'small' }, idleBox, ' show idle calls', idleCount)), box);
}

export function drawMap(nodes, edges) {
  const { cols, chains } = layout(nodes, edges);
  // Stack each column, then centre it on the tallest.
  const heightOf = (n) => (isWaypoint(n) ? WH : NH + GY);
  const colH = cols.map((c) => c.reduce((sum, n) => sum + heightOf(n), 0));
  const H = 40 + Math.max(...colH);
  const pos = new Map(); // top-left of a service; centre-left of a waypoint
  cols.forEach((c, i) => {
    let y = 20 + (Math.max(...colH) - colH[i]) / 2;
    for (const n of c) {
      pos.set(n, { x: 20 + i * (NW + GX), y: isWaypoint(n) ? y + WH / 2 - NH / 2 : y });
      y += heightOf(n);
    }
  });
  const W = 40 + cols.length * (NW + GX) - GX;
  const maxRate = Math.max(...edges.map((e) => e.rate), 1e-9);
  const svg = s('svg', { width: W, class: 'mapsvg', role: 'img', 'aria-label': 'service map' },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }))));
  const groups = [];
  // Points along every curve, each a small box tagged with its edge, so
  // that no label is placed across another call's line.
  const trail = [];
  const along = (i, x1, y1, x2, y2) => {
    const n = Math.max(1, Math.ceil(Math.hypot(x2 - x1, y2 - y1) / 6));
    for (let k = 0; k <= n; k++) trail.push({ x: x1 + ((x2 - x1) * k) / n - 1.5, y: y1 + ((y2 - y1) * k) / n - 1.5, w: 3, h: 3, edge: i });
  };
  let back = 0;
  let lowest = 0; // the lowest back edge's bottom run
  edges.forEach((e, i) => {
    const chain = chains[i];
    const p95 = e.p95 !== undefined && isFinite(e.p95) ? fmtDuration(e.p95 * 1e9) : '–';
    const label = `${fmtNum(e.rate)}/s · ${e.errors > 0 ? fmtPct(e.errors) : '0%'} · ${p95}`;
    let d;
    let lab;
    if (chain) {
      // Through each waypoint horizontally, so parallel long edges stay
      // apart; each hop a curve with level tangents.
      const pts = [];
      chain.forEach((n, j) => {
        const p = pos.get(n);
        const cy = p.y + NH / 2;
        if (j > 0) pts.push([p.x, cy]);
        if (j < chain.length - 1) pts.push([p.x + NW, cy]);
      });
      d = `M${pts[0][0]},${pts[0][1]}`;
      for (let j = 1; j < pts.length; j++) {
        const [x1, y1] = pts[j - 1];
        const [x2, y2] = pts[j];
        d += j % 2 ? ` C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}` : ` L${x2},${y2}`;
        if (j % 2) {
          let prev = [x1, y1];
          for (let t = 0.05; t <= 1.0001; t += 0.05) { const p = bezier(x1, y1, x2, y2, t); along(i, prev[0], prev[1], p[0], p[1]); prev = p; }
        } else along(i, x1, y1, x2, y2);
      }
      // The label goes on the last hop, into the server: on the curve's
      // middle if that is free, else further along or back.
      const [x1, y1] = pts[pts.length - 2];
      const [x2, y2] = pts[pts.length - 1];
      lab = { at: [0.5, 0.4, 0.6, 0.3, 0.7, 0.25, 0.75].map((t) => bezier(x1, y1, x2, y2, t)).map(([x, y]) => [x, y - 4]) };
    } else {
      // A call back to the same or an earlier column leaves the client to
      // the right, runs below the whole drawing and enters the server from
      // the left, through the gaps between columns only, so it crosses no
      // service.
      const a = pos.get(e.client);
      const b = pos.get(e.server);
      const ay = a.y + NH / 2;
      const by = b.y + NH / 2;
      const xr = a.x + NW + 14 + (back % 4) * 6;
      const xl = Math.max(4, b.x - 14 - (back % 4) * 6);
      const low = H + 14 + back * 10;
      lowest = Math.max(lowest, low);
      back++;
      d = `M${a.x + NW},${ay} L${xr},${ay} L${xr},${low} L${xl},${low} L${xl},${by} L${b.x},${by}`;
      const poly = [[a.x + NW, ay], [xr, ay], [xr, low], [xl, low], [xl, by], [b.x, by]];
      for (let k = 1; k < poly.length; k++) along(i, ...poly[k - 1], ...poly[k]);
      lab = { at: [[(xr + xl) / 2, low - 4]] };
    }
    lab.w = label.length * 6.3 + 6; // 11px text, measured before the SVG is in the page
    lab.h = LH;
    lab.rate = e.rate;
    lab.edge = i;
    // A call seen in the range but not in the rate's window is drawn thin
    // and dashed, without a label: "0/s · 0% · –" said nothing and took
    // the room the busy calls' labels need.
    const idle = !(e.rate > 0);
    const width = idle ? 1 : 1.2 + 3 * Math.sqrt(e.rate / maxRate);
    const g = s('g', { class: `edge${e.errors > 0.05 ? ' err' : ''}${idle ? ' idle' : ''}`, 'data-edge': `${e.client}->${e.server}`, tabindex: 0 },
      s('path', { d, 'marker-end': 'url(#arrow)', style: { strokeWidth: `${width.toFixed(1)}px` } }),
      s('title', {}, idle ? `${e.client} → ${e.server}: no calls lately` : `${e.client} → ${e.server}: ${fmtNum(e.rate)} requests/s, ${fmtPct(e.errors)} failed, p95 ${p95}`));
    groups.push({ g, lab: idle ? null : lab, label, e });
  });
  // The busiest calls choose their label's place first.
  const nodeBoxes = nodes.map((n) => ({ ...pos.get(n), w: NW, h: NH }));
  placeLabels(groups.filter((g) => g.lab).map((g) => g.lab).sort((a, b) => b.rate - a.rate), [...nodeBoxes, ...trail]);
  let bottom = Math.max(H, lowest + 6);
  for (const { g, lab, label } of groups) {
    if (lab) {
      g.append(s('text', { x: lab.x, y: lab.y, 'text-anchor': 'middle', class: 'edge-label' }, label));
      bottom = Math.max(bottom, lab.y + LH);
    }
    svg.append(g);
  }
  svg.setAttribute('height', bottom + 20);
  svg.setAttribute('viewBox', `0 0 ${W} ${bottom + 20}`);
  // A wide graph shrinks to fit the page, down to 80%, so labels stay
  // legible; beyond that the box scrolls.
  svg.style.minWidth = `${Math.round(W * 0.8)}px`;
  for (const n of nodes) {
    const p = pos.get(n);
    const g = s('g', { class: 'node', tabindex: 0, role: 'link', 'data-node': n, transform: `translate(${p.x},${p.y})` },
      s('rect', { width: NW, height: NH, rx: 6, style: { stroke: colour(n) } }),
      s('text', { x: NW / 2, y: NH / 2 + 5, 'text-anchor': 'middle' }, n.length > 18 ? `${n.slice(0, 17)}…` : n),
      s('title', {}, n));
    const go = () => navigate(`/ui/service/${encodeURIComponent(n)}`);
    g.addEventListener('click', go);
    g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') go(); });
    // Hovering a service picks out its calls, as Kiali and Grafana do.
    const mark = (on) => { for (const { g: el, e } of groups) el.classList.toggle('dim', on && e.client !== n && e.server !== n); };
    g.addEventListener('mouseenter', () => mark(true));
    g.addEventListener('mouseleave', () => mark(false));
    svg.append(g);
  }
  return svg;
}
