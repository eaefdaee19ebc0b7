/**
 * The readiness check's logic (readiness.ts), against a local HTTP server standing in
 * for the balancer: polling until 200, the Host header, the time limit, and the
 * failure message (what it last saw, where a failed bootstrap is written).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BOOTSTRAP_FAILED, readinessProvider, waitUntilReady, type ReadinessInputs } from './readiness';

interface Server {
  url: string;
  hosts: (string | undefined)[];
  close(): Promise<void>;
}

/** Answers 503 "not ready" `notReady` times, then 200 "ready". */
async function balancer(notReady: number): Promise<Server> {
  const hosts: (string | undefined)[] = [];
  const server = http.createServer((req, res) => {
    hosts.push(req.headers.host);
    const ok = hosts.length > notReady;
    res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' });
    res.end(ok ? 'ready\n' : 'not ready\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/.well-known/cdn-ready`, hosts, close: () => new Promise((r) => server.close(() => r())) };
}

const instances = [
  { name: 'balancer', id: 'i-0123456789abcdef0', region: 'eu-west-1' },
  { name: 'edge-us-east-1-1', id: 'i-0fedcba9876543210', region: 'us-east-1' },
];

function inputs(url: string, extra: Partial<ReadinessInputs> = {}): ReadinessInputs {
  return { url, timeoutSeconds: 2, intervalSeconds: 0.05, requestTimeoutSeconds: 1, instances, revision: 'r1', ...extra };
}

describe('readiness check', () => {
  test('polls until the balancer answers 200, sending the configured Host', async () => {
    const s = await balancer(3);
    try {
      const result = await waitUntilReady(inputs(s.url, { host: 'shop.example' }));
      expect(result.attempts).toBe(4);
      expect(s.hosts).toEqual(['shop.example', 'shop.example', 'shop.example', 'shop.example']);
    } finally {
      await s.close();
    }
  });

  test('gives up after the time limit, saying what it last saw and how to find a failed bootstrap', async () => {
    const s = await balancer(Number.POSITIVE_INFINITY);
    try {
      const started = Date.now();
      const err = (await waitUntilReady(inputs(s.url, { timeoutSeconds: 0.5 })).catch((e: Error) => e)) as Error;
      expect(Date.now() - started).toBeLessThan(1500);
      expect(err.message).toContain(`the stack did not become ready within 0.5s: ${s.url} last answered "503 not ready"`);
      expect(err.message).toContain('not every edge has passed its health check');
      expect(err.message).toContain(`writes the failing step to ${BOOTSTRAP_FAILED}`);
      expect(err.message).toContain('edge-us-east-1-1: aws ssm start-session --region us-east-1 --target i-0fedcba9876543210');
      expect(err.message).toContain('aws ec2 get-console-output --region eu-west-1 --instance-id i-0123456789abcdef0');
    } finally {
      await s.close();
    }
  });

  test('a balancer that does not answer at all is reported as not serving', async () => {
    const s = await balancer(0);
    const url = s.url;
    await s.close();
    const err = (await waitUntilReady(inputs(url, { timeoutSeconds: 0.3 })).catch((e: Error) => e)) as Error;
    expect(err.message).toMatch(/last answered "connect ECONNREFUSED 127\.0\.0\.1:\d+"/);
    expect(err.message).toContain('the balancer is not serving');
  });

  test('a hanging balancer costs one request timeout per attempt, not more', async () => {
    const server = http.createServer(() => {
      /* never answers */
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      const err = (await waitUntilReady(inputs(`http://127.0.0.1:${port}/.well-known/cdn-ready`, { timeoutSeconds: 0.2, requestTimeoutSeconds: 0.3 })).catch((e: Error) => e)) as Error;
      expect(err.message).toContain('last answered "no answer within 0.3s"');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('the provider: create polls; a changed revision or instance is a change (checked again), the same inputs are not', async () => {
    const s = await balancer(1);
    try {
      const created = await readinessProvider.create!(inputs(s.url));
      expect(created.id).toBe('ready-r1');
      expect(created.outs).toMatchObject({ attempts: 2, url: s.url });
      const same = await readinessProvider.diff!(created.id, created.outs, inputs(s.url));
      expect(same.changes).toBe(false);
      expect((await readinessProvider.diff!(created.id, created.outs, inputs(s.url, { revision: 'r2' }))).changes).toBe(true);
      const moved = inputs(s.url, { instances: [{ ...instances[0], id: 'i-0aaaaaaaaaaaaaaaa' }, instances[1]] });
      expect((await readinessProvider.diff!(created.id, created.outs, moved)).changes).toBe(true);
      const updated = await readinessProvider.update!(created.id, created.outs, inputs(s.url, { revision: 'r2' }));
      expect(updated.outs).toMatchObject({ attempts: 1, revision: 'r2' });
    } finally {
      await s.close();
    }
  });
});
