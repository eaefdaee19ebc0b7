/**
 * Signed downloads (issue #19) through the balancer of a native stack: tokens from
 * POST /v1/signed-urls verified at the edges, one stored copy for every buyer, use
 * limits counted in Redis (also across ranges), revocation through the purge stream,
 * and signatures kept out of every log.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { up, type UpResult } from '../../infra/targets/native/stack';
import { startUnit, stopPid, waitHealthy } from '../../infra/targets/native/supervisor';
import { parseSpec } from '../../infra/model/spec';
import { signDownloadQuery } from '../../origin/src/downloads/download-token';
import { rawRequest, waitFor } from '../support/http';
import { REPO_ROOT } from '../support/nginx-lua';

let stack: UpResult;
let stateDir: string;
let token: string;
let key: { id: string; secret: string };
const EBOOK = randomBytes(100 * 1024);

const api = (p: string, body: unknown) =>
  fetch(`${stack.state.origin}${p}`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

async function signed(body: Record<string, unknown>): Promise<{ url: string; tokenId: string; expiresAt: string }> {
  const res = await api('/v1/signed-urls', body);
  expect(res.status).toBe(201);
  return (await res.json()) as { url: string; tokenId: string; expiresAt: string };
}

/** The same URL on another base (an edge instead of the balancer). */
const on = (base: string, url: string) => `${base}${new URL(url).pathname}${new URL(url).search}`;

async function download(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

beforeAll(async () => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-downloads-'));
  stack = await up({ spec: parseSpec({ downloads: { prefixes: ['/downloads/'] } }), stateDir, repoRoot: REPO_ROOT, prometheus: false, detached: true });
  token = fs.readFileSync(stack.state.adminTokenFile, 'utf8').trim();
  const [id, secret] = fs.readFileSync(path.join(stateDir, 'url-signing-keys'), 'utf8').trim().split(',')[0].split(':');
  key = { id, secret };
  for (const name of ['ebook.pdf', 'other.pdf', 'limited.pdf', 'ranged.pdf']) {
    const res = await fetch(`${stack.state.origin}/v1/assets/downloads/${name}`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Cache-Control': 'public, max-age=86400' },
      body: EBOOK,
    });
    expect(res.status).toBe(201);
  }
}, 90000);

afterAll(async () => {
  await stack?.stop();
  fs.rmSync(stateDir, { recursive: true, force: true });
});

