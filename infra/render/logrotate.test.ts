/**
 * nginx units' log rotation, for real: the rendered logrotate config run by
 * Debian's logrotate against a running edge, and the loop scripts/run-unit.sh
 * starts for it in the deployed targets.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NGINX_ACCESS_LOG, NGINX_LOGROTATE_CONF } from './nginx';
import { REPO_ROOT } from '../../test/support/nginx-lua';
import { startEdge } from '../../test/support/edge-harness';
import { waitFor } from '../../test/support/http';

test('logrotate renames a running edge\'s access log, and nginx writes on into a new one', async () => {
  const edge = await startEdge();
  const state = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-logrotate-')), 'state');
  try {
    edge.setOrigin(() => ({ headers: { 'Cache-Control': 'public, max-age=60' }, body: 'x' }));
    const log = path.join(edge.dir, NGINX_ACCESS_LOG);
    const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
    const request = async (id: string) => (await fetch(`${edge.url}/rotate`, { headers: { 'X-Request-Id': id } })).arrayBuffer();
    // nginx flushes its buffered access log once a second
    await request('before-rotation');
    expect(await waitFor(async () => read(log).includes('before-rotation'), 5000)).toBeGreaterThanOrEqual(0);

    execFileSync('logrotate', ['--force', '--state', state, path.join(edge.dir, NGINX_LOGROTATE_CONF)], { stdio: 'pipe' });
    expect(read(`${log}.1`)).toContain('before-rotation');

    // The workers reopen the log when the master tells them, a moment after USR1:
    // a request served before that still goes to the renamed file. So ask until
    // one lands in the new file; that one is in the new file only.
    let sent = 0;
    expect(await waitFor(async () => {
      await request(`after-rotation-${++sent}`);
      return read(log).includes('after-rotation');
    }, 5000)).toBeGreaterThanOrEqual(0);
    const landed = /"(after-rotation-\d+)"/.exec(read(log))![1];
    expect(read(`${log}.1`)).not.toContain(`"${landed}"`);

    // the next rotation compresses the previous one (delaycompress)
    execFileSync('logrotate', ['--force', '--state', state, path.join(edge.dir, NGINX_LOGROTATE_CONF)], { stdio: 'pipe' });
    expect(fs.existsSync(`${log}.2.gz`)).toBe(true);
    expect(read(`${log}.1`)).toContain('after-rotation');
  } finally {
    await edge.stop();
    fs.rmSync(path.dirname(state), { recursive: true, force: true });
  }
});

test('run-unit.sh runs logrotate with $CDN_LOGROTATE every $CDN_LOGROTATE_EVERY seconds', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-run-unit-'));
  const logFile = path.join(dir, 'service.log');
  fs.writeFileSync(logFile, 'a line\n');
  const conf = path.join(dir, 'logrotate.conf');
  fs.writeFileSync(conf, `${logFile} {\n    size 1\n    rotate 2\n    missingok\n}\n`);
  const child = spawn('sh', [path.join(REPO_ROOT, 'scripts', 'run-unit.sh'), 'sleep', '30'], {
    env: { ...process.env, CDN_UNIT_DIR: dir, CDN_LOGROTATE: conf, CDN_LOGROTATE_EVERY: '0.2' },
    detached: true,
    stdio: 'ignore',
  });
  try {
    expect(await waitFor(async () => fs.existsSync(`${logFile}.1`), 5000)).toBeGreaterThanOrEqual(0);
    expect(fs.existsSync(path.join(dir, 'logrotate.state'))).toBe(true);
  } finally {
    // the loop lives in the unit's process group, like the unit itself
    process.kill(-child.pid!, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
