// dashboards.js: dashboards in Grafana's own JSON model, so that a
// dashboard exported from Grafana imports unchanged and one saved here
// opens in Grafana. Panels query Sightline's Prometheus, Loki and Tempo
// APIs as Grafana's datasources of those types would; variables, rows,
// legends and the built-in $__ variables follow Grafana's rules. A panel
// type or datasource Sightline cannot draw is shown as such, never left
// out. Every value from a query or a dashboard is rendered as text.
import { h, mount, fmtMs, fmtNum, fmtTime, fmtValue } from './dom.js';
import * as api from './api.js';
import { lineChart, palette } from './chart.js';
import { link, navigate, setRange, timeRange } from './app.js';

// The datasources a dashboard can name, by the UIDs import assigns and the
// plugin types Grafana gives them.
export const DATASOURCES = [
  { uid: 'sightline-prometheus', type: 'prometheus', name: 'Prometheus (Sightline)' },
  { uid: 'sightline-loki', type: 'loki', name: 'Loki (Sightline)' },
  { uid: 'sightline-tempo', type: 'tempo', name: 'Tempo (Sightline)' },
];
const SUPPORTED_DS = new Set(['prometheus', 'loki', 'tempo']);

const CHART_PANELS = new Set(['timeseries', 'graph', 'heatmap', 'state-timeline', 'status-history', 'trend', 'xychart']);
const VALUE_PANELS = new Set(['stat', 'singlestat', 'gauge', 'bargauge', 'piechart', 'barchart', 'grafana-piechart-panel']);
const TABLE_PANELS = new Set(['table', 'table-old']);

// The scrape interval $__rate_interval assumes, as Grafana's Prometheus
// datasource does by default; Sightline's own scrapes and span metrics
// use it too.
const SCRAPE = 15;

// ---- the model ----

// panelsOf flattens a model's panels in reading order: rows with the
// panels they hold (collapsed rows keep theirs inside), and the old
// (schemaVersion < 16) rows-of-spans layout turned into grid positions.
export function panelsOf(model) {
  const out = [];
  if (Array.isArray(model.rows) && !(model.panels && model.panels.length)) {
    let y = 0;
    for (const r of model.rows) {
      const row = { type: 'row', title: r.title || '', collapsed: !!r.collapse, panels: [], gridPos: { x: 0, y, w: 24, h: 1 } };
      y += 1;
      let x = 0;
      const hgt = Math.max(3, Math.round((parseInt(r.height, 10) || 250) / 38));
      for (const p of r.panels || []) {
        const w = Math.max(1, Math.min(24, Math.round((p.span || 12) * 2)));
        if (x + w > 24) { x = 0; y += hgt; }
        row.panels.push({ ...p, gridPos: { x, y, w, h: hgt } });
        x += w;
      }
      y += hgt;
      out.push(row);
    }
    return out;
  }
  const sorted = [...(model.panels || [])].sort((a, b) => ((a.gridPos || {}).y || 0) - ((b.gridPos || {}).y || 0) || ((a.gridPos || {}).x || 0) - ((b.gridPos || {}).x || 0));
  for (const p of sorted) out.push(p);
  return out;
}

// countPanels counts every panel, rows and what they hold included: the
// number Grafana's dashboard JSON has.
export function countPanels(model) {
  let n = 0;
  const walk = (ps) => { for (const p of ps || []) { n++; walk(p.panels); } };
  if (Array.isArray(model.rows) && !(model.panels && model.panels.length)) for (const r of model.rows) walk(r.panels);
  walk(model.panels);
  return n;
}

// dsType resolves a panel's or target's datasource to a plugin type:
// an object {type, uid}, a name, a variable ($datasource,
// ${prometheus_datasource}) or nothing (the default, Prometheus).
export function dsType(ds, vars) {
  if (ds && typeof ds === 'object') {
    const known = DATASOURCES.find((d) => d.uid === ds.uid);
    if (known) return known.type;
    if (typeof ds.uid === 'string' && ds.uid.startsWith('$')) {
      const v = vars && vars.get(varName(ds.uid));
      if (v && v.type === 'datasource') return v.plugin;
    }
    if (ds.type && !String(ds.type).startsWith('$')) return ds.type === 'datasource' ? 'grafana' : ds.type;
    return 'prometheus';
  }
  if (typeof ds === 'string' && ds !== '') {
    if (ds.startsWith('$')) {
      const v = vars && vars.get(varName(ds));
      if (v && v.type === 'datasource') return v.plugin;
    }
    if (ds === '-- Grafana --' || ds === 'grafana') return 'grafana';
    if (ds === '-- Mixed --') return 'mixed';
    const known = DATASOURCES.find((d) => d.uid === ds || d.name === ds);
    if (known) return known.type;
    const l = ds.toLowerCase();
    for (const t of ['loki', 'tempo', 'jaeger', 'elasticsearch', 'opensearch', 'influx', 'graphite', 'mysql', 'postgres']) if (l.includes(t)) return t;
  }
  return 'prometheus';
}

const varName = (ref) => ref.replace(/^\$\{?/, '').replace(/(:[^}]*)?\}?$/, '');

// ---- time and intervals ----

export function parseDuration(s) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$/.exec(String(s).trim());
  if (!m) return NaN;
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 }[m[2]];
}

