/**
 * The shop's path through the running containers, from this machine: uploads through
 * the origin's API (its address on the stack's network), GETs through the balancer's
 * published port on 127.0.0.1, each edge container queried at its own address, one
 * edge killed under a bounded load, Prometheus's view of its targets. Each check
 * returns its figures; a failed expectation throws.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type Docker from 'dockerode';
import { get, waitFor } from '../support/http';
import { firstFile } from './tar';

export interface StackUnderTest {
  docker: Docker;
  /** The balancer's published URL (127.0.0.1). */
  balancer: string;
  /** The origin's API on the stack's network. */
  origin: string;
  prometheus: string;
  /** Every edge: its id, its URL on the stack's network, its container's name. */
  edges: { id: string; url: string; container: string }[];
  adminToken: string;
  /** The edge container the kill check killed (set as soon as it is), or null. */
  killed: string | null;
  /** Edges taken down on purpose (killed, crashed), and when, until healthy again. */
  outages: { edge: string; address: string; from: number; to: number }[];
}

export type CheckResult = string;

/** The edge that answered, from its Cache-Status (`eu-1; hit; ttl=…`). */
export function servedBy(cacheStatus: string | null | undefined): string | null {
  return /^([a-z0-9-]+);/.exec(cacheStatus ?? '')?.[1] ?? null;
}

