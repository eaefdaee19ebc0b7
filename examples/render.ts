/**
 * The rendered examples under examples/rendered/: what the renderers produce for the
 * default spec as `pulumi up -s local` deploys it (the docker target's topology and
 * container layout: fixed addresses on 10.89.0.0/24, files under /etc/cdn/<unit>),
 * and the edge's and balancer's files for the other specs the tests render. Nothing
 * reads these files; they show what runs, and examples/rendered.test.ts fails when a
 * renderer's output changes without them (`npm run examples:render` rewrites them).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { deployPlan } from '../infra/targets/pulumi/config';
import { deployedUnits, LAYOUT } from '../infra/targets/pulumi/units';
import { dockerAddresses, dockerTopology } from '../infra/targets/docker/topology';
import { secretFile } from '../infra/model/layout';
import { NGINX_LOGROTATE_CONF } from '../infra/render/nginx';
import { parseSpec, type CdnSpec } from '../infra/model/spec';
import { buildUnits } from '../infra/units/stack';
import type { ServiceUnit } from '../infra/units/units';

/** The repository's examples/rendered/, from the sources (ts-jest) or from dist/. */
export const RENDERED_DIR = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'examples', 'rendered');
})();

export interface ExampleFile {
  /** Relative to examples/rendered/. */
  path: string;
  content: string;
}

const SUBNET = '10.89.0.0/24';
const PUBLIC_URL = 'http://127.0.0.1:8080';

/** Other specs the tests render, and the one unit whose files each changes (its nginx.conf and settings). */
export const VARIANTS: Record<string, { unit: 'edge-eu-1' | 'balancer'; spec: unknown }> = {
  'filesystem-storage': { unit: 'edge-eu-1', spec: {} },
  'sliced-downloads': { unit: 'edge-eu-1', spec: { cache: { bypassCookies: ['session', 'cart_id'], slice: { prefixes: ['/downloads/'], size: '1m' } }, downloads: { prefixes: ['/downloads/'] } } },
  's3-own-edge-keys': {
    unit: 'edge-eu-1',
    spec: {
      storage: { kind: 's3', endpoint: 'https://s3.eu-west-1.amazonaws.com', bucket: 'shop-assets', region: 'eu-west-1', accessKeySecret: 'S3_KEY', secretKeySecret: 'S3_SECRET', edgeAccessKeySecret: 'S3_EDGE_KEY', edgeSecretKeySecret: 'S3_EDGE_SECRET' },
    },
  },
  'trusted-proxies-tls': {
    unit: 'balancer',
    spec: {
      balancer: {
        trustedProxies: ['10.0.0.0/8'],
        cidrRegions: [{ cidr: '192.0.2.0/24', region: 'us' }],
        tls: { cert: '/etc/cdn/tls/cert.pem', key: '/etc/cdn/tls/key.pem' },
        hosts: ['shop.example'],
      },
    },
  },
  'external-origins': {
    unit: 'edge-eu-1',
    spec: {
      origins: [
        { match: 'shop.example', url: 'http://10.89.0.50:8000' },
        { match: '/api/', url: 'https://api.shop.example' },
      ],
    },
  },
};

function unitFiles(dir: string, units: ServiceUnit[], only?: (u: ServiceUnit) => boolean): ExampleFile[] {
  return units.filter((u) => !only || only(u)).flatMap((u) => [
    ...u.files.map((f) => ({ path: path.posix.join(dir, u.name, f.path), content: f.content })),
    ...(Object.keys(u.env).length > 0 ? [{ path: path.posix.join(dir, u.name, 'environment'), content: Object.entries(u.env).map(([k, v]) => `${k}=${v}\n`).join('') }] : []),
  ]);
}

/** The docker target's topology, with or without the stack's own object store. */
function topologyOf(spec: CdnSpec, objectStore: boolean) {
  return dockerTopology(spec, dockerAddresses(spec, SUBNET), PUBLIC_URL, { objectStore });
}

/** One edge is enough: the others differ only in their id and address. */
const oneEdge = (u: ServiceUnit) => u.role !== 'edge' || u.name === 'edge-eu-1';

export function renderExamples(): ExampleFile[] {
  const raw = {};
  const plan = deployPlan(raw, parseSpec(raw), 'docker');
  const topology = topologyOf(plan.spec, plan.objectStore.kind === 'builtin');
  const files = unitFiles('default', deployedUnits(plan, topology, { kind: 'docker', network: `${plan.spec.name}-net` }), oneEdge);
  // what the aws target's instances ship logs with instead of the one Alloy container
  const onInstances = deployedUnits(plan, topology, { kind: 'journal' }).find((u) => u.role === 'log-shipper')!;
  files.push(...unitFiles('aws', [onInstances]));
  for (const [name, variant] of Object.entries(VARIANTS)) {
    const spec = parseSpec(variant.spec);
    const unit = buildUnits({ spec, topology: topologyOf(spec, false), layout: LAYOUT, adminTokenFile: secretFile(LAYOUT, 'adminToken')!, debugTokenFile: secretFile(LAYOUT, 'debugToken')!, urlSigningKeysFile: secretFile(LAYOUT, 'urlSigningKeys')!, withPrometheus: true }).find((u) => u.name === variant.unit)!;
    for (const f of unit.files.filter((x) => x.path !== NGINX_LOGROTATE_CONF)) files.push({ path: path.posix.join('variants', name, unit.name, f.path), content: f.content });
  }
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** Every file under `dir`, relative to it. */
export function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name !== 'README.md')
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .sort();
}

export function writeExamples(root = RENDERED_DIR): string[] {
  const files = renderExamples();
  for (const stale of filesUnder(root)) if (!files.some((f) => f.path === stale)) fs.rmSync(path.join(root, stale));
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(root, f.path)), { recursive: true });
    fs.writeFileSync(path.join(root, f.path), f.content);
  }
  return files.map((f) => f.path);
}

if (require.main === module) {
  process.stdout.write(`wrote ${writeExamples().length} files under examples/rendered/\n`);
}