// promDuration writes whole seconds as Prometheus reads them: 90 -> 90s,
// 120 -> 2m, 3600 -> 1h.
export function promDuration(sec) {
  sec = Math.max(1, Math.round(sec));
  for (const [u, n] of [['d', 86400], ['h', 3600], ['m', 60]]) if (sec % n === 0) return `${sec / n}${u}`;
  return `${sec}s`;
}

// intervals returns the step and Grafana's $__interval and
// $__rate_interval for a panel: about maxDataPoints points over the range,
// never under the panel's min interval or the scrape interval.
export function intervals(start, end, panel = {}) {
  const minInterval = parseDuration((panel.interval || '').replace(/^>/, '')) || SCRAPE;
  const points = panel.maxDataPoints || 200;
  const step = Math.max(minInterval, Math.ceil((end - start) / points / SCRAPE) * SCRAPE);
  return { step, interval: step, rate: Math.max(step + SCRAPE, 4 * SCRAPE) };
}

// rangeOf reads the dashboard's own default range ("now-15m" to "now")
// when the URL does not set one.
export function rangeOf(model, query) {
  if (query.get('range') || query.get('from')) return timeRange(query);
  const t = model.time || {};
  const m = /^now-(\d+[smhdwy])$/.exec(t.from || '');
  const end = Date.now() / 1000;
  if (m && (t.to || 'now') === 'now') return [end - parseDuration(m[1]), end];
  return timeRange(query);
}

// ---- variables ----

const regexEscape = (s) => String(s).replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');

// formatValue applies a variable format (${var:format}) as Grafana does.
// Without one, Prometheus, Loki and Tempo queries get a regex alternation
// of the values for multi-value and All selections.
export function formatValue(v, format) {
  const vals = Array.isArray(v.value) ? v.value : [v.value];
  if (v.isAll && v.allValue !== undefined && v.allValue !== null && v.allValue !== '' && (!format || format === 'regex' || format === 'raw')) return v.allValue;
  switch (format) {
    case 'raw': return vals.join(',');
    case 'csv': return vals.join(',');
    case 'pipe': return vals.join('|');
    case 'text': return Array.isArray(v.text) ? v.text.join(' + ') : String(v.text ?? vals.join(' + '));
    case 'json': return JSON.stringify(vals.length === 1 && !v.multi ? vals[0] : vals);
    case 'doublequote': return vals.map((x) => `"${x}"`).join(',');
    case 'singlequote': return vals.map((x) => `'${x}'`).join(',');
    case 'glob': return vals.length > 1 ? `{${vals.join(',')}}` : vals.join('');
    case 'queryparam': return vals.map((x) => `var-${encodeURIComponent(v.name)}=${encodeURIComponent(x)}`).join('&');
    case 'percentencode': return encodeURIComponent(vals.join(','));
    case 'regex':
    default:
      if (format !== 'regex' && !v.multi && !v.isAll) return vals.join(',');
      if (vals.length === 1) return regexEscape(vals[0]);
      return `(${vals.map(regexEscape).join('|')})`;
  }
}

// interpolate replaces $var, ${var}, ${var:format}, [[var]] and the
// built-in $__ variables in s.
export function interpolate(s, vars, builtins = {}) {
  if (typeof s !== 'string') return s;
  return s.replace(/\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)/g, (all, n1, f1, n2, f2, n3) => {
    const name = n1 || n2 || n3;
    const fmt = f1 || f2;
    if (Object.prototype.hasOwnProperty.call(builtins, name)) return String(builtins[name]);
    const v = vars.get(name);
    if (!v) return all;
    return formatValue(v, fmt);
  });
}

export function builtinsFor(start, end, panel) {
  const iv = intervals(start, end, panel);
  const range = Math.max(1, Math.round(end - start));
  return {
    __interval: promDuration(iv.interval), __interval_ms: String(iv.interval * 1000),
    __rate_interval: promDuration(iv.rate), __range: promDuration(range), __range_s: String(range), __range_ms: String(range * 1000),
    __from: String(Math.floor(start * 1000)), __to: String(Math.ceil(end * 1000)),
    __dashboard: '', __org: '1', __user: '',
  };
}

// applyRegex filters and extracts variable values with the variable's
// regex: the first capture group (or one named "value"/"text") when it
// has one, else the whole value.
export function applyRegex(values, re) {
  if (!re) return values.map((v) => ({ text: v, value: v }));
  const m = /^\/(.*)\/([gimsuy]*)$/.exec(re);
  let rx;
  try { rx = m ? new RegExp(m[1], m[2].replace('g', '')) : new RegExp(re); } catch { return values.map((v) => ({ text: v, value: v })); }
  const out = [];
  for (const v of values) {
    const r = rx.exec(v);
    if (!r) continue;
    const g = r.groups || {};
    const value = g.value ?? (r.length > 1 ? r[1] : r[0]);
    const text = g.text ?? value;
    if (value !== undefined) out.push({ text, value });
  }
  return out;
}

// promSeriesString writes an instant sample as Grafana's query_result()
// lists it: name{k="v",...} value timestamp.
const promSeriesString = (r) => {
  const { __name__: name = '', ...labels } = r.metric || {};
  const ls = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(', ');
  return `${name}{${ls}} ${r.value ? r.value[1] : ''} ${r.value ? Math.round(r.value[0] * 1000) : ''}`;
};

const queryText = (q) => (q && typeof q === 'object' ? q.query || q.expr || '' : q || '');

