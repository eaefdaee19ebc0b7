/**
 * Observability against the real thing: the native stack (Redis, origin, 2 x 2 edges,
 * balancer, Prometheus with the rendered rules) under a bounded storefront load on
 * 127.0.0.1. Every target is up, the rules evaluate without errors, every PromQL
 * expression of every dashboard panel returns data, and the edge-down alert fires
 * once an edge is killed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { parseSpec } from '../../infra/model/spec';
import { catalogue, runStorefront, seedCatalogue, type StorefrontStats } from '../../load/storefront';
import { DASHBOARDS, promqlOf } from '../../observability/dashboards';
import { ALERT_RULES, RECORDING_RULES } from '../../observability/rules';
import { REPO_ROOT } from '../support/nginx-lua';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let stack: UpResult;
let prom: string;
let token: string;
const load = new AbortController();
let loadRun: Promise<StorefrontStats>;
const items = catalogue({ images: 60, bundles: 20, prefix: 'obs' });

async function query(expr: string): Promise<{ status: string; error?: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } }> {
  const res = await fetch(`${prom}/api/v1/query`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ query: expr }) });
  return (await res.json()) as never;
}

/** Grafana's variables as the test resolves them: every region, every edge. */
function resolveVariables(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '15s').replaceAll('$region', '.*').replaceAll('$edge', '.*');
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-obs-'));
  stack = await up({ spec: parseSpec({}), stateDir: dir, repoRoot: REPO_ROOT, detached: true });
  if (!stack.state.prometheus) throw new Error('Prometheus did not start: is the prometheus package installed? (./scripts/setup.sh)');
  prom = stack.state.prometheus;
  token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  await seedCatalogue(stack.state.origin, token, items);
  // Through the balancer (region eu) and, for the other region's panels, one us edge directly.
  const bounded = 150000;
  loadRun = Promise.all([
    runStorefront({ baseUrl: stack.state.balancer, items, concurrency: 6, durationMs: bounded, signal: load.signal, purges: { origin: stack.state.origin, token, everyMs: 1000 } }),
    runStorefront({ baseUrl: stack.state.edges.find((e) => e.region === 'us')!.url, items, concurrency: 2, durationMs: bounded, signal: load.signal, seed: 9 }),
  ]).then(([a]) => a);
}, 90000);

afterAll(async () => {
  load.abort();
  await loadRun?.catch(() => undefined);
  await stack?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}, 60000);

describe('observability on the native stack', () => {
  test('Prometheus scrapes every target, loads every rule, and the rules evaluate without errors', async () => {
    const deadline = Date.now() + 30000;
    let targets: { labels: Record<string, string>; health: string; lastError: string }[] = [];
    while (Date.now() < deadline) {
      targets = ((await (await fetch(`${prom}/api/v1/targets`)).json()) as { data: { activeTargets: typeof targets } }).data.activeTargets;
      if (targets.length === 6 && targets.every((t) => t.health === 'up')) break;
      await sleep(500);
    }
    expect(targets.map((t) => `${t.labels.job}/${t.labels.edge ?? ''}=${t.health}`).sort()).toEqual(
      ['balancer/=up', 'edge/eu-1=up', 'edge/eu-2=up', 'edge/us-1=up', 'edge/us-2=up', 'origin/=up'],
    );
    await sleep(12000); // a few evaluation rounds of 5 s
    const rules = ((await (await fetch(`${prom}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } }).data.groups.flatMap((g) => g.rules);
    const expected = [...RECORDING_RULES.flatMap((g) => g.rules.map((r) => r.record)), ...ALERT_RULES.flatMap((g) => g.rules.map((r) => r.alert))];
    expect(rules.map((r) => r.name).sort()).toEqual(expected.sort());
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
  }, 60000);

  test('every PromQL expression of every dashboard returns data under load', async () => {
    const exprs = Object.entries(DASHBOARDS).flatMap(([file, make]) => promqlOf(make()).map((q) => ({ file, ...q })));
    expect(exprs.length).toBeGreaterThan(30);
    // Rates over 1 m and recording rules need a few scrapes of traffic: retry, bounded.
    const deadline = Date.now() + 60000;
    let failing: string[] = [];
    for (;;) {
      failing = [];
      for (const q of exprs) {
        const r = await query(resolveVariables(q.expr));
        if (r.status !== 'success') failing.push(`${q.file} "${q.panel}": error ${r.error} in ${q.expr}`);
        else if (r.data!.result.length === 0) failing.push(`${q.file} "${q.panel}": no data for ${q.expr}`);
      }
      if (failing.length === 0 || Date.now() > deadline) break;
      await sleep(3000);
    }
    expect(failing).toEqual([]);
    // and a value that means something: the fleet serves most requests from cache
    const ratio = Number((await query(':cdn_edge_hit_ratio:ratio_rate1m')).data!.result[0].value[1]);
    expect(ratio).toBeGreaterThan(0.3);
    expect(ratio).toBeLessThanOrEqual(1);
    // the template variables list the stack's regions and edges
    const series = (await (await fetch(`${prom}/api/v1/series?${new URLSearchParams({ 'match[]': 'cdn_balancer_edge_up' })}`)).json()) as { data: Record<string, string>[] };
    expect([...new Set(series.data.map((s) => s.region))].sort()).toEqual(['eu', 'us']);
  }, 120000);

  test('a broken expression is reported (the check can fail)', async () => {
    expect((await query('sum(rate(cdn_edge_requests_total[1m])')).status).toBe('error');
    expect((await query('cdn_edge_no_such_metric_total')).data!.result).toEqual([]);
  });

  test('killing an edge fires CdnEdgeDown for that edge, and only for it', async () => {
    const alerts = async () =>
      ((await (await fetch(`${prom}/api/v1/alerts`)).json()) as { data: { alerts: { labels: Record<string, string>; state: string }[] } }).data.alerts.filter((a) => a.labels.alertname === 'CdnEdgeDown');
    expect(await alerts()).toEqual([]);
    const victim = stack.services.find((s) => s.unit.name === 'edge-eu-2')!;
    process.kill(-victim.pid, 'SIGKILL');
    const killedAt = Date.now();
    let seen: { labels: Record<string, string>; state: string }[] = [];
    let pendingAfter = -1;
    // scrape 5 s + evaluation 5 s + for: 30 s, bounded at 75 s
    while (Date.now() - killedAt < 75000) {
      seen = await alerts();
      if (pendingAfter < 0 && seen.length > 0) pendingAfter = Date.now() - killedAt;
      if (seen.some((a) => a.state === 'firing')) break;
      await sleep(1000);
    }
    expect(seen.map((a) => ({ edge: a.labels.edge, region: a.labels.region, severity: a.labels.severity, state: a.state }))).toEqual([
      { edge: 'eu-2', region: 'eu', severity: 'critical', state: 'firing' },
    ]);
    expect(pendingAfter).toBeGreaterThan(0);
    process.stderr.write(`CdnEdgeDown pending ${pendingAfter} ms and firing ${Date.now() - killedAt} ms after the kill\n`);
  }, 90000);
});
