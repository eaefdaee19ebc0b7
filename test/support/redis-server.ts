import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';

/**
 * A throwaway redis-server for tests: its own port on 127.0.0.1, no persistence, its own
 * working directory (removed on stop). Real Redis, no mocks.
 */

const REDIS_SERVER = process.env.CDN_TEST_REDIS_SERVER ?? '/usr/bin/redis-server';
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;

export interface RedisHandle {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * `args`: more redis-server options, e.g. a TLS port beside the plain one (which the start-up check pings).
 * A free port can be taken by another process between the check and redis-server's bind
 * (tests run beside other work): then once more on another port.
 */
export async function startRedis(options: { args?: string[] } = {}): Promise<RedisHandle> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRedisOnce(options);
    } catch (err) {
      if (attempt >= 3 || !/Address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function startRedisOnce(options: { args?: string[] }): Promise<RedisHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'cdn-test-redis-'));
  const port = await freePort();
  const child = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...(options.args ?? [])],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(-1));
  });

  try {
    await waitForPong(port, exited);
  } catch (err) {
    await terminate(child, exited);
    await rm(dir, { recursive: true, force: true });
    throw new Error(`redis-server did not start on port ${port}: ${(err as Error).message}\n${output}`);
  }

  let stopped: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop(): Promise<void> {
      stopped ??= (async () => {
        await terminate(child, exited);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

async function terminate(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

async function waitForPong(port: number, exited: Promise<number | null>): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });
  let lastError = 'no answer';
  while (Date.now() < deadline) {
    if (hasExited) {
      throw new Error('redis-server exited');
    }
    try {
      if (await ping(port)) {
        return;
      }
      lastError = 'unexpected answer to PING';
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for PONG (${lastError})`);
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let answer = '';
    socket.setTimeout(1000, () => socket.destroy(new Error('PING timed out')));
    socket.once('error', reject);
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      if (answer.includes('\r\n')) {
        socket.end();
        resolve(answer.startsWith('+PONG'));
      }
    });
    socket.once('connect', () => socket.write('PING\r\n'));
  });
}