// variableValues runs a query variable's query: Grafana's Prometheus
// templating functions, or Loki's label_values.
async function variableValues(v, vars, start, end) {
  const type = dsType(v.datasource, vars);
  const b = builtinsFor(start, end, {});
  const q = interpolate(queryText(v.query).trim(), vars, b);
  if (type === 'loki') {
    const m = /^label_values\((?:(.*),\s*)?(\w+)\)$/s.exec(q);
    if (m) return api.logLabelValues(m[2], start, end);
    return [];
  }
  if (type !== 'prometheus') return [];
  let m;
  const params = { start: Math.floor(start), end: Math.ceil(end) };
  if ((m = /^label_values\((.*),\s*([\w.]+)\)$/s.exec(q))) {
    return (await api.get(`/api/v1/label/${encodeURIComponent(m[2])}/values`, { ...params, 'match[]': m[1] })).data || [];
  }
  if ((m = /^label_values\(([\w.]+)\)$/.exec(q))) return (await api.get(`/api/v1/label/${encodeURIComponent(m[1])}/values`, params)).data || [];
  if ((m = /^label_names\((.*)\)$/s.exec(q))) return (await api.get('/api/v1/labels', { ...params, 'match[]': m[1] || undefined })).data || [];
  if ((m = /^metrics\((.*)\)$/s.exec(q))) {
    const names = (await api.get('/api/v1/label/__name__/values', params)).data || [];
    let rx;
    try { rx = new RegExp(m[1]); } catch { rx = /.*/; }
    return names.filter((n) => rx.test(n));
  }
  if ((m = /^query_result\((.*)\)$/s.exec(q))) {
    const r = await api.prom(m[1], Math.floor(end));
    return r.resultType === 'vector' ? r.result.map(promSeriesString) : r.resultType === 'scalar' ? [String(r.result[1])] : [];
  }
  // A bare PromQL expression: the series' names, as Grafana lists them.
  if (q) {
    const r = await api.prom(q, Math.floor(end));
    return r.resultType === 'vector' ? r.result.map(promSeriesString) : [];
  }
  return [];
}

const sorters = {
  1: (a, b) => a.text.localeCompare(b.text), 2: (a, b) => b.text.localeCompare(a.text),
  3: (a, b) => parseFloat(a.text) - parseFloat(b.text), 4: (a, b) => parseFloat(b.text) - parseFloat(a.text),
  5: (a, b) => a.text.localeCompare(b.text, undefined, { sensitivity: 'base' }), 6: (a, b) => b.text.localeCompare(a.text, undefined, { sensitivity: 'base' }),
  7: (a, b) => a.text.localeCompare(b.text, undefined, { numeric: true }), 8: (a, b) => b.text.localeCompare(a.text, undefined, { numeric: true }),
};

// autoInterval is an interval variable's "auto" value: the range split in
// auto_count steps, not under auto_min, rounded to a whole unit.
export function autoInterval(start, end, count = 30, min = '10s') {
  const raw = Math.max((end - start) / (count || 30), parseDuration(min) || 10);
  const nice = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800];
  return nice.find((n) => n >= raw) || Math.ceil(raw / 86400) * 86400;
}

// resolveVariables computes every variable's options and its current
// value, in dashboard order (a variable may use the ones before it). The
// URL's var-<name> parameters override the saved selection, as in Grafana.
export async function resolveVariables(model, query, start, end) {
  const vars = new Map();
  for (const def of (model.templating && model.templating.list) || []) {
    const name = def.name;
    if (!name) continue;
    const v = { name, type: def.type, label: def.label || name, hide: def.hide || 0, multi: !!def.multi, includeAll: !!def.includeAll, allValue: def.allValue, options: [], error: null };
    try {
      switch (def.type) {
        case 'datasource': {
          const plugin = String(def.query || 'prometheus');
          v.plugin = plugin === 'prometheus' || plugin === 'loki' || plugin === 'tempo' ? plugin : plugin;
          const d = DATASOURCES.find((x) => x.type === plugin);
          v.options = [{ text: d ? d.name : plugin, value: d ? d.uid : plugin }];
          break;
        }
        case 'constant':
          v.options = [{ text: String(def.query ?? ''), value: String(def.query ?? '') }];
          break;
        case 'textbox':
          v.options = [{ text: String(def.query ?? ''), value: String(def.query ?? '') }];
          break;
        case 'custom':
          v.options = String(def.query || '').split(/(?<!\\),/).map((s) => s.replace(/\\,/g, ',').trim()).filter((s) => s !== '').map((s) => {
            const kv = /^(.*?)\s:\s(.*)$/.exec(s);
            return kv ? { text: kv[1], value: kv[2] } : { text: s, value: s };
          });
          break;
        case 'interval': {
          const opts = String(def.query || '').split(',').map((s) => s.trim()).filter(Boolean).map((s) => ({ text: s, value: s }));
          if (def.auto) opts.unshift({ text: 'auto', value: `$__auto_interval_${name}`, auto: promDuration(autoInterval(start, end, def.auto_count, def.auto_min)) });
          v.options = opts;
          break;
        }
        case 'query': {
          const raw = await variableValues({ ...def }, vars, start, end);
          const uniq = [...new Set(raw.map(String))];
          v.options = applyRegex(uniq, def.regex);
          const seen = new Set();
          v.options = v.options.filter((o) => !seen.has(o.value) && seen.add(o.value));
          if (sorters[def.sort]) v.options.sort(sorters[def.sort]);
          break;
        }
        default:
          v.unsupported = true; // adhoc filters and the like: no value
      }
    } catch (e) {
      v.error = e.message;
    }
    // The selection: the URL, else the saved one if still an option, else
    // All (when allowed) or the first option.
    const fromURL = query.getAll(`var-${name}`);
    const saved = def.current ? (Array.isArray(def.current.value) ? def.current.value : [def.current.value]) : [];
    const values = v.options.map((o) => o.value);
    let sel = fromURL.length ? fromURL : saved.filter((x) => x !== undefined && x !== null);
    const wantsAll = sel.includes('$__all') || sel.includes('All');
    if (wantsAll && v.includeAll) {
      v.isAll = true;
      sel = values;
    } else {
      sel = sel.filter((x) => values.includes(x) || def.type === 'textbox' || def.type === 'constant');
      if (!sel.length) {
        if (v.includeAll && def.type === 'query') { v.isAll = true; sel = values; } else if (values.length) sel = [values[0]];
      }
    }
    if (!v.multi && sel.length > 1 && !v.isAll) sel = [sel[0]];
    if (def.type === 'interval') sel = sel.map((x) => (x.startsWith('$__auto_interval') ? v.options[0].auto : x));
    if (def.type === 'datasource') sel = [v.options[0].value];
    // An All with nothing to list still has to match everything (or
    // nothing) in a regex: Grafana sends its allValue, or an empty group.
    v.value = v.isAll ? (values.length ? values : ['']) : (v.multi ? sel : (sel[0] ?? ''));
    v.text = v.isAll ? 'All' : v.value;
    vars.set(name, v);
  }
  return vars;
}