function expect(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function put(s: StackUnderTest, key: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${s.origin}/v1/assets/${key}`, { method: 'PUT', headers: { 'Content-Type': 'text/plain', Authorization: `Bearer ${s.adminToken}`, ...headers }, body });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** GETs `key` from every edge directly until each reports a hit; returns ms per edge. */
async function warmEveryEdge(s: StackUnderTest, key: string): Promise<number[]> {
  return Promise.all(
    s.edges.map(async (e) => {
      const t = await waitFor(async () => (await get(`${e.url}/${key}`)).headers.get('cache-status')?.includes('; hit') ?? false, 5000, 20);
      expect(t >= 0, `${e.id} never served ${key} from its cache`);
      return t;
    }),
  );
}

const perEdge = (s: StackUnderTest, times: number[]) => s.edges.map((e, i) => `${e.id} ${times[i]} ms`).join(', ');

export async function upload(s: StackUnderTest): Promise<CheckResult> {
  const body = 'shoe v1 (docker run)';
  const t0 = process.hrtime.bigint();
  const r = await put(s, 'docker-run/shoe-1.txt', body, { 'Surrogate-Key': 'product-1 shoes' });
  const took = ms(t0);
  expect(r.status === 201, `PUT answered ${r.status}: ${JSON.stringify(r.json)}`);
  const sha = createHash('sha256').update(body).digest('hex');
  expect(r.json.sha256 === sha, `sha256 ${String(r.json.sha256)}, expected ${sha}`);
  return `PUT ${s.origin}/v1/assets/docker-run/shoe-1.txt: 201 in ${took.toFixed(0)} ms, sha256 matches, url ${String(r.json.url)}`;
}

export async function missThenHit(s: StackUnderTest): Promise<CheckResult> {
  const url = `${s.balancer}/docker-run/shoe-1.txt`;
  let t0 = process.hrtime.bigint();
  const first = await get(url);
  const t1 = ms(t0);
  t0 = process.hrtime.bigint();
  const second = await get(url);
  const t2 = ms(t0);
  const c1 = first.headers.get('cache-status') ?? '';
  const c2 = second.headers.get('cache-status') ?? '';
  expect(first.status === 200 && first.text === 'shoe v1 (docker run)', `first GET: ${first.status} ${first.text.slice(0, 80)}`);
  expect(/fwd=uri-miss/.test(c1) && /stored/.test(c1), `first GET was no miss: Cache-Status ${c1}`);
  expect(second.status === 200 && /; hit/.test(c2), `second GET was no hit: ${second.status}, Cache-Status ${c2}`);
  expect(second.headers.get('surrogate-key') === null, 'the edge leaked Surrogate-Key to the shopper');
  return `GET ${url}: "${c1}" in ${t1.toFixed(1)} ms, then "${c2}" in ${t2.toFixed(1)} ms`;
}

/**
 * The origin's API is not reachable through the CDN (its own listener, which no
 * edge reaches), and nothing but the balancer is published on this machine.
 */
export async function internalNotPublic(s: StackUnderTest): Promise<CheckResult> {
  const tries: [string, string][] = [['PUT', '/v1/assets/docker-run/planted.txt'], ['POST', '/v1/purge'], ['GET', '/docs/openapi.json'], ['GET', '/metrics']];
  const answers: string[] = [];
  for (const [method, p] of tries) {
    const res = await fetch(`${s.balancer}${p}`, { method, headers: { Authorization: `Bearer ${s.adminToken}`, 'Content-Type': 'application/json' }, body: method === 'GET' ? undefined : '{}' });
    await res.arrayBuffer();
    expect(res.status === 404, `${method} ${p} through the balancer answered ${res.status}, not 404`);
    answers.push(`${method} ${p} ${res.status}`);
  }
  const published: string[] = [];
  for (const c of await s.docker.listContainers({ filters: { label: ['cdn.test=docker-run'] } })) {
    for (const port of c.Ports.filter((x) => x.PublicPort)) published.push(`${c.Names[0]} ${port.IP}:${port.PublicPort}`);
  }
  expect(published.length === 1 && /balancer 127\.0\.0\.1:/.test(published[0]), `published: ${published.join(', ') || 'nothing'}`);
  return `through the balancer: ${answers.join(', ')}; published on this machine: ${published.join(', ')}`;
}

export async function overwrite(s: StackUnderTest): Promise<CheckResult> {
  const key = 'docker-run/shoe-2.txt';
  expect((await put(s, key, 'old bytes')).status === 201, 'first PUT failed');
  await warmEveryEdge(s, key);
  const r = await put(s, key, 'new bytes');
  expect(r.status === 200, `overwrite answered ${r.status}`);
  const times = await Promise.all(
    s.edges.map(async (e) => {
      const t = await waitFor(async () => (await get(`${e.url}/${key}`)).text === 'new bytes', 2000, 10);
      expect(t >= 0, `${e.id} (${e.url}) still serves the old bytes after 2 s`);
      return t;
    }),
  );
  return `every edge serves the new bytes: ${perEdge(s, times)}`;
}

export async function tagPurge(s: StackUnderTest): Promise<CheckResult> {
  const sale = 'docker-run/sale-1.txt';
  const other = 'docker-run/other.txt';
  expect((await put(s, sale, 'on sale', { 'Surrogate-Key': 'sale' })).status === 201, 'PUT of the tagged asset failed');
  expect((await put(s, other, 'not on sale')).status === 201, 'PUT of the untagged asset failed');
  await warmEveryEdge(s, sale);
  await warmEveryEdge(s, other);
  const t0 = process.hrtime.bigint();
  const res = await fetch(`${s.origin}/v1/purge`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${s.adminToken}` }, body: JSON.stringify({ tags: ['sale'] }) });
  const accepted = ms(t0);
  const body = (await res.json()) as { id?: string };
  expect(res.status === 202, `purge answered ${res.status}: ${JSON.stringify(body)}`);
  const times = await Promise.all(
    s.edges.map(async (e) => {
      const t = await waitFor(async () => (await get(`${e.url}/${sale}`)).headers.get('cache-status')?.includes('fwd=uri-miss') ?? false, 2000, 10);
      expect(t >= 0, `${e.id} (${e.url}) still serves the purged asset from its cache after 2 s`);
      return t;
    }),
  );
  for (const e of s.edges) {
    const c = (await get(`${e.url}/${other}`)).headers.get('cache-status') ?? '';
    expect(c.includes('; hit'), `${e.id}: the untagged asset left the cache too (${c})`);
  }
  return `purge ${body.id} accepted (202) in ${accepted.toFixed(0)} ms; every edge fetches the tagged asset again: ${perEdge(s, times)}; the untagged one stays a hit on all ${s.edges.length}`;
}

