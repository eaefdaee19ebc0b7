/**
 * One real edge (nginx + the project's Lua, rendered by edge/render.ts) in front of
 * a scriptable origin (a Node HTTP server whose answers each test sets), with a real
 * Redis for the purge stream. For tests of HTTP caching behaviour, where the origin's
 * headers must be exactly what the case needs.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { debianLayout } from '../../infra/model/layout';
import { freePort } from '../../infra/targets/native/ports';
import { startUnit, stopPid, waitHealthy, writeUnitFiles } from '../../infra/targets/native/supervisor';
import { parseSpec, type CdnSpecInput } from '../../infra/model/spec';
import type { Topology } from '../../infra/model/topology';
import { edgeUnit } from '../../infra/units/units';
import { REPO_ROOT } from './nginx-lua';
import { startRedis, type RedisHandle } from './redis-server';

/** The admin token the harness gives its edge. */
/** The token the harness's edge accepts in X-Cdn-Debug. */
export const DEBUG_TOKEN = 'edge-harness-debug-token';
/** The harness edge's URL signing keys: k2 current, k1 the previous one (still accepted). */
export const URL_SIGNING_KEYS = 'k2:edge-harness-signing-key-two,k1:edge-harness-signing-key-one';

export interface OriginReply {
  status?: number;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Milliseconds to wait before answering. */
  delayMs?: number;
  /** Sent first, as a 103 Early Hints response (Node's writeEarlyHints). */
  earlyHints?: Record<string, string>;
}

export type OriginHandler = (req: http.IncomingMessage) => OriginReply | Promise<OriginReply>;

export interface EdgeHarness {
  url: string;
  originUrl: string;
  /** pid of the edge's nginx master. */
  pid: number;
  /** The edge unit's directory (conf/, logs/, cache/). */
  dir: string;
  internalUrl: string;
  redis: RedisHandle;
  /** Requests the origin received, in order. */
  originRequests: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  setOrigin(handler: OriginHandler): void;
  /** Stops answering (connection refused) until `startOrigin` is called again. */
  stopOrigin(): Promise<void>;
  startOrigin(): Promise<void>;
  errorLog(): string;
  stop(): Promise<void>;
}

export interface EdgeOptions {
  /** Shared-dict sizes overriding the rendered ones (`{ cdn_gens: '12k' }`), to fill zones in tests. */
  dicts?: Record<string, string>;
}

export async function startEdge(specInput: CdnSpecInput = {}, options: EdgeOptions = {}): Promise<EdgeHarness> {
  const spec = parseSpec({ regions: [{ name: 'lab', edges: 1 }], ...specInput });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-edge-'));
  const redis = await startRedis();
  const originPort = await freePort();
  const originRequests: EdgeHarness['originRequests'] = [];
  let handler: OriginHandler = () => ({ status: 404, body: 'no handler\n' });

  const server = http.createServer(async (req, res) => {
    originRequests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    const reply = await handler(req);
    if (reply.earlyHints) res.writeEarlyHints(reply.earlyHints);
    if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
    const body = reply.body ?? '';
    const headers = { ...(reply.headers ?? {}) };
    const status = reply.status ?? 200;
    // like a real origin, say how long the body is (nginx then cuts ranges on a miss too)
    // (unless the handler asks for a chunked body, whose length goes unannounced)
    if (status !== 304 && status !== 204 && !Object.keys(headers).some((h) => ['content-length', 'transfer-encoding'].includes(h.toLowerCase()))) {
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' || status === 304 || status === 204 ? undefined : body);
  });
  server.keepAliveTimeout = 60000;
  const listen = () => new Promise<void>((resolve) => server.listen(originPort, '127.0.0.1', resolve));
  await listen();

  const at = (port: number) => ({ listen: { host: '127.0.0.1', port }, reach: { host: '127.0.0.1', port } });
  const edgePlacement = { id: 'lab-1', region: 'lab', index: 1, traffic: at(await freePort()), internal: at(await freePort()) };
  const topology: Topology = {
    redis: at(redis.port),
    origin: at(originPort),
    // (the edge only reaches the delivery listener; nothing here serves an API)
    originApi: at(await freePort()),
    balancer: { traffic: at(await freePort()), internal: at(await freePort()) },
    edges: [edgePlacement],
    prometheus: null,
    publicBaseUrl: 'http://127.0.0.1',
  };
  const layout = debianLayout({ repoRoot: REPO_ROOT, stateDir: dir });
  const debugTokenFile = path.join(dir, 'debug-token');
  fs.writeFileSync(debugTokenFile, `${DEBUG_TOKEN}\n`, { mode: 0o600 });
  const urlSigningKeysFile = path.join(dir, 'url-signing-keys');
  fs.writeFileSync(urlSigningKeysFile, `${URL_SIGNING_KEYS}\n`, { mode: 0o600 });
  const unit = edgeUnit(spec, topology, edgePlacement, layout, { debugTokenFile, urlSigningKeysFile });
  for (const [name, size] of Object.entries(options.dicts ?? {})) {
    const conf = unit.files.find((f) => f.path === 'conf/nginx.conf')!;
    const resized = conf.content.replace(new RegExp(`lua_shared_dict ${name} \\S+;`), `lua_shared_dict ${name} ${size};`);
    if (resized === conf.content) throw new Error(`no lua_shared_dict ${name} in the edge's nginx.conf`);
    conf.content = resized;
  }
  writeUnitFiles(unit);
  const svc = startUnit(unit);
  try {
    await waitHealthy(svc, 10000);
  } catch (err) {
    server.close();
    await redis.stop();
    throw err;
  }
  const errorLog = () => {
    try {
      return fs.readFileSync(path.join(unit.dir, 'logs', 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  return {
    url: `http://127.0.0.1:${edgePlacement.traffic.listen.port}`,
    originUrl: `http://127.0.0.1:${originPort}`,
    pid: svc.pid,
    dir: unit.dir,
    internalUrl: `http://127.0.0.1:${edgePlacement.internal.listen.port}`,
    redis,
    originRequests,
    setOrigin: (h) => {
      handler = h;
    },
    stopOrigin: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    startOrigin: listen,
    errorLog,
    stop: async () => {
      await stopPid(svc.pid);
      server.closeAllConnections();
      server.close();
      await redis.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
