// map.js: the service map, from the service graph connector's metrics:
// request rate, error % and p95 latency on each client → server edge.
import { h, s, mount, fmtNum, fmtPct, fmtDuration, colour } from './dom.js';
import * as api from './api.js';
import { navigate, timeRange } from './app.js';

// layers places nodes in columns by their longest path from a source, so
// calls flow left to right.
export function layers(nodes, edges) {
  const depth = new Map(nodes.map((n) => [n, 0]));
  for (let i = 0; i < nodes.length; i++) {
    let changed = false;
    for (const e of edges) {
      if (e.client === e.server) continue;
      const d = depth.get(e.client) + 1;
      if (d > depth.get(e.server) && d < nodes.length) { depth.set(e.server, d); changed = true; }
    }
    if (!changed) break;
  }
  const cols = [];
  for (const n of nodes) (cols[depth.get(n)] ||= []).push(n);
  return cols.map((c) => (c || []).sort());
}

export function mapPage({ query, alive }) {
  const [start, end] = timeRange(query);
  const w = `${Math.max(60, Math.min(3600, Math.round((end - start) / 4)))}s`;
  const box = h('div', { class: 'map', id: 'service-map' }, h('p', { class: 'muted' }, 'Loading…'));
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
    const nodes = [...new Set(edges.flatMap((e) => [e.client, e.server]))];
    if (!nodes.length) { mount(box, h('p', { class: 'empty' }, 'No service graph yet: it appears once client and server spans of the same calls arrive.')); return; }
    const cols = layers(nodes, edges);
    const NW = 150;
    const NH = 38;
    const GX = 220;
    const GY = 34;
    const pos = new Map();
    cols.forEach((c, i) => c.forEach((n, j) => pos.set(n, { x: 20 + i * (NW + GX), y: 20 + j * (NH + GY) })));
    const W = 40 + cols.length * (NW + GX);
    const H = 40 + Math.max(...cols.map((c) => c.length)) * (NH + GY);
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'mapsvg', role: 'img', 'aria-label': 'service map' },
      s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }))));
    for (const e of edges) {
      const a = pos.get(e.client);
      const b = pos.get(e.server);
      const x1 = a.x + NW;
      const y1 = a.y + NH / 2;
      const x2 = b.x;
      const y2 = b.y + NH / 2;
      const back = x2 <= x1;
      const d = back ? `M${a.x + NW / 2},${a.y + NH} C${a.x + NW / 2},${a.y + NH + 60} ${b.x + NW / 2},${b.y + NH + 60} ${b.x + NW / 2},${b.y + NH}` : `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`;
      // The label sits 70% along the curve: edges that fan out of one
      // service part there, where at the midpoint they would overlap.
      const t = 0.7;
      const cx = (x1 + x2) / 2;
      const lx = (1 - t) ** 3 * x1 + 3 * (1 - t) ** 2 * t * cx + 3 * (1 - t) * t * t * cx + t ** 3 * x2;
      const ly = ((1 - t) ** 3 + 3 * (1 - t) ** 2 * t) * y1 + (3 * (1 - t) * t * t + t ** 3) * y2;
      const label = `${fmtNum(e.rate)}/s · ${fmtPct(e.errors)} · p95 ${e.p95 !== undefined && isFinite(e.p95) ? fmtDuration(e.p95 * 1e9) : '–'}`;
      svg.append(s('g', { class: e.errors > 0.05 ? 'edge err' : 'edge', 'data-edge': `${e.client}->${e.server}` },
        s('path', { d, 'marker-end': 'url(#arrow)' }),
        s('text', { x: back ? (a.x + b.x + NW) / 2 : lx, y: back ? Math.max(a.y, b.y) + NH + 52 : ly - 4, 'text-anchor': 'middle', class: 'edge-label' }, label),
        s('title', {}, `${e.client} → ${e.server}: ${label}`)));
    }
    for (const n of nodes) {
      const p = pos.get(n);
      const g = s('g', { class: 'node', tabindex: 0, role: 'link', 'data-node': n, transform: `translate(${p.x},${p.y})` },
        s('rect', { width: NW, height: NH, rx: 6, style: { stroke: colour(n) } }),
        s('text', { x: NW / 2, y: NH / 2 + 5, 'text-anchor': 'middle' }, n.length > 20 ? `${n.slice(0, 19)}…` : n),
        s('title', {}, n));
      const go = () => navigate(`/ui/service/${encodeURIComponent(n)}`);
      g.addEventListener('click', go);
      g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') go(); });
      svg.append(g);
    }
    mount(box, svg);
  })();
  return h('div', { class: 'page' }, h('h1', {}, 'Service map'), h('p', { class: 'muted' }, `Calls between services over the last ${w} of the range, from the service graph metrics. Click a service to open it.`), box);
}