describe('signed downloads', () => {
  test('without a valid token: 403, and nothing is fetched or stored', async () => {
    for (const q of ['', '?exp=9999999999', '?utm_source=mail']) {
      const r = await download(`${stack.state.balancer}/downloads/ebook.pdf${q}`);
      expect(r.status).toBe(403);
      expect(r.body.toString()).toMatch(/download token/);
    }
    // however the path is spelled: nginx merges slashes before matching the protected location
    for (const spelled of ['//downloads//ebook.pdf', '/%64ownloads/ebook.pdf']) {
      expect([spelled, (await rawRequest(stack.state.balancer, spelled)).status]).toEqual([spelled, 403]);
    }
    const first = await download((await signed({ key: 'downloads/ebook.pdf', ttl: 600 })).url);
    expect(first.status).toBe(200);
    // the refused requests filled nothing: the first valid one is the miss
    expect(first.headers.get('cache-status')).toMatch(/fwd=uri-miss/);
  });

  test('token holders share one stored copy; responses are private for the token lifetime, without referrer', async () => {
    const a = await signed({ key: 'downloads/other.pdf', ttl: 600 });
    const b = await signed({ key: 'downloads/other.pdf', ttl: 300 });
    const first = await download(a.url);
    expect(first.status).toBe(200);
    expect(first.body.equals(EBOOK)).toBe(true);
    const second = await download(b.url);
    expect(second.headers.get('cache-status')).toMatch(/; hit/);
    expect(second.body.equals(EBOOK)).toBe(true);
    expect(second.headers.get('cache-control')).toMatch(/^private, max-age=(29\d|300)$/);
    expect(first.headers.get('referrer-policy')).toBe('no-referrer');
  });

  test('tampered, expired, unknown key id and a token for another path are refused', async () => {
    const good = await signed({ key: 'downloads/ebook.pdf', ttl: 600 });
    const url = new URL(good.url);
    const tampered = new URL(good.url);
    tampered.searchParams.set('exp', String(Number(url.searchParams.get('exp')) + 3600));
    const now = Math.floor(Date.now() / 1000);
    const expired = `${stack.state.balancer}/downloads/ebook.pdf?${signDownloadQuery('/downloads/ebook.pdf', { exp: now - 60, iat: now - 120, tid: 'old' }, key)}`;
    const unknownKey = `${stack.state.balancer}/downloads/ebook.pdf?${signDownloadQuery('/downloads/ebook.pdf', { exp: now + 60, iat: now, tid: 'x' }, { id: 'k9', secret: key.secret })}`;
    const swapped = `${stack.state.balancer}/downloads/other.pdf${url.search}`;
    const reasons: Record<string, RegExp> = { tampered: /does not match/, expired: /expired/, unknownKey: /unknown key id/, swapped: /does not match/ };
    for (const [name, u] of Object.entries({ tampered: tampered.toString(), expired, unknownKey, swapped })) {
      const r = await download(u);
      expect([name, r.status]).toEqual([name, 403]);
      expect(r.body.toString()).toMatch(reasons[name]);
    }
    expect((await download(good.url)).status).toBe(200);
  });

  test('a revoked token is refused on every edge within a second; revoking a key refuses its earlier tokens', async () => {
    const victim = await signed({ key: 'downloads/ebook.pdf', ttl: 600 });
    for (const e of stack.state.edges) expect((await download(on(e.url, victim.url))).status).toBe(200);
    const started = Date.now();
    expect((await api('/v1/signed-urls/revoke', { tokenIds: [victim.tokenId] })).status).toBe(202);
    const refused = await Promise.all(stack.state.edges.map((e) => waitFor(async () => (await download(on(e.url, victim.url))).status === 403, 1000)));
    for (const ms of refused) expect(ms).toBeGreaterThanOrEqual(0);
    expect(Date.now() - started).toBeLessThan(1500);

    const before = await signed({ key: 'downloads/other.pdf', ttl: 600 });
    await new Promise((r) => setTimeout(r, 1100)); // a token issued in a later second survives
    expect((await api('/v1/signed-urls/revoke', { keys: ['downloads/other.pdf'] })).status).toBe(202);
    await new Promise((r) => setTimeout(r, 1100));
    const after = await signed({ key: 'downloads/other.pdf', ttl: 600 });
    expect(await waitFor(async () => (await download(before.url)).status === 403, 1000)).toBeGreaterThanOrEqual(0);
    expect((await download(after.url)).status).toBe(200);
  });

  test('a revocation survives an edge restart, also when the stream no longer holds it', async () => {
    const victim = await signed({ key: 'downloads/ebook.pdf', ttl: 600 });
    const svc = stack.services.find((s) => s.unit.name === 'edge-eu-1')!;
    const edge = stack.state.edges.find((e) => e.id === 'eu-1')!;
    expect((await download(on(edge.url, victim.url))).status).toBe(200);
    expect((await api('/v1/signed-urls/revoke', { tokenIds: [victim.tokenId] })).status).toBe(202);
    expect(await waitFor(async () => (await download(on(edge.url, victim.url))).status === 403, 1000)).toBeGreaterThanOrEqual(0);
    // the stream forgets it (trimmed), and the edge restarts with empty shared memory
    const redis = new Redis(stack.state.redis);
    try {
      await redis.xtrim('cdn:purges', 'MAXLEN', 0);
    } finally {
      redis.disconnect();
    }
    await stopPid(svc.pid);
    const restarted = startUnit(svc.unit);
    await waitHealthy(restarted, 10000);
    try {
      expect(await waitFor(async () => (await fetch(on(edge.url, victim.url))).status !== 200, 3000)).toBeGreaterThanOrEqual(0);
      const r = await download(on(edge.url, victim.url));
      expect([r.status, r.body.toString()]).toEqual([403, expect.stringMatching(/revoked/)]);
    } finally {
      // (the stack stops the pid it recorded: hand it the new one)
      svc.pid = restarted.pid;
    }
  });

  test('maxUses counts whole downloads fleet-wide, and ranges cannot get around it', async () => {
    const twice = await signed({ key: 'downloads/limited.pdf', ttl: 600, maxUses: 2 });
    // the signature spelled otherwise (decoded to the same name) is no token: logs redact "sig="
    expect((await download(twice.url.replace('&sig=', '&%73ig='))).status).toBe(403);
    // on two different edges: the count is in Redis, not per edge
    expect((await download(on(stack.state.edges[0].url, twice.url))).status).toBe(200);
    expect((await download(on(stack.state.edges[2].url, twice.url))).status).toBe(200);
    const third = await waitFor(async () => (await download(twice.url)).status === 403, 1000);
    expect(third).toBeGreaterThanOrEqual(0);
    const usedUp = await download(twice.url);
    expect(usedUp.body.toString()).toMatch(/used up/);
    // a refusal is never made cacheable for the token's lifetime
    expect(usedUp.headers.get('cache-control')).toBe('no-store');

    const once = await signed({ key: 'downloads/ranged.pdf', ttl: 600, maxUses: 1 });
    const half = EBOOK.length / 2;
    const a = await download(once.url, { Range: `bytes=0-${half - 1}` });
    const b = await download(once.url, { Range: `bytes=${half}-` });
    expect([a.status, b.status]).toEqual([206, 206]);
    expect(Buffer.concat([a.body, b.body]).equals(EBOOK)).toBe(true);
    // the whole file was served once: any further range is refused
    expect(await waitFor(async () => (await download(once.url, { Range: 'bytes=0-99' })).status === 403, 1000)).toBeGreaterThanOrEqual(0);
  });

  test('with Redis unreachable, use-limited tokens fail closed (503) and plain expiring ones keep working', async () => {
    const limited = await signed({ key: 'downloads/ebook.pdf', ttl: 600, maxUses: 5 });
    const plain = await signed({ key: 'downloads/ebook.pdf', ttl: 600 });
    const redis = stack.services.find((s) => s.unit.name === 'redis')!;
    process.kill(redis.pid, 'SIGSTOP');
    try {
      const r = await download(limited.url);
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('5');
      expect(r.headers.get('cache-control')).toBe('no-store');
      expect((await download(plain.url)).status).toBe(200);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    expect(await waitFor(async () => (await download(limited.url)).status === 200, 3000)).toBeGreaterThanOrEqual(0);
  });

  test('the API refuses keys outside the protected prefixes and lifetimes above downloads.maxTtl', async () => {
    const outside = await api('/v1/signed-urls', { key: 'products/shoe.jpg', ttl: 60 });
    expect(outside.status).toBe(400);
    expect(await outside.text()).toMatch(/not under a protected prefix/);
    const long = await api('/v1/signed-urls', { key: 'downloads/ebook.pdf', ttl: 30 * 86400 });
    expect(long.status).toBe(400);
    const anonymous = await fetch(`${stack.state.origin}/v1/signed-urls`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"key":"downloads/ebook.pdf","ttl":60}' });
    expect(anonymous.status).toBe(401);
  });

  test('no signature ever reaches a log', async () => {
    const s = await signed({ key: 'downloads/ebook.pdf', ttl: 600 });
    await download(s.url);
    const counted = await signed({ key: 'downloads/ebook.pdf', ttl: 600, maxUses: 3 });
    await download(counted.url);
    const sig = new URL(s.url).searchParams.get('sig')!;
    const countedSig = new URL(counted.url).searchParams.get('sig')!;
    await new Promise((r) => setTimeout(r, 1500)); // access logs are flushed every second
    const logs = stack.services.map((svc) => [svc.unit.name, path.join(svc.unit.dir, 'logs', 'access.log'), path.join(svc.unit.dir, 'logs', 'error.log'), svc.log] as const);
    let redacted = 0;
    for (const [name, access, errors, own] of logs) {
      // (error logs too: the Redis outage above made the edges log)
      for (const file of [access, errors, own]) {
        if (!file || !fs.existsSync(file)) continue;
        const text = fs.readFileSync(file, 'utf8');
        expect([name, file, text.includes(sig), text.includes(countedSig)]).toEqual([name, file, false, false]);
        // nor any other token of this suite (the Redis outage made the edges log too)
        expect([name, file, /sig=[0-9a-f]{64}/.test(text)]).toEqual([name, file, false]);
        // logged under the path the shopper asked for, not an internal location's
        expect([name, file, text.includes('__cdn_download_counted')]).toEqual([name, file, false]);
        if (text.includes('/downloads/ebook.pdf?sig=[redacted]')) redacted++;
      }
    }
    // the balancer and the edge that served it logged the request, redacted
    expect(redacted).toBeGreaterThanOrEqual(2);
  });
});
