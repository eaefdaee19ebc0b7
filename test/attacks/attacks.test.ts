/**
 * The attack suite (`npm run test:attacks`, part of `npm test`): what an attacker on
 * the internet tries against a shop's CDN, sent through the balancer of a real native
 * stack (origin, Redis, two edges, the balancer), with an external origin under
 * /shop/ that records what reaches it (the shop's own storefront server, the kind that
 * reflects headers and reads bodies). Each case names what it attacks and what the
 * safe answer is. Request smuggling and malformed framing are covered by
 * test/e2e/balancer-front-door.test.ts.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseSpec } from '../../infra/model/spec';
import { freePort } from '../../infra/targets/native/ports';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { startOrigin, type OriginUnderTest } from '../../origin/test/harness';
import { rawRequest, waitFor, type RawResponse } from '../support/http';
import { REPO_ROOT } from '../support/nginx-lua';

/** A test whose name says what it attacks and what the safe answer is. */
function attack(name: string, what: { attacks: string; safe: string }, fn: () => Promise<void>, timeout?: number): void {
  test(`${name}: attacks ${what.attacks}; safe answer: ${what.safe}`, fn, timeout);
}

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** The shop's own server behind /shop/: answers by path, and records everything it receives. */
class ShopOrigin {
  readonly seen: Seen[] = [];
  private server!: http.Server;
  port = 0;

  async start(): Promise<void> {
    this.port = await freePort();
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        this.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        this.answer(req, body, res);
      });
    });
    await new Promise<void>((r) => this.server.listen(this.port, '127.0.0.1', r));
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  hits(prefix: string): Seen[] {
    return this.seen.filter((s) => s.url.startsWith(prefix));
  }

  private answer(req: http.IncomingMessage, body: string, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://shop.internal');
    const who = req.headers.authorization ? `private data of ${req.headers.authorization}` : 'anonymous page';
    const headers: Record<string, string> = {};
    let text: string;
    if (url.pathname.startsWith('/shop/private/cdn-cc-max-age')) {
      Object.assign(headers, { 'CDN-Cache-Control': 'max-age=300', 'Cache-Control': 'no-cache' });
      text = who;
    } else if (url.pathname.startsWith('/shop/private/surrogate')) {
      Object.assign(headers, { 'Surrogate-Control': 'max-age=300', 'Cache-Control': 'private' });
      text = who;
    } else if (url.pathname.startsWith('/shop/private/cdn-cc-private')) {
      Object.assign(headers, { 'CDN-Cache-Control': 'private, max-age=300', 'Cache-Control': 'max-age=300' });
      text = who;
    } else if (url.pathname.startsWith('/shop/account')) {
      // what a logged-in page should say: private; the CDN must not store it whatever the path looks like
      Object.assign(headers, { 'Cache-Control': 'private', 'Content-Type': 'text/css' });
      text = req.headers.cookie ? `orders of ${req.headers.cookie}` : 'please log in';
    } else {
      // a storefront page that reflects what it was sent (the poisoning target)
      Object.assign(headers, { 'Cache-Control': 'public, max-age=300', 'Content-Type': 'text/plain', Vary: 'Accept-Encoding' });
      text = JSON.stringify({ host: req.headers.host, url: req.url, body, fwdHost: req.headers['x-forwarded-host'] ?? null, override: req.headers['x-http-method-override'] ?? null });
    }
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : text);
  }
}

let stack: UpResult;
let stateDir: string;
let shop: ShopOrigin;
let adminToken: string;
let debugToken: string;
let balancer: string;

const auth = (token = adminToken) => ({ Authorization: `Bearer ${token}` });

