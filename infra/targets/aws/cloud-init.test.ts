import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { renderRedisAuth } from '../../render/redis';
import { APT_LOCK_TIMEOUT, ARTEFACT_DOWNLOAD, artefactLines, BOOTSTRAP_DONE, GRAFANA_APT, POST_START_EOF, preamble, renderBootstrap, renderSystemdUnit, secretLines, shq, ssmAgentUrl, STATE_DIR, systemdWord, type HostPlan } from './cloud-init';
import { BOOTSTRAP_FAILED } from './readiness';
import type { ServiceUnit } from '../../units/units';

const unit: ServiceUnit = {
  name: 'redis',
  role: 'redis',
  packages: ['redis-server'],
  group: 'redis',
  trees: [],
  user: 'redis',
  secrets: [],
  volumes: ['data'],
  reads: [],
  hostPaths: [],
  accepts: [],
  dir: '/etc/cdn/redis',
  dirs: ['data'],
  files: [],
  command: ['/usr/bin/redis-server', '/etc/cdn/redis/redis.conf'],
  env: {},
  health: { kind: 'redis', host: '10.0.0.1', port: 6379 },
  url: null,
  dependsOn: [],
};

/** A plan with nothing on it. */
const BASE: HostPlan = {
  region: 'eu-west-1',
  roles: [],
  units: [],
  files: [],
  secrets: [],
  artefact: { bucket: 'artefacts-0123abc', key: `artefacts/${'a'.repeat(64)}.tar`, region: 'eu-west-1', sha256: 'a'.repeat(64) },
  containers: [],
  prepare: [],
};

describe('cloud-init rendering', () => {
  test('systemd words escape what systemd would expand or split', () => {
    expect(systemdWord('/usr/sbin/nginx')).toBe('/usr/sbin/nginx');
    expect(systemdWord('daemon off;')).toBe('"daemon off;"');
    expect(systemdWord('100%')).toBe('100%%');
    expect(systemdWord('KEY=$HOME')).toBe('KEY=$$HOME');
    expect(systemdWord('say "hi"')).toBe('"say \\"hi\\""');
  });

  test('shell words are quoted only when needed, single quotes survive', () => {
    expect(shq('https://git.example/shop.git')).toBe('https://git.example/shop.git');
    expect(shq("it's; rm -rf /")).toBe("'it'\\''s; rm -rf /'");
  });


  test('a systemd unit runs as its role\'s user through run-unit.sh and restarts on failure', () => {
    const text = renderSystemdUnit(unit);
    expect(text).toContain('ExecStart=/opt/cdn/scripts/run-unit.sh /usr/bin/redis-server /etc/cdn/redis/redis.conf');
    expect(text).toContain('Environment=CDN_RUN_AS=redis');
    expect(text).toContain('Environment=CDN_UNIT_DIRS=data');
    expect(text).toContain('Restart=always');
  });

  test('bootstrap stops on the first failing step and masks the packages\' own services', () => {
    const host: HostPlan = { ...BASE, roles: ['redis'], units: [unit] };
    const script = renderBootstrap(host);
    expect(script.split('\n').slice(0, 3)).toEqual(['#!/bin/bash', expect.stringContaining('Rendered'), 'set -Eeuo pipefail']);
    expect(script).toContain('systemctl mask --now nginx.service redis-server.service prometheus.service');
    expect(script.indexOf('setup.sh --system --role redis')).toBeLessThan(script.indexOf('systemctl enable --now cdn-redis.service'));
  });
});

