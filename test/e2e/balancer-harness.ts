/**
 * A real balancer (rendered by balancer/render.ts, run by the native supervisor) in
 * front of stand-in edges: small nginx processes that answer like an edge (JSON
 * echo of what they received, `Cache-Status: <id>; hit`, /healthz on an internal
 * listener) and can be killed and restarted on the same ports. Used by the
 * balancer's end-to-end tests; the whole native stack is used where real edges
 * matter (the status page test, the benchmark).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { renderBalancer } from '../../balancer/render';
import { debianLayout } from '../../infra/model/layout';
import { clientLimits, renderNginxConf } from '../../infra/render/nginx';
import { freePort } from '../../infra/targets/native/ports';
import { checkHealth, isAlive, reloadUnit, reportsRevision, startAll, stopPid, type RunningService } from '../../infra/targets/native/supervisor';
import { parseSpec, type CdnSpecInput } from '../../infra/model/spec';
import type { EdgePlacement, Topology } from '../../infra/model/topology';
import type { ServiceUnit } from '../../infra/units/units';
import { REPO_ROOT } from '../support/nginx-lua';

const HOST = '127.0.0.1';

export interface FakeEdge {
  id: string;
  region: string;
  port: number;
  internalPort: number;
  pid: number;
  dir: string;
  url: string;
  /** SIGKILL the whole process group (a crashed edge). */
  kill(): Promise<void>;
  /** Start again on the same ports. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

function fakeEdgeConf(dir: string, id: string, port: number, internalPort: number): string {
  const layout = debianLayout({ repoRoot: REPO_ROOT, stateDir: dir });
  return renderNginxConf({
    layout,
    workers: 1,
    client: clientLimits(parseSpec({})),
    luaRoots: [],
    sharedDicts: { fake: { size: '1m', holds: 'nothing: a fake edge' } },
    init: '',
    initWorker: '',
    continueRequestId: true,
    http: `    client_body_temp_path tmp;
    server {
        listen ${HOST}:${port} backlog=4096;
        location / {
            content_by_lua_block {
                local cjson = require "cjson"
                local args = ngx.req.get_uri_args()
                if args.sleep then ngx.sleep(tonumber(args.sleep)) end
                ngx.req.read_body()
                ngx.header["Content-Type"] = "application/json"
                ngx.header["Cache-Status"] = ${JSON.stringify(id)} .. (args.miss and "; fwd=uri-miss; stored" or "; hit")
                if args.status then ngx.status = tonumber(args.status) end
                if args.date then ngx.header["Date"] = args.date end
                ngx.say(cjson.encode({ edge = ${JSON.stringify(id)}, method = ngx.var.request_method,
                    uri = ngx.var.request_uri, headers = ngx.req.get_headers(),
                    body = ngx.req.get_body_data() or "" }))
            }
        }
    }
    server {
        listen ${HOST}:${internalPort};
        location = /healthz { return 200 '{"status":"ok"}'; }
    }`,
  });
}

export async function startFakeEdge(id: string, region: string): Promise<FakeEdge> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cdn-fake-${id}-`));
  for (const d of ['conf', 'logs', 'tmp']) fs.mkdirSync(path.join(dir, d));
  const port = await freePort();
  const internalPort = await freePort();
  const conf = path.join(dir, 'conf', 'nginx.conf');
  fs.writeFileSync(conf, fakeEdgeConf(dir, id, port, internalPort));
  const edge: FakeEdge = {
    id,
    region,
    port,
    internalPort,
    pid: 0,
    dir,
    url: `http://${HOST}:${port}`,
    async start() {
      const child = spawn('/usr/sbin/nginx', ['-p', dir, '-c', conf, '-e', path.join(dir, 'logs', 'error.log'), '-g', 'daemon off;'], { stdio: 'ignore', detached: true });
      child.unref();
      edge.pid = child.pid!;
      const deadline = Date.now() + 10000;
      while (!(await checkHealth({ kind: 'http', url: `http://${HOST}:${internalPort}/healthz` }, 500))) {
        if (Date.now() > deadline) throw new Error(`fake edge ${id} did not start`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async kill() {
      try {
        process.kill(-edge.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      const deadline = Date.now() + 5000;
      while (isAlive(edge.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      // the port must be free again before a restart
      while (!(await portFree(port)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    },
    async stop() {
      await stopPid(edge.pid);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await edge.start();
  return edge;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: HOST, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

export interface BalancerHandle {
  url: string;
  internal: string;
  port: number;
  dir: string;
  unit: ServiceUnit;
  svc: RunningService;
  errorLog(): string;
  status(): Promise<StatusDoc>;
  /** Re-render for another set of edges (or spec) and reload without a restart. */
  reload(edges: FakeEdge[], specInput?: CdnSpecInput): Promise<void>;
  stop(): Promise<void>;
}

export interface StatusEdge {
  id: string;
  region: string;
  up: boolean;
  requests: number;
  in_flight: number;
  rps: number;
  hits: number;
  misses: number;
  hit_ratio?: number;
  status: Record<string, number>;
  health: { up: boolean; last_check?: string; failures: number };
}

export interface StatusDoc {
  revision: string;
  edges: StatusEdge[];
  regions: { name: string; requests: number; edges_up: number; edges_total: number }[];
  fleet: { requests: number; rps: number; unrouted: number; edges_up: number; edges_total: number };
  history: number[];
}

