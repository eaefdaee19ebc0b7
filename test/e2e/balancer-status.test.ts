/**
 * The traffic status page (the VTS replacement) on the whole native stack, in a real
 * headless browser: Debian's chromium driven by playwright-core (never a browser
 * download). It renders from the balancer alone (no other origin), and its figures
 * move while traffic flows through the balancer to real edges.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { parseSpec } from '../../infra/model/spec';
import { LATENCY_BUCKETS } from '../../origin/contract/metrics';
import { REPO_ROOT } from '../support/nginx-lua';
import { rawExchange, unexpectedErrors } from './balancer-harness';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let stack: UpResult;
let stateDir: string;
let profileDir: string;
let browser: BrowserContext;
let internal: string;

async function put(key: string, body: string) {
  const token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  const res = await fetch(`${stack.state.origin}/v1/assets/${key}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain', 'Cache-Control': 'public, max-age=3600' },
    body,
  });
  expect(res.ok).toBe(true);
}

/** GETs through the balancer until `stop` resolves; returns how many answered 200. */
async function traffic(keys: string[], until: () => boolean): Promise<number> {
  let ok = 0;
  let i = 0;
  while (!until()) {
    try {
      const res = await fetch(`${stack.state.balancer}/${keys[i++ % keys.length]}`);
      await res.arrayBuffer();
      if (res.status === 200) ok++;
    } catch {
      /* counted as not ok */
    }
  }
  return ok;
}

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-status-'));
  profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-chromium-'));
  stack = await up({ spec: parseSpec({}), stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  const unit = stack.services.find((s) => s.unit.name === 'balancer')!.unit;
  internal = unit.health?.kind === 'http' ? unit.health.url.replace(/\/healthz$/, '') : '';
  browser = await chromium.launchPersistentContext(profileDir, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1440, height: 900 } });
}, 120000);

afterAll(async () => {
  await browser?.close();
  const logs = (stack?.services ?? []).filter((s) => s.unit.role === 'balancer').map((s) => fs.readFileSync(path.join(s.unit.dir, 'logs', 'error.log'), 'utf8'));
  await stack?.stop();
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(profileDir, { recursive: true, force: true });
  for (const log of logs) expect(unexpectedErrors(log)).toEqual([]);
});

