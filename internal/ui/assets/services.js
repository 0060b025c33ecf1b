// services.js: the service list with RED figures from the span metrics,
// and a service page with RED charts, exemplars, top operations and the
// slowest and failing traces.
import { h, mount, fmtNum, fmtPct, fmtDuration, fmtTime, colour } from './dom.js';
import * as api from './api.js';
import { lineChart, palette } from './chart.js';
import { link, navigate, setRange, timeRange } from './app.js';

const CALLS = 'traces_spanmetrics_calls_total';
const BUCKET = 'traces_spanmetrics_duration_milliseconds_bucket';
const ENTRY = 'span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"';

// byLabel maps an instant vector to label value → number.
function byLabel(data, label) {
  const m = new Map();
  for (const r of (data && data.result) || []) m.set(r.metric[label] || '', Number(r.value[1]));
  return m;
}

function sel(service, extra = '') {
  return `{${ENTRY}${service ? `, service_name=${JSON.stringify(service)}` : ''}${extra}}`;
}

// red returns instant RED figures by label over window w.
async function red(label, service, w, time) {
  const s = sel(service);
  const e = sel(service, ', status_code="STATUS_CODE_ERROR"');
  const q = (p) => `histogram_quantile(${p}, sum by (${label}, le) (rate(${BUCKET}${s}[${w}])))`;
  const [rate, err, p50, p95, p99] = await Promise.all([
    api.prom(`sum by (${label}) (rate(${CALLS}${s}[${w}]))`, time),
    api.prom(`sum by (${label}) (rate(${CALLS}${e}[${w}]))`, time),
    api.prom(q(0.5), time), api.prom(q(0.95), time), api.prom(q(0.99), time)]);
  const R = byLabel(rate, label);
  const E = byLabel(err, label);
  const P = [byLabel(p50, label), byLabel(p95, label), byLabel(p99, label)];
  return [...R.keys()].sort().map((k) => ({ key: k, rate: R.get(k), errors: (E.get(k) || 0) / (R.get(k) || 1), p50: P[0].get(k), p95: P[1].get(k), p99: P[2].get(k) }));
}

// windowFor is the PromQL range, in seconds, that the services and
// operations tables summarise, for a time range given in seconds: the
// whole selected range, as Jaeger's and Grafana's service tables do, but at
// least a minute (rates need two scrapes) and at most a day (a week of
// rate() per service is slow and says little about now).
export function windowFor(start, end) {
  return Math.max(60, Math.min(86400, Math.round(end - start)));
}