function topologyFor(edges: FakeEdge[], ports: { traffic: number; internal: number }): Topology {
  const at = (port: number) => ({ listen: { host: HOST, port }, reach: { host: HOST, port } });
  const counters = new Map<string, number>();
  const placements: EdgePlacement[] = edges.map((e) => {
    const index = (counters.get(e.region) ?? 0) + 1;
    counters.set(e.region, index);
    return { id: e.id, region: e.region, index, traffic: at(e.port), internal: at(e.internalPort) };
  });
  return {
    redis: at(1),
    origin: at(1),
    originApi: at(1),
    balancer: { traffic: at(ports.traffic), internal: at(ports.internal) },
    edges: placements,
    prometheus: null,
    publicBaseUrl: `http://${HOST}:${ports.traffic}`,
  };
}

function balancerUnit(dir: string, specInput: CdnSpecInput, edges: FakeEdge[], ports: { traffic: number; internal: number }): ServiceUnit {
  const spec = parseSpec(specInput);
  const layout = debianLayout({ repoRoot: REPO_ROOT, stateDir: dir });
  const unitDir = layout.unitDir('balancer');
  return {
    name: 'balancer',
    role: 'balancer',
    packages: [],
    group: 'balancer',
    trees: [],
    user: 'root',
    secrets: [],
    volumes: [],
    reads: [],
    hostPaths: [],
    accepts: [],
    dir: unitDir,
    dirs: ['logs', 'tmp', 'conf', 'cache'],
    files: renderBalancer(spec, topologyFor(edges, ports), layout),
    command: [layout.nginx, '-p', unitDir, '-c', path.join(unitDir, 'conf', 'nginx.conf'), '-e', path.join(unitDir, 'logs', 'error.log'), '-g', 'daemon off;'],
    env: {},
    health: { kind: 'http', url: `http://${HOST}:${ports.internal}/healthz` },
    url: `http://${HOST}:${ports.traffic}`,
    dependsOn: [],
  };
}

/** `specInput.regions` must name the fake edges' regions with their counts. */
export async function startBalancer(specInput: CdnSpecInput, edges: FakeEdge[]): Promise<BalancerHandle> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-balancer-'));
  const ports = { traffic: await freePort(), internal: await freePort() };
  let unit = balancerUnit(dir, specInput, edges, ports);
  const [svc] = await startAll([unit], { timeoutMs: 10000 });
  const internal = `http://${HOST}:${ports.internal}`;
  const handle: BalancerHandle = {
    url: `http://${HOST}:${ports.traffic}`,
    internal,
    port: ports.traffic,
    dir: unit.dir,
    unit,
    svc,
    errorLog: () => fs.readFileSync(path.join(unit.dir, 'logs', 'error.log'), 'utf8'),
    status: async () => (await (await fetch(`${internal}/status.json`)).json()) as StatusDoc,
    async reload(newEdges, newSpec = specInput) {
      unit = balancerUnit(dir, newSpec, newEdges, ports);
      handle.unit = unit;
      const revision = JSON.parse(unit.files.find((f) => f.path === 'balancer.json')!.content).revision as string;
      await reloadUnit(svc, unit, { ready: () => reportsRevision(`${internal}/healthz`, revision) });
    },
    async stop() {
      await stopPid(svc.pid);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return handle;
}

/** Lines at error level or worse that are not in `expected` (substrings). */
export function unexpectedErrors(log: string, expected: string[] = []): string[] {
  return log.split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l) && !expected.some((e) => l.includes(e)));
}

/**
 * Stops a test file's balancer and fake edges; returns the error-log lines of the
 * balancer that are not among `expected` (unexpectedErrors), for its afterAll.
 */
export async function stopBalancerAndEdges(balancer: BalancerHandle | undefined, edges: FakeEdge[] | undefined, expected: string[] = []): Promise<string[]> {
  const log = balancer ? balancer.errorLog() : '';
  await balancer?.stop();
  await Promise.all((edges ?? []).map((e) => e.stop()));
  return unexpectedErrors(log, expected);
}

export interface RawExchange {
  /** Everything the server sent before it closed or the wait ended. */
  text: string;
  statuses: number[];
  closed: boolean;
}

/** Writes `bytes` on one connection and collects the answer (pipelining-aware). */
export function rawExchange(port: number, bytes: string | Buffer, waitMs = 800, localAddress?: string): Promise<RawExchange> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: HOST, localAddress });
    let text = '';
    let closed = false;
    const finish = () => {
      socket.destroy();
      resolve({ text, statuses: [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1])), closed });
    };
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (d) => (text += d.toString('latin1')));
    socket.on('end', () => {
      closed = true;
      clearTimeout(timer);
      finish();
    });
    socket.on('error', () => {
      closed = true;
      clearTimeout(timer);
      finish();
    });
    socket.write(bytes);
  });
}

/** GET through the balancer from a chosen loopback address; returns status and the edge's echo. */
export async function echo(base: string, pathAndQuery: string, options: { headers?: Record<string, string>; method?: string; localAddress?: string; body?: string } = {}): Promise<{ status: number; edge: string | null; json: any; headers: Record<string, string | string[] | undefined> }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: pathAndQuery, method: options.method ?? 'GET', headers: options.headers, localAddress: options.localAddress, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let json: any = null;
          try {
            json = JSON.parse(text);
          } catch {
            /* not an echo */
          }
          resolve({ status: res.statusCode ?? 0, edge: json?.edge ?? null, json, headers: res.headers });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}