describe('balancer status page', () => {
  test('is served on the internal listener only, as HTML, JSON and Prometheus text', async () => {
    const page = await fetch(`${internal}/status`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await page.text();
    // no external assets: no src/href pointing anywhere but here
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    const json = (await (await fetch(`${internal}/status.json`)).json()) as { edges: { id: string; up: boolean }[] };
    expect(json.edges.map((e) => e.id)).toEqual(['eu-1', 'eu-2', 'us-1', 'us-2']);
    // the public listener does not serve it (it would go to an edge and the origin)
    for (const p of ['/status', '/status.json']) {
      const pub = await fetch(`${stack.state.balancer}${p}`);
      expect(pub.status).toBe(404);
      expect(await pub.text()).not.toContain('"fleet"');
    }
  });

  test('renders in chromium, and its figures move while traffic flows', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => `status/p-${i}.txt`);
    for (const k of keys) await put(k, `object ${k}`);

    const page = await browser.newPage();
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${internal}/status`);
    await expect(page.title()).resolves.toContain('traffic status');
    await page.waitForSelector('#edges tbody tr[data-edge="us-2"]');
    expect(await page.locator('#edges tbody tr').count()).toBe(4);
    expect(await page.locator('#edges .pill.up').count()).toBe(4);
    expect(await page.locator('#regions tbody tr').count()).toBe(2);

    const read = async () => ({
      requests: Number((await page.locator('#fleet-requests').textContent())!.replace(/[^0-9]/g, '')),
      rps: Number((await page.locator('#fleet-rps').textContent())!.replace(/[^0-9.]/g, '')),
      hit: (await page.locator('#fleet-hit').textContent())!,
      eu1: Number((await page.locator('#edges tr[data-edge="eu-1"] .requests').textContent())!.replace(/[^0-9]/g, '')),
    });
    const before = await read();
    let done = false;
    const load = traffic(keys, () => done);
    // the page refreshes itself once a second; rates cover the last second
    // (a function, not a string: the page's CSP forbids eval, as it should)
    const rpsShown = () => Number((globalThis as any).document.getElementById('fleet-rps').textContent.replace(/[^0-9.]/g, '')) > 0;
    await page.waitForFunction(rpsShown, undefined, { timeout: 8000 }).catch((e) => {
      done = true;
      throw e;
    });
    const during = await read();
    await page.waitForTimeout(2200);
    const later = await read();
    await page.screenshot({ path: path.join(os.tmpdir(), 'cdn-balancer-status.png'), fullPage: true });
    done = true;
    const served = await load;
    expect(served).toBeGreaterThan(20);
    expect(during.requests).toBeGreaterThan(before.requests);
    expect(later.requests).toBeGreaterThan(during.requests);
    expect(later.rps).toBeGreaterThan(0);
    expect(later.eu1).toBeGreaterThan(before.eu1);
    // the edges report hits in Cache-Status once each object is cached
    expect(later.hit).toMatch(/^\d+(\.\d)?%$/);
    expect(Number(later.hit.replace('%', ''))).toBeGreaterThan(50);
    // the page fetched nothing but itself and its JSON
    const origin = new URL(internal).origin;
    expect(requested.every((u) => u.startsWith(origin))).toBe(true);
    expect(new Set(requested.map((u) => new URL(u).pathname))).toEqual(new Set(['/status', '/status.json']));
    expect(errors).toEqual([]);

    // a dead edge turns red on the page
    const victim = stack.state.edges.find((e) => e.id === 'us-1')!;
    process.kill(-victim.pid, 'SIGKILL');
    await page.waitForSelector('#edges tr[data-edge="us-1"].down .pill.down', { timeout: 5000 });
    await page.screenshot({ path: path.join(os.tmpdir(), 'cdn-balancer-status-down.png'), fullPage: true });
    await page.close();
  });

  test('/metrics carries the same counters per edge and region', async () => {
    const text = await (await fetch(`${internal}/metrics`)).text();
    expect(text).toMatch(/cdn_balancer_requests_total\{edge="eu-1",region="eu",status_class="2xx"\} \d+/);
    expect(text).toMatch(/cdn_balancer_edge_cache_total\{edge="[a-z]+-\d",region="[a-z]+",result="hit"\} \d+/);
    expect(text).toMatch(/cdn_balancer_request_duration_seconds_bucket\{edge="eu-1",region="eu",le="\+Inf"\} \d+/);
    // the latency buckets of every layer (origin/contract/metrics.ts), from the rendered settings
    const les = [...text.matchAll(/^cdn_balancer_request_duration_seconds_bucket\{edge="eu-1",region="eu",le="([^"]+)"\}/gm)].map((m) => m[1]);
    expect(les).toEqual([...LATENCY_BUCKETS.map(String), '+Inf']);
    expect(text).toContain('cdn_balancer_edge_up{edge="us-1",region="us"} 0');
    expect(text).toContain('cdn_balancer_edge_up{edge="eu-1",region="eu"} 1');
  });

  test('/metrics counts each response under its status class: refused ones under edge "-", an edge\'s 404 under that edge', async () => {
    // sums one status class over the matching series
    const sum = (text: string, edge: RegExp, cls: string) =>
      [...text.matchAll(/^cdn_balancer_requests_total\{edge="([^"]*)",region="[^"]*",status_class="(\dxx)"\} (\d+)$/gm)]
        .filter((m) => edge.test(m[1]) && m[2] === cls)
        .reduce((n, m) => n + Number(m[3]), 0);
    const counts = async () => {
      const text = await (await fetch(`${internal}/metrics`)).text();
      return { refused: sum(text, /^-$/, '4xx'), edge4xx: sum(text, /^[a-z]+-\d+$/, '4xx'), edge2xx: sum(text, /^[a-z]+-\d+$/, '2xx') };
    };
    const before = await counts();
    const port = Number(new URL(stack.state.balancer).port);
    for (let i = 0; i < 3; i++) {
      const bel = await rawExchange(port, 'GET /x HTTP/1.1\r\nHost: localhost\r\nX-Bad: a\x07b\r\n\r\n');
      expect(bel.statuses).toEqual([400]);
    }
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${stack.state.balancer}/no-such-bucket/missing-${i}`);
      await res.arrayBuffer();
      expect(res.status).toBe(404);
    }
    // other workers flush their counts every 0.25 s
    let after = await counts();
    for (let i = 0; i < 30 && (after.refused < before.refused + 3 || after.edge4xx < before.edge4xx + 2); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await counts();
    }
    expect(after.refused - before.refused).toBe(3);
    expect(after.edge4xx - before.edge4xx).toBe(2);
    expect(after.edge2xx).toBe(before.edge2xx);
  });
});
