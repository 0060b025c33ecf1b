// compare.js: two traces side by side as one tree, as Jaeger's trace
// comparison shows them: spans merged by their path of service and
// operation from the root, each node marked as in both, only in A
// (removed) or only in B (added), with its span counts and the change in
// its total duration.
import { h, mount, fmtDuration, colour } from './dom.js';
import * as api from './api.js';
import { parseTrace } from './trace.js';
import { link } from './app.js';

// diffTraces merges two parsed traces' span trees by path. Each node has
// {service, name, depth, a: {count, total}, b: {count, total}, state},
// state being 'same', 'changed' (counts differ), 'removed' or 'added'.
// Nodes come depth first, children by service then name.
export function diffTraces(rootsA, rootsB) {
  const top = { children: new Map() };
  const add = (side, spans, parent, depth) => {
    for (const s of spans) {
      const key = `${s.service}\u0000${s.name}`;
      let n = parent.children.get(key);
      if (!n) {
        n = { service: s.service, name: s.name, depth, a: { count: 0, total: 0 }, b: { count: 0, total: 0 }, children: new Map() };
        parent.children.set(key, n);
      }
      n[side].count++;
      n[side].total += s.dur;
      add(side, s.children, n, depth + 1);
    }
  };
  add('a', rootsA, top, 0);
  add('b', rootsB, top, 0);
  const out = [];
  const walk = (parent) => {
    const kids = [...parent.children.values()].sort((x, y) => x.service.localeCompare(y.service) || x.name.localeCompare(y.name));
    for (const n of kids) {
      n.state = !n.a.count ? 'added' : !n.b.count ? 'removed' : n.a.count !== n.b.count ? 'changed' : 'same';
      out.push(n);
      walk(n);
    }
  };
  walk(top);
  for (const n of out) delete n.children;
  return out;
}

const STATE_LABEL = { same: '', changed: 'count changed', removed: 'only in A', added: 'only in B' };

export function comparePage({ params }) {
  const [a, b] = params.map((p) => p.toLowerCase());
  const root = h('div', { class: 'page compare-page' }, h('p', { class: 'muted' }, 'Loading traces…'));
  (async () => {
    let ta;
    let tb;
    try {
      [ta, tb] = await Promise.all([api.trace(a), api.trace(b)]);
    } catch (e) {
      mount(root, h('h1', {}, 'Compare traces'), h('p', { class: 'error', role: 'alert' }, e.message));
      return;
    }
    const pa = parseTrace(ta.trace || ta);
    const pb = parseTrace(tb.trace || tb);
    const nodes = diffTraces(pa.roots, pb.roots);
    const counts = { same: 0, changed: 0, removed: 0, added: 0 };
    for (const n of nodes) counts[n.state]++;
    const delta = (n) => {
      if (!n.a.count || !n.b.count) return '';
      const d = n.b.total - n.a.total;
      return `${d >= 0 ? '+' : '−'}${fmtDuration(Math.abs(d))}`;
    };
    mount(root,
      h('h1', {}, 'Compare traces'),
      h('p', {}, 'A ', link(`/ui/trace/${a}`, { class: 'mono', id: 'trace-a' }, a), ' · B ', link(`/ui/trace/${b}`, { class: 'mono', id: 'trace-b' }, b)),
      h('p', { class: 'muted', id: 'compare-summary' }, `${nodes.length} operations by path: ${counts.same} in both, ${counts.changed} with other counts, ${counts.removed} only in A, ${counts.added} only in B`),
      h('table', { class: 'grid compare', id: 'compare-table' },
        h('thead', {}, h('tr', {}, ['Service and operation', 'Spans A', 'Spans B', 'Duration A', 'Duration B', 'Change', ''].map((c) => h('th', {}, c)))),
        h('tbody', {}, nodes.map((n) => h('tr', { class: `diff-${n.state}`, 'data-state': n.state },
          h('td', { style: { paddingLeft: `${8 + n.depth * 16}px` } }, h('span', { class: 'svc small', style: { '--c': colour(n.service) } }, n.service), ' ', h('span', { class: 'mono small' }, n.name)),
          h('td', { class: 'num' }, String(n.a.count)),
          h('td', { class: 'num' }, String(n.b.count)),
          h('td', { class: 'num' }, n.a.count ? fmtDuration(n.a.total) : '–'),
          h('td', { class: 'num' }, n.b.count ? fmtDuration(n.b.total) : '–'),
          h('td', { class: 'num' }, delta(n)),
          h('td', { class: 'small muted' }, STATE_LABEL[n.state]))))));
  })();
  return root;
}
