// `stakeguard report` in a real browser: Debian's Chromium (headless) through
// playwright-core, which downloads no browser of its own. Each bundled recording is
// replayed once by `stakeguard replay` (the expected figures come from its summary's
// decision and incident counters, read here independently of the report's code) and
// once by `stakeguard report`; the page must load without console errors or any fetch,
// and show the replay's numbers where a reader looks for them. Screenshots go to
// target/report/.
//
// STAKEGUARD (the CLI, default target/harness/stakeguard), STAKEGUARD_MODULE (default
// the built filter) and CHROMIUM (default /usr/bin/chromium) override the paths.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cli = process.env.STAKEGUARD ?? join(root, 'target/harness/stakeguard');
const module = process.env.STAKEGUARD_MODULE ?? join(root, 'target/wasm32-wasip1/release/stakeguard_filter.wasm');
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const out = join(root, 'target/report');
const asOf = '2026-11-29T12:00:00Z';

const recordings = [
  { name: 'bank', traffic: 'envoy-examples/traffic/bank.jsonl', policy: 'policies/examples/bank.json' },
  { name: 'retailer', traffic: 'envoy-examples/traffic/retailer.har', policy: 'policies/examples/retailer.json' },
];

function stakeguard(args) {
  return execFileSync(cli, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
}

function common(r) {
  return ['--module', module, '--policy', r.policy, '--callouts', 'envoy-examples/traffic/callouts.toml'];
}

// Expected figures from the replay's summary: per `api version`, requests, blocked,
// would-block and incidents, and the totals.
function expected(r) {
  const lines = stakeguard(['replay', ...common(r), '--format', 'jsonl', r.traffic]).trim().split('\n');
  const { summary } = JSON.parse(lines.at(-1));
  const apis = new Map();
  const api = (key) => {
    if (!apis.has(key)) apis.set(key, { requests: 0, blocked: 0, would_block: 0, incidents: 0 });
    return apis.get(key);
  };
  const totals = { requests: 0, blocked: 0, would_block: 0, incidents: 0 };
  for (const [name, metric] of Object.entries(summary.metrics)) {
    const m = name.match(/^stakeguard\.(decision|incident)\.api\.([^.]+)\.version\.([^.]+)\.control\.[^.]+\.(?:outcome|severity)\.([^.]+)$/);
    if (!m) continue;
    const [, kind, a, v, last] = m;
    const entry = a === 'none' ? { requests: 0, blocked: 0, would_block: 0, incidents: 0 } : api(`${a} ${v}`);
    if (kind === 'incident') {
      entry.incidents += metric.value;
      totals.incidents += metric.value;
      continue;
    }
    entry.requests += metric.value;
    totals.requests += metric.value;
    if (last === 'blocked' || last === 'would_block') {
      entry[last] += metric.value;
      totals[last] += metric.value;
    }
  }
  assert.equal(totals.requests, summary.requests, 'every replayed request has a decision counter');
  const shadowPaths = new Set();
  for (const line of lines.slice(0, -1)) {
    const e = JSON.parse(line);
    if (typeof e.decision === 'string' && e.decision.includes('control=unknown_route')) shadowPaths.add(e.path.split('?')[0]);
  }
  return { apis, totals, shadowPaths };
}

for (const r of recordings) {
  test(`the ${r.name} report renders in Chromium and shows the replay's figures`, async () => {
    mkdirSync(out, { recursive: true });
    const want = expected(r);
    const html = join(out, `${r.name}.html`);
    const started = performance.now();
    stakeguard(['report', ...common(r), r.traffic, '--as-of', asOf, '-o', html]);
    const reportMs = performance.now() - started;

    const browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
      const problems = [];
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      const url = pathToFileURL(html).href;
      page.on('request', (q) => { if (q.url() !== url) problems.push(`fetched ${q.url()}`); });
      const loadStart = performance.now();
      await page.goto(url, { waitUntil: 'load' });
      const renderMs = performance.now() - loadStart;
      assert.deepEqual(problems, [], 'no console errors, no fetches');

      const text = async (sel) => (await page.locator(sel).innerText()).trim();
      assert.equal(await text('[data-total="requests"]'), String(want.totals.requests));
      assert.equal(await text('[data-total="blocked"]'), String(want.totals.blocked));
      assert.equal(await text('[data-total="would_block"]'), String(want.totals.would_block));
      assert.equal(await text('[data-total="incidents"]'), String(want.totals.incidents));
      // The would-block tile is what an owner must not miss: drawn apart from the rest.
      const tile = page.locator('.tile.wb');
      assert.notEqual(await tile.evaluate((e) => getComputedStyle(e).borderTopColor), await page.locator('.tile').first().evaluate((e) => getComputedStyle(e).borderTopColor));
      assert.ok(await page.locator('#would-block').isVisible());

      for (const [key, figures] of want.apis) {
        const row = page.locator(`#inventory tr[data-api="${key}"]`);
        for (const [count, value] of Object.entries(figures)) {
          assert.equal(await row.locator(`[data-count="${count}"]`).innerText(), String(value), `${key} ${count}`);
        }
        // Each API's section is laid out, with its decisions-over-time chart drawn.
        const section = page.locator(`section.api[data-api="${key}"]`);
        assert.ok(await section.isVisible(), key);
        const bars = await section.locator('svg.timeline rect').count();
        assert.ok(figures.requests === 0 || bars > 0, `${key} has a chart`);
        const box = await section.locator('svg.timeline').boundingBox();
        assert.ok(box && box.width > 100 && box.height > 50, `${key} chart is drawn`);
      }
      const wbRows = await page.locator('#would-block tr[data-control]').count();
      assert.equal(wbRows > 0, want.totals.would_block > 0, 'would-block rows when monitor mode caught something');
      for (const path of want.shadowPaths) {
        assert.equal(await page.locator(`#shadow-endpoints tr[data-path="${path}"]`).count(), 1, `shadow endpoint ${path}`);
      }

      await page.screenshot({ path: join(out, `${r.name}.png`), fullPage: true });
      await page.screenshot({ path: join(out, `${r.name}-top.png`) });
      console.log(`# ${r.name}: report ${statSync(html).size} bytes written in ${reportMs.toFixed(0)} ms, loaded in Chromium in ${renderMs.toFixed(0)} ms; screenshot ${join(out, `${r.name}.png`)}`);
    } finally {
      await browser.close();
    }
  });
}