describe('Alloy\'s repository key check (run with gpg on keys made here)', () => {
  const host: HostPlan = { ...BASE, logShipper: { version: '1.10.2', unit: { ...unit, name: 'alloy', role: 'log-shipper', image: 'alloy', env: { CDN_LOKI_PUSH_URL: 'http://10.0.0.9:3100/loki/api/v1/push' } } } };
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-gpg-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A fresh signing key, exported as apt.grafana.com serves its own; returns its fingerprint. */
  function makeKey(name: string, file: string): string {
    const home = fs.mkdtempSync(path.join(dir, 'home-'));
    const env = { ...process.env, GNUPGHOME: home };
    execFileSync('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', `${name} <${name}@shop-cdn.invalid>`, 'ed25519', 'sign', 'never'], { env, stdio: 'pipe' });
    fs.writeFileSync(file, execFileSync('gpg', ['--armor', '--export'], { env, stdio: 'pipe' }));
    return /^fpr:+([0-9A-F]{40}):/m.exec(execFileSync('gpg', ['--with-colons', '--fingerprint'], { env, encoding: 'utf8', stdio: 'pipe' }))![1];
  }

  /** The bootstrap's lines from the fingerprint check on, up to the keyring, run on `keyFile`. */
  function runCheck(keyFile: string, fingerprint: string): { status: number | null; stderr: string } {
    const lines = renderBootstrap(host).split('\n');
    const from = lines.findIndex((l) => l.startsWith('gnupghome='));
    const script = lines
      .slice(from, from + 4)
      .join('\n')
      .replaceAll('/tmp/grafana.key', keyFile)
      .replaceAll(GRAFANA_APT.fingerprint, fingerprint);
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  }

  test('the key with the pinned fingerprint passes; any other key stops the boot', () => {
    const good = path.join(dir, 'good.asc');
    const fingerprint = makeKey('good', good);
    expect(runCheck(good, fingerprint)).toEqual({ status: 0, stderr: '' });
    const other = path.join(dir, 'other.asc');
    const otherFingerprint = makeKey('other', other);
    const refused = runCheck(other, fingerprint);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`apt.grafana.com key is ${otherFingerprint}, expected ${fingerprint}`);
    // a file with both keys is refused too: signed-by would trust every key in it
    fs.writeFileSync(path.join(dir, 'both.asc'), Buffer.concat([fs.readFileSync(good), fs.readFileSync(other)]));
    expect(runCheck(path.join(dir, 'both.asc'), fingerprint).status).toBe(1);
  });

  test('Alloy is best effort: a failed install warns and the boot goes on, without starting it', () => {
    const script = renderBootstrap(host);
    const lines = script.split('\n');
    const open = lines.indexOf('(');
    const close = lines.findIndex((l) => l.startsWith(') || echo "warning: Grafana Alloy was not installed'));
    expect(open).toBeGreaterThan(-1);
    expect(close).toBeGreaterThan(open);
    expect(lines.findIndex((l) => l.startsWith('gnupghome='))).toBeGreaterThan(open);
    expect(lines.findIndex((l) => l.startsWith('apt-get install -y -qq --no-install-recommends alloy='))).toBeLessThan(close);
    // the same shape, run: a failing step inside stops only the block
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', ['(', 'false', 'exit 1', lines[close], 'echo booted'].join('\n')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('booted\n');
    expect(r.stderr).toContain('warning: Grafana Alloy was not installed');
    expect(script).toContain('[ ! -x /usr/bin/alloy ] || systemctl enable --now alloy.service');
  });

  test('the pinned fingerprint is a full 40-digit one', () => {
    expect(GRAFANA_APT.fingerprint).toMatch(/^[0-9A-F]{40}$/);
  });
});

describe('Redis password file', () => {
  test('holds a quoted requirepass line', () => {
    expect(renderRedisAuth('A'.repeat(32))).toBe(`requirepass "${'A'.repeat(32)}"\nmasterauth "${'A'.repeat(32)}"\n`);
  });

  test.each([['short'], ['has space in it ok ok'], ['quote"quote"quote"1'], ['back\\slash\\back\\slash']])('refuses %j', (pw) => {
    expect(() => renderRedisAuth(pw)).toThrow(/Redis password must be/);
  });
});

