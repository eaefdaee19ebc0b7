/**
 * User data for the aws target's instances: a `#cloud-config` (JSON is YAML) that
 * writes the units' rendered files and systemd units, and a bootstrap script that
 * installs the SSM agent, unpacks the artefact `pulumi up` packed (artefact.ts) at
 * /opt/cdn after checking its sha256, fetches the units' secrets from SSM Parameter
 * Store into their files, installs the role's Debian packages with scripts/setup.sh
 * (the list CI installs) and starts the units. No secret value is in the user data
 * (anyone with ec2:DescribeInstanceAttribute reads it). Pure: it takes resolved
 * strings, so tests read exactly what an instance would get.
 */
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { CONTAINER_ROOT } from '../../model/layout';
import type { OwnRole, ServiceUnit } from '../../units/units';
import { RUN_UNIT, unitEnvironment } from '../pulumi/units';
import { BOOTSTRAP_FAILED } from './readiness';

/** AWS refuses user data above 16 KiB. */
export const USER_DATA_LIMIT = 16384;

export interface HostFile {
  path: string;
  content: string;
  permissions: string;
}

/** A third-party container on the host (MinIO, Grafana, Loki), on the host's network. */
export interface HostContainer {
  name: string;
  image: string;
  args: string[];
  env: Record<string, string>;
  /** host path -> container path */
  mounts: Record<string, string>;
  /** Run inside the container once `ready` succeeds there (the unit's postStart: the object store's edge user). */
  postStart?: { ready: string[]; purpose: string; script: string };
}

/** A secret the bootstrap fetches: an SSM SecureString parameter, written where the unit reads it (0400). */
export interface HostSecret {
  parameter: string;
  path: string;
}

/** The artefact (artefact.ts) in the stack's bucket. */
export interface HostArtefact {
  bucket: string;
  key: string;
  /** The bucket's region (the primary region). */
  region: string;
  sha256: string;
}

export interface HostPlan {
  /** The instance's region: its SSM parameters and the SSM agent's download. */
  region: string;
  /** Roles whose Debian packages setup.sh installs here. */
  roles: OwnRole[];
  units: ServiceUnit[];
  /** Rendered files (never secrets). */
  files: HostFile[];
  /** The secrets the host's units list, fetched at boot. */
  secrets: HostSecret[];
  artefact: HostArtefact;
  /** The origin host also installs Node.js and the origin's npm dependencies from the artefact's lockfile. */
  node?: { version: string };
  containers: HostContainer[];
  /** An EBS volume formatted once and mounted (the object store's data). */
  dataVolume?: { volumeId: string; mountPoint: string };
  /** Commands run after files are written and before units start (ownership of container data). */
  prepare: string[];
  /** Grafana Alloy shipping this instance's logs to Loki. */
  logShipper?: LogShipperPlan;
}

export interface LogShipperPlan {
  /** Alloy's version (Debian package `alloy`), the same as the docker target's image. */
  version: string;
  /** The log-shipper unit (infra/units/deployed.ts): its configuration file, environment and command. */
  unit: ServiceUnit;
}

/**
 * Grafana's Debian repository, which ships Alloy. NOT VERIFIED HERE (the development
 * machine reaches no Grafana host): the fingerprint is the one Grafana published
 * for its APT signing key after the 2023 rotation (https://apt.grafana.com). The
 * bootstrap refuses any other key, so a rotation stops the boot instead of trusting
 * a new key silently: compare with `curl -fsSL https://apt.grafana.com/gpg.key |
 * gpg --show-keys` and Grafana's announcement before changing it. With the key
 * checked, apt verifies the package itself (signed Release -> Packages -> .deb hash).
 */
export const GRAFANA_APT = {
  repository: 'https://apt.grafana.com stable main',
  key: 'https://apt.grafana.com/gpg.key',
  fingerprint: 'B53AE77BADB630A683046005963FA27710458545',
  keyring: '/etc/apt/keyrings/grafana.gpg',
} as const;

