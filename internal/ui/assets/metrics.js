// metrics.js: the PromQL explorer and Sightline's own health page.
import { h, mount, fmtNum, fmtValue } from './dom.js';
import * as api from './api.js';
import { editor, savedQueries } from './editor.js';
import { lineChart, palette } from './chart.js';
import { navigate, setRange, timeRange } from './app.js';

const labelsOf = (m) => {
  const name = m.__name__ || '';
  const rest = Object.entries(m).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
  return `${name}{${rest}}`;
};

// promSuggest completes metric names from the label values API.
let metricNames = null;
async function promSuggest(src, caret) {
  const m = /([a-zA-Z_:][\w:]*)$/.exec(src.slice(0, caret));
  if (!m || m[1].length < 2) return null;
  if (!metricNames) metricNames = (await api.get('/api/v1/label/__name__/values')).data || [];
  return { from: caret - m[1].length, items: metricNames.filter((n) => n.startsWith(m[1]) && n !== m[1]).map((n) => ({ label: n, insert: n })) };
}

// chartQueries runs the queries' range and instant queries and returns
// [chart, table, series count]: every query's series on one chart, as
// Grafana's Explore draws queries A, B, ...; with more than one query each
// series is named after its query's letter. A query that fails is
// reported by its index in errors, and the others are still drawn.
async function chartQueries(qs, start, end) {
  const step = api.stepFor(start, end);
  const runs = await Promise.all(qs.map((q) => Promise.all([api.promRange(q, start, end, step), api.prom(q, end)]).then((r) => ({ r }), (e) => ({ e }))));
  const errors = runs.map((x) => (x.e ? x.e.message : null));
  const prefix = (i) => (qs.length > 1 ? `${LETTERS[i]}: ` : '');
  const series = [];
  let rows = [];
  runs.forEach((x, i) => {
    if (!x.r) return;
    const [range, inst] = x.r;
    for (const r of range) series.push({ name: prefix(i) + labelsOf(r.metric), points: r.values.map(([t, v]) => [Number(t), Number(v)]), gap: step * 1.5 });
    if (inst.resultType === 'vector') rows = rows.concat(inst.result.map((r) => [prefix(i) + labelsOf(r.metric), r.value[1]]));
    else if (inst.resultType === 'scalar') rows.push([`${prefix(i)}scalar`, inst.result[1]]);
  });
  const shown = series.slice(0, 50).map((se, i) => ({ ...se, colour: palette[i % palette.length] }));
  const chart = lineChart({ series: shown, t0: start, t1: end, legend: shown.length <= 12, onzoom: setRange });
  // Each row carries its line's colour; hovering it fades the other lines.
  const colourOf = new Map(shown.map((se) => [se.name, se.colour]));
  const pick = (name) => chart.querySelectorAll('path.line').forEach((p) => p.classList.toggle('dim', name !== null && p.dataset.series !== name));
  return [chart,
    h('table', { class: 'grid', id: 'prom-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'Series'), h('th', { class: 'num' }, 'Value at end'))),
      h('tbody', {}, rows.map(([k, v]) => h('tr', { onmouseenter: () => pick(k), onmouseleave: () => pick(null) },
        h('td', { class: 'mono small' }, h('i', { class: 'swatch', style: { background: colourOf.get(k) || 'transparent' } }), k),
        h('td', { class: 'num', title: String(v) }, fmtValue(v)))))),
    series.length, errors];
}

const LETTERS = 'ABCDEFGHIJ';

// metricsPage is the PromQL explorer: up to ten queries (query=, repeated
// in the URL), charted together, and the query library.
export function metricsPage({ query, alive }) {
  const qs = query.getAll('query').filter((q) => q.trim() !== '');
  if (!qs.length) qs.push('sum by (service_name) (rate(traces_spanmetrics_calls_total[5m]))');
  const [start, end] = timeRange(query);
  const run = (values) => {
    const u = new URL(location.href);
    u.searchParams.delete('query');
    for (const v of values) if (v.trim()) u.searchParams.append('query', v);
    navigate(u.pathname + u.search, { replace: true });
  };
  const eds = [];
  const rowsEl = h('div', { class: 'queries' });
  const all = () => eds.map((e) => e.value());
  const addRow = (value) => {
    const ed = editor({ value, label: eds.length ? `PromQL query ${LETTERS[eds.length]}` : 'PromQL query', suggest: promSuggest, onsubmit: () => run(all()) });
    eds.push(ed);
    const i = eds.length - 1;
    rowsEl.append(h('div', { class: 'query-row', 'data-query': LETTERS[i] }, h('span', { class: 'query-letter mono' }, LETTERS[i]), ed.el,
      i > 0 ? h('button', { type: 'button', 'aria-label': `remove query ${LETTERS[i]}`, title: 'remove this query', onclick: () => run(all().filter((_, j) => j !== i)) }, '×') : null));
    return ed;
  };
  for (const q of qs.slice(0, LETTERS.length)) addRow(q);
  const out = h('section', { id: 'prom-result' }, h('p', { class: 'muted' }, 'Loading…'));
  (async () => {
    try {
      const [chart, table, n, errors] = await chartQueries(qs, start, end);
      if (!alive()) return;
      errors.forEach((e, i) => { if (e && eds[i]) eds[i].setError(e); });
      if (errors.every((e) => e)) { mount(out); return; }
      mount(out, h('p', { class: 'muted', id: 'series-count' }, `${n} series`), chart, table);
    } catch (e) {
      if (!alive()) return;
      eds[0].setError(e.message);
      mount(out);
    }
  })();
  const saved = savedQueries({ kind: 'promql', current: () => eds[0].value(), open: (q) => run([q]) });
  return h('div', { class: 'page' }, h('h1', {}, 'Metrics'), rowsEl,
    h('div', { class: 'filters' },
      h('button', { onclick: () => run(all()) }, 'Run queries'),
      h('button', { type: 'button', disabled: eds.length >= LETTERS.length, onclick: () => { const ed = addRow(''); ed.input.focus(); } }, '+ Add query')),
    saved, out);
}

// selfPage charts Sightline's own telemetry, which the all-in-one scrapes
// from its :8888 endpoint into the TSDB (job "sightline").
const anyOf = (names) => names.map((n) => `(sum(rate(${n}[2m])) or vector(0))`).join(' + ');

const SELF = [
  ['Spans accepted / s', 'sum(rate(otelcol_receiver_accepted_spans_total[2m]))'],
  ['Log records accepted / s', 'sum(rate(otelcol_receiver_accepted_log_records_total[2m]))'],
  ['Metric points accepted / s', 'sum(rate(otelcol_receiver_accepted_metric_points_total[2m]))'],
  // Counters that have never moved are not exported yet: read them as 0.
  ['Refused / s (spans, logs, points)', anyOf(['otelcol_receiver_refused_spans_total', 'otelcol_receiver_refused_log_records_total', 'otelcol_receiver_refused_metric_points_total'])],
  ['Export failures / s', anyOf(['otelcol_exporter_send_failed_spans_total', 'otelcol_exporter_send_failed_log_records_total', 'otelcol_exporter_send_failed_metric_points_total'])],
  ['Exports in flight', 'sum(otelcol_exporter_in_flight_requests)'],
  ['CPU (cores)', 'sum(rate(otelcol_process_cpu_seconds_total[2m]))'],
  ['Memory RSS (MiB)', 'sum(otelcol_process_memory_rss_bytes) / 1048576'],
  // The store's memory budget: what it holds, and what it refused at it.
  ['Store memory held (MiB)', 'sum(sightline_store_memory_bytes) / 1048576'],
  ['Refused at the store\'s budget / s (spans, logs)', anyOf(['sightline_store_refused_total'])],
  // Refused before they were read, so counted as requests, not items.
  ['Requests refused unread (budget, backlog, memory) / s', anyOf(['sightline_store_refused_requests_total'])],
  // Clients' retries of requests the store had taken: answered, not stored twice.
  ['Retried, already stored / s (spans, logs)', anyOf(['sightline_store_retried_total'])],
  // Ingest stalls when this reaches sightline_store_stall_blocks.
  ['Level-0 blocks waiting to be merged', 'sum(sightline_store_level0_blocks)'],
  // The metrics TSDB's bound: new series past metrics::max_series are refused.
  ['Metric series in the head', 'sum(sightline_metrics_head_series)'],
  ['Metric samples refused at the series limit / s', anyOf(['sightline_metrics_refused_samples_total'])],
  // tail_sampling: what waits on disk for a decision, and the decisions.
  ['Tail sampling: traces waiting on disk', 'sum(sightline_tail_sampling_traces{state="waiting"}) or vector(0)'],
  ['Tail sampling buffer (MiB)', '(sum(sightline_tail_sampling_buffer_size_bytes) or vector(0)) / 1048576'],
  ['Tail-sampled traces kept / s', 'sum(rate(otelcol_processor_tail_sampling_global_count_traces_sampled_total{sampled="true"}[2m])) or vector(0)'],
  ['Tail-sampled traces not kept / s', 'sum(rate(otelcol_processor_tail_sampling_global_count_traces_sampled_total{sampled="false"}[2m])) or vector(0)'],
  ['Tail sampling: decided early (num_traces, max_size) / s', anyOf(['sightline_tail_sampling_early_decisions_total'])],
  // Should stay at 0: writes refused or not recorded, chunks not read back.
  ['Tail sampling buffer errors / s (write, read)', anyOf(['sightline_tail_sampling_write_errors_total', 'sightline_tail_sampling_read_errors_total'])],
];

export function selfPage({ query, alive }) {
  const [start, end] = timeRange(query);
  const cards = SELF.map(([title, q]) => {
    const card = h('div', { class: 'card' }, h('h3', {}, title));
    (async () => {
      try {
        const step = api.stepFor(start, end);
        const r = await api.promRange(q, start, end, step);
        if (!alive()) return;
        const last = r.length && r[0].values.length ? Number(r[0].values[r[0].values.length - 1][1]) : NaN;
        card.append(h('p', { class: 'big' }, fmtNum(last)), lineChart({ series: r.map((x, i) => ({ name: title, colour: palette[i], points: x.values.map(([t, v]) => [Number(t), Number(v)]) })), t0: start, t1: end, height: 100, legend: false }));
      } catch (e) {
        if (alive()) card.append(h('p', { class: 'error' }, e.message));
      }
    })();
    return card;
  });
  const store = h('div', { class: 'card' }, h('h3', {}, 'Store'));
  api.get('/api/sightline/v1/status').then((st) => {
    if (!alive() || !st) return;
    store.append(h('table', { class: 'kv' }, h('tbody', {}, Object.entries(st).map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, typeof v === 'object' ? JSON.stringify(v) : String(v)))))));
  }).catch((e) => { if (alive()) store.append(h('p', { class: 'muted' }, e.message)); });
  return h('div', { class: 'page' }, h('h1', {}, 'Sightline'), h('p', { class: 'muted' }, 'Sightline\'s own telemetry, scraped from its metrics endpoint into its TSDB.'),
    h('div', { class: 'cards' }, store, cards));
}