async function upload(key: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${stack.state.origin}/v1/assets/${key}`, { method: 'PUT', headers: { 'Content-Type': 'text/plain', ...auth(), ...headers }, body });
}

/** A fresh path under /shop/ for one case. */
let n = 0;
const fresh = (p: string) => `/shop/${p}-${++n}`;

function send(pathname: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<RawResponse> {
  return rawRequest(balancer, pathname, options);
}

/**
 * Writes raw bytes on a new connection; resolves with what came back, when the first
 * of it came (ms, -1 for never) and when the connection ended (ms).
 */
function rawExchange(payload: (socket: net.Socket) => void, timeoutMs: number): Promise<{ data: string; answeredAfterMs: number; closedAfterMs: number }> {
  const u = new URL(balancer);
  return new Promise((resolve) => {
    const started = Date.now();
    let data = '';
    let answeredAfterMs = -1;
    const socket = net.connect(Number(u.port), u.hostname, () => payload(socket));
    const done = () => resolve({ data, answeredAfterMs, closedAfterMs: Date.now() - started });
    socket.on('data', (c: Buffer) => {
      if (answeredAfterMs < 0) answeredAfterMs = Date.now() - started;
      data += c.toString('latin1');
    });
    socket.on('close', done);
    socket.on('error', () => undefined);
    setTimeout(() => socket.destroy(), timeoutMs);
  });
}

const CLIENT_TIMEOUT = 2;

beforeAll(async () => {
  shop = new ShopOrigin();
  await shop.start();
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-attacks-'));
  const spec = parseSpec({
    regions: [{ name: 'eu', edges: 2 }],
    origins: [{ match: '/shop/', url: `http://127.0.0.1:${shop.port}` }],
    // short, so the slow-client cases finish quickly (the default is 10 s)
    balancer: { clientTimeout: CLIENT_TIMEOUT },
  });
  stack = await up({ spec, stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  adminToken = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  debugToken = fs.readFileSync(stack.state.debugTokenFile, 'utf8').trim();
  balancer = stack.state.balancer;
}, 90000);

afterAll(async () => {
  await stack?.stop();
  await shop?.stop();
  fs.rmSync(stateDir, { recursive: true, force: true });
});

describe('the origin API through the CDN', () => {
  attack('writes and reads of the API sent to the balancer', { attacks: 'the asset and purge API from the internet (a leaked token works anywhere)', safe: '404 from the origin\'s delivery listener, nothing stored or purged' }, async () => {
    expect((await upload('api/kept.txt', 'kept')).status).toBe(201);
    const tries: [string, string, string | undefined][] = [
      ['PUT', '/v1/assets/api/planted.txt', 'planted'],
      ['DELETE', '/v1/assets/api/kept.txt', undefined],
      ['POST', '/v1/purge', JSON.stringify({ prefixes: ['/'] })],
      ['GET', '/v1/assets?prefix=api/', undefined],
      ['GET', '/docs/openapi.json', undefined],
      ['GET', '/metrics', undefined],
    ];
    for (const [method, p, body] of tries) {
      const res = await send(p, { method, headers: { ...auth(), 'Content-Type': body?.startsWith('{') ? 'application/json' : 'text/plain' }, body });
      expect([method, p, res.status]).toEqual([method, p, 404]);
    }
    expect((await fetch(`${stack.state.origin}/v1/assets/api/planted.txt`, { headers: auth() })).status).toBe(404);
    expect((await fetch(`${stack.state.origin}/v1/assets/api/kept.txt`, { headers: auth() })).status).toBe(200);
  });

  attack('a 128 MB unauthenticated upload sent to the balancer', { attacks: 'the balancer\'s and edges\' memory and disk (bodies read whole before the origin refuses)', safe: '413 at once on the declared length, before any body is read' }, async () => {
    const { data, answeredAfterMs } = await rawExchange((s) => s.write(`PUT /v1/assets/big.bin HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/octet-stream\r\nContent-Length: ${128 * 1024 * 1024}\r\n\r\n`), 3000);
    expect(data).toMatch(/^HTTP\/1\.1 413 /);
    expect(answeredAfterMs).toBeGreaterThanOrEqual(0);
    expect(answeredAfterMs).toBeLessThan(1000);
  });
});

