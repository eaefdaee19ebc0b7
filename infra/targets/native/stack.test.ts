/** Failure paths of the native target, with real processes. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CdnError } from '../../model/errors';
import { parseSpec } from '../../model/spec';
import { missingPackages, readState, up } from './stack';
import { isAlive } from './supervisor';

const REPO = path.resolve(__dirname, '..', '..', '..');

describe('native stack failures', () => {
  test('missing Debian packages are named, once each', () => {
    const missing = missingPackages((f) => !f.includes('nginx') && !f.includes('redis-server'));
    expect(missing).toEqual(['nginx', 'libnginx-mod-http-lua', 'libnginx-mod-http-ndk', 'lua-nginx-redis', 'redis-server']);
    expect(missingPackages(() => true)).toEqual([]);
  });

  test('a service that fails to start is named with its log, and nothing is left running', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-fail-'));
    const before = new Set(fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)));
    try {
      // the origin cannot create its storage under a regular file, so it exits at boot
      const spec = parseSpec({ regions: [{ name: 'eu', edges: 1 }], storage: { kind: 'filesystem', path: '/etc/hostname/cdn-storage' } });
      const err = await up({ spec, stateDir: dir, repoRoot: REPO, prometheus: false, detached: true, timeoutMs: 15000 }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CdnError);
      expect((err as CdnError).code).toBe('CDN_ERR_SERVICE_FAILED');
      expect((err as CdnError).message).toContain('origin exited');
      expect((err as CdnError).message).toContain(path.join(dir, 'origin', 'logs', 'service.log'));
      expect(readState(dir)).toBeNull();
      // Redis, started before the origin, was stopped again
      const redisPids = fs
        .readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p) && !before.has(p))
        .filter((p) => {
          try {
            return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(path.join(dir, 'redis'));
          } catch {
            return false;
          }
        });
      expect(redisPids.filter((p) => isAlive(Number(p)))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