export async function prometheusTargets(s: StackUnderTest): Promise<CheckResult> {
  type Target = { labels: Record<string, string>; health: string; lastError: string; scrapeUrl: string };
  let targets: Target[] = [];
  const t = await waitFor(
    async () => {
      const res = await fetch(`${s.prometheus}/api/v1/targets?state=active`);
      targets = ((await res.json()) as { data: { activeTargets: Target[] } }).data.activeTargets;
      return targets.length > 0 && targets.every((x) => x.health === 'up');
    },
    90_000,
    1000,
  );
  const down = targets.filter((x) => x.health !== 'up').map((x) => `${x.scrapeUrl} ${x.health} ${x.lastError}`);
  expect(t >= 0, `Prometheus targets not all up after 90 s: ${down.join('; ') || 'none listed'}`);
  const jobs = new Map<string, number>();
  for (const x of targets) jobs.set(x.labels.job, (jobs.get(x.labels.job) ?? 0) + 1);
  // every edge, the origin and the balancer are scraped
  expect(jobs.get('edge') === s.edges.length, `Prometheus scrapes ${jobs.get('edge') ?? 0} edges, the stack has ${s.edges.length}`);
  return `${targets.length} targets up (${[...jobs].map(([j, n]) => `${j} ${n}`).join(', ')}) after ${(t / 1000).toFixed(1)} s`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * A bounded load through the balancer (127.0.0.1, keep-alive), one edge container
 * killed (docker kill) a third of the way in: every request must still be a 200 with
 * the right bytes.
 */
export async function killUnderLoad(s: StackUnderTest, options: { requests: number; concurrency: number }): Promise<CheckResult> {
  const keys = Array.from({ length: 16 }, (_, i) => `docker-run/load/${i}.txt`);
  for (const k of keys) expect((await put(s, k, `bytes of ${k}`)).status === 201, `PUT ${k} failed`);
  // which edge serves which key: the load hits them all; the busiest edge dies
  const owners = new Map<string, number>();
  for (const k of keys) {
    await get(`${s.balancer}/${k}`);
    const who = servedBy((await get(`${s.balancer}/${k}`)).headers.get('cache-status'));
    if (who) owners.set(who, (owners.get(who) ?? 0) + 1);
  }
  const victimId = [...owners].sort((a, b) => b[1] - a[1])[0]?.[0];
  const victim = s.edges.find((e) => e.id === victimId);
  expect(victim !== undefined, `no edge answered for the load's keys (${[...owners].join(' ')})`);

  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const base = new URL(s.balancer);
  const latencies: number[] = [];
  const failures: string[] = [];
  const servedBefore = new Map<string, number>();
  const servedAfter = new Map<string, number>();
  let issued = 0;
  let killedAt = -1;
  let killMs = 0;
  /** When the kill returned: requests started after it count as "after the kill". */
  let killDone = Infinity;
  const one = (key: string) =>
    new Promise<{ status: number; body: string; edge: string | null }>((resolve, reject) => {
      const req = http.get({ host: base.hostname, port: base.port, path: `/${key}`, agent, timeout: 70_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), edge: servedBy(res.headers['cache-status'] as string | undefined) }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('no answer in 70 s')));
      req.on('error', reject);
    });
  const started = Date.now();
  const worker = async () => {
    while (issued < options.requests && Date.now() - started < 180_000) {
      const n = issued++;
      if (n === Math.floor(options.requests / 3)) {
        killedAt = n;
        const t = process.hrtime.bigint();
        s.outages.push({ edge: victim.id, address: new URL(victim.url).hostname, from: Date.now(), to: Infinity });
        await s.docker.getContainer(victim.container).kill();
        killMs = ms(t);
        killDone = Date.now();
        s.killed = victim.container;
      }
      const key = keys[n % keys.length];
      const t0 = process.hrtime.bigint();
      const after = Date.now() > killDone;
      try {
        const r = await one(key);
        latencies.push(ms(t0));
        if (r.status !== 200 || r.body !== `bytes of ${key}`) failures.push(`#${n} ${key}: ${r.status} ${r.body.slice(0, 60)}`);
        const tally = after ? servedAfter : servedBefore;
        tally.set(r.edge ?? '?', (tally.get(r.edge ?? '?') ?? 0) + 1);
      } catch (err) {
        latencies.push(ms(t0));
        failures.push(`#${n} ${key}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  agent.destroy();
  const seconds = (Date.now() - started) / 1000;
  const sorted = [...latencies].sort((a, b) => a - b);
  const tally = (m: Map<string, number>) => [...m].sort().map(([e, n]) => `${e} ${n}`).join(', ');
  const figures =
    `${latencies.length} GETs (${options.concurrency} keep-alive connections, ${keys.length} keys) in ${seconds.toFixed(1)} s (${(latencies.length / seconds).toFixed(0)}/s); ` +
    `${victim.container} killed after request ${killedAt} (docker kill took ${killMs.toFixed(0)} ms); ` +
    `latency p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms; ` +
    `served by (started before the kill returned) ${tally(servedBefore)}, (after) ${tally(servedAfter)}; failed: ${failures.length}`;
  expect(issued >= options.requests, `the load stopped at its time bound after ${issued} requests: ${figures}`);
  expect(failures.length === 0, `${figures}\n  first failures: ${failures.slice(0, 5).join('\n  ')}`);
  expect((servedAfter.get(victim.id) ?? 0) === 0, `${victim.id} answered after it was killed: ${figures}`);
  return figures;
}

/**
 * The killed edge started again (`docker start`; `docker kill` is an operator's stop,
 * so the restart policy leaves it down): healthy again, although the killed nginx
 * left its unix socket behind (scripts/run-unit.sh removes it), answering directly,
 * and back in the balancer's rotation.
 */
export async function restartKilledEdge(s: StackUnderTest): Promise<CheckResult> {
  const victim = s.edges.find((e) => e.container === s.killed);
  expect(victim !== undefined, 'no edge was killed');
  const container = s.docker.getContainer(victim.container);
  const before = (await container.inspect()).State;
  expect(!before.Running, `${victim.container} runs again by itself (${before.Status}): the restart policy brought back a killed container`);
  const t0 = Date.now();
  await container.start();
  const healthy = await waitFor(async () => (await container.inspect()).State.Health?.Status === 'healthy', 60_000, 250);
  expect(healthy >= 0, `${victim.container} not healthy 60 s after docker start: ${(await container.inspect()).State.Health?.Log?.at(-1)?.Output ?? ''}`);
  for (const o of s.outages) if (o.edge === victim.id && o.to === Infinity) o.to = Date.now();
  const direct = await get(`${victim.url}/docker-run/load/0.txt`);
  expect(direct.status === 200 && direct.text === 'bytes of docker-run/load/0.txt', `${victim.id} answers ${direct.status} directly`);
  const t1 = Date.now();
  let i = 0;
  const back = await waitFor(async () => servedBy((await get(`${s.balancer}/docker-run/load/${i++ % 16}.txt`)).headers.get('cache-status')) === victim.id, 30_000, 50);
  expect(back >= 0, `the balancer sent ${victim.id} nothing in 30 s after it was healthy again`);
  return `${victim.container} (exit ${before.ExitCode}) started again: healthy after ${(healthy / 1000).toFixed(1)} s, answers directly (${direct.headers.get('cache-status')}), back in the balancer's rotation ${((Date.now() - t1) / 1000).toFixed(1)} s later (${i} GETs); ${((Date.now() - t0) / 1000).toFixed(1)} s in all`;
}

/** A file of a container (running or stopped; volumes included), through the Engine API's archive GET. */
export async function readContainerFile(docker: Docker, container: string, file: string): Promise<string> {
  const stream = (await docker.getContainer(container).getArchive({ path: file })) as unknown as NodeJS.ReadableStream;
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return firstFile(Buffer.concat(chunks)).toString('utf8');
}

/** An nginx error log line's time (`2026/01/31 12:00:00`, UTC in these containers), in ms. */
function loggedAt(line: string): number {
  const m = /^(\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d) /.exec(line);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : NaN;
}

/**
 * An error line the edges taken down on purpose cause in the balancer: its failed
 * tries on them (`upstream: "http://<address>:…"`, retried on the next edge), and its
 * health checker's probes that met one dying (`context: ngx.timer`: nginx names no
 * peer there, so these are excused by time, within an outage, to the second the log
 * keeps).
 */
export function excusedErrorLine(line: string, outages: StackUnderTest['outages'], now = Date.now()): boolean {
  if (outages.some((o) => line.includes(`upstream: "http://${o.address}:`))) return true;
  const at = loggedAt(line);
  return /context: ngx\.timer/.test(line) && outages.some((o) => at >= Math.floor(o.from / 1000) * 1000 && at <= (o.to === Infinity ? now : o.to) + 1000);
}

/** Every nginx container's error log, read once the stack has stopped: nothing at error level or above but excused lines. */
export async function nginxErrorLogs(s: StackUnderTest, logs: { container: string; file: string }[]): Promise<CheckResult> {
  const excused = (line: string) => excusedErrorLine(line, s.outages);
  const figures: string[] = [];
  const bad: string[] = [];
  for (const l of logs) {
    const lines = (await readContainerFile(s.docker, l.container, l.file)).split('\n').filter((x) => /\[(error|crit|alert|emerg)\]/.test(x));
    const unexpected = lines.filter((x) => !excused(x));
    figures.push(`${l.container.replace(/^.*?-(?=(edge-[a-z0-9]+-\d+|balancer)$)/, '')} ${lines.length - unexpected.length}/${lines.length}`);
    bad.push(...unexpected.map((x) => `${l.container}: ${x.slice(0, 300)}`));
  }
  expect(bad.length === 0, `unexpected errors in nginx's logs:\n  ${bad.slice(0, 8).join('\n  ')}`);
  return `${logs.length} error logs read (${logs.map((l) => l.file.replace(/^\/etc\/cdn\//, '')).join(', ')}); error lines excused (caused by the edges taken down: ${s.outages.map((o) => o.edge).join(', ') || 'none'}) / all: ${figures.join(', ')}`;
}

/**
 * A crash, unlike `docker kill`, is what the restart policy (`restart:
 * unless-stopped`) is for: another edge's main process is killed from this machine
 * (SIGKILL to the container's init by its pid), and the engine must start the
 * container again by itself, healthy and answering.
 */
export async function crashedEdgeRestarts(s: StackUnderTest): Promise<CheckResult> {
  const edge = s.edges.find((e) => e.container !== s.killed)!;
  const container = s.docker.getContainer(edge.container);
  const before = await container.inspect();
  const t0 = Date.now();
  const outage = { edge: edge.id, address: new URL(edge.url).hostname, from: t0, to: Infinity };
  s.outages.push(outage);
  process.kill(before.State.Pid, 'SIGKILL');
  const restarted = await waitFor(async () => {
    const now = await container.inspect();
    return now.RestartCount > before.RestartCount && now.State.Running;
  }, 30_000, 100);
  expect(restarted >= 0, `${edge.container} was not restarted within 30 s after its process died (restart policy ${before.HostConfig.RestartPolicy?.Name})`);
  const healthy = await waitFor(async () => (await container.inspect()).State.Health?.Status === 'healthy', 60_000, 250);
  expect(healthy >= 0, `${edge.container} restarted but not healthy within 60 s`);
  outage.to = Date.now();
  const r = await get(`${edge.url}/docker-run/load/0.txt`);
  expect(r.status === 200, `${edge.id} answers ${r.status} after its restart`);
  const after = await container.inspect();
  return `${edge.container}: pid ${before.State.Pid} killed; restarted by the engine (policy ${after.HostConfig.RestartPolicy?.Name}, restart count ${after.RestartCount}) after ${(restarted / 1000).toFixed(1)} s, healthy ${((Date.now() - t0) / 1000).toFixed(1)} s after the crash, answering`;
}