describe('web cache poisoning', () => {
  for (const [name, p] of [
    ['CDN-Cache-Control max-age with Cache-Control no-cache', 'private/cdn-cc-max-age'],
    ['Surrogate-Control max-age with Cache-Control private', 'private/surrogate'],
    ['CDN-Cache-Control private, max-age', 'private/cdn-cc-private'],
  ]) {
    attack(`a private answer marked for the CDN (${name})`, { attacks: 'one shopper\'s data served to the next (a response to a request with Authorization stored)', safe: 'not stored: the next anonymous client gets its own page' }, async () => {
      const target = fresh(p);
      const victim = await send(target, { headers: { Authorization: 'Bearer victim-session' } });
      expect(victim.body.toString()).toContain('private data');
      const next = await send(target);
      expect(next.body.toString()).toBe('anonymous page');
    });
  }

  attack('a GET with a body (fat GET)', { attacks: 'a stored page shaped by a body the key does not contain (origins that read GET bodies)', safe: '400 at the edge; the body never reaches the origin; the clean GET is unpoisoned' }, async () => {
    const target = fresh('fat-get');
    const body = 'q=<script>alert(1)</script>';
    // (Node sends a GET's body only with an explicit length)
    const fat = await send(target, { method: 'GET', headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': String(body.length) }, body });
    expect(fat.status).toBe(400);
    const chunked = await rawExchange((s) => s.write(`GET ${target} HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nq=<s>\r\n0\r\n\r\n`), 3000);
    expect(chunked.data).toMatch(/^HTTP\/1\.1 400 /);
    const clean = await send(target);
    expect(clean.status).toBe(200);
    expect(clean.body.toString()).not.toContain('script');
    expect(shop.hits(target).every((s) => s.body === '')).toBe(true);
  });

  attack('unkeyed override and forwarding headers', { attacks: 'a stored page shaped by headers the key does not contain (method and URL overrides, claimed host, scheme, client address)', safe: 'none reaches the origin' }, async () => {
    const target = fresh('unkeyed');
    const unkeyed = {
      'X-Forwarded-Host': 'evil.test', 'X-Host': 'evil.test', 'X-Original-Host': 'evil.test', 'X-Forwarded-Server': 'evil.test',
      'X-HTTP-Method-Override': 'DELETE', 'X-HTTP-Method': 'DELETE', 'X-Method-Override': 'DELETE',
      'X-Original-URL': '/admin', 'X-Rewrite-URL': '/admin', 'X-Forwarded-Prefix': '/evil',
      'X-Forwarded-Scheme': 'http', 'X-Forwarded-Ssl': 'off', 'Front-End-Https': 'off',
      'True-Client-IP': '6.6.6.6', 'X-Client-IP': '6.6.6.6',
    };
    await send(target, { headers: unkeyed });
    const reached = shop.hits(target)[0].headers;
    for (const name of Object.keys(unkeyed)) expect([name, reached[name.toLowerCase()]]).toEqual([name, undefined]);
    expect((await send(target)).body.toString()).not.toContain('evil');
  });

  attack('parameter cloaking', { attacks: 'a parameter hidden from the key inside a dropped one (utm_source=x;callback=evil) or duplicated', safe: 'the origin receives exactly the query the key holds' }, async () => {
    const target = fresh('cloak');
    await send(`${target}?utm_source=x;callback=evil&b=2&a=1&a=0`);
    expect(shop.hits(target).map((s) => s.url)).toEqual([`${target}?a=0&a=1&b=2`]);
  });

  attack('Host variations', { attacks: 'a page stored for one host served for another (reflected Host)', safe: 'each host is its own key; an equivalent spelling shares it' }, async () => {
    const target = fresh('host');
    const evil = await send(target, { headers: { Host: 'evil.test' } });
    expect(evil.body.toString()).toContain('evil.test');
    const shopPage = await send(target, { headers: { Host: 'shop.example' } });
    expect(shopPage.body.toString()).not.toContain('evil.test');
    const spelled = await send(target, { headers: { Host: 'SHOP.example:80' } });
    expect(spelled.headers['cache-status']).toContain('hit');
  });

  attack('Vary explosion', { attacks: 'the cache filled with variants of one page (junk Accept-Encoding values)', safe: 'at most three variants (br, gzip, identity) stored' }, async () => {
    const target = fresh('vary');
    for (let i = 0; i < 40; i++) await send(target, { headers: { 'Accept-Encoding': `junk-${i}, gzip;q=0.${i % 9}` } });
    expect(shop.hits(target).length).toBeLessThanOrEqual(3);
  });

  attack('cache-poisoned denial of service', { attacks: 'an error page stored for everyone (oversized header, control character, method override)', safe: 'the attacker alone gets the error; the next clean request gets 200' }, async () => {
    const target = fresh('cpdos');
    const huge = await send(target, { headers: { 'X-Junk': 'a'.repeat(20000) } });
    expect(huge.status).toBeGreaterThanOrEqual(400);
    const bell = await rawExchange((s) => s.write(`GET ${target} HTTP/1.1\r\nHost: shop.example\r\nX-Bad: a\x07b\r\n\r\n`), 3000);
    expect(bell.data).toMatch(/^HTTP\/1\.1 400 /);
    await send(target, { headers: { 'X-HTTP-Method-Override': 'DELETE' } });
    const clean = await send(target);
    expect(clean.status).toBe(200);
    expect(JSON.parse(clean.body.toString()).override).toBeNull();
  });
});

describe('web cache deception and path confusion', () => {
  attack('a logged-in page under a static-looking path', { attacks: 'an account page stored because its URL ends in .css (/account/x.css, ;x.css, %2fx.css, %3fx.css)', safe: 'never stored (the origin said private) or refused; anonymous clients never see it' }, async () => {
    for (const p of ['/shop/account/x.css', '/shop/account;x.css', '/shop/account%3fx.css']) {
      await send(p, { headers: { Cookie: 'session=victim' } });
      const anonymous = await send(p);
      expect([p, anonymous.body.toString()]).toEqual([p, 'please log in']);
    }
    expect((await send('/shop/account%2fx.css', { headers: { Cookie: 'session=victim' } })).status).toBe(400);
  });

  attack('traversal in the path', { attacks: 'a key or origin path escaping its prefix (.., %2e%2e, encoded slash)', safe: '400 before any lookup' }, async () => {
    for (const p of ['/shop/../v1/assets', '/shop/%2e%2e/v1/assets', '/shop/a%2f..%2f..%2fv1']) expect([p, (await send(p)).status]).toEqual([p, 400]);
  });
});

describe('slow clients', () => {
  attack('a header sent a byte at a time (slowloris)', { attacks: 'the balancer\'s connections, held open by clients that never finish their header', safe: `cut off after ${CLIENT_TIMEOUT} s` }, async () => {
    const { closedAfterMs } = await rawExchange((s) => {
      s.write('GET / HTTP/1.1\r\nHost: shop.example\r\n');
      const drip = setInterval(() => (s.destroyed ? clearInterval(drip) : s.write('X-A: b\r\n')), 3000);
      s.on('close', () => clearInterval(drip));
    }, 20000);
    expect(closedAfterMs).toBeLessThan((CLIENT_TIMEOUT + 2) * 1000);
  }, 30000);

  attack('a body sent a byte at a time', { attacks: 'connections and upload slots held by a body that never ends', safe: `cut off after ${CLIENT_TIMEOUT} s without progress` }, async () => {
    const target = fresh('slow-body');
    const { closedAfterMs } = await rawExchange((s) => {
      s.write(`POST ${target} HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nx`);
      const drip = setInterval(() => (s.destroyed ? clearInterval(drip) : s.write('x')), (CLIENT_TIMEOUT + 1) * 1000);
      s.on('close', () => clearInterval(drip));
    }, 20000);
    expect(closedAfterMs).toBeLessThan((CLIENT_TIMEOUT + 3) * 1000);
  }, 30000);
});

describe('ranges', () => {
  attack('a request for a thousand ranges', { attacks: 'bandwidth and CPU (a multipart answer many times the object)', safe: 'the whole object once (200), never multipart' }, async () => {
    expect((await upload('ranges/small.txt', 'x'.repeat(2000))).status).toBe(201);
    const ranges = Array.from({ length: 1000 }, (_, i) => `${i}-${i + 1}`).join(',');
    const res = await send('/ranges/small.txt', { headers: { Range: `bytes=${ranges}` } });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(2000);
    expect(String(res.headers['content-type'])).not.toContain('multipart');
  });
});

describe('purge abuse', () => {
  attack('PURGE and BAN methods on the public side', { attacks: 'the cache from the internet (purge methods other caches accept)', safe: '405' }, async () => {
    for (const method of ['PURGE', 'BAN']) expect((await send('/ranges/small.txt', { method })).status).toBe(405);
  });

  attack('URL purges of paths never fetched', { attacks: 'the edges\' purge counters (filling the zone forces every edge to drop its whole cache)', safe: 'no counter for a path that cannot be stored; the cache stays warm' }, async () => {
    expect((await upload('purges/warm.txt', 'warm')).status).toBe(201);
    const warm = async () => Promise.all(stack.state.edges.map(async (e) => (await rawRequest(e.url, '/purges/warm.txt')).headers['cache-status']));
    await warm();
    expect((await warm()).every((s) => String(s).includes('hit'))).toBe(true);
    for (let batch = 0; batch < 20; batch++) {
      const urls = Array.from({ length: 500 }, (_, i) => `/never/fetched/${batch}-${i}`);
      const res = await fetch(`${stack.state.origin}/v1/purge`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify({ urls: urls.slice(0, 1000) }) });
      expect(res.status).toBe(202);
    }
    // the last purge reached every edge
    await waitFor(async () => false, 1500);
    expect((await warm()).every((s) => String(s).includes('hit'))).toBe(true);
    for (const e of stack.services.filter((s) => s.unit.role === 'edge')) {
      expect(fs.readFileSync(path.join(e.unit.dir, 'logs', 'error.log'), 'utf8')).not.toContain('shared zone full');
    }
  }, 60000);
});

describe('uploads and tokens', () => {
  let scoped: OriginUnderTest;
  const PURGE_ONLY = 'purge-only-token-0123456789';

  beforeAll(async () => {
    // An origin with a purge-only token, on the stack's own Redis (its purges reach the stack's edges).
    const tokens = path.join(stateDir, 'tokens.json');
    fs.writeFileSync(tokens, JSON.stringify([{ name: 'purger', token: PURGE_ONLY, scopes: ['purge'] }]));
    scoped = await startOrigin(stack.state.redis, { CDN_TOKENS_FILE: tokens });
  });

  afterAll(async () => {
    await scoped?.close();
  });

  attack('a purge-only token purging everything', { attacks: 'every edge\'s whole cache, with a token meant for product purges', safe: '403: the prefix "/" needs the admin scope' }, async () => {
    const all = await scoped.request('POST', '/v1/purge', { headers: { Authorization: `Bearer ${PURGE_ONLY}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ prefixes: ['/'] }) });
    expect(all.status).toBe(403);
    const some = await scoped.request('POST', '/v1/purge', { headers: { Authorization: `Bearer ${PURGE_ONLY}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ prefixes: ['/products/'] }) });
    expect(some.status).toBe(202);
  });

  attack('a tag with a comma', { attacks: 'purges reported complete that never purge (edges split Surrogate-Key on commas)', safe: '400 at upload and at purge' }, async () => {
    expect((await upload('tags/comma.txt', 'x', { 'Surrogate-Key': 'sale,summer' })).status).toBe(400);
    const purge = await fetch(`${stack.state.origin}/v1/purge`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify({ tags: ['sale,summer'] }) });
    expect(purge.status).toBe(400);
  });

  attack('script-bearing XML uploaded under an XML type', { attacks: 'shoppers\' sessions (an SVG with script opened from the CDN\'s host)', safe: 'served with the sandbox Content-Security-Policy' }, async () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>';
    for (const type of ['image/svg+xml', 'text/xml', 'application/xml', 'application/xhtml+xml']) {
      const key = `xml/${type.replace(/\W/g, '-')}.xml`;
      expect([type, (await upload(key, svg, { 'Content-Type': type })).status]).toEqual([type, 201]);
      const res = await send(`/${key}`);
      expect([type, res.headers['content-security-policy']]).toEqual([type, expect.stringContaining('sandbox')]);
    }
  });

  attack('bytes that are not what their type says', { attacks: 'a script or page served as an image (type confusion)', safe: '400: nothing stored' }, async () => {
    expect((await upload('confused/logo.png', '<html><script>alert(1)</script></html>', { 'Content-Type': 'image/png' })).status).toBe(400);
  });

  attack('the admin token at an edge', { attacks: 'origin admin by owning an edge, or the admin token sent over the public listener for debugging', safe: 'edges hold only the debug token; the admin token unlocks nothing there, the debug token nothing at the API' }, async () => {
    expect((await upload('tokens/debug.txt', 'x')).status).toBe(201);
    const withAdmin = await send('/tokens/debug.txt', { headers: { 'X-Cdn-Debug': adminToken } });
    expect(withAdmin.headers['x-cdn-debug']).toContain('denied');
    expect(withAdmin.headers['x-cdn-debug-key']).toBeUndefined();
    const withDebug = await send('/tokens/debug.txt', { headers: { 'X-Cdn-Debug': debugToken } });
    expect(withDebug.headers['x-cdn-debug-key']).toBeDefined();
    expect((await upload('tokens/by-debug.txt', 'x', auth(debugToken))).status).toBe(403);
    for (const e of stack.services.filter((s) => s.unit.role === 'edge')) {
      const settings = fs.readFileSync(path.join(e.unit.dir, 'edge.json'), 'utf8');
      expect(settings).not.toContain('admin-token');
      expect(settings).not.toContain(adminToken);
    }
  });
});