describe('the bootstrap, run (bash, with stand-ins for aws, sleep and the paths of an instance)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-boot-'));
    fs.mkdirSync(path.join(dir, 'bin'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** The preamble, then `lines`, with an instance's paths moved under `dir`; `aws` is a stand-in script. */
  function run(lines: string[], aws = 'exit 1'): { status: number | null; stdout: string; stderr: string } {
    fs.writeFileSync(path.join(dir, 'bin', 'aws'), `#!/bin/bash\n${aws}\n`, { mode: 0o755 });
    const script = [...preamble(), 'sleep() { :; }', ...lines]
      .join('\n')
      .replaceAll('/etc/apt/apt.conf.d/', `${dir}/`)
      .replaceAll(STATE_DIR, `${dir}/state`)
      .replaceAll('/opt/cdn', `${dir}/opt`)
      .replaceAll('/etc/cdn/secrets', `${dir}/secrets`);
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH}` } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }
  const marker = () => fs.readFileSync(path.join(dir, 'state', path.basename(BOOTSTRAP_FAILED)), 'utf8');

  test('a failing step stops the boot, exits non-zero and leaves the failure mark naming it', () => {
    const r = run(['echo one', 'false', 'echo never']);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('one\n');
    expect(marker()).toMatch(/^cdn bootstrap failed: exit 1 at line \d+: false\n$/);
    expect(BOOTSTRAP_FAILED).toBe(`${STATE_DIR}/bootstrap.failed`);
    // apt waits for the dpkg lock, setup.sh's apt-get too (a configuration file, not a flag)
    expect(fs.readFileSync(path.join(dir, '80cdn-bootstrap'), 'utf8')).toBe(`DPkg::Lock::Timeout "${APT_LOCK_TIMEOUT}";\nAcquire::Retries "5";\n`);
    // a boot that gets to the end says so, and leaves no failure mark
    expect(run(['echo ok', `touch ${BOOTSTRAP_DONE}`]).status).toBe(0);
    expect(fs.existsSync(path.join(dir, 'state', 'bootstrap.done'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'state', 'bootstrap.failed'))).toBe(false);
  });

  test('retry tries a command five times; downloads retry in curl itself', () => {
    const counter = path.join(dir, 'count');
    const flaky = `n=$(cat ${counter} 2>/dev/null || echo 0); echo $((n + 1)) > ${counter}; [ "$n" -ge 3 ]`;
    expect(run([`retry aws s3 ls`], flaky).status).toBe(0);
    expect(fs.readFileSync(counter, 'utf8')).toBe('4\n');
    fs.writeFileSync(counter, '-10');
    expect(run([`retry aws s3 ls`], flaky).status).toBe(1);
    expect(fs.readFileSync(counter, 'utf8')).toBe('-5\n');
    const boot = renderBootstrap(BASE);
    expect(boot).toContain('fetch() { curl -fsSL --retry 5 --retry-delay 3 --retry-connrefused "$@"; }');
    expect(boot).toContain('retry apt-get update -qq\n');
  });

  test('the artefact is unpacked only when its sha256 is the one the plan names', () => {
    fs.mkdirSync(path.join(dir, 'src', 'scripts'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'src', 'scripts', 'run-unit.sh'), '#!/bin/sh\n', { mode: 0o755 });
    execFileSync('tar', ['-cf', path.join(dir, 'artefact.tar'), '-C', path.join(dir, 'src'), 'scripts']);
    const sha = execFileSync('sha256sum', [path.join(dir, 'artefact.tar')], { encoding: 'utf8' }).split(' ')[0];
    // `aws s3 cp --only-show-errors --region R s3://B/K DEST`: DEST is the 6th argument
    const aws = `[ "$1 $2" = "s3 cp" ] && [ "$6" = s3://artefacts-0123abc/artefacts/${sha}.tar ] && cp ${dir}/artefact.tar "$7"`;
    const lines = artefactLines({ bucket: 'artefacts-0123abc', key: `artefacts/${sha}.tar`, region: 'eu-west-1', sha256: sha });
    expect(lines[1]).toContain(`${ARTEFACT_DOWNLOAD}`);
    const good = run(lines, aws);
    expect(good).toMatchObject({ status: 0, stderr: '' });
    expect(fs.statSync(path.join(dir, 'opt', 'scripts', 'run-unit.sh')).mode & 0o777).toBe(0o755);
    expect(fs.existsSync(path.join(dir, 'state', 'artefact.tar'))).toBe(false);

    fs.rmSync(path.join(dir, 'opt'), { recursive: true });
    const other = 'b'.repeat(64);
    const bad = run(artefactLines({ bucket: 'artefacts-0123abc', key: `artefacts/${sha}.tar`, region: 'eu-west-1', sha256: other }), aws);
    expect(bad.status).toBe(1);
    expect(marker()).toBe(`cdn bootstrap failed: artefact artefacts/${sha}.tar: sha256 is not ${other}\n`);
    expect(fs.existsSync(path.join(dir, 'opt'))).toBe(false);
  });

  test('secrets land in their files, 0400, never on the output; a parameter that cannot be read fails the boot', () => {
    const aws = `[ "$1 $2" = "ssm get-parameter" ] || exit 2; case "$*" in *"--name /shop/admin-token "*) echo 'S3cr3tValue' ;; *) echo "AccessDeniedException" >&2; exit 254 ;; esac`;
    const lines = secretLines('eu-west-1', [{ parameter: '/shop/admin-token', path: '/etc/cdn/secrets/admin-token' }]);
    const r = run(lines, aws);
    expect(r).toMatchObject({ status: 0, stdout: '', stderr: '' });
    const file = path.join(dir, 'secrets', 'admin-token');
    expect(fs.readFileSync(file, 'utf8')).toBe('S3cr3tValue\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o400);
    expect(fs.statSync(path.join(dir, 'secrets')).mode & 0o777).toBe(0o700);
    expect(lines.join('\n')).toContain('aws ssm get-parameter --region eu-west-1 --with-decryption --name "$1" --query Parameter.Value --output text');

    const denied = run(secretLines('eu-west-1', [{ parameter: '/shop/redis-password', path: '/etc/cdn/secrets/redis-password' }]), aws);
    expect(denied.status).toBe(1);
    expect(marker()).toBe('cdn bootstrap failed: cannot read the SSM parameter /shop/redis-password\n');
    expect(denied.stderr).not.toContain('S3cr3tValue');
  });

  test('every instance installs the SSM agent from its own region, before anything that may fail', () => {
    expect(ssmAgentUrl('us-east-1')).toBe('https://s3.us-east-1.amazonaws.com/amazon-ssm-us-east-1/latest/debian_amd64/amazon-ssm-agent.deb');
    const boot = renderBootstrap({ ...BASE, region: 'us-east-1' });
    expect(boot).toContain(`fetch -o /tmp/amazon-ssm-agent.deb ${ssmAgentUrl('us-east-1')}\n`);
    expect(boot).toContain('systemctl enable --now amazon-ssm-agent.service\n');
    expect(boot.indexOf('amazon-ssm-agent.service')).toBeLessThan(boot.indexOf('aws s3 cp'));
    expect(boot).toMatch(/--no-install-recommends ca-certificates curl xz-utils gnupg awscli\n/);
  });

  test('a container\'s postStart script runs inside it once it is ready, in a quoted heredoc', () => {
    const boot = renderBootstrap({
      ...BASE,
      containers: [{ name: 'cdn-object-store', image: 'minio', args: [], env: {}, mounts: {}, postStart: { ready: ['mc', 'ready', 'local'], purpose: 'A user', script: 'echo "$HOME"\n' } }],
    });
    const lines = boot.split('\n');
    const open = lines.indexOf(`docker exec -i cdn-object-store sh -eu <<'${POST_START_EOF}'`);
    expect(open).toBeGreaterThan(lines.findIndex((l) => l.startsWith('docker run -d --name cdn-object-store')));
    expect(lines.slice(open + 1, open + 3)).toEqual(['echo "$HOME"', POST_START_EOF]);
    expect(lines[open - 1]).toBe('docker exec cdn-object-store mc ready local >/dev/null 2>&1 || fail "cdn-object-store was not ready after 2 minutes"');
    expect(() => renderBootstrap({ ...BASE, containers: [{ name: 'c', image: 'i', args: [], env: {}, mounts: {}, postStart: { ready: ['true'], purpose: 'p', script: `${POST_START_EOF}\n` } }] })).toThrow(/contains the line CDN_POST_START/);
  });
});
