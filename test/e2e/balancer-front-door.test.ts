/**
 * Front-door safety at the balancer, over raw sockets because framing is the point:
 * every malformed request is refused and the connection closed, so a pipelined
 * request behind it is never answered (docs/design-notes.md §3, scenarios 9, 10, 18).
 * Where nginx 1.22 refuses by itself the test pins its answer; the rest is the
 * balancer's Lua (cdn.balancer.front).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { echo, rawExchange, startBalancer, startFakeEdge, unexpectedErrors, type BalancerHandle, type FakeEdge } from './balancer-harness';

let edge: FakeEdge;
let balancer: BalancerHandle;

const NEXT = 'GET /second HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n';

beforeAll(async () => {
  edge = await startFakeEdge('eu-1', 'eu');
  balancer = await startBalancer({ regions: [{ name: 'eu', edges: 1 }] }, [edge]);
}, 30000);

afterAll(async () => {
  const log = balancer ? balancer.errorLog() : '';
  await balancer?.stop();
  await edge?.stop();
  // nginx reports a broken chunked body at error level: expected here
  expect(unexpectedErrors(log, ['client sent invalid chunked body'])).toEqual([]);
  expect(log).not.toMatch(/exited on signal|worker process \d+ exited/);
});

// [name, request bytes, expected status]; each is followed by a pipelined GET
const REFUSED: [string, string, number][] = [
  ['CL and TE together (CL.TE)', 'POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED', 400],
  ['duplicate unequal Content-Length', 'POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
  ['duplicate equal Content-Length', 'POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', 400],
  ['Content-Length list', 'POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3, 3\r\n\r\nabc', 400],
  // RFC 9112 §6.1: an unknown transfer coding is 501; nginx answers so and closes
  ['TE xchunked', 'POST / HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', 501],
  ['TE gzip, chunked', 'POST / HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
  ['TE twice', 'POST / HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['TE in HTTP/1.0', 'POST / HTTP/1.0\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  ['chunk size FFFFFFFFFFFFFFED', 'POST / HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFED\r\nabc\r\n0\r\n\r\n', 400],
  ['chunk size with junk', 'POST / HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n', 400],
  ['space before the colon', 'GET / HTTP/1.1\r\nHost: shop.example\r\nX-Foo : bar\r\n\r\n', 400],
  ['space before the colon of Content-Length', 'POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length : 3\r\n\r\nabc', 400],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: shop.example\r\nX-Foo: bar\r\n baz\r\n\r\n', 400],
  ['obs-fold of Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc', 400],
  ['HTTP/11.1 (nginx: 505 Version Not Supported)', 'GET / HTTP/11.1\r\nHost: shop.example\r\n\r\n', 505],
  ['NUL in a header value', 'GET / HTTP/1.1\r\nHost: shop.example\r\nX-Foo: b\0r\r\n\r\n', 400],
  ['BEL in a header value (Lua)', 'GET / HTTP/1.1\r\nHost: shop.example\r\nX-Foo: b\x07r\r\n\r\n', 400],
  ['DEL in a header value (Lua)', 'GET / HTTP/1.1\r\nHost: shop.example\r\nX-Foo: b\x7fr\r\n\r\n', 400],
  ['bare CR in a header value (Lua)', 'GET / HTTP/1.1\r\nHost: shop.example\r\nX-Foo: b\rr\r\n\r\n', 400],
  ['no Host in HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n', 400],
  ['two Hosts', 'GET / HTTP/1.1\r\nHost: shop.example\r\nHost: evil.test\r\n\r\n', 400],
  ['absolute-form target for another host (Lua)', 'GET http://evil.test/x HTTP/1.1\r\nHost: shop.example\r\n\r\n', 400],
  ['a 20 KB header (CPDoS)', `GET / HTTP/1.1\r\nHost: shop.example\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`, 400],
];

describe('balancer front door', () => {
  test('two well-formed pipelined requests are both answered (the baseline)', async () => {
    const r = await rawExchange(balancer.port, 'GET /first HTTP/1.1\r\nHost: shop.example\r\n\r\n' + NEXT);
    expect(r.statuses).toEqual([200, 200]);
    expect(r.text).toContain('"uri":"\\/second"');
  });

  test.each(REFUSED)('%s: refused, the connection closed, the pipelined request never answered', async (_name, request, status) => {
    const r = await rawExchange(balancer.port, request + NEXT);
    expect(r.statuses).toEqual([status]);
    expect(r.closed).toBe(true);
    // nothing reached an edge: its echo would name itself
    expect(r.text).not.toContain('"edge"');
    expect(r.text).not.toContain('SMUGGLED');
    expect(r.text).not.toContain('Cache-Status');
    // and the next connection works
    const next = await rawExchange(balancer.port, NEXT);
    expect(next.statuses).toEqual([200]);
  });

  test('an absolute-form target for the same host is served; Host case and default port do not matter', async () => {
    expect((await rawExchange(balancer.port, 'GET http://shop.example/x HTTP/1.1\r\nHost: SHOP.example:80\r\nConnection: close\r\n\r\n')).statuses).toEqual([200]);
  });

  test('a request body is passed through intact (chunked and Content-Length)', async () => {
    const chunked = await rawExchange(balancer.port, 'POST /b HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
    expect(chunked.statuses).toEqual([200]);
    expect(chunked.text).toContain('"body":"abcde"');
    const fixed = await rawExchange(balancer.port, 'POST /b HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde');
    expect(fixed.text).toContain('"body":"abcde"');
  });
});

describe('balancer hosts and TLS', () => {
  let tlsBalancer: BalancerHandle;
  let certDir: string;

  beforeAll(async () => {
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=shop.example', '-addext', 'subjectAltName=DNS:shop.example',
      '-keyout', path.join(certDir, 'key.pem'), '-out', path.join(certDir, 'cert.pem')], { stdio: 'pipe' });
    tlsBalancer = await startBalancer(
      {
        regions: [{ name: 'eu', edges: 1 }],
        balancer: { hosts: ['shop.example', 'static.shop.example'], tls: { cert: path.join(certDir, 'cert.pem'), key: path.join(certDir, 'key.pem') } },
      },
      [edge],
    );
  }, 30000);

  afterAll(async () => {
    const log = tlsBalancer ? tlsBalancer.errorLog() : '';
    await tlsBalancer?.stop();
    fs.rmSync(certDir, { recursive: true, force: true });
    expect(unexpectedErrors(log)).toEqual([]);
  });

  function tlsGet(host: string, pathAndQuery = '/tls'): Promise<{ status: number; body: string }> {
    const ca = fs.readFileSync(path.join(certDir, 'cert.pem'));
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: tlsBalancer.port, path: pathAndQuery, servername: 'shop.example', ca, headers: { Host: host }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  test('TLS is terminated with the configured certificate; the edge is told the scheme', async () => {
    const r = await tlsGet('shop.example');
    expect(r.status).toBe(200);
    const json = JSON.parse(r.body);
    expect(json.headers['x-forwarded-proto']).toBe('https');
    expect(json.headers.host).toBe('shop.example');
  });

  test('unknown hosts get 421 and never reach an edge; configured hosts in any case are served', async () => {
    const unknown = await tlsGet('evil.test');
    expect(unknown.status).toBe(421);
    expect(unknown.body).not.toContain('"edge"');
    expect((await tlsGet('STATIC.shop.example:443')).status).toBe(200);
  });

  test('plain HTTP on the TLS listener is refused', async () => {
    const r = await echo(tlsBalancer.url, '/x').catch(() => ({ status: 0 }));
    expect(r.status === 400 || r.status === 0).toBe(true);
  });
});

describe('balancer front door statistics', () => {
  test('refused requests are counted as unrouted, never against an edge', async () => {
    const before = (await balancer.status()).fleet.unrouted;
    await rawExchange(balancer.port, 'GET /x HTTP/1.1\r\nHost: shop.example\r\nX-Foo: b\x07r\r\n\r\n');
    await rawExchange(balancer.port, 'GET /a/../b HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n');
    await new Promise((r) => setTimeout(r, 400)); // the per-worker buffer is flushed every 0.25 s
    expect((await balancer.status()).fleet.unrouted).toBe(before + 2);
  });
});
