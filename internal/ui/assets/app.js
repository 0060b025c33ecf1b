// app.js: layout, routing and the shared time range. Every view has a deep
// link: its state lives in the URL (path and query string).
import { h, mount } from './dom.js';
import { tracesPage } from './traces.js';
import { tracePage } from './trace.js';
import { logsPage } from './logs.js';
import { servicesPage, servicePage } from './services.js';
import { mapPage } from './map.js';
import { metricsPage, selfPage } from './metrics.js';

export const RANGES = [['15m', 900], ['1h', 3600], ['3h', 10800], ['6h', 21600], ['24h', 86400], ['7d', 604800]];

// timeRange returns [start, end] in seconds from the URL's range (a
// preset) or from/to (unix seconds), default the last hour.
export function timeRange(q = new URLSearchParams(location.search)) {
  const from = Number(q.get('from'));
  const to = Number(q.get('to'));
  if (from > 0 && to > from) return [from, to];
  const preset = RANGES.find(([k]) => k === q.get('range')) || RANGES[1];
  const end = Date.now() / 1000;
  return [end - preset[1], end];
}

// navigate changes the URL and renders the view; replace keeps history
// short for state changes within a view (typing a query, picking a range).
export function navigate(url, { replace = false } = {}) {
  const u = new URL(url, location.origin);
  if (!u.searchParams.has('range') && !u.searchParams.has('from')) {
    const cur = new URLSearchParams(location.search).get('range');
    if (cur) u.searchParams.set('range', cur);
  }
  if (replace) history.replaceState(null, '', u); else history.pushState(null, '', u);
  render();
}

// link makes an anchor that navigates inside the app.
export function link(href, props, ...children) {
  return h('a', {
    ...props,
    href,
    onclick: (e) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
      e.preventDefault();
      navigate(href);
    },
  }, ...children);
}

const ROUTES = [
  [/^\/ui\/?$/, () => { navigate('/ui/traces', { replace: true }); return null; }],
  [/^\/ui\/traces$/, tracesPage, 'traces'],
  [/^\/ui\/trace\/([0-9a-fA-F]+)$/, tracePage, 'traces'],
  [/^\/ui\/logs$/, logsPage, 'logs'],
  [/^\/ui\/services$/, servicesPage, 'services'],
  [/^\/ui\/service\/(.+)$/, servicePage, 'services'],
  [/^\/ui\/map$/, mapPage, 'map'],
  [/^\/ui\/metrics$/, metricsPage, 'metrics'],
  [/^\/ui\/self$/, selfPage, 'self'],
];

const NAV = [['traces', 'Traces', '/ui/traces'], ['logs', 'Logs', '/ui/logs'], ['services', 'Services', '/ui/services'],
  ['map', 'Service map', '/ui/map'], ['metrics', 'Metrics', '/ui/metrics'], ['self', 'Sightline', '/ui/self']];

function theme() { return document.documentElement.dataset.theme || 'light'; }
function setTheme(t) { document.documentElement.dataset.theme = t; try { localStorage.setItem('sightline.theme', t); } catch { /* private mode */ } }

function header(active) {
  const q = new URLSearchParams(location.search);
  const sel = h('select', {
    'aria-label': 'time range',
    id: 'range',
    onchange: (e) => {
      const u = new URL(location.href);
      u.searchParams.set('range', e.target.value);
      u.searchParams.delete('from');
      u.searchParams.delete('to');
      navigate(u.pathname + u.search, { replace: true });
    },
  }, RANGES.map(([k]) => h('option', { value: k, selected: (q.get('range') || '1h') === k }, `Last ${k}`)));
  if (q.get('from')) sel.prepend(h('option', { value: '', selected: true }, 'Custom range'));
  return h('header', { class: 'top' },
    link('/ui/traces', { class: 'brand' }, 'Sightline'),
    h('nav', {}, NAV.map(([key, label, href]) => link(href, { class: key === active ? 'on' : '', 'aria-current': key === active ? 'page' : null }, label))),
    h('div', { class: 'spacer' }),
    sel,
    h('button', { class: 'icon', title: 'Toggle dark theme (d)', 'aria-label': 'toggle theme', onclick: () => setTheme(theme() === 'dark' ? 'light' : 'dark') }, '◐'));
}

let generation = 0;

// render draws the view for the current URL. A view is a function of the
// route's captures that returns an element; it fills itself in as its
// data arrives and checks alive() before touching the page late.
export function render() {
  const gen = ++generation;
  const path = location.pathname;
  const app = document.getElementById('app');
  for (const [re, view, key] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    const alive = () => gen === generation;
    const el = view({ params: m.slice(1).map(decodeURIComponent), query: new URLSearchParams(location.search), alive });
    if (el === null) return;
    mount(app, header(key), h('main', { id: 'main' }, el));
    return;
  }
  mount(app, header(''), h('main', { id: 'main' }, h('p', { class: 'empty' }, 'No such page. '), link('/ui/traces', {}, 'Search traces')));
}

try { const t = localStorage.getItem('sightline.theme'); if (t) document.documentElement.dataset.theme = t; else if (matchMedia('(prefers-color-scheme: dark)').matches) document.documentElement.dataset.theme = 'dark'; } catch { /* private mode */ }

window.addEventListener('popstate', render);
document.addEventListener('keydown', (e) => {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement && document.activeElement.tagName);
  if (typing) return;
  if (e.key === '/') { const ta = document.querySelector('main textarea, main input'); if (ta) { e.preventDefault(); ta.focus(); } }
  if (e.key === 'd') setTheme(theme() === 'dark' ? 'light' : 'dark');
});
render();
