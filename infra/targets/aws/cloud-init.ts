/**
 * User data for the aws target's instances: a `#cloud-config` (JSON is YAML) that
 * writes the units' rendered files, secrets and systemd units, and a bootstrap
 * script that checks the repository out at /opt/cdn, installs the role's Debian
 * packages with scripts/setup.sh (the list CI installs) and starts the units. Pure:
 * it takes resolved strings, so tests read exactly what an instance would get.
 */
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { CONTAINER_ROOT } from '../../model/layout';
import type { OwnRole, ServiceUnit } from '../../units/units';
import { RUN_UNIT, unitEnvironment } from '../pulumi/units';

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
}

export interface HostPlan {
  /** Roles whose Debian packages setup.sh installs here. */
  roles: OwnRole[];
  units: ServiceUnit[];
  files: HostFile[];
  source: { repository: string; ref: string };
  /** The origin host also installs Node.js and runs the full setup (npm ci + build), as CI does. */
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
    `install -d -m 0755 ${shq(keyring.slice(0, keyring.lastIndexOf('/')))}`,
    `curl -fsSL ${key} -o /tmp/grafana.key`,
    // the primary keys' fingerprints, one a line: exactly the pinned one may be there
    'gnupghome="$(mktemp -d)"',
    `primary="$(GNUPGHOME="$gnupghome" gpg --quiet --show-keys --with-colons /tmp/grafana.key | awk -F: '$1=="pub"{p=1;next} $1=="fpr"&&p{print $10;p=0}')"`,
    'rm -rf "$gnupghome"',
    `[ "$primary" = ${fingerprint} ] || { echo "apt.grafana.com key is $primary, expected ${fingerprint}" >&2; exit 1; }`,
    `gpg --dearmor < /tmp/grafana.key > ${keyring}`,
    `echo "deb [signed-by=${keyring}] ${repository}" > /etc/apt/sources.list.d/grafana.list`,
    'apt-get update -qq',
    // Grafana's packages carry the Debian revision -1
    `apt-get install -y -qq --no-install-recommends alloy=${plan.version}-1`,
    `) || echo "warning: Grafana Alloy was not installed; this instance's logs are not shipped to Loki" >&2`,
  ];
}

/** Debian services that would compete with the units for their ports after a reboot. */
const PACKAGE_SERVICES = ['nginx.service', 'redis-server.service', 'prometheus.service'];

export function renderBootstrap(host: HostPlan): string {
  const lines = [
    '#!/bin/bash',
    "# Rendered by the CDN's aws target: installs what this instance runs, then starts it.",
    'set -euo pipefail',
    'export DEBIAN_FRONTEND=noninteractive',
    'apt-get update -qq',
    `apt-get install -y -qq --no-install-recommends git ca-certificates curl xz-utils gnupg${host.containers.length ? ' docker.io' : ''}`,
  ];
  if (host.logShipper) lines.push(...installAlloy(host.logShipper));
  if (host.node) {
    const v = host.node.version;
    const tarball = `node-v${v}-linux-x64.tar.xz`;
    lines.push(
      '# Node.js 20 from the official tarball, checked against the release checksums.',
      `cd /tmp && curl -fsSLO https://nodejs.org/dist/v${v}/${tarball} && curl -fsSLO https://nodejs.org/dist/v${v}/SHASUMS256.txt`,
      `grep ' ${tarball}$' SHASUMS256.txt | sha256sum -c -`,
      `tar -xJf ${tarball} -C /usr/local --strip-components=1 --no-same-owner`,
      // The npm the lockfile and its allowScripts policy are made with.
      'npm install -g npm@11',
      'id cdn >/dev/null 2>&1 || useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin cdn',
    );
  }
  lines.push(
    '# The repository at the configured ref: Lua modules, scripts, the origin sources.',
    `[ -d ${CONTAINER_ROOT}/.git ] || git clone --quiet ${shq(host.source.repository)} ${CONTAINER_ROOT}`,
    `git -C ${CONTAINER_ROOT} checkout --quiet --detach ${shq(host.source.ref)}`,
  );
  if (host.roles.length > 0 || host.node) {
    const roles = host.node ? [...host.roles, 'origin'] : host.roles;
    lines.push(
      '# The same Debian packages CI installs, for this role only.',
      `${CONTAINER_ROOT}/scripts/setup.sh${host.node ? '' : ' --system'} --role ${[...new Set(roles)].join(',')}`,
    );
  }
  lines.push('# Services run as the units below, never from the packages\' own init scripts.', `systemctl mask --now ${PACKAGE_SERVICES.join(' ')} 2>/dev/null || true`);
  if (host.dataVolume) {
    const { volumeId, mountPoint } = host.dataVolume;
    const byId = `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volumeId.replace('-', '')}`;
    lines.push(
      '# The data volume: wait for the attachment, format it once, mount it for good.',
      `dev=""; for i in $(seq 1 120); do for d in ${byId} /dev/xvdf /dev/sdf; do [ -b "$d" ] && dev="$d" && break 2; done; sleep 5; done`,
      '[ -n "$dev" ] || { echo "data volume did not attach" >&2; exit 1; }',
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
    lines.push(`docker rm -f ${c.name} >/dev/null 2>&1 || true`, args.join(' '));
  }
  // last: the units' logs exist by now (Alloy would pick them up later anyway)
  if (host.logShipper) {
    lines.push('systemctl daemon-reload', '[ ! -x /usr/bin/alloy ] || systemctl enable --now alloy.service');
  }
  return lines.join('\n') + '\n';
}

function writeFile(path: string, content: string, permissions: string) {
  // gzip keeps the user data under AWS's 16 KiB limit; cloud-init unpacks it.
  return { path, encoding: 'gz+b64', content: gzipSync(Buffer.from(content, 'utf8')).toString('base64'), owner: 'root:root', permissions };
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