// ---- queries ----

const legendOf = (fmt, metric, fallback) => {
  if (fmt && fmt !== '__auto') return fmt.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (a, k) => (metric[k] ?? ''));
  const { __name__: name = '', ...ls } = metric;
  const inner = Object.entries(ls).map(([k, v]) => `${k}="${v}"`).join(', ');
  return name || inner ? `${name}${inner ? `{${inner}}` : ''}` : fallback;
};

// runTarget runs one target and returns {series: [{name, labels,
// points}], logs, traces}. Prometheus, Loki (metrics and logs) and Tempo
// (TraceQL search and metrics) are understood.
export async function runTarget(type, target, vars, start, end, panel) {
  const b = builtinsFor(start, end, panel);
  const { step } = intervals(start, end, panel);
  if (type === 'prometheus') {
    const expr = interpolate(target.expr || '', vars, b);
    if (!expr.trim()) return { series: [] };
    const instant = target.instant === true || (target.format === 'table' && target.range !== true) || (target.instant && target.range !== true);
    if (instant) {
      const r = await api.prom(expr, Math.floor(end));
      const rows = r.resultType === 'vector' ? r.result : r.resultType === 'scalar' ? [{ metric: {}, value: r.result }] : [];
      return { series: rows.map((x) => ({ name: legendOf(target.legendFormat, x.metric, expr), labels: x.metric, points: [[Number(x.value[0]), Number(x.value[1])]] })) };
    }
    const res = await api.promRange(expr, Math.floor(start), Math.ceil(end), step);
    return { series: res.map((x) => ({ name: legendOf(target.legendFormat, x.metric, expr), labels: x.metric, points: x.values.map(([t, v]) => [Number(t), Number(v)]) })) };
  }
  if (type === 'loki') {
    const expr = interpolate(target.expr || '', vars, b);
    if (!expr.trim()) return { series: [] };
    const d = await api.logs(expr, start, end, Math.min(Number(target.maxLines || panel.maxLines) || 100, 1000));
    if (d.resultType === 'streams') {
      const lines = [];
      for (const s of d.result) for (const [ts, line] of s.values) lines.push({ ts: Number(ts) / 1e6, line, labels: s.stream });
      lines.sort((x, y) => y.ts - x.ts);
      return { logs: lines };
    }
    const rows = d.resultType === 'vector' ? d.result.map((x) => ({ metric: x.metric, values: [x.value] })) : d.result;
    return { series: rows.map((x) => ({ name: legendOf(target.legendFormat, x.metric, expr), labels: x.metric, points: x.values.map(([t, v]) => [Number(t), Number(v)]) })) };
  }
  if (type === 'tempo') {
    const q = interpolate(target.query || '', vars, b);
    if (!q.trim()) return { series: [] };
    if (target.queryType === 'traceqlmetrics' || /\|\s*(rate|count_over_time|quantile_over_time|histogram_over_time|avg_over_time|min_over_time|max_over_time|sum_over_time)\s*\(/.test(q)) {
      const r = await api.get('/api/metrics/query_range', { q, start: Math.floor(start), end: Math.ceil(end), step: `${step}s` });
      return {
        series: (r.series || []).map((s) => {
          const labels = {};
          for (const l of s.labels || []) labels[l.key] = Object.values(l.value || {})[0];
          return { name: Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(', ') || q, labels, points: (s.samples || []).map((p) => [Number(p.timestampMs) / 1000, Number(p.value)]) };
        }),
      };
    }
    const r = await api.searchTraces(q, start, end, Number(target.limit) || 20);
    return { traces: r.traces || [] };
  }
  throw new Error(`the ${type} datasource is not supported`);
}

// ---- rendering ----

const unitFmt = (unit, v) => {
  if (!isFinite(v)) return fmtValue(v);
  switch (unit) {
    case 'percent': return `${fmtNum(v)}%`;
    case 'percentunit': return `${fmtNum(v * 100)}%`;
    case 'bytes': case 'decbytes': {
      const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
      let i = 0;
      let x = Math.abs(v);
      while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
      return `${fmtNum(Math.sign(v) * x)} ${u[i]}`;
    }
    case 's': return v >= 86400 ? `${fmtNum(v / 86400)} d` : v >= 3600 ? `${fmtNum(v / 3600)} h` : v >= 60 ? `${fmtNum(v / 60)} min` : `${fmtNum(v)} s`;
    case 'ms': return `${fmtNum(v)} ms`;
    case 'reqps': return `${fmtNum(v)} req/s`;
    default: return fmtNum(v);
  }
};

function panelUnit(p) {
  return (p.fieldConfig && p.fieldConfig.defaults && p.fieldConfig.defaults.unit) || (p.yaxes && p.yaxes[0] && p.yaxes[0].format) || p.format || '';
}

// lastValue is what a stat shows: the last non-null sample.
const lastValue = (points) => { for (let i = points.length - 1; i >= 0; i--) if (isFinite(points[i][1])) return points[i][1]; return NaN; };

function valueTiles(p, series) {
  const unit = panelUnit(p);
  return h('div', { class: 'tiles' }, series.slice(0, 50).map((s) => h('div', { class: 'tile' },
    h('span', { class: 'tile-value' }, unitFmt(unit, lastValue(s.points))),
    series.length > 1 || (s.name && s.name !== (p.title || '')) ? h('span', { class: 'tile-name small muted' }, s.name) : null)));
}

function seriesTable(series) {
  const keys = [...new Set(series.flatMap((s) => Object.keys(s.labels || {})))].filter((k) => k !== '__name__');
  return h('div', { class: 'scroll' }, h('table', { class: 'grid small' },
    h('thead', {}, h('tr', {}, keys.map((k) => h('th', {}, k)), h('th', {}, 'Value'))),
    h('tbody', {}, series.slice(0, 500).map((s) => h('tr', {}, keys.map((k) => h('td', { class: 'mono' }, (s.labels || {})[k] ?? '')), h('td', { class: 'num', title: String(lastValue(s.points)) }, fmtValue(lastValue(s.points))))))));
}

function logList(lines) {
  return h('div', { class: 'scroll panel-logs' }, lines.slice(0, 500).map((l) => h('div', { class: 'log-line mono small' },
    h('span', { class: 'muted' }, fmtTime(l.ts)), ' ', l.line)));
}

function traceList(traces) {
  return h('table', { class: 'grid small' },
    h('thead', {}, h('tr', {}, ['Trace', 'Root', 'Start', 'Duration'].map((c) => h('th', {}, c)))),
    h('tbody', {}, traces.map((t) => h('tr', {},
      h('td', {}, link(`/ui/trace/${encodeURIComponent(t.traceID)}`, { class: 'mono' }, String(t.traceID).slice(0, 16))),
      h('td', {}, `${t.rootServiceName || ''} ${t.rootTraceName || ''}`),
      h('td', { class: 'mono nowrap' }, t.startTimeUnixNano ? fmtTime(Number(t.startTimeUnixNano) / 1e6) : ''),
      h('td', { class: 'num' }, fmtMs(t.durationMs))))));
}

// panelElement draws one panel and fills it in as its queries answer. Its
// data-state says what it shows: loading, data, empty, error or
// unsupported.
function panelElement(p, vars, start, end, alive) {
  const title = interpolate(p.title || '', vars, {});
  const body = h('div', { class: 'panel-body' }, h('p', { class: 'muted small' }, 'Loading…'));
  const el = h('section', { class: `panel panel-${p.type}`, 'data-panel-type': p.type, 'data-state': 'loading', 'aria-label': title || p.type },
    h('h3', { class: 'panel-title', title: p.description || '' }, title || '\u00a0'), body);
  const gp = p.gridPos || { w: 12, h: 8 };
  el.style.gridColumn = `span ${Math.max(1, Math.min(24, gp.w || 12))}`;
  el.style.gridRow = `span ${Math.max(2, gp.h || 8)}`;
  const done = (state, ...content) => { if (!alive()) return; el.dataset.state = state; mount(body, ...content); };

  if (p.type === 'text') {
    const content = (p.options && p.options.content) ?? p.content ?? '';
    done('data', h('div', { class: 'panel-text' }, interpolate(String(content), vars, {})));
    return el;
  }
  const panelDs = dsType(p.datasource, vars);
  el.dataset.ds = panelDs;
  const targets = (p.targets || []).filter((t) => !t.hide);
  const known = CHART_PANELS.has(p.type) || VALUE_PANELS.has(p.type) || TABLE_PANELS.has(p.type) || p.type === 'logs' || p.type === 'traces';
  if (!known) {
    done('unsupported', h('p', { class: 'muted small' }, `Sightline does not draw "${p.type}" panels.`));
    return el;
  }
  const types = targets.map((t) => (panelDs === 'mixed' || (t.datasource && panelDs !== dsType(t.datasource, vars)) ? dsType(t.datasource, vars) : panelDs));
  const bad = types.find((t) => !SUPPORTED_DS.has(t));
  if (bad) {
    done('unsupported', h('p', { class: 'muted small' }, `Sightline does not answer "${bad}" datasource queries.`));
    return el;
  }
  if (!targets.length) {
    done('empty', h('p', { class: 'muted small' }, 'This panel has no queries.'));
    return el;
  }
  (async () => {
    let results;
    try {
      results = await Promise.all(targets.map((t, i) => runTarget(types[i], t, vars, start, end, p)));
    } catch (e) {
      done('error', h('p', { class: 'error small', role: 'alert' }, e.message));
      return;
    }
    const series = results.flatMap((r) => r.series || []);
    const logs = results.flatMap((r) => r.logs || []);
    const traces = results.flatMap((r) => r.traces || []);
    if (logs.length) { done('data', logList(logs)); return; }
    if (traces.length) { done('data', traceList(traces)); return; }
    if (!series.some((s) => s.points.length)) { done('empty', h('p', { class: 'muted small' }, 'No data.')); return; }
    if (VALUE_PANELS.has(p.type)) done('data', valueTiles(p, series));
    else if (TABLE_PANELS.has(p.type)) done('data', seriesTable(series));
    else {
      const { step } = intervals(start, end, p);
      done('data', lineChart({ series: series.slice(0, 50).map((s, i) => ({ name: s.name, colour: palette[i % palette.length], points: s.points, gap: step * 1.5 })), t0: start, t1: end, height: Math.max(80, (gp.h || 8) * 38 - 90), unit: panelUnit(p) === 'percent' ? '%' : '', onzoom: setRange }));
    }
  })();
  return el;
}

// rowElement draws a row's header. A collapsed row keeps its panels
// inside it; they are drawn (and queried) only once it is opened, in a
// holder that takes part in the dashboard's grid.
function rowElement(row, vars, start, end, alive, expanded) {
  const title = interpolate(row.title || '', vars, {});
  const holder = h('div', { class: 'row-panels' });
  const head = h('button', { type: 'button', class: 'row-head', 'data-panel-type': 'row', 'data-state': 'data', 'aria-expanded': 'true' }, '▾ ', title || 'Row');
  const setOpen = (open) => {
    head.setAttribute('aria-expanded', String(open));
    head.firstChild.textContent = open ? '▾ ' : '▸ ';
    if (!row.collapsed) return;
    if (open && !holder.firstChild) for (const p of row.panels || []) holder.append(panelElement(p, vars, start, end, alive));
    holder.hidden = !open;
  };
  head.addEventListener('click', () => setOpen(head.getAttribute('aria-expanded') !== 'true'));
  setOpen(expanded || !row.collapsed);
  return [head, holder];
}

function download(name, text) {
  const a = h('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/json' })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

function varBar(vars) {
  const bar = h('form', { class: 'filters dash-vars', 'aria-label': 'variables' });
  for (const v of vars.values()) {
    if (v.hide === 2 || v.type === 'constant' || v.type === 'datasource' || v.unsupported) continue;
    const change = (values) => {
      const u = new URL(location.href);
      u.searchParams.delete(`var-${v.name}`);
      for (const x of values) u.searchParams.append(`var-${v.name}`, x);
      navigate(u.pathname + u.search, { replace: true });
    };
    let input;
    if (v.type === 'textbox') {
      input = h('input', { value: String(v.value), 'aria-label': v.label, onchange: (e) => change([e.target.value]) });
    } else {
      const cur = new Set(v.isAll ? ['$__all'] : [].concat(v.value));
      input = h('select', { 'aria-label': v.label, multiple: v.multi ? true : null, size: v.multi ? Math.min(4, v.options.length + (v.includeAll ? 1 : 0)) : null, 'data-var': v.name,
        onchange: (e) => change([...e.target.selectedOptions].map((o) => o.value)) },
      v.includeAll ? h('option', { value: '$__all', selected: v.isAll }, 'All') : null,
      v.options.map((o) => h('option', { value: o.value, selected: !v.isAll && cur.has(o.value) }, o.text)));
    }
    bar.append(h('label', { class: 'var' }, h('span', { class: 'small muted' }, v.label), input, v.error ? h('span', { class: 'error small' }, v.error) : null));
  }
  return bar;
}

// dashboardPage draws /ui/d/<uid>.
export function dashboardPage({ params, query, alive }) {
  const [uid] = params;
  const root = h('div', { class: 'page dashboard' }, h('p', { class: 'muted' }, 'Loading…'));
  (async () => {
    let d;
    try {
      d = await api.get(`/api/dashboards/uid/${encodeURIComponent(uid)}`);
    } catch (e) {
      if (alive()) mount(root, h('h1', {}, 'Dashboard'), h('p', { class: 'error', role: 'alert' }, e.message), link('/ui/dashboards', {}, 'All dashboards'));
      return;
    }
    const model = d.dashboard;
    const [start, end] = rangeOf(model, query);
    const vars = await resolveVariables(model, query, start, end);
    if (!alive()) return;
    const expandAll = query.get('expand') === 'all';
    const grid = h('div', { class: 'dash-grid', 'data-panels': String(countPanels(model)) });
    for (const p of panelsOf(model)) {
      // An open row's panels follow it in the model's panel list.
      if (p.type === 'row') grid.append(...rowElement(p, vars, start, end, alive, expandAll));
      else grid.append(panelElement(p, vars, start, end, alive));
    }
    const editor = h('div', { class: 'dash-editor', hidden: true });
    const actions = h('div', { class: 'filters' },
      h('button', { type: 'button', onclick: () => download(`${model.uid || uid}.json`, JSON.stringify(model, null, 2)) }, 'Export JSON'),
      h('button', { type: 'button', onclick: () => { const u = new URL(location.href); u.searchParams.set('expand', 'all'); navigate(u.pathname + u.search, { replace: true }); } }, 'Expand rows'),
      h('button', { type: 'button', onclick: () => openEditor(editor, model, d.meta) }, d.meta.provisioned ? 'Save a copy…' : 'Edit JSON'),
      h('button', { type: 'button', onclick: () => openAddPanel(editor, model, d.meta) }, 'Add panel'),
      d.meta.provisioned ? null : h('button', {
        type: 'button', class: 'danger',
        onclick: async () => {
          if (!confirm(`Delete the dashboard "${model.title}"?`)) return;
          try { await request('DELETE', `/api/dashboards/uid/${encodeURIComponent(uid)}`); navigate('/ui/dashboards'); } catch (e) { alert(e.message); }
        },
      }, 'Delete'));
    mount(root,
      h('p', { class: 'small' }, link('/ui/dashboards', {}, 'Dashboards'), ' / '),
      h('h1', {}, model.title, d.meta.provisioned ? h('span', { class: 'tag small' }, 'built in') : null),
      model.description ? h('p', { class: 'muted small' }, model.description) : null,
      varBar(vars), actions, editor, grid);
  })();
  return root;
}

async function request(method, path, body) {
  const resp = await fetch(path, { method, headers: { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let j = null;
  try { j = JSON.parse(text); } catch { /* text */ }
  if (!resp.ok) throw new Error((j && (j.message || j.error)) || text || resp.statusText);
  return j;
}

async function save(model, overwrite = false) {
  return request('POST', '/api/dashboards/db', { dashboard: model, overwrite });
}

function openEditor(el, model, meta) {
  const copy = meta.provisioned;
  const m = copy ? { ...model, uid: undefined, version: undefined, title: `${model.title} (copy)`, tags: (model.tags || []).filter((t) => t !== 'sightline') } : model;
  const ta = h('textarea', { class: 'mono small', rows: 24, 'aria-label': 'dashboard JSON', spellcheck: 'false' });
  ta.value = JSON.stringify(m, null, 2);
  const msg = h('p', { class: 'small', role: 'status' });
  mount(el, ta, h('div', { class: 'filters' },
    h('button', {
      type: 'button',
      onclick: async () => {
        let next;
        try { next = JSON.parse(ta.value); } catch (e) { mount(msg, h('span', { class: 'error' }, `Not JSON: ${e.message}`)); return; }
        try {
          const r = await save(next);
          navigate(r.url);
        } catch (e) { mount(msg, h('span', { class: 'error' }, e.message)); }
      },
    }, copy ? 'Save copy' : 'Save'),
    h('button', { type: 'button', onclick: () => { el.hidden = true; } }, 'Cancel')), msg);
  el.hidden = false;
}

// openAddPanel appends a panel at the bottom of the dashboard: a PromQL,
// LogQL or TraceQL query drawn as a chart, a stat, a table, logs or traces.
function openAddPanel(el, model, meta) {
  if (meta.provisioned) { openEditor(el, model, meta); return; }
  const f = h('form', { class: 'add-panel filters' },
    h('input', { name: 'title', placeholder: 'Title', 'aria-label': 'panel title', required: true }),
    h('select', { name: 'ds', 'aria-label': 'datasource' }, DATASOURCES.map((d) => h('option', { value: d.uid }, d.name))),
    h('select', { name: 'type', 'aria-label': 'panel type' }, [['timeseries', 'Time series'], ['stat', 'Stat'], ['table', 'Table'], ['logs', 'Logs'], ['traces', 'Traces']].map(([v, t]) => h('option', { value: v }, t))),
    h('input', { name: 'query', class: 'mono', placeholder: 'PromQL, LogQL or TraceQL', 'aria-label': 'panel query', required: true, size: 60 }),
    h('button', { type: 'submit' }, 'Add'));
  const msg = h('p', { class: 'small', role: 'status' });
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    const ds = DATASOURCES.find((d) => d.uid === f.elements.ds.value);
    const q = f.elements.query.value;
    const bottom = Math.max(0, ...(model.panels || []).map((p) => ((p.gridPos || {}).y || 0) + ((p.gridPos || {}).h || 0)));
    const target = ds.type === 'prometheus' ? { refId: 'A', expr: q } : ds.type === 'loki' ? { refId: 'A', expr: q } : { refId: 'A', query: q, queryType: /\|\s*\w+_over_time|\|\s*rate\(/.test(q) ? 'traceqlmetrics' : 'traceql' };
    const id = Math.max(0, ...(model.panels || []).map((p) => p.id || 0)) + 1;
    const next = { ...model, panels: [...(model.panels || []), { id, type: f.elements.type.value, title: f.elements.title.value, datasource: { type: ds.type, uid: ds.uid }, gridPos: { x: 0, y: bottom, w: 12, h: 8 }, targets: [{ ...target, datasource: { type: ds.type, uid: ds.uid } }] }] };
    try { const r = await save(next); navigate(r.url); } catch (err) { mount(msg, h('span', { class: 'error' }, err.message)); }
  });
  mount(el, f, msg);
  el.hidden = false;
}

// dashboardsPage lists the dashboards: /ui/dashboards.
export function dashboardsPage({ alive }) {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  api.get('/api/dashboards').then((ds) => {
    if (!alive()) return;
    mount(list, h('table', { class: 'grid dashboards' },
      h('thead', {}, h('tr', {}, ['Dashboard', 'Tags', 'Panels', 'Version'].map((c) => h('th', {}, c)))),
      h('tbody', {}, ds.map((d) => h('tr', { 'data-uid': d.uid },
        h('td', {}, link(`/ui/d/${encodeURIComponent(d.uid)}`, {}, d.title)),
        h('td', {}, (d.tags || []).map((t) => h('span', { class: 'tag small' }, t))),
        h('td', { class: 'num' }, String(d.panels)),
        h('td', { class: 'small muted' }, d.provisioned ? 'built in' : `v${d.version}, ${fmtTime(Date.parse(d.updated))}`))))));
  }).catch((e) => { if (alive()) mount(list, h('p', { class: 'error', role: 'alert' }, e.message)); });
  const create = async () => {
    try { const r = await save({ title: `New dashboard ${new Date().toISOString().slice(0, 16).replace('T', ' ')}`, schemaVersion: 39, panels: [], templating: { list: [] }, time: { from: 'now-1h', to: 'now' } }); navigate(r.url); } catch (e) { alert(e.message); }
  };
  return h('div', { class: 'page' }, h('h1', {}, 'Dashboards'),
    h('div', { class: 'filters' }, link('/ui/dashboards/import', { class: 'button' }, 'Import'), h('button', { type: 'button', onclick: create }, 'New dashboard')),
    list);
}

// importInputs finds what a Grafana export asks of the importer: its
// __inputs (datasources to pick, constants to set).
export function importInputs(model) {
  return (model.__inputs || []).map((i) => ({ name: i.name, type: i.type, pluginId: i.pluginId, label: i.label || i.name, value: i.value ?? '' }));
}

// applyImport replaces each ${INPUT} in the model with the chosen value
// (a datasource input with Sightline's datasource UID of that type) and
// drops the export-only fields, as Grafana's import does.
export function applyImport(model, values) {
  let text = JSON.stringify(model);
  for (const [name, value] of Object.entries(values)) text = text.split(`\${${name}}`).join(String(value).replace(/[\\"]/g, '\\$&'));
  const m = JSON.parse(text);
  for (const k of ['__inputs', '__requires', '__elements', 'id']) delete m[k];
  return m;
}

// importPage: /ui/dashboards/import. Paste or pick a Grafana dashboard
// JSON (an export, or the API's {dashboard, meta}), map its inputs and
// save it.
export function importPage() {
  const ta = h('textarea', { class: 'mono small', rows: 16, 'aria-label': 'dashboard JSON', placeholder: 'Paste a Grafana dashboard JSON here', spellcheck: 'false' });
  const file = h('input', { type: 'file', accept: '.json,application/json', 'aria-label': 'dashboard file' });
  const inputs = h('div', { class: 'import-inputs' });
  const msg = h('p', { class: 'small', role: 'status' });
  const overwrite = h('input', { type: 'checkbox', name: 'overwrite' });
  let model = null;
  const parse = () => {
    mount(msg);
    try {
      const j = JSON.parse(ta.value);
      model = j && j.dashboard && !j.panels && !j.rows ? j.dashboard : j;
    } catch (e) { model = null; mount(inputs); mount(msg, h('span', { class: 'error' }, `Not JSON: ${e.message}`)); return; }
    mount(inputs, h('p', { class: 'small' }, `"${model.title || '(untitled)'}": ${countPanels(model)} panels`), importInputs(model).map((i) => h('label', { class: 'var' }, h('span', { class: 'small muted' }, i.label),
      i.type === 'datasource'
        ? h('select', { 'data-input': i.name }, DATASOURCES.map((d) => h('option', { value: d.uid, selected: d.type === i.pluginId }, d.name)), SUPPORTED_DS.has(i.pluginId) ? null : h('option', { value: i.pluginId, selected: true }, `${i.pluginName || i.pluginId} (not supported)`))
        : h('input', { 'data-input': i.name, value: i.value }))));
  };
  ta.addEventListener('input', parse);
  file.addEventListener('change', async () => { if (file.files[0]) { ta.value = await file.files[0].text(); parse(); } });
  const go = async () => {
    if (!model) { parse(); if (!model) return; }
    const values = {};
    for (const el of inputs.querySelectorAll('[data-input]')) values[el.dataset.input] = el.value;
    try {
      const r = await save(applyImport(model, values), overwrite.checked);
      navigate(r.url);
    } catch (e) { mount(msg, h('span', { class: 'error', role: 'alert' }, e.message)); }
  };
  return h('div', { class: 'page' }, h('p', { class: 'small' }, link('/ui/dashboards', {}, 'Dashboards'), ' / '), h('h1', {}, 'Import a dashboard'),
    h('p', { class: 'muted small' }, 'A Grafana dashboard JSON whose panels query Prometheus, Loki or Tempo. Panels of other types or datasources are kept and shown as unsupported.'),
    file, ta, inputs, h('div', { class: 'filters' }, h('label', { class: 'small' }, overwrite, ' Replace a dashboard with the same UID'), h('button', { type: 'button', onclick: go }, 'Import')), msg);
}