// spanOf writes seconds as PromQL and people read them: 15m, 1h30m, 45s.
export function spanOf(s) {
  const h = Math.floor(s / 3600); const m = Math.floor((s % 3600) / 60); const sec = s % 60;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${sec || (!h && !m) ? `${sec}s` : ''}`;
}

const ms = (v) => (v === undefined || !isFinite(v) ? '–' : fmtDuration(v * 1e6));

export function servicesPage({ query, alive }) {
  const [start, end] = timeRange(query);
  const body = h('tbody', {});
  const status = h('p', { class: 'muted' }, 'Loading…');
  (async () => {
    try {
      const win = windowFor(start, end);
      const rows = await red('service_name', '', spanOf(win), end);
      if (!alive()) return;
      const over = win === Math.round(end - start) ? `the selected ${spanOf(win)}` : `the last ${spanOf(win)} of the range`;
      status.textContent = rows.length ? `${rows.length} services; rates and latency over ${over}, from span metrics of server and consumer spans` : 'No span metrics yet: send traces to the traces pipeline.';
      mount(body, rows.map((r) => h('tr', { class: r.errors > 0.05 ? 'has-err' : '' },
        h('td', {}, link(`/ui/service/${encodeURIComponent(r.key)}`, { class: 'svc', style: { '--c': colour(r.key) }, 'data-service': r.key }, r.key)),
        h('td', { class: 'num' }, `${fmtNum(r.rate)}/s`),
        h('td', { class: r.errors > 0.05 ? 'num err' : 'num' }, fmtPct(r.errors)),
        h('td', { class: 'num' }, ms(r.p50)), h('td', { class: 'num' }, ms(r.p95)), h('td', { class: 'num' }, ms(r.p99)))));
    } catch (e) {
      if (alive()) status.textContent = e.message;
    }
  })();
  return h('div', { class: 'page' }, h('h1', {}, 'Services'), status,
    h('table', { class: 'grid', id: 'services' }, h('thead', {}, h('tr', {}, ['Service', 'Rate', 'Errors', 'p50', 'p95', 'p99'].map((c, i) => h('th', { class: i ? 'num' : '' }, c)))), body));
}

function toSeries(result, name, colourOf, scale = 1) {
  return result.map((r, i) => ({
    name: typeof name === 'function' ? name(r.metric) : name,
    colour: colourOf ? colourOf(r.metric, i) : palette[i % palette.length],
    points: r.values.map(([t, v]) => [Number(t), Number(v) * scale]),
  }));
}

export function servicePage({ params, query, alive }) {
  const service = params[0];
  const [start, end] = timeRange(query);
  const step = api.stepFor(start, end);
  const w = `${Math.max(60, step * 4)}s`;
  const s = sel(service);
  const e = sel(service, ', status_code="STATUS_CODE_ERROR"');
  const charts = {
    rate: h('div', { class: 'card' }, h('h3', {}, 'Requests/s')),
    errors: h('div', { class: 'card' }, h('h3', {}, 'Errors %')),
    latency: h('div', { class: 'card', id: 'latency-chart' }, h('h3', {}, 'Latency p50 / p95 / p99 (ms) · dots are exemplars: click to open the trace')),
  };
  const ops = h('tbody', {});
  // Searches take a moment: say so, rather than show an empty box.
  const slow = h('div', { id: 'slowest' }, h('p', { class: 'muted' }, 'Loading…'));
  const slowNote = h('span', { class: 'muted small' });
  const failing = h('div', { id: 'failing' }, h('p', { class: 'muted' }, 'Loading…'));
  const open = (id, span) => navigate(`/ui/trace/${id}${span ? `?span=${span}` : ''}`);

  (async () => {
    try {
      const [rate, err, ...lat] = await Promise.all([
        api.promRange(`sum(rate(${CALLS}${s}[${w}]))`, start, end, step),
        api.promRange(`sum(rate(${CALLS}${e}[${w}]))`, start, end, step),
        ...[0.5, 0.95, 0.99].map((p) => api.promRange(`histogram_quantile(${p}, sum by (le) (rate(${BUCKET}${s}[${w}])))`, start, end, step)),
      ]);
      if (!alive()) return;
      charts.rate.append(lineChart({ series: toSeries(rate, 'req/s'), t0: start, t1: end, onzoom: setRange }));
      const tot = new Map(((rate[0] || {}).values || []).map(([t, v]) => [t, Number(v)]));
      const errPct = err.map((r) => ({ name: 'error %', colour: '#e15759', points: r.values.map(([t, v]) => [Number(t), tot.get(t) ? (Number(v) / tot.get(t)) * 100 : 0]) }));
      charts.errors.append(lineChart({ series: errPct, t0: start, t1: end, unit: '%', onzoom: setRange }));
      const latSeries = lat.flatMap((r, i) => toSeries(r, ['p50', 'p95', 'p99'][i], () => palette[i]));
      let dots = [];
      try {
        const ex = await api.exemplars(`${BUCKET}${s}`, start, end);
        dots = ex.flatMap((se) => se.exemplars.map((x) => ({
          t: Number(x.timestamp), v: Number(x.value), title: `trace ${x.labels.trace_id}: ${fmtNum(Number(x.value))} ms`,
          onclick: () => open(x.labels.trace_id, x.labels.span_id),
        }))).filter((d) => d.t >= start && d.t <= end);
      } catch { /* exemplars are optional */ }
      if (!alive()) return;
      charts.latency.append(lineChart({ series: latSeries, dots, t0: start, t1: end, unit: '', onzoom: setRange }));
      charts.latency.dataset.exemplars = String(dots.length);

      const rows = await red('span_name', service, spanOf(windowFor(start, end)), end);
      if (!alive()) return;
      rows.sort((a, b) => b.rate - a.rate);
      mount(ops, rows.slice(0, 20).map((r) => h('tr', {},
        h('td', {}, link(`/ui/traces?q=${encodeURIComponent(`{ resource.service.name = ${JSON.stringify(service)} && name = ${JSON.stringify(r.key)} }`)}`, {}, r.key)),
        h('td', { class: 'num' }, `${fmtNum(r.rate)}/s`), h('td', { class: r.errors > 0.05 ? 'num err' : 'num' }, fmtPct(r.errors)),
        h('td', { class: 'num' }, ms(r.p95)))));
    } catch (err) {
      if (alive()) charts.rate.append(h('p', { class: 'error' }, err.message));
    }
  })();

  // The service's own spans, not whole traces: a trace is listed by the
  // span of this service that matched, with that span's duration.
  const spanList = (el, traces, n) => {
    const rows = [];
    for (const t of traces) {
      const sp = (t.spanSets || [t.spanSet]).filter(Boolean).flatMap((ss) => ss.spans)
        .reduce((a, b) => (a && Number(a.durationNanos) >= Number(b.durationNanos) ? a : b), null);
      if (sp) rows.push({ t, sp, dur: Number(sp.durationNanos) });
    }
    rows.sort((a, b) => b.dur - a.dur);
    mount(el, rows.length ? h('ul', { class: 'tracelist' }, rows.slice(0, n).map(({ t, sp, dur }) => h('li', {},
      link(`/ui/trace/${t.traceID}?span=${sp.spanID}`, { class: 'mono' }, t.traceID.slice(0, 16)), ' ', sp.name || t.rootTraceName || '', ' ',
      h('span', { class: 'muted' }, `${fmtDuration(dur)} · ${fmtTime(Number(sp.startTimeUnixNano) / 1e6)}`)))) : h('p', { class: 'muted' }, 'none'));
  };
  const entry = `resource.service.name = ${JSON.stringify(service)} && (kind = server || kind = consumer)`;
  (async () => {
    try {
      // A search stops at its limit, in no order of duration; asking for
      // the spans above the range's p95 (from the span metrics) makes the
      // slowest ones the whole result, so sorting it finds the top ten.
      const win = `${Math.max(60, Math.round(end - start))}s`;
      const p = await api.prom(`histogram_quantile(0.95, sum by (le) (rate(${BUCKET}${s}[${win}])))`, end);
      const p95 = p.result.length ? Number(p.result[0].value[1]) : NaN;
      const q = isFinite(p95) && p95 > 0 ? `{ ${entry} && duration >= ${Math.floor(p95 * 1000)}us }` : `{ ${entry} }`;
      const r = await api.searchTraces(q, start, end, 200);
      if (!alive()) return;
      slowNote.textContent = isFinite(p95) && p95 > 0 ? ` · above p95 (${ms(p95)})` : '';
      spanList(slow, r.traces || [], 10);
    } catch (err) {
      if (alive()) mount(slow, h('p', { class: 'error' }, err.message));
    }
  })();
  (async () => {
    try {
      const r = await api.searchTraces(`{ resource.service.name = ${JSON.stringify(service)} && status = error }`, start, end, 20);
      if (alive()) spanList(failing, r.traces || [], 20);
    } catch (err) {
      if (alive()) mount(failing, h('p', { class: 'error' }, err.message));
    }
  })();

  return h('div', { class: 'page' },
    h('h1', {}, h('span', { class: 'svc', style: { '--c': colour(service) } }, service)),
    h('p', {}, link(`/ui/traces?q=${encodeURIComponent(`{ resource.service.name = ${JSON.stringify(service)} }`)}`, {}, 'Traces'), ' · ',
      link(`/ui/logs?query=${encodeURIComponent(`{service_name=${JSON.stringify(service)}}`)}`, {}, 'Logs'), ' · ', link('/ui/map', {}, 'Service map')),
    h('div', { class: 'cards' }, charts.rate, charts.errors, charts.latency),
    h('div', { class: 'cards two' },
      h('div', { class: 'card' }, h('h3', {}, 'Top operations'), h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, ['Operation', 'Rate', 'Errors', 'p95'].map((c, i) => h('th', { class: i ? 'num' : '' }, c)))), ops)),
      h('div', { class: 'card' }, h('h3', {}, 'Slowest traces', slowNote), slow, h('h3', {}, 'Failing traces'), failing)));
}
