// Browser tests of Sightline's UI in Debian's Chromium, driven by
// playwright-core. e2e/ui_test.go starts Sightline with known data and runs
// this with its facts in the environment; it prints one JSON line of
// measurements and exits non-zero on the first failed check, leaving a
// screenshot of the page at that moment in ARTIFACTS.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const BASE = env('BASE');
const ARTIFACTS = env('ARTIFACTS');
const SHOTS = process.env.SCREENSHOTS || '';
const LOG_TRACE = env('LOG_TRACE'); // a trace with logs
const LOG_LINE = env('LOG_LINE'); // the body of one of its logs
const BIG_TRACE = env('BIG_TRACE'); // 10,000 spans
const XSS_TRACE = env('XSS_TRACE');
const EDGES = JSON.parse(env('EDGES')); // ["client->server", ...]
const OTLP_HTTP = env('OTLP_HTTP'); // the OTLP/HTTP receiver
const SILENCE = env('SILENCE'); // an Alertmanager silence of SpansFlowing for checkout
mkdirSync(ARTIFACTS, { recursive: true });
if (SHOTS) mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console error: ${m.text()}`); });
page.on('dialog', (d) => { problems.push(`dialog opened: ${d.message()}`); d.dismiss(); });
const results = {};
let current = '';

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    await page.screenshot({ path: join(ARTIFACTS, `failure-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
    console.error(`FAIL ${name}: ${e.message}`);
    await browser.close();
    process.exit(1);
  }
  if (problems.length) {
    await page.screenshot({ path: join(ARTIFACTS, `failure-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
    console.error(`FAIL ${name}: ${problems.join('; ')}`);
    await browser.close();
    process.exit(1);
  }
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

async function shot(name) {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

const T = { timeout: 20000 };

await step('search, open a trace, its logs, a log\'s span, span detail', async () => {
  await page.goto(`${BASE}/ui/traces`);
  const ta = page.getByLabel('TraceQL query');
  await ta.fill('');
  // Autocomplete offers attribute names from the tags API.
  await ta.type('{ resource.serv');
  await page.locator('.suggest li', { hasText: 'resource.service.name' }).first().waitFor(T);
  // ... and values after an operator; Tab takes the selected one.
  await ta.fill('');
  await ta.type('{ resource.service.name = "chec');
  await page.locator('.suggest li', { hasText: 'checkout' }).first().waitFor(T);
  await ta.press('Tab');
  check((await ta.inputValue()).startsWith('{ resource.service.name = "checkout"'), `completion gave ${await ta.inputValue()}`);
  // A bad query shows the parser's message with its position, and marks it.
  await ta.fill('{ status = }');
  await ta.press('Enter');
  const err = page.locator('.editor-error');
  await err.waitFor(T);
  check(/1:1\d/.test(await err.textContent()), `error without a position: ${await err.textContent()}`);
  check(await page.locator('.editor .t-err').count() > 0, 'the error position is not marked in the editor');
  await ta.fill(`{ trace:id = "${LOG_TRACE}" }`);
  await ta.press('Enter');
  const row = page.locator('#trace-results a', { hasText: LOG_TRACE.slice(0, 16) });
  await row.waitFor(T);
  await shot('traces');
  await row.click();
  await page.locator('#trace-id').waitFor(T);
  check((await page.locator('#trace-id').textContent()) === LOG_TRACE, 'the trace page shows another trace');
  const log = page.locator('#trace-logs li', { hasText: LOG_LINE }).first();
  await log.waitFor(T);
  await log.locator('button[data-span]').click();
  const detail = page.locator('#span-detail');
  await detail.locator('h2').waitFor(T);
  await detail.locator('#span-logs li', { hasText: LOG_LINE }).first().waitFor(T);
  check(/[?&]span=[0-9a-f]{16}/.test(page.url()), `the URL does not deep-link the span: ${page.url()}`);
  check(await detail.locator('table.kv').count() >= 2, 'span detail lacks attributes and resource');
  await shot('trace');
  // Keyboard: the next span down becomes the selected one.
  const before = new URL(page.url()).searchParams.get('span');
  await page.locator('.wf-scroll').focus();
  await page.keyboard.press('ArrowDown');
  check(new URL(page.url()).searchParams.get('span') !== before, 'ArrowDown did not move the selection');
  // The download is the trace as OTLP JSON.
  const [dl] = await Promise.all([page.waitForEvent('download'), page.locator('#download').click()]);
  const { readFile } = await import('node:fs/promises');
  const otlp = JSON.parse(await readFile(await dl.path(), 'utf8'));
  check(otlp.resourceSpans && otlp.resourceSpans.length > 0, 'the download is not OTLP JSON');
});

await step('trace statistics, flame graph and raw JSON', async () => {
  await page.goto(`${BASE}/ui/trace/${LOG_TRACE}`);
  await page.locator('.wf-row').first().waitFor(T);
  const spanCount = Number(/(\d+) spans/.exec(await page.locator('.trace-head p.muted').textContent())[1]);
  await page.locator('#trace-stats summary').click();
  await page.locator('#trace-stats-table tbody tr').first().waitFor(T);
  const counts = await page.locator('#trace-stats-table tbody tr td:nth-child(3)').allTextContents();
  check(counts.map(Number).reduce((a, b) => a + b, 0) === spanCount, `statistics count ${counts} for ${spanCount} spans`);
  // The flame graph: a bar per span; a click selects it.
  await page.locator('#flame summary').click();
  await page.locator('#flame-graph g.flame').first().waitFor(T);
  check(await page.locator('#flame-graph g.flame').count() === spanCount, 'not one flame bar per span');
  const bar = page.locator('#flame-graph g.flame').nth(1);
  const barSpan = await bar.getAttribute('data-span');
  await bar.locator('rect').click();
  await page.waitForURL(new RegExp(`span=${barSpan}`));
  await page.locator('#span-detail h2').waitFor(T);
  await page.locator('#flame').scrollIntoViewIfNeeded();
  await shot('flame');
  await page.locator('#raw-json summary').click();
  const raw = JSON.parse(await page.locator('#raw-json pre').textContent());
  const n = raw.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)).length;
  check(n === spanCount, `raw JSON has ${n} spans for ${spanCount}`);
});

await step('compare two traces', async () => {
  // With itself: every operation in both, with the same counts.
  await page.goto(`${BASE}/ui/compare/${LOG_TRACE}/${LOG_TRACE}`);
  await page.locator('#compare-table tbody tr').first().waitFor(T);
  const states = await page.locator('#compare-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.state));
  check(states.every((s) => s === 'same'), `a trace differs from itself: ${states}`);
  // From the trace page, with another: what only one has is marked.
  await page.goto(`${BASE}/ui/trace/${LOG_TRACE}`);
  await page.locator('#compare-with').fill(BIG_TRACE);
  await page.locator('#compare-with').press('Enter');
  await page.waitForURL(new RegExp(`/ui/compare/${LOG_TRACE}/${BIG_TRACE}$`));
  await page.locator('#compare-table tbody tr').first().waitFor(T);
  const other = await page.locator('#compare-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.state));
  check(other.includes('removed') && other.includes('added'), `no removed and added operations: ${other}`);
  check((await page.locator('#trace-b').textContent()) === BIG_TRACE, 'B is not the trace entered');
  // Two traces of the same operation, as one compares them to see what
  // a slow one did differently (the README's screenshot).
  const pair = await page.evaluate(async () => {
    const r = await (await fetch(`/api/search?q=${encodeURIComponent('{ }')}&limit=500&start=${Math.floor(Date.now() / 1000) - 3600}&end=${Math.ceil(Date.now() / 1000)}`)).json();
    const by = {};
    for (const t of r.traces || []) (by[`${t.rootServiceName} ${t.rootTraceName}`] ||= []).push(t);
    const g = Object.values(by).filter((ts) => ts.length > 1).sort((a, b) => b.length - a.length)[0] || [];
    g.sort((a, b) => (a.durationMs || 0) - (b.durationMs || 0));
    return g.length > 1 ? [g[0].traceID, g[g.length - 1].traceID] : null;
  });
  check(pair, 'no two traces of one operation to compare');
  await page.goto(`${BASE}/ui/compare/${pair[0]}/${pair[1]}`);
  await page.locator('#compare-table tbody tr').first().waitFor(T);
  await shot('compare');
});

await step('logs to trace', async () => {
  await page.goto(`${BASE}/ui/logs?query=${encodeURIComponent('{service_name=~".+"} |= ' + JSON.stringify(LOG_LINE))}`);
  const a = page.locator('#log-lines a.trace-link').first();
  await a.waitFor(T);
  await page.locator('.volume svg rect').first().waitFor(T);
  await shot('logs');
  const id = await a.getAttribute('data-trace');
  await a.click();
  await page.locator('#trace-id').waitFor(T);
  check((await page.locator('#trace-id').textContent()) === id, 'the log opened another trace');
  await page.locator('#span-detail h2').waitFor(T);
  check(page.url().includes('span='), 'the log\'s span is not selected');
});

await step('a log line opens its details: labels, fields, filters and context', async () => {
  await page.goto(`${BASE}/ui/logs?range=15m&query=${encodeURIComponent('{service_name=~".+"} |= ' + JSON.stringify(LOG_LINE))}`);
  const row = page.locator('#log-lines tbody tr.line').first();
  await row.waitFor(T);
  const service = await row.locator('.svc').textContent();
  await row.locator('td.body').click();
  const drawer = page.locator('#log-lines tr.details-row .log-details');
  await drawer.waitFor(T);
  // Every label, as text, with its value.
  const svcRow = drawer.locator('table.labels tr[data-label="service_name"]');
  check((await svcRow.locator('td.value').textContent()) === service, 'the drawer does not show the line\'s service');
  check(await drawer.locator('table.labels tr[data-label="trace_id"]').count() === 1, 'structured metadata (trace_id) is missing');
  await shot('log-details');
  // Context: the lines around it in its stream, the line itself marked.
  await drawer.locator('button.show-context').click();
  await drawer.locator('table.context-lines tr.this-line').waitFor(T);
  check((await drawer.locator('table.context-lines tr.this-line td.body').textContent()) === LOG_LINE, 'the context does not mark the line');
  check(await drawer.locator('table.context-lines tr').count() > 1, 'no lines around it');
  // Filter out the service: the query says so, and its lines are gone.
  await svcRow.locator('button.filter-out').click();
  await page.waitForURL((u) => decodeURIComponent(u.toString().replace(/\+/g, ' ')).includes(`| service_name!=${JSON.stringify(service)}`));
  await page.locator('#log-count').waitFor(T);
  await page.waitForFunction(() => !document.querySelector('#log-count').textContent.includes('Loading'), null, T);
  const services = await page.locator('#log-lines tbody tr.line .svc').allTextContents();
  check(!services.includes(service), `filtered-out service still listed: ${services}`);
  // A click closes the drawer.
  await page.goto(`${BASE}/ui/logs?range=15m&query=${encodeURIComponent('{service_name=~".+"} |= ' + JSON.stringify(LOG_LINE))}`);
  await page.locator('#log-lines tbody tr.line td.body').first().click();
  await page.locator('#log-lines tr.details-row').waitFor(T);
  await page.locator('#log-lines tbody tr.line td.body').first().click();
  await page.locator('#log-lines tr.details-row').waitFor({ ...T, state: 'detached' });
});

await step('repeated log lines fold when deduplication is on', async () => {
  const now = BigInt(Date.now()) * 1000000n;
  const rec = (i, body) => ({ timeUnixNano: String(now - BigInt(10 - i) * 1000000n), severityNumber: 13, body: { stringValue: body } });
  const resp = await fetch(`${OTLP_HTTP}/v1/logs`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ resourceLogs: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'dedup-test' } }] },
      scopeLogs: [{ logRecords: [rec(0, 'retry 1 of 3'), rec(1, 'retry 2 of 3'), rec(2, 'retry 2 of 3'), rec(3, 'retry 3 of 3'), rec(4, 'gave up')] }] }] }),
  });
  check(resp.ok, `OTLP/HTTP logs: ${resp.status}`);
  const rowsWith = async (dedup) => {
    await page.goto(`${BASE}/ui/logs?range=15m&query=${encodeURIComponent('{service_name="dedup-test"}')}${dedup ? `&dedup=${dedup}` : ''}`);
    await page.locator('#log-lines tbody tr.line', { hasText: 'gave up' }).waitFor(T);
    return page.locator('#log-lines tbody tr.line td.body').allTextContents();
  };
  const none = await rowsWith('');
  check(none.length === 5, `without dedup: ${none}`);
  const exact = await rowsWith('exact');
  check(JSON.stringify(exact) === JSON.stringify(['gave up', 'retry 3 of 3', '×2retry 2 of 3', 'retry 1 of 3']), `exact: ${JSON.stringify(exact)}`);
  const numbers = await rowsWith('numbers');
  check(JSON.stringify(numbers) === JSON.stringify(['gave up', '×4retry 3 of 3']), `ignoring numbers: ${JSON.stringify(numbers)}`);
  check((await page.locator('#log-count').textContent()).includes('3 folded'), 'the count does not say how many were folded');
  // The selector sets the URL.
  await page.locator('#l-dedup').selectOption('none');
  await page.waitForURL((u) => !u.searchParams.has('dedup'));
});

await step('the log volume histogram draws each bar at its count', async () => {
  await page.goto(`${BASE}/ui/logs?query=${encodeURIComponent('{service_name=~".+"}')}&range=15m`);
  await page.locator('.volume svg rect.vbar').first().waitFor(T);
  const bars = await page.evaluate(() => [...document.querySelectorAll('.volume svg rect.vbar')].map((r) => {
    const b = r.getBoundingClientRect();
    return { attr: Number(r.getAttribute('height')), drawn: b.height, y: Number(r.getAttribute('y')), count: parseFloat(r.querySelector('title').textContent.split(': ')[1]) };
  }));
  check(bars.length > 1, `${bars.length} bars`);
  // Drawn as tall as computed (no stylesheet rule overrides the height),
  // never above the chart's top, and in proportion to the counts.
  for (const b of bars) check(Math.abs(b.drawn - b.attr) < 0.5 && b.y >= 0, `bar drawn ${b.drawn}px for ${b.attr}px at y=${b.y}`);
  const per = bars.filter((b) => b.count > 0).map((b) => b.attr / b.count);
  check(Math.max(...per) - Math.min(...per) < 0.01, `bar heights out of proportion to counts: ${JSON.stringify(bars.slice(0, 8))}`);
  check(new Set(bars.map((b) => b.count)).size === 1 || new Set(bars.map((b) => Math.round(b.attr))).size > 1, 'every bar the same height for different counts');
});

await step('live tail shows a line sent after the page opened', async () => {
  await page.goto(`${BASE}/ui/logs?range=15m&query=${encodeURIComponent('{service_name="tail-test"}')}`);
  await page.locator('#log-count').waitFor(T);
  await page.locator('#tail').check();
  const body = `tailed line ${Date.now()}`;
  const resp = await fetch(`${OTLP_HTTP}/v1/logs`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ resourceLogs: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'tail-test' } }] },
      scopeLogs: [{ logRecords: [{ timeUnixNano: String(BigInt(Date.now()) * 1000000n), severityNumber: 9, severityText: 'INFO', body: { stringValue: body } }] }] }] }),
  });
  check(resp.ok, `OTLP/HTTP logs: ${resp.status}`);
  await page.locator('#log-lines tbody tr', { hasText: body }).waitFor(T);
});

await step('the landing page shows the newest trace first', async () => {
  // A trace sent now is the newest of all; the landing search ({ } over
  // the default range) must show it first, not a slice of older ones.
  const hex = (n) => Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');
  const name = `landing ${hex(8)}`;
  const now = BigInt(Date.now()) * 1000000n;
  const resp = await fetch(`${OTLP_HTTP}/v1/traces`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'landing-test' } }] },
      scopeSpans: [{ spans: [{ traceId: hex(32), spanId: hex(16), name, kind: 2,
        startTimeUnixNano: String(now - 5000000n), endTimeUnixNano: String(now) }] }] }] }),
  });
  check(resp.ok, `OTLP/HTTP traces: ${resp.status}`);
  await page.goto(`${BASE}/ui/traces`);
  const first = page.locator('#trace-results tbody tr').first();
  await first.waitFor(T);
  const text = await first.textContent();
  check(text.includes(name), `the first row is not the newest trace: ${text}`);
});

await step('a 250µs trace reads 250µs in the trace view, <1ms in the search list', async () => {
  const hex = (n) => Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');
  const id = hex(32);
  const now = BigInt(Date.now()) * 1000000n;
  const resp = await fetch(`${OTLP_HTTP}/v1/traces`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'fast' } }] },
      scopeSpans: [{ spans: [{ traceId: id, spanId: hex(16), name: 'cache hit', kind: 2,
        startTimeUnixNano: String(now - 250000n), endTimeUnixNano: String(now) }] }] }] }),
  });
  check(resp.ok, `OTLP/HTTP traces: ${resp.status}`);
  await page.goto(`${BASE}/ui/trace/${id}`);
  const head = page.locator('p.muted', { hasText: ' spans · ' }).first();
  await head.waitFor(T);
  check((await head.textContent()).includes(' · 250µs · '), `the trace reads ${await head.textContent()}`);
  await page.locator('.wf-row .wf-dur', { hasText: '250µs' }).first().waitFor(T);
  // Tempo's search answers whole milliseconds: the list says <1ms, not 0.
  await page.goto(`${BASE}/ui/traces?q=${encodeURIComponent('{ resource.service.name = "fast" }')}`);
  const row = page.locator('#trace-results tbody tr').first();
  await row.waitFor(T);
  check((await row.textContent()).includes('<1ms'), `the search row reads ${await row.textContent()}`);
});

await step('a search result of 1,000 traces renders at once', async () => {
  const t0 = Date.now();
  await page.goto(`${BASE}/ui/traces?range=15m&limit=1000&q=${encodeURIComponent('{ }')}`);
  await page.locator('#trace-results tbody tr').nth(999).waitFor(T);
  results.search1000Ms = Date.now() - t0;
  // The page reports how long the search API took.
  results.search1000ApiMs = Number(/, (\d+) ms/.exec(await page.locator('#result-count').textContent())[1]);
  results.search1000RenderMs = Number(await page.locator('section.results').getAttribute('data-render-ms'));
  const n = await page.locator('#trace-results tbody tr').count();
  check(n === 1000, `${n} rows for a limit of 1000`);
  // The scatter draws in a ResizeObserver callback, just after the table.
  await page.locator('.chart-wrap circle.dot').nth(999).waitFor({ ...T, state: 'attached' });
  check(await page.locator('.chart-wrap circle.dot').count() === 1000, 'not one scatter dot per trace');
  const dotTrace = await page.locator('.chart-wrap circle.dot').last().getAttribute('data-trace');
  await page.locator('.chart-wrap circle.dot').last().dispatchEvent('click');
  await page.locator('#trace-id').waitFor(T);
  check((await page.locator('#trace-id').textContent()).endsWith(dotTrace), 'the scatter dot opened another trace');
});

await step('services, service page, exemplar, trace', async () => {
  await page.goto(`${BASE}/ui/services?range=15m`);
  const svc = page.locator('#services a[data-service="checkout"]');
  await svc.waitFor(T);
  const rows = await page.locator('#services tbody tr').count();
  check(rows >= 5, `only ${rows} services listed`);
  // The table summarises the range chosen, and says so.
  const note = await page.locator('p.muted', { hasText: 'rates and latency over' }).textContent();
  check(note.includes('over the selected 15m,'), `services note: ${note}`);
  await shot('services');
  // While its trace searches are held back, the service page says it is
  // loading them; once they answer, it lists them.
  let release;
  const held = new Promise((r) => { release = r; });
  await page.route('**/api/search?*', async (route) => { await held; await route.continue(); });
  await svc.click();
  await page.waitForURL(/\/ui\/service\/checkout\?range=15m/);
  await page.locator('#slowest p.muted', { hasText: 'Loading' }).waitFor(T);
  await page.locator('#failing p.muted', { hasText: 'Loading' }).waitFor(T);
  release();
  // Waits for the held handlers to pass their requests on.
  await page.unrouteAll({ behavior: 'wait' });
  await page.waitForFunction(() => !document.querySelector('#slowest').textContent.includes('Loading'), null, T);
  const dot = page.locator('#latency-chart circle.dot').first();
  await dot.waitFor(T);
  // Exemplar dots overlap where latencies agree: open one by keyboard.
  await dot.focus();
  await dot.press('Enter');
  await page.locator('#trace-id').waitFor(T);
  check(/^[0-9a-f]{32}$/.test(await page.locator('#trace-id').textContent()), 'the exemplar opened no trace');
  await page.locator('.wf-row').first().waitFor(T);
});

await step('service map shows the known topology', async () => {
  await page.goto(`${BASE}/ui/map?range=15m`);
  await page.locator('#service-map g[data-edge]').first().waitFor(T);
  const edges = await page.locator('#service-map g[data-edge]').evaluateAll((els) => els.map((e) => e.getAttribute('data-edge')));
  const missing = EDGES.filter((e) => !edges.includes(e));
  check(missing.length === 0, `edges missing from the map: ${missing.join(', ')} (shown: ${edges.join(', ')})`);
  // Every call is busy in this window: no idle ones to show or hide.
  check(!(await page.locator('#map-idle').isVisible()), 'the idle-calls switch shows with no idle calls');
  results.mapEdges = edges.length;
  // Readable: no two edge labels overlap, and no edge runs through a
  // service other than its own two.
  const geo = await page.locator('#service-map svg').evaluate((svg) => {
    const boxes = [...svg.querySelectorAll('.edge-label')].map((t) => t.getBBox());
    let overlaps = 0;
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i]; const b = boxes[j];
        if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height) overlaps++;
      }
    }
    const nodes = [...svg.querySelectorAll('g.node')].map((g) => {
      const m = g.transform.baseVal.consolidate().matrix;
      const r = g.querySelector('rect');
      return { name: g.dataset.node, x: m.e, y: m.f, w: r.width.baseVal.value, h: r.height.baseVal.value };
    });
    const through = [];
    for (const g of svg.querySelectorAll('g.edge')) {
      const [client, server] = g.dataset.edge.split('->');
      const path = g.querySelector('path');
      const len = path.getTotalLength();
      for (let l = 0; l <= len; l += 4) {
        const p = path.getPointAtLength(l);
        const hit = nodes.find((n) => n.name !== client && n.name !== server && p.x > n.x + 1 && p.x < n.x + n.w - 1 && p.y > n.y + 1 && p.y < n.y + n.h - 1);
        if (hit) { through.push(`${g.dataset.edge} through ${hit.name}`); break; }
      }
    }
    return { overlaps, through };
  });
  check(geo.overlaps === 0, `${geo.overlaps} pairs of edge labels overlap`);
  check(geo.through.length === 0, `edges run through services: ${geo.through.join(', ')}`);
  await shot('map');
  await page.locator('#service-map g[data-node="frontend"]').click();
  await page.waitForURL(/\/ui\/service\/frontend/);
});

await step('PromQL explorer charts a query', async () => {
  await page.goto(`${BASE}/ui/metrics?range=15m&query=${encodeURIComponent('sum by (service_name) (rate(traces_spanmetrics_calls_total[1m]))')}`);
  await page.locator('#series-count').waitFor(T);
  const n = Number((await page.locator('#series-count').textContent()).split(' ')[0]);
  check(n >= 5, `${n} series charted`);
  // The chart draws once its box has a width (a ResizeObserver callback),
  // just after the count appears.
  await page.locator('#prom-result svg path.line').first().waitFor({ ...T, state: 'attached' });
  const lines = await page.locator('#prom-result svg path.line').count();
  check(lines === n, `${lines} lines for ${n} series`);
  check(await page.locator('#prom-table tbody tr').count() === n, 'not one table row per series');
  check(!(await page.locator('.custom-range').isVisible()), 'the custom range inputs show for a preset range');
  // Dragging across the chart zooms to that time range, as in Grafana.
  const box = await page.locator('#prom-result svg').first().boundingBox();
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForURL(/[?&]from=\d+/);
  const u = new URL(page.url());
  const span = Number(u.searchParams.get('to')) - Number(u.searchParams.get('from'));
  check(span > 60 && span < 450, `zoomed to ${span}s of a 900s range`);
  check(await page.locator('#range').inputValue() === 'custom', 'the picker does not show the custom range');
  check(await page.locator('.custom-range input[name=from]').isVisible(), 'the custom range inputs are hidden');
  await page.locator('#series-count').waitFor(T);
});

await step('metrics: several queries on one chart, and the query library', async () => {
  const A = 'sum by (service_name) (rate(traces_spanmetrics_calls_total[1m]))';
  const B = 'count(traces_spanmetrics_calls_total)';
  await page.goto(`${BASE}/ui/metrics?range=15m&query=${encodeURIComponent(A)}`);
  await page.locator('#series-count').waitFor(T);
  const nA = Number((await page.locator('#series-count').textContent()).split(' ')[0]);
  // A second query, as Explore's query B: both on one chart, named by letter.
  await page.locator('button', { hasText: '+ Add query' }).click();
  await page.getByLabel('PromQL query B').fill(B);
  await page.getByLabel('PromQL query B').press('Enter');
  await page.waitForURL((u) => u.searchParams.getAll('query').length === 2);
  await page.locator('#series-count', { hasText: `${nA + 1} series` }).waitFor(T);
  await page.locator('#prom-result svg path.line').first().waitFor({ ...T, state: 'attached' });
  const names = await page.locator('#prom-result svg path.line').evaluateAll((ps) => ps.map((p) => p.dataset.series));
  check(names.filter((n) => n.startsWith('A: ')).length === nA && names.filter((n) => n.startsWith('B: ')).length === 1, `series ${names}`);
  await page.getByLabel('remove query B').click();
  await page.waitForURL((u) => u.searchParams.getAll('query').length === 1);
  // Saved on the server: it is there after leaving the page, opens from
  // the list, and is deleted from it.
  await page.getByLabel('name to save the query as').fill('calls by service');
  await page.locator('button', { hasText: 'Save query' }).click();
  await page.locator('.saved-queries [role=status]', { hasText: 'saved as "calls by service"' }).waitFor(T);
  await page.goto(`${BASE}/ui/metrics?range=15m&query=${encodeURIComponent(B)}`);
  const pick = page.locator('select[aria-label="saved queries"]');
  const listed = () => pick.evaluate((el) => [...el.options].map((o) => o.textContent));
  await page.waitForFunction(() => [...document.querySelector('select[aria-label="saved queries"]').options].some((o) => o.textContent === 'calls by service'), null, T);
  await pick.selectOption({ label: 'calls by service' });
  await page.waitForURL((u) => u.searchParams.get('query') === A);
  await page.locator('#series-count', { hasText: `${nA} series` }).waitFor(T);
  await page.waitForFunction(() => document.querySelector('select[aria-label="saved queries"]').selectedOptions[0].textContent === 'calls by service', null, T);
  await page.locator('.saved-queries button', { hasText: 'Delete' }).click();
  await page.locator('.saved-queries [role=status]', { hasText: 'deleted' }).waitFor(T);
  check(!(await listed()).includes('calls by service'), `the deleted query is still listed: ${await listed()}`);
});

await step('service map of 50 services: no label on another call or label', async () => {
  const r = await page.evaluate(async () => {
    const { drawMap } = await import('/ui/map.js');
    let seed = 11;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    // Five tiers, as a shop's edge, APIs, domain services, stores and
    // queues; each service calls two or three of the next tiers, and a
    // few call back up.
    const tiers = [4, 9, 15, 13, 9];
    const names = [];
    const tierOf = [];
    tiers.forEach((n, t) => { for (let i = 0; i < n; i++) { names.push(`t${t}-service-${i}`); tierOf.push(t); } });
    const edges = [];
    const seen = new Set();
    const add = (a, b) => {
      const k = `${a}->${b}`;
      if (a === b || seen.has(k)) return;
      seen.add(k);
      edges.push({ client: names[a], server: names[b], rate: 0.5 + rnd() * 80, errors: rnd() < 0.2 ? rnd() * 0.2 : 0, p95: 0.002 + rnd() * 0.6 });
    };
    names.forEach((_, a) => {
      const t = tierOf[a];
      if (t === tiers.length - 1) return;
      const k = 2 + Math.floor(rnd() * 2);
      for (let j = 0; j < k; j++) {
        const tt = Math.min(tiers.length - 1, t + 1 + (rnd() < 0.25 ? 1 : 0));
        const pool = names.map((_, i) => i).filter((i) => tierOf[i] === tt);
        add(a, pool[Math.floor(rnd() * pool.length)]);
      }
    });
    for (let j = 0; j < 3; j++) add(names.length - 1 - j, j + 5);
    const svg = drawMap(names, edges);
    document.body.append(svg);
    const labels = [...svg.querySelectorAll('g.edge')].map((g) => ({ edge: g.dataset.edge, t: g.querySelector('.edge-label'), path: g.querySelector('path') })).filter((x) => x.t);
    const boxes = labels.map((x) => x.t.getBBox());
    const inside = (b, p) => p.x > b.x + 0.5 && p.x < b.x + b.width - 0.5 && p.y > b.y + 0.5 && p.y < b.y + b.height - 0.5;
    const problems = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i]; const b = boxes[j];
        if (a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height) problems.push(`label ${labels[i].edge} on label ${labels[j].edge}`);
      }
    }
    for (const g of svg.querySelectorAll('g.edge')) {
      const path = g.querySelector('path');
      const len = path.getTotalLength();
      for (let l = 0; l <= len; l += 2) {
        const p = path.getPointAtLength(l);
        const k = boxes.findIndex((b, i) => labels[i].edge !== g.dataset.edge && inside(b, p));
        if (k >= 0) { problems.push(`label ${labels[k].edge} on the line of ${g.dataset.edge}`); break; }
      }
    }
    svg.remove();
    return { services: names.length, edges: edges.length, labels: labels.length, problems };
  });
  check(r.services === 50 && r.edges >= 80 && r.labels === r.edges, `drew ${JSON.stringify(r)}`);
  check(r.problems.length === 0, `${r.problems.length} overlaps: ${r.problems.slice(0, 5).join('; ')}`);
  results.map50Edges = r.edges;
});

await step('telemetry is shown as text, never run', async () => {
  await page.addInitScript(() => { window.__xss = 0; });
  await page.goto(`${BASE}/ui/trace/${XSS_TRACE}`);
  await page.locator('#trace-id').waitFor(T);
  await page.locator('.wf-row').first().click();
  await page.locator('#span-detail h2').waitFor(T);
  await page.locator('#trace-logs li').first().waitFor(T);
  const text = await page.locator('main').innerText();
  for (const s of ['<script>window.__xss=1</script>', '<img src=x onerror=window.__xss=1>', '<svg onload=window.__xss=1>', '<b>TypeError</b>', 'cache <u>miss</u>']) {
    check(text.includes(s), `payload not shown as text: ${s}`);
  }
  // The span detail shows the exception with its stack trace, the other
  // event, and the link, which opens the linked trace at its span.
  const detail = page.locator('#span-detail');
  const scope = await detail.locator('p.scope').innerText();
  check(scope.includes('/internal/<i>scope</i>/with/a/very/long/path 0.71.0'), `scope: ${scope}`);
  const overflow = await detail.evaluate((el) => el.scrollWidth - el.clientWidth);
  check(overflow <= 0, `the span panel overflows sideways by ${overflow}px`);
  const stack = await detail.locator('.exception pre.stack').innerText();
  check(stack.includes('TypeError: <script>window.__xss=1</script>') && stack.includes('at render (app.js:12)'), `stack trace: ${stack}`);
  check((await detail.locator('.exception').innerText()).includes('cannot read <i>x</i>'), 'the exception message is missing');
  const lnk = detail.locator('a', { hasText: BIG_TRACE });
  await lnk.click();
  await page.waitForURL(new RegExp(`/ui/trace/${BIG_TRACE}\\?span=0500000001020304`));
  await page.locator('#span-detail h2').waitFor(T);
  await page.goto(`${BASE}/ui/trace/${XSS_TRACE}`);
  await page.locator('#trace-id').waitFor(T);
  await page.goto(`${BASE}/ui/logs?query=${encodeURIComponent('{service_name=~".+"} |= "onerror"')}`);
  await page.locator('#log-lines tbody tr').first().waitFor(T);
  // Its details drawer shows every label and field as text too.
  await page.locator('#log-lines tbody tr.line td.body').first().click();
  await page.locator('#log-lines tr.details-row .log-details table.labels tr').first().waitFor(T);
  await page.goto(`${BASE}/ui/traces?q=${encodeURIComponent('{ name =~ ".*script.*" }')}`);
  await page.locator('#trace-results tbody tr').first().waitFor(T);
  check(await page.evaluate(() => window.__xss) === 0, 'a payload ran');
  check(await page.evaluate(() => document.querySelectorAll('main img, main script, main svg [onload]').length) === 0, 'a payload became an element');
});

await step('a 10,000-span trace opens and scrolls', async () => {
  const t0 = Date.now();
  await page.goto(`${BASE}/ui/trace/${BIG_TRACE}`);
  await page.locator('.wf-row').first().waitFor(T);
  results.bigTraceOpenMs = Date.now() - t0;
  results.bigTraceRenderMs = Number(await page.locator('.trace-page').getAttribute('data-render-ms'));
  const head = await page.locator('.trace-head').innerText();
  check(head.includes('10000 spans'), `trace head: ${head}`);
  const rows = await page.locator('.wf-row').count();
  check(rows < 200, `${rows} rows in the DOM: the waterfall is not virtualised`);
  const t1 = Date.now();
  for (let i = 1; i <= 20; i++) {
    await page.locator('.wf-scroll').evaluate((el, f) => { el.scrollTop = el.scrollHeight * f; }, i / 20);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  }
  results.bigTraceScroll20Ms = Date.now() - t1;
  const last = await page.locator('.wf-row').last().getAttribute('data-span');
  check(last !== null, 'no rows after scrolling to the end');
  await page.locator('.wf-row').last().click();
  await page.locator('#span-detail h2').waitFor(T);
  // Find in trace: 270 of the 10,000 spans are named op-36. Enter steps
  // through them in waterfall order, opening collapsed parents; Shift+Enter
  // steps back; the term is in the URL.
  await page.locator('.wf-scroll').evaluate((el) => { el.scrollTop = 0; });
  await page.locator('.wf-row[data-span="0500000001020304"] button.tog').click(); // collapse everything under the root
  await page.locator('.wf-row[data-span="0500000001020304"] button.tog[aria-expanded="false"]').waitFor(T);
  check(await page.locator('.wf-row').count() === 1, 'collapsing the root left rows');
  const t2 = Date.now();
  await page.locator('#find').fill('OP-36');
  await page.locator('#find-count', { hasText: '270 matches' }).waitFor(T);
  results.bigTraceFindMs = Date.now() - t2;
  const spanParam = () => new URL(page.url()).searchParams.get('span');
  await page.locator('#find').press('Enter');
  await page.locator('#find-count', { hasText: '1 of 270 matches' }).waitFor(T);
  const first = spanParam();
  await page.locator(`.wf-row.sel.match[data-span="${first}"]`).waitFor(T);
  await page.locator('#find').press('Enter');
  await page.locator('#find-count', { hasText: '2 of 270 matches' }).waitFor(T);
  const second = spanParam();
  check(second !== first, 'Enter did not move to the next match');
  await page.locator(`.wf-row.sel.match[data-span="${second}"]`).waitFor(T);
  check((await page.locator('#span-detail h2').innerText()) === 'op-36', 'the detail shows another span');
  check(new URL(page.url()).searchParams.get('find') === 'OP-36', 'the find term is not in the URL');
  await page.locator('#find').press('Shift+Enter');
  await page.locator('#find-count', { hasText: '1 of 270 matches' }).waitFor(T);
  check(spanParam() === first, 'Shift+Enter did not go back');
  // Span filters: key=value compares exactly (index=42 is one span, not
  // the 111 whose index starts with 42), terms combine, durations compare.
  await page.locator('#find').fill('index=42');
  await page.locator('#find-count', { hasText: /^1 match$/ }).waitFor(T);
  await page.locator('#find').fill('service=orders name=op-1');
  await page.locator('#find-count', { hasText: /^55 matches$/ }).waitFor(T);
  await page.locator('#find').fill('duration>=4ms');
  await page.locator('#find-count', { hasText: /^11 matches$/ }).waitFor(T);
  // Only matches: the span with index 42 and its two ancestors remain.
  await page.locator('#find').fill('index=42');
  await page.locator('#find-only').check();
  await page.waitForFunction(() => document.querySelectorAll('.wf-row').length === 3, null, T);
  const kept = await page.locator('.wf-row').evaluateAll((rs) => rs.map((r) => r.dataset.span));
  check(JSON.stringify(kept) === JSON.stringify(['0500000001020304', '0500000401020304', '0500002a01020304']), `only matches kept ${kept}`);
  check(new URL(page.url()).searchParams.get('only') === '1', 'only matches is not in the URL');
  await page.locator('#find-only').uncheck();
  await page.waitForFunction(() => document.querySelectorAll('.wf-row').length > 3, null, T);
});

await step('Sightline\'s own page shows the store', async () => {
  await page.goto(`${BASE}/ui/self`);
  const store = page.locator('.card', { hasText: 'Store' }).locator('table.kv');
  await store.waitFor(T);
  const text = await store.innerText();
  check(/spans_in_head\s+\d+/.test(text) && /metrics_series\s+[1-9]/.test(text), `store status: ${text}`);
  check(/memory_budget\s+[1-9]/.test(text) && /refused_spans\s+\d+/.test(text), `store memory in the status: ${text}`);
  check(/metrics_max_series\s+[1-9]/.test(text) && /metrics_refused_samples\s+0/.test(text), `metrics series limit in the status: ${text}`);
  await page.locator('.card', { hasText: 'Metric series in the head' }).locator('p.big').waitFor(T);
  const seriesShown = Number((await page.locator('.card', { hasText: 'Metric series in the head' }).locator('p.big').innerText()).replace(/[^0-9.]/g, ''));
  check(seriesShown > 0, `metric series chart: ${seriesShown}`);
});

await step('the UI\'s own functions (span durations, critical path, map layout and labels, tokens, error positions)', async () => {
  const r = await page.evaluate(async () => {
    const { criticalPath, parseTrace } = await import('/ui/trace.js');
    // A double holds epoch nanoseconds only to 256 ns: subtracting two
    // Numbers made this 250 µs span 250.112 µs.
    const exact = parseTrace({ resourceSpans: [{ scopeSpans: [{ spans: [{ spanId: 'a', startTimeUnixNano: '1764777600123456001', endTimeUnixNano: '1764777600123706001' }] }] }] }).spans[0].dur;
    const { layers, layout, placeLabels } = await import('/ui/map.js');
    const { tokens, errorPosition } = await import('/ui/editor.js');
    // root 0..100 with children a 0..30, b 10..60 (inside a? no: overlaps),
    // c 60..95; the path is c, then b (ends at 60 <= c's start), not a.
    const sp = (id, start, end, children = []) => ({ id, start, end, children });
    const a = sp('a', 0, 30); const b = sp('b', 10, 60); const c = sp('c', 60, 95);
    const root = sp('r', 0, 100, [a, b, c]);
    const cp = [...criticalPath([root])].sort().join(',');
    const cols = layers(['db', 'api', 'web', 'auth'], [{ client: 'web', server: 'api' }, { client: 'api', server: 'db' }, { client: 'api', server: 'auth' }, { client: 'auth', server: 'db' }]);
    const E = (pairs) => pairs.map(([client, server]) => ({ client, server }));
    // In name order a -> x and b -> w cross; the barycentre uncrosses them.
    const crossed = layout(['a', 'b', 'w', 'x'], E([['a', 'x'], ['b', 'w']]));
    // web -> db spans three columns: it passes through two waypoints, and
    // nothing crosses.
    const long = layout(['db', 'api', 'web', 'auth'], E([['web', 'api'], ['api', 'db'], ['api', 'auth'], ['auth', 'db'], ['web', 'db']]));
    // A call back to an earlier column has no chain: it loops below.
    const cycle = layout(['a', 'b'], E([['a', 'b'], ['b', 'a']]));
    // A longer cycle is cut at its back edge, not stretched over columns.
    const loop = layers(['a', 'b', 'c', 'd'], E([['a', 'b'], ['b', 'c'], ['c', 'a'], ['c', 'd']]));
    // Labels take their first free candidate, else move down just clear
    // of what they hit, services included.
    const L = (...at) => ({ w: 100, h: 14, at });
    // Time (recorded, not asserted) to lay out 150 services with 447 calls
    // placed at random among earlier services: far denser than real maps.
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const names = Array.from({ length: 150 }, (_, i) => `svc-${i}`);
    const many = [];
    for (let i = 1; i < names.length; i++) for (let k = 0; k < 3; k++) many.push({ client: names[Math.floor(rnd() * i)], server: names[i] });
    const t0 = performance.now();
    const dense = layout(names, many);
    const layoutMs = performance.now() - t0;
    const labs = placeLabels([L([50, 20], [50, 60]), L([60, 22], [200, 22]), L([60, 24]), L([50, 100])], [{ x: 0, y: 90, w: 100, h: 20 }]).map((l) => [l.x, l.y]);
    const toks = tokens('{ span.http.status_code >= 500 && name = "GET /" }').filter(([k]) => k !== 'plain').map(([k, t]) => `${k}:${t}`);
    return { cp, exact, cols, toks, pos: errorPosition('1:12: unexpected }'), lpos: errorPosition('parse error at line 2, col 3: x'),
      crossed: [crossed.crossings, crossed.cols[1].join(',')], long: [long.crossings, long.chains[4].length, long.cols.map((c) => c.length).join(',')],
      cycle: cycle.chains.map((c) => c === null), loop, labs, layoutMs, dense: dense.cols.flat().filter((n) => !n.startsWith('\u0000')).length };
  });
  check(r.cp === 'b,c,r', `critical path ${r.cp}`);
  check(r.exact === 250000, `a 250 µs span lasts ${r.exact} ns`);
  check(JSON.stringify(r.cols) === JSON.stringify([['web'], ['api'], ['auth'], ['db']]), `layers ${JSON.stringify(r.cols)}`);
  check(r.toks.join(' ') === 'op:{ attr:span.http.status_code op:>= number:500 op:&& intrinsic:name op:= string:"GET /" op:}', `tokens ${r.toks.join(' ')}`);
  check(r.crossed[0] === 0 && r.crossed[1] === 'x,w', `barycentre order ${JSON.stringify(r.crossed)}`);
  check(r.long[0] === 0 && r.long[1] === 4 && r.long[2] === '1,2,3,1', `long edge layout ${JSON.stringify(r.long)}`);
  check(JSON.stringify(r.cycle) === '[false,true]', `back edge ${JSON.stringify(r.cycle)}`);
  check(JSON.stringify(r.loop) === '[["a"],["b"],["c"],["d"]]', `cycle layers ${JSON.stringify(r.loop)}`);
  // The editor's completion: while newer suggestions are on their way
  // (here, never), the shown list narrows to what is typed, so Tab takes a
  // fitting item, not a stale one.
  const typedIn = await page.evaluate(async () => {
    const { editor } = await import('/ui/editor.js');
    let calls = 0;
    const values = ['ad', 'cart', 'checkout'];
    const ed = editor({ suggest: (src, caret) => (calls++ === 0 ? Promise.resolve({ from: caret, items: values.map((v) => ({ label: v, insert: v })) }) : new Promise(() => {})) });
    document.querySelector('main').append(ed.el);
    ed.input.focus();
    ed.input.value = 'x = ';
    ed.input.setSelectionRange(4, 4);
    ed.input.dispatchEvent(new Event('input'));
    await new Promise((r) => setTimeout(r, 0));
    const before = ed.el.querySelectorAll('.suggest li').length;
    ed.input.value = 'x = ch';
    ed.input.setSelectionRange(6, 6);
    ed.input.dispatchEvent(new Event('input'));
    const shown = [...ed.el.querySelectorAll('.suggest li')].map((li) => li.textContent);
    ed.input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Tab', bubbles: true, cancelable: true }));
    const value = ed.input.value;
    ed.el.remove();
    return { before, shown, value };
  });
  check(typedIn.before === 3 && JSON.stringify(typedIn.shown) === '["checkout"]' && typedIn.value === 'x = checkout', `stale completion: ${JSON.stringify(typedIn)}`);
  check(r.dense === 150, `the dense layout placed ${r.dense} of 150 services`);
  results.mapLayout150Ms = Math.round(r.layoutMs);
  check(JSON.stringify(r.labs) === '[[50,20],[200,22],[60,34],[50,122]]', `label placement ${JSON.stringify(r.labs)}`);
  check(r.pos.line === 1 && r.pos.col === 12 && r.lpos.line === 2 && r.lpos.col === 3, `positions ${JSON.stringify(r)}`);
  // Durations: no trailing zeros, and a trace under a millisecond (0 in
  // Tempo's search answer) is "<1ms", not "0ns".
  const durs = await page.evaluate(async () => {
    const { fmtDuration, fmtMs, fmtValue } = await import('/ui/dom.js');
    const { tickLabels } = await import('/ui/chart.js');
    const { drawMap } = await import('/ui/map.js');
    // A call with no traffic in the window is drawn, dashed, with no
    // "0/s · 0% · –" label; a busy one keeps its label.
    const svg = drawMap(['web', 'api', 'db'], [{ client: 'web', server: 'api', rate: 3, errors: 0, p95: 0.012 }, { client: 'api', server: 'db', rate: 0, errors: 0, p95: NaN }]);
    const labels = [...svg.querySelectorAll('text.edge-label')].map((t) => t.textContent);
    const idle = [...svg.querySelectorAll('g.edge.idle')].map((g) => g.dataset.edge);
    if (labels.length !== 1 || !labels[0].startsWith('3/s') || idle.join() !== 'api->db') return `map labels ${JSON.stringify(labels)} idle ${idle}`;
    // Every y axis labels its ticks apart, for a CPU chart's fractions too.
    for (const [lo, hi] of [[0, 0.004], [0, 0.05], [0, 1], [0, 7], [1e3, 1.6e3], [1e6, 1.2e6], [0, 3e9]]) {
      const ls = tickLabels(lo, hi).map(([, l]) => l);
      if (new Set(ls).size !== ls.length || ls.length < 2) return `axis ${lo}..${hi}: ${ls.join(',')}`;
    }
    return [fmtDuration(9e6), fmtDuration(9.5e6), fmtDuration(45.63e6), fmtDuration(412345), fmtDuration(1.5e9), fmtDuration(2e9), fmtMs(0), fmtMs(undefined), fmtMs(9),
      fmtValue('9.769239333333335'), fmtValue('0.000012345678'), fmtValue('1234567.891'), fmtValue('42'), fmtValue('NaN'), fmtValue('+Inf')].join(' ');
  });
  check(durs === '9ms 9.5ms 45.63ms 412µs 1.5s 2s <1ms <1ms 9ms 9.7692 0.00001235 1234567.891 42 NaN +Inf', `durations and values ${durs}`);
  // Self time: a span's time not covered by its children, overlaps and
  // overhangs counted once.
  const stats = await page.evaluate(async () => {
    const { traceStats } = await import('/ui/trace.js');
    const sp = (service, name, start, end, children = [], error = false) => ({ service, name, start, end, dur: end - start, children, error });
    const b = sp('api', 'db', 10, 40);
    const c = sp('api', 'db', 30, 60, [], true);
    const d = sp('cache', 'get', 90, 120);
    const a = sp('web', 'GET /', 0, 100, [b, c, d]);
    Object.assign(a, { id: 'a', parent: '' });
    for (const [sp, id] of [[b, 'b'], [c, 'c'], [d, 'd']]) Object.assign(sp, { id, parent: 'a' });
    const { flameRects } = await import('/ui/trace.js');
    const fr = flameRects([a, b, c, d], 0, 120).map((r) => `${r.row}:${r.x.toFixed(2)}+${r.w.toFixed(2)}`).join(' ');
    return [...traceStats([a, b, c, d]).map((g) => `${g.service}/${g.name} n=${g.count} e=${g.errors} total=${g.total} self=${g.self}`), fr];
  });
  check(JSON.stringify(stats) === JSON.stringify(['api/db n=2 e=1 total=60 self=60', 'web/GET / n=1 e=0 total=100 self=40', 'cache/get n=1 e=0 total=30 self=30', '0:0.00+0.83 1:0.08+0.25 2:0.25+0.25 1:0.75+0.25']), `trace statistics and flame layout ${JSON.stringify(stats)}`);
  // Trace comparison merges by path of service and operation.
  const diff = await page.evaluate(async () => {
    const { diffTraces } = await import('/ui/compare.js');
    const sp = (service, name, start, end, children = []) => ({ service, name, start, end, dur: end - start, children });
    const a = [sp('web', 'GET /', 0, 100, [sp('api', 'q', 0, 10), sp('api', 'q', 10, 30), sp('db', 'x', 0, 5)])];
    const b = [sp('web', 'GET /', 0, 120, [sp('api', 'q', 0, 50), sp('cache', 'get', 0, 1)])];
    return diffTraces(a, b).map((n) => `${n.depth} ${n.service}/${n.name} ${n.a.count}:${n.a.total} ${n.b.count}:${n.b.total} ${n.state}`);
  });
  check(JSON.stringify(diff) === JSON.stringify(['0 web/GET / 1:100 1:120 same', '1 api/q 2:30 1:50 changed', '1 cache/get 0:0 1:1 added', '1 db/x 1:5 0:0 removed']), `trace diff ${JSON.stringify(diff)}`);
  // A log line's fields, as LogQL's json and logfmt parsers name them.
  const fields = await page.evaluate(async () => {
    const { parsedFields } = await import('/ui/logs.js');
    return [
      parsedFields('{"user":{"id":"u1"},"status":200,"ok":true,"tags":["a"],"none":null}'),
      parsedFields('level=warn msg="queue \\"slow\\"" depth=120 http.code=500'),
      parsedFields('deadlock detected'),
      parsedFields('{not json'),
    ];
  });
  check(JSON.stringify(fields) === JSON.stringify([
    { parser: 'json', fields: [['user_id', 'u1'], ['status', '200'], ['ok', 'true'], ['tags', '["a"]']] },
    { parser: 'logfmt', fields: [['level', 'warn'], ['msg', 'queue "slow"'], ['depth', '120'], ['http_code', '500']] },
    { parser: '', fields: [] },
    { parser: '', fields: [] },
  ]), `parsed fields ${JSON.stringify(fields)}`);
});

await step('alerts: rules, state, the expression charted, instances with links', async () => {
  // The rule fires once span metrics reach the TSDB: wait for that on
  // the rules API, then open the page.
  const firing = async () => {
    const r = await (await fetch(`${BASE}/api/v1/rules?type=alert`)).json();
    return r.data.groups.some((g) => g.rules.some((x) => x.name === 'SpansFlowing' && x.state === 'firing'));
  };
  const deadline = Date.now() + 20000;
  while (!(await firing()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  await page.goto(`${BASE}/ui/alerts?range=15m`);
  const rule = page.locator('section.rule[data-rule="SpansFlowing"]');
  await rule.waitFor(T);
  check(await page.locator('section.rule[data-rule="HighErrorRate"]').count() === 1, 'the HighErrorRate rule is not listed');
  check((await rule.locator('h2 span.state').textContent()) === 'firing', 'SpansFlowing never fired');
  await rule.locator('.rule-chart svg path.line').first().waitFor({ ...T, state: 'attached' });
  const row = rule.locator('table.alerts tbody tr').first();
  check((await row.textContent()).includes('service_name="checkout"'), 'the alert instance lacks its labels');
  // The alert's annotations are expanded for it, not the rule's template.
  check((await row.textContent()).includes('checkout has spans'), `the alert's summary is not expanded: ${await row.textContent()}`);
  await row.locator('a', { hasText: 'failing traces' }).click();
  await page.waitForURL(/\/ui\/traces\?q=/);
  check(new URL(page.url()).searchParams.get('q').includes('resource.service.name = "checkout"'), `the traces link does not search the service: ${page.url()}`);
  await page.goto(`${BASE}/ui/alerts?range=15m`);
  await rule.waitFor(T);
  // The Alertmanager's silence is listed, and mutes the checkout alert.
  const sil = page.locator(`#silences tr[data-silence="${SILENCE}"]`);
  await sil.waitFor(T);
  const silText = await sil.textContent();
  check(silText.includes('active') && silText.includes('service_name=~"check.*"') && silText.includes('deploying checkout'), `silence row: ${silText}`);
  const muted = page.locator(`section.rule[data-rule="SpansFlowing"] tr[data-silenced~="${SILENCE}"]`);
  await muted.first().waitFor(T);
  check((await muted.first().textContent()).includes('service_name="checkout"'), 'the silence mutes another alert');
  await shot('alerts');
});

await step('dark theme', async () => {
  await page.goto(`${BASE}/ui/services`);
  await page.locator('#services tbody tr').first().waitFor(T);
  await page.keyboard.press('d');
  check(await page.evaluate(() => document.documentElement.dataset.theme) === 'dark', 'd does not switch to the dark theme');
  await shot('services-dark');
  await page.keyboard.press('d');
});

// panelStates waits until no panel of the dashboard is loading and
// returns every panel's title, type, datasource and state.
async function panelStates() {
  await page.locator('.dash-grid').waitFor(T);
  await page.waitForFunction(() => document.querySelectorAll('.dash-grid [data-state=loading]').length === 0, null, T);
  return page.$$eval('.dash-grid [data-panel-type]', (els) => els.map((e) => ({
    title: e.getAttribute('aria-label') || e.textContent.trim(), type: e.dataset.panelType, ds: e.dataset.ds || '', state: e.dataset.state,
  })));
}

const describe = (ps) => ps.map((p) => `${p.type}/${p.ds}:${p.state} ${p.title}`).join('; ');

await step('dashboards: the built-in RED and self-monitoring dashboards have data', async () => {
  await page.goto(`${BASE}/ui/dashboards?range=15m`);
  for (const uid of ['sightline-red', 'sightline-self']) await page.locator(`table.dashboards tr[data-uid="${uid}"]`).waitFor(T);
  await page.locator('table.dashboards a', { hasText: 'RED: requests, errors, duration' }).click();
  await page.waitForURL(/\/ui\/d\/sightline-red/);
  let ps = await panelStates();
  // Every panel queries the demo data: PromQL (span metrics), TraceQL
  // search and metrics, LogQL logs and metrics.
  const want = JSON.parse(readFileSync('../../internal/dashboard/builtin/red.json', 'utf8')).panels.length;
  check(ps.length === want, `RED shows ${ps.length} panels, its JSON has ${want}`);
  const notData = ps.filter((p) => p.state !== 'data');
  check(notData.length === 0, `RED panels without data: ${describe(notData)}`);
  // The service variable narrows every panel to one service.
  await page.locator('select[data-var=service]').selectOption('checkout');
  await page.waitForURL(/var-service=checkout/);
  ps = await panelStates();
  check(ps.every((p) => p.state === 'data'), `RED for checkout: ${describe(ps)}`);
  const legends = await page.$$eval('.panel[aria-label="Requests / s"] [data-series]', (els) => els.map((e) => e.dataset.series));
  check(legends.length === 1 && legends[0] === 'checkout', `Requests / s for checkout draws ${legends}`);
  await shot('dashboard');

  await page.goto(`${BASE}/ui/d/sightline-self?range=15m`);
  ps = await panelStates();
  const selfEmpty = ps.filter((p) => p.state !== 'data');
  check(selfEmpty.length === 0, `self-monitoring panels without data: ${describe(selfEmpty)}`);
});

// Public Grafana dashboards, unchanged (internal/dashboard/testdata names
// their source and licence), imported as a Grafana user would.
for (const [file, title, unsupported] of [
  ['otel-demo-spanmetrics.json', 'Spanmetrics Demo Dashboard', []],
  // An alert list and an OpenSearch logs panel: shown as such.
  ['otel-demo-collector.json', 'OpenTelemetry Collector', ['alertlist', 'logs/grafana-opensearch-datasource']],
]) {
  await step(`dashboards: import ${file}`, async () => {
    const text = readFileSync(`../../internal/dashboard/testdata/${file}`, 'utf8');
    const model = JSON.parse(text);
    let want = 0;
    const walk = (ps) => { for (const p of ps || []) { want++; walk(p.panels); } };
    walk(model.panels);
    await page.goto(`${BASE}/ui/dashboards/import`);
    // Picked as a file, as a user uploads an export.
    await page.getByLabel('dashboard file').setInputFiles(`../../internal/dashboard/testdata/${file}`);
    await page.locator('.import-inputs p', { hasText: `${want} panels` }).waitFor(T);
    await page.getByLabel('Replace a dashboard with the same UID').check();
    await page.locator('button', { hasText: 'Import' }).click();
    await page.waitForURL(/\/ui\/d\//);
    await page.locator('h1', { hasText: title }).waitFor(T);
    await page.locator('button', { hasText: 'Expand rows' }).click();
    await page.waitForURL(/expand=all/);
    const ps = await panelStates();
    check(ps.length === want, `${file}: ${ps.length} panels shown, the JSON has ${want}: ${describe(ps)}`);
    const shownUnsupported = ps.filter((p) => p.state === 'unsupported').map((p) => (p.ds && p.ds !== 'prometheus' ? `${p.type}/${p.ds}` : p.type)).sort();
    check(JSON.stringify(shownUnsupported) === JSON.stringify([...unsupported].sort()), `${file}: unsupported ${shownUnsupported}, want ${unsupported}`);
    // Every other panel that queries Prometheus has data.
    const prom = ps.filter((p) => p.ds === 'prometheus' && p.type !== 'row' && p.state !== 'unsupported');
    const noData = prom.filter((p) => p.state !== 'data');
    check(prom.length > 5 && noData.length === 0, `${file}: Prometheus panels without data: ${describe(noData)}`);
    results[`${file}Panels`] = ps.length;
  });
}

await step('dashboards: add a panel, export, a stale save is refused', async () => {
  await page.goto(`${BASE}/ui/dashboards`);
  await page.locator('button', { hasText: 'New dashboard' }).click();
  await page.waitForURL(/\/ui\/d\//);
  const uid = page.url().match(/\/ui\/d\/([\w-]+)/)[1];
  await page.locator('button', { hasText: 'Add panel' }).click();
  await page.getByLabel('panel title').fill('Checkout errors');
  await page.getByLabel('datasource').selectOption('sightline-tempo');
  await page.getByLabel('panel type').selectOption('traces');
  await page.getByLabel('panel query').fill('{ resource.service.name = "checkout" }');
  await page.locator('.add-panel button', { hasText: 'Add' }).click();
  await page.locator('.panel[aria-label="Checkout errors"][data-state=data] table').waitFor(T);
  const [dl] = await Promise.all([page.waitForEvent('download'), page.locator('button', { hasText: 'Export JSON' }).click()]);
  const exported = JSON.parse(readFileSync(await dl.path(), 'utf8'));
  check(exported.uid === uid && exported.version === 2 && exported.panels[0].targets[0].query === '{ resource.service.name = "checkout" }', `export: ${JSON.stringify(exported).slice(0, 300)}`);
  // Someone else saves version 2 first: this editor's save of it is refused.
  const r = await page.evaluate(async (m) => {
    const post = (d) => fetch('/api/dashboards/db', { method: 'POST', body: JSON.stringify({ dashboard: d }) }).then((x) => x.status);
    return [await post({ ...m, title: 'theirs' }), await post({ ...m, title: 'mine' })];
  }, exported);
  check(r[0] === 200 && r[1] === 412, `concurrent saves answered ${r}`);
});

if (SHOTS) {
  // The README's charts: over the last 5 minutes, which e2e/ui_test.go
  // spreads the data over when it takes screenshots.
  await step('screenshots of the charts', async () => {
    await page.goto(`${BASE}/ui/service/checkout?range=5m`);
    await page.locator('#latency-chart circle.dot').first().waitFor(T);
    await page.locator('ul.tracelist li').first().waitFor(T);
    await shot('service');
    await page.goto(`${BASE}/ui/metrics?range=5m&query=${encodeURIComponent('sum by (service_name) (rate(traces_spanmetrics_calls_total[1m]))')}`);
    await page.locator('#prom-result svg path.line').first().waitFor(T);
    await shot('metrics');
  });
}

console.log(JSON.stringify(results));
await browser.close();
