/**
 * How the edge sends a HIT's body (edge/render.ts SENDFILE_ABOVE): a small body
 * leaves with its header in one write, a large one by sendfile from the page
 * cache, and either way the client gets exactly the stored bytes. Watched with
 * strace on the real edge worker, since the point is which system calls it makes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startEdge, type EdgeHarness } from '../test/support/edge-harness';
import { SENDFILE_ABOVE } from './render';

let edge: EdgeHarness;
let worker: number;
const bodies = new Map<string, Buffer>();

beforeAll(async () => {
  edge = await startEdge();
  worker = Number(execFileSync('pgrep', ['-P', String(edge.pid), '-f', 'worker process'], { encoding: 'utf8' }).trim().split('\n')[0]);
  edge.setOrigin((req) => {
    const body = bodies.get(req.url ?? '');
    if (!body) return { status: 404, body: 'no such object\n' };
    // "chunked": a body whose length the origin does not announce
    const chunked = (req.url ?? '').startsWith('/chunked');
    return { headers: { 'Cache-Control': 'public, max-age=3600', 'Content-Type': 'image/jpeg', ...(chunked ? { 'Transfer-Encoding': 'chunked' } : {}) }, body };
  });
});

afterAll(async () => {
  await edge.stop();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function getBytes(p: string): Promise<{ body: Buffer; cacheStatus: string }> {
  const res = await fetch(`${edge.url}${p}`);
  return { body: Buffer.from(await res.arrayBuffer()), cacheStatus: res.headers.get('cache-status') ?? '' };
}

/** The worker's system calls while `run` runs (strace -f on the worker). */
async function syscallsDuring(run: () => Promise<void>): Promise<string> {
  const out = path.join(os.tmpdir(), `cdn-sendfile-${randomUUID()}.txt`);
  const strace = spawn('strace', ['-q', '-e', 'trace=writev,sendfile,write', '-o', out, '-p', String(worker)], { stdio: 'ignore' });
  // attached once it reports the process (give it a moment)
  await new Promise((r) => setTimeout(r, 300));
  try {
    await run();
  } finally {
    await new Promise<void>((resolve) => {
      strace.once('exit', () => resolve());
      strace.kill('SIGINT');
    });
  }
  const text = fs.readFileSync(out, 'utf8');
  fs.rmSync(out, { force: true });
  return text;
}

/** Stores `size` bytes at a new path, makes it a HIT, and returns the path and the calls of one more HIT. */
async function hitCalls(size: number, prefix = '/object'): Promise<string> {
  const p = `${prefix}-${randomUUID()}.jpg`;
  bodies.set(p, randomBytes(size));
  // the miss stores it, the first HIT tells the key lookup its size
  expect((await getBytes(p)).cacheStatus).toContain('stored');
  expect((await getBytes(p)).cacheStatus).toContain('hit');
  let got: { body: Buffer; cacheStatus: string } | undefined;
  const calls = await syscallsDuring(async () => {
    got = await getBytes(p);
  });
  expect(got!.cacheStatus).toContain('hit');
  expect(sha(got!.body)).toBe(sha(bodies.get(p)!));
  return calls;
}

test('a small HIT leaves with its header in one writev, no sendfile', async () => {
  const calls = await hitCalls(1024);
  expect(calls).not.toMatch(/sendfile\(/);
  // one writev of header and body together: header vectors, then the 1024 body bytes
  const writes = calls.split('\n').filter((l) => l.startsWith('writev('));
  expect(writes).toHaveLength(1);
  expect(writes[0]).toMatch(/iov_len=1024\}/);
});

test('a HIT of exactly the threshold still leaves in one writev', async () => {
  const calls = await hitCalls(SENDFILE_ABOVE);
  expect(calls).not.toMatch(/sendfile\(/);
  expect(calls.split('\n').filter((l) => l.startsWith('writev('))).toHaveLength(1);
});

test('a large HIT is sent by sendfile', async () => {
  const size = 100 * 1024;
  const calls = await hitCalls(size);
  const sent = [...calls.matchAll(/sendfile\([^)]*\)\s*=\s*(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  expect(sent).toBe(size);
});

test('a body the origin sent without a length is sent by sendfile too, and whole', async () => {
  const calls = await hitCalls(64 * 1024, '/chunked');
  expect(calls).toMatch(/sendfile\(/);
});

test('the first request of an object, whose size the lookup cannot know, gets the right bytes at either size', async () => {
  for (const size of [1000, 200 * 1024]) {
    const p = `/first-${randomUUID()}.jpg`;
    bodies.set(p, randomBytes(size));
    const miss = await getBytes(p);
    const hit = await getBytes(p);
    expect(sha(miss.body)).toBe(sha(bodies.get(p)!));
    expect(sha(hit.body)).toBe(sha(bodies.get(p)!));
    expect(hit.cacheStatus).toContain('hit');
  }
});
