// app.js: layout, routing and the shared time range. Every view has a deep
// link: its state lives in the URL (path and query string).
import { h, mount } from './dom.js';
import { tracesPage } from './traces.js';
import { tracePage } from './trace.js';
import { comparePage } from './compare.js';
import { alertsPage } from './alerts.js';
import { logsPage } from './logs.js';
import { servicesPage, servicePage } from './services.js';
import { mapPage } from './map.js';
import { metricsPage, selfPage } from './metrics.js';
import { dashboardsPage, dashboardPage, importPage } from './dashboards.js';

export const RANGES = [['5m', 300], ['15m', 900], ['1h', 3600], ['3h', 10800], ['6h', 21600], ['24h', 86400], ['7d', 604800]];

// timeRange returns [start, end] in seconds from the URL's range (a
// preset) or from/to (unix seconds), default the last hour.
export function timeRange(q = new URLSearchParams(location.search)) {
  const from = Number(q.get('from'));
  const to = Number(q.get('to'));
  if (from > 0 && to > from) return [from, to];
  const preset = RANGES.find(([k]) => k === (q.get('range') || '1h')) || RANGES.find(([k]) => k === '1h');
  const end = Date.now() / 1000;
  return [end - preset[1], end];
}

// navigate changes the URL and renders the view; replace keeps history
// short for state changes within a view (typing a query, picking a range).
export function navigate(url, { replace = false } = {}) {
  const u = new URL(url, location.origin);
  if (!u.searchParams.has('range') && !u.searchParams.has('from')) {
    const cur = new URLSearchParams(location.search);
    for (const k of ['range', 'from', 'to']) if (cur.get(k)) u.searchParams.set(k, cur.get(k));
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
  [/^\/ui\/compare\/([0-9a-fA-F]+)\/([0-9a-fA-F]+)$/, comparePage, 'traces'],
  [/^\/ui\/logs$/, logsPage, 'logs'],
  [/^\/ui\/services$/, servicesPage, 'services'],
  [/^\/ui\/service\/(.+)$/, servicePage, 'services'],
  [/^\/ui\/map$/, mapPage, 'map'],
  [/^\/ui\/metrics$/, metricsPage, 'metrics'],
  [/^\/ui\/alerts$/, alertsPage, 'alerts'],
  [/^\/ui\/dashboards$/, dashboardsPage, 'dashboards'],
  [/^\/ui\/dashboards\/import$/, importPage, 'dashboards'],
  [/^\/ui\/d\/([\w-]+)(?:\/[^/]*)?$/, dashboardPage, 'dashboards'],
  [/^\/ui\/self$/, selfPage, 'self'],
];

const NAV = [['traces', 'Traces', '/ui/traces'], ['logs', 'Logs', '/ui/logs'], ['services', 'Services', '/ui/services'],
  ['map', 'Service map', '/ui/map'], ['metrics', 'Metrics', '/ui/metrics'], ['dashboards', 'Dashboards', '/ui/dashboards'], ['alerts', 'Alerts', '/ui/alerts'], ['self', 'Sightline', '/ui/self']];

function theme() { return document.documentElement.dataset.theme || 'light'; }
function setTheme(t) { document.documentElement.dataset.theme = t; try { localStorage.setItem('sightline.theme', t); } catch { /* private mode */ } }

// setRange puts an absolute range (unix seconds) in the URL and renders.
export function setRange(from, to) {
  const u = new URL(location.href);
  u.searchParams.delete('range');
  u.searchParams.set('from', String(Math.floor(from)));
  u.searchParams.set('to', String(Math.ceil(to)));
  navigate(u.pathname + u.search);
}

const localInput = (sec) => {
  const d = new Date(sec * 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
};

function header(active) {
  const q = new URLSearchParams(location.search);
  const [from, to] = timeRange(q);
  const custom = h('form', { class: 'custom-range', hidden: !q.get('from') },
    h('input', { type: 'datetime-local', 'aria-label': 'from', name: 'from', value: localInput(from) }),
    '–',
    h('input', { type: 'datetime-local', 'aria-label': 'to', name: 'to', value: localInput(to) }),
    h('button', { type: 'submit' }, 'Apply'));
  custom.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new Date(custom.elements.from.value).getTime() / 1000;
    const t = new Date(custom.elements.to.value).getTime() / 1000;
    if (f > 0 && t > f) setRange(f, t);
  });
  const sel = h('select', {
    'aria-label': 'time range',
    id: 'range',
    onchange: (e) => {
      if (e.target.value === 'custom') { custom.hidden = false; return; }
      const u = new URL(location.href);
      u.searchParams.set('range', e.target.value);
      u.searchParams.delete('from');
      u.searchParams.delete('to');
      navigate(u.pathname + u.search, { replace: true });
    },
  }, RANGES.map(([k]) => h('option', { value: k, selected: !q.get('from') && (q.get('range') || '1h') === k }, `Last ${k}`)),
  h('option', { value: 'custom', selected: !!q.get('from') }, 'Custom range…'));
  return h('header', { class: 'top' },
    link('/ui/traces', { class: 'brand' }, 'Sightline'),
    h('nav', {}, NAV.map(([key, label, href]) => link(href, { class: key === active ? 'on' : '', 'aria-current': key === active ? 'page' : null }, label))),
    h('div', { class: 'spacer' }),
    custom,
    sel,
    h('button', { class: 'icon', title: 'Toggle dark theme (d)', 'aria-label': 'toggle theme', onclick: () => setTheme(theme() === 'dark' ? 'light' : 'dark') }, '◐'),
    // With auth or tenancy on, the server keeps the session in HttpOnly
    // cookies; logging out is a same-origin form post that clears them.
    document.cookie.includes('sightline_session=')
      ? h('form', { method: 'post', action: '/ui/logout', class: 'logout' }, h('button', { type: 'submit' }, 'Log out'))
      : null);
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