/** A drop-in for the package's alloy.service, so the package's own files stay untouched. */
export const ALLOY_DROPIN_PATH = '/etc/systemd/system/alloy.service.d/cdn.conf';

/** Single-quotes a word for bash. */
export function shq(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** One ExecStart/Environment word: systemd expands `%` specifiers and `$` variables, so both are escaped. */
export function systemdWord(s: string): string {
  const escaped = s.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@%$+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function systemdServiceName(unit: ServiceUnit): string {
  return `cdn-${unit.name}.service`;
}

/** The systemd unit running a service unit's command through scripts/run-unit.sh. */
export function renderSystemdUnit(unit: ServiceUnit): string {
  const env = Object.entries(unitEnvironment(unit)).map(([k, v]) => `Environment=${systemdWord(`${k}=${v}`)}`);
  return `# Rendered by the CDN's aws target: do not edit, change the stack instead.
[Unit]
Description=CDN ${unit.role} ${unit.name}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
${env.join('\n')}
WorkingDirectory=${unit.dir}
ExecStart=${[RUN_UNIT, ...unit.command].map(systemdWord).join(' ')}
Restart=always
RestartSec=2
TimeoutStopSec=20
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`;
}

/** The package's alloy.service, running the log-shipper unit's command with its environment (Loki's address). */
export function renderAlloyDropIn(plan: LogShipperPlan): string {
  const env = Object.entries(plan.unit.env).map(([k, v]) => `Environment=${systemdWord(`${k}=${v}`)}`);
  return `# Rendered by the CDN's aws target: do not edit, change the stack instead.
[Service]
# The package's /etc/default/alloy (CONFIG_FILE, CUSTOM_ARGS) is not used.
EnvironmentFile=
${env.join('\n')}
# The journal and root-owned logs (the package's postinst adds these groups too).
SupplementaryGroups=systemd-journal adm
ExecStart=
ExecStart=${['/usr/bin/alloy', ...plan.unit.command].map(systemdWord).join(' ')}
`;
}

/** Bootstrap lines installing Alloy from Grafana's repository, its key checked first. */
function installAlloy(plan: LogShipperPlan): string[] {
  const { repository, key, fingerprint, keyring } = GRAFANA_APT;
  return [
    '# Grafana Alloy (logs to Loki) from Grafana\'s repository, at the version pinned in',
    '# infra/targets/pulumi/images.ts; the repository key must have the fingerprint named there.',
    '# Best effort: if the repository is unreachable or the key is not the pinned one,',
    '# nothing of it is installed and the instance still serves (its logs are not shipped).',
    '(',
    // a failure in here is not the boot's: no failure mark, the block just ends
    'trap - ERR',
    `install -d -m 0755 ${shq(keyring.slice(0, keyring.lastIndexOf('/')))}`,
    `fetch ${key} -o /tmp/grafana.key`,
    // the primary keys' fingerprints, one a line: exactly the pinned one may be there
    'gnupghome="$(mktemp -d)"',
    `primary="$(GNUPGHOME="$gnupghome" gpg --quiet --show-keys --with-colons /tmp/grafana.key | awk -F: '$1=="pub"{p=1;next} $1=="fpr"&&p{print $10;p=0}')"`,
    'rm -rf "$gnupghome"',
    `[ "$primary" = ${fingerprint} ] || { echo "apt.grafana.com key is $primary, expected ${fingerprint}" >&2; exit 1; }`,
    `gpg --dearmor < /tmp/grafana.key > ${keyring}`,
    `echo "deb [signed-by=${keyring}] ${repository}" > /etc/apt/sources.list.d/grafana.list`,
    'retry apt-get update -qq',
    // Grafana's packages carry the Debian revision -1
    `apt-get install -y -qq --no-install-recommends alloy=${plan.version}-1`,
    `) || echo "warning: Grafana Alloy was not installed; this instance's logs are not shipped to Loki" >&2`,
  ];
}

/** Debian services that would compete with the units for their ports after a reboot. */
const PACKAGE_SERVICES = ['nginx.service', 'redis-server.service', 'prometheus.service'];

/** Where the bootstrap keeps its state: the artefact while it is checked, its marks. */
export const STATE_DIR = '/var/lib/cdn';
export const BOOTSTRAP_DONE = `${STATE_DIR}/bootstrap.done`;
export const ARTEFACT_DOWNLOAD = `${STATE_DIR}/artefact.tar`;

/** How long apt waits for the dpkg lock (unattended-upgrades runs on a fresh Debian AMI), in seconds. */
export const APT_LOCK_TIMEOUT = 600;

/**
 * AWS's SSM agent package for Debian, from the instance's region (Debian's AMIs do
 * not ship it). The URL form is the one AWS documents for manual installs on Debian
 * (s3.<region>.amazonaws.com/amazon-ssm-<region>/latest/debian_amd64/); checked here
 * against public install scripts, not fetched (no AWS access from this machine).
 */
export function ssmAgentUrl(region: string): string {
  return `https://s3.${region}.amazonaws.com/amazon-ssm-${region}/latest/debian_amd64/amazon-ssm-agent.deb`;
}

/** The first lines of every bootstrap: strict mode, the failure mark, retries, apt's lock timeout. */
export function preamble(): string[] {
  return [
    '#!/bin/bash',
    "# Rendered by the CDN's aws target: installs what this instance runs, then starts it.",
    'set -Eeuo pipefail',
    'export DEBIAN_FRONTEND=noninteractive AWS_PAGER=""',
    `mkdir -p ${STATE_DIR} && rm -f ${BOOTSTRAP_FAILED} ${BOOTSTRAP_DONE}`,
    `# A failed step marks the boot (the readiness check's message points here) and stops it.`,
    `fail() { echo "cdn bootstrap failed: $*" | tee ${BOOTSTRAP_FAILED} >&2; exit 1; }`,
    `trap 'fail "exit $? at line $LINENO: $BASH_COMMAND"' ERR`,
    // five tries over about a minute (a new role's grants take seconds to apply); the last one's failure is the step's
    'retry() { local i; for i in 1 2 3 4; do "$@" && return 0; sleep $((i * 6)); done; "$@"; }',
    'fetch() { curl -fsSL --retry 5 --retry-delay 3 --retry-connrefused "$@"; }',
    `# apt (setup.sh's too) waits for the dpkg lock instead of failing while unattended-upgrades holds it.`,
    `printf 'DPkg::Lock::Timeout "${APT_LOCK_TIMEOUT}";\\nAcquire::Retries "5";\\n' > /etc/apt/apt.conf.d/80cdn-bootstrap`,
  ];
}

/** Bootstrap lines downloading the artefact, checking its sha256 and unpacking it at /opt/cdn. */
export function artefactLines(a: HostArtefact): string[] {
  return [
    '# What runs is exactly what pulumi up packed: the artefact, checked against its sha256.',
    `retry aws s3 cp --only-show-errors --region ${a.region} ${shq(`s3://${a.bucket}/${a.key}`)} ${ARTEFACT_DOWNLOAD}`,
    `echo "${a.sha256}  ${ARTEFACT_DOWNLOAD}" | sha256sum --check --quiet --strict - || fail "artefact ${a.key}: sha256 is not ${a.sha256}"`,
    `mkdir -p ${CONTAINER_ROOT} && tar -xf ${ARTEFACT_DOWNLOAD} -C ${CONTAINER_ROOT} --no-same-owner && rm -f ${ARTEFACT_DOWNLOAD}`,
  ];
}

/** Bootstrap lines writing each secret from SSM into its file, 0400 and root's, never printed. */
export function secretLines(region: string, secrets: HostSecret[]): string[] {
  if (secrets.length === 0) return [];
  const dirs = [...new Set(secrets.map((s) => path.posix.dirname(s.path)))];
  return [
    '# Secrets: SSM SecureString parameters (this instance\'s role may read exactly these), into the files the units read.',
    `secret() { (trap - ERR; umask 0377 && retry aws ssm get-parameter --region ${region} --with-decryption --name "$1" --query Parameter.Value --output text > "$2") || fail "cannot read the SSM parameter $1"; }`,
    `install -d -m 0700 ${dirs.join(' ')}`,
    ...secrets.map((s) => `secret ${shq(s.parameter)} ${shq(s.path)}`),
  ];
}

export function renderBootstrap(host: HostPlan): string {
  const lines = [
    ...preamble(),
    'retry apt-get update -qq',
    `retry apt-get install -y -qq --no-install-recommends ca-certificates curl xz-utils gnupg awscli${host.containers.length ? ' docker.io' : ''}`,
    '# Access is through Session Manager (no SSH key, no port 22): the SSM agent, first, so a failed boot can be looked at.',
    `fetch -o /tmp/amazon-ssm-agent.deb ${ssmAgentUrl(host.region)}`,
    'retry apt-get install -y -qq /tmp/amazon-ssm-agent.deb && rm -f /tmp/amazon-ssm-agent.deb',
    'systemctl enable --now amazon-ssm-agent.service',
    ...artefactLines(host.artefact),
    ...secretLines(host.region, host.secrets),
  ];
  if (host.logShipper) lines.push(...installAlloy(host.logShipper));
  if (host.node) {
    const v = host.node.version;
    const tarball = `node-v${v}-linux-x64.tar.xz`;
    lines.push(
      '# Node.js 20 from the official tarball, checked against the release checksums.',
      `cd /tmp && fetch -O https://nodejs.org/dist/v${v}/${tarball} && fetch -O https://nodejs.org/dist/v${v}/SHASUMS256.txt`,
      `grep ' ${tarball}$' SHASUMS256.txt | sha256sum -c -`,
      `tar -xJf ${tarball} -C /usr/local --strip-components=1 --no-same-owner`,
      'id cdn >/dev/null 2>&1 || useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin cdn',
      '# The origin\'s npm dependencies from the artefact\'s lockfile (npm checks each against its integrity); no install scripts.',
      `cd ${CONTAINER_ROOT} && retry npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error`,
    );
  }
  if (host.roles.length > 0 || host.node) {
    const roles = host.node ? [...host.roles, 'origin'] : host.roles;
    lines.push('# The same Debian packages CI installs, for this role only.', `${CONTAINER_ROOT}/scripts/setup.sh --system --role ${[...new Set(roles)].join(',')}`);
  }
  lines.push('# Services run as the units below, never from the packages\' own init scripts.', `systemctl mask --now ${PACKAGE_SERVICES.join(' ')} 2>/dev/null || true`);
  if (host.dataVolume) {
    const { volumeId, mountPoint } = host.dataVolume;
    const byId = `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volumeId.replace('-', '')}`;
    lines.push(
      '# The data volume: wait for the attachment, format it once, mount it for good.',
      `dev=""; for i in $(seq 1 120); do for d in ${byId} /dev/xvdf /dev/sdf; do [ -b "$d" ] && dev="$d" && break 2; done; sleep 5; done`,
      '[ -n "$dev" ] || fail "data volume did not attach"',
      'blkid "$dev" >/dev/null || mkfs.ext4 -q -L cdn-data "$dev"',
      `mkdir -p ${mountPoint}`,
      `grep -q ' ${mountPoint} ' /etc/fstab || echo "LABEL=cdn-data ${mountPoint} ext4 defaults,nofail 0 2" >> /etc/fstab`,
      `mountpoint -q ${mountPoint} || mount ${mountPoint}`,
    );
  }
  lines.push(...host.prepare);
  if (host.units.length > 0) {
    lines.push('systemctl daemon-reload', `systemctl enable --now ${host.units.map(systemdServiceName).join(' ')}`);
  }
  for (const c of host.containers) {
    const args = [
      'docker run -d',
      `--name ${c.name}`,
      '--restart unless-stopped',
      '--network host',
      ...Object.entries(c.mounts).map(([h, p]) => `-v ${shq(`${h}:${p}`)}`),
      ...Object.entries(c.env).map(([k, v]) => `-e ${shq(`${k}=${v}`)}`),
      shq(c.image),
      ...c.args.map(shq),
    ];
    // a pull that fails is retried; the container is created once
    lines.push(`retry docker pull -q ${shq(c.image)} >/dev/null`, `docker rm -f ${c.name} >/dev/null 2>&1 || true`, args.join(' '));
    if (c.postStart) lines.push(...postStartLines(c.name, c.postStart));
  }
  // last: the units' logs exist by now (Alloy would pick them up later anyway)
  if (host.logShipper) {
    lines.push('systemctl daemon-reload', '[ ! -x /usr/bin/alloy ] || systemctl enable --now alloy.service');
  }
  lines.push(`touch ${BOOTSTRAP_DONE}`);
  return lines.join('\n') + '\n';
}

/** The heredoc delimiter of a container's postStart script. */
export const POST_START_EOF = 'CDN_POST_START';

/** Waits (up to 2 minutes) for the container to be ready, then runs the unit's postStart script inside it. */
function postStartLines(container: string, p: NonNullable<HostContainer['postStart']>): string[] {
  if (p.script.split('\n').includes(POST_START_EOF)) throw new Error(`${container}: its postStart script contains the line ${POST_START_EOF}`);
  const ready = `docker exec ${container} ${p.ready.map(shq).join(' ')} >/dev/null 2>&1`;
  return [
    `# ${p.purpose}: inside ${container}, once it is ready.`,
    `for i in $(seq 1 60); do ${ready} && break; sleep 2; done`,
    `${ready} || fail "${container} was not ready after 2 minutes"`,
    `docker exec -i ${container} sh -eu <<'${POST_START_EOF}'`,
    ...p.script.replace(/\n$/, '').split('\n'),
    POST_START_EOF,
  ];
}

function writeFile(path: string, content: string, permissions: string) {
  return { path, content, owner: 'root:root', permissions };
}

/**
 * The user data as EC2 takes it (the instance's userDataBase64): the whole
 * cloud-config gzipped, which cloud-init recognises and unpacks. AWS refuses more
 * than 16 KiB before base64; an edge's files came close to that even gzipped one
 * by one (each base64'd inside the JSON), and compress far better together.
 */
export function packUserData(cloudConfig: string): string {
  return gzipSync(Buffer.from(cloudConfig, 'utf8'), { level: 9 }).toString('base64');
}

/** The cloud-config text of packed user data (for tests and debugging). */
export function unpackUserData(base64: string): string {
  return gunzipSync(Buffer.from(base64, 'base64')).toString('utf8');
}

export const BOOTSTRAP_PATH = '/var/lib/cdn/bootstrap.sh';

/** A unit's rendered files where its process reads them. */
function unitFiles(u: ServiceUnit) {
  return u.files.map((f) => writeFile(path.posix.resolve(u.dir, f.path), f.content, f.mode ? f.mode.toString(8).padStart(4, '0') : '0644'));
}

/** The instance's user data. Files carrying secrets are mode 0400; run-unit.sh hands them to the unit's user. */
export function renderUserData(host: HostPlan): string {
  const files = [
    ...host.units.flatMap((u) => [...unitFiles(u), writeFile(`/etc/systemd/system/${systemdServiceName(u)}`, renderSystemdUnit(u), '0644')]),
    ...host.files.map((f) => writeFile(f.path, f.content, f.permissions)),
    ...(host.logShipper ? [...unitFiles(host.logShipper.unit), writeFile(ALLOY_DROPIN_PATH, renderAlloyDropIn(host.logShipper), '0644')] : []),
    writeFile(BOOTSTRAP_PATH, renderBootstrap(host), '0700'),
  ];
  const config = { write_files: files, runcmd: [['bash', BOOTSTRAP_PATH]] };
  return `#cloud-config\n${JSON.stringify(config, null, 1)}\n`;
}
