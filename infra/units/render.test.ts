/**
 * Every rendered file is checked by the program that will read it: `nginx -t` for
 * the edge and balancer configs, `promtool check config` for Prometheus. redis.conf
 * and the origin's environment are exercised by the end-to-end tests, which run them.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { debianLayout } from '../model/layout';
import { DEFAULT_IMAGE_WIDTHS, parseSpec } from '../model/spec';
import type { Topology } from '../model/topology';
import { buildUnits } from './stack';
import { writeNativeRedisTls } from '../targets/native/redis-tls';
import { scrapeTargets } from '../../observability/prometheus';
import { LATENCY_BUCKETS } from '../../origin/contract/metrics';
import { SENDFILE_ABOVE } from '../../edge/render';

const REPO = path.resolve(__dirname, '../..');

function fixedTopology(edges: { id: string; region: string; index: number }[]): Topology {
  const p = (host: string, port: number) => ({ listen: { host: '0.0.0.0', port }, reach: { host, port } });
  return {
    redis: p('redis', 6379),
    origin: p('origin', 3000),
    originApi: p('origin', 3001),
    balancer: { traffic: p('balancer', 8080), internal: p('balancer', 9145) },
    edges: edges.map((e) => ({ ...e, traffic: p(`edge-${e.id}`, 8081), internal: p(`edge-${e.id}`, 9145) })),
    prometheus: p('prometheus', 9090),
    publicBaseUrl: 'https://cdn.shop.example',
  };
}

function unitsFor(input: unknown, stateDir: string, secretsDir?: string) {
  const spec = parseSpec(input);
  const edges = spec.regions.flatMap((r) => Array.from({ length: r.edges }, (_, i) => ({ id: `${r.name}-${i + 1}`, region: r.name, index: i + 1 })));
  const topology = fixedTopology(edges);
  const layout = debianLayout({ repoRoot: REPO, stateDir, secretsDir });
  return { spec, topology, units: buildUnits({ spec, topology, layout, adminTokenFile: '/run/secrets/admin-token', debugTokenFile: '/run/secrets/debug-token', urlSigningKeysFile: '/run/secrets/url-signing-keys', withPrometheus: true }) };
}

describe('renderers', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-render-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('are pure: the same spec renders the same bytes', () => {
    const a = unitsFor({ regions: [{ name: 'eu', edges: 3 }] }, dir).units;
    const b = unitsFor({ regions: [{ name: 'eu', edges: 3 }] }, dir).units;
    expect(JSON.stringify(a)).toEqual(JSON.stringify(b));
  });

  test('one unit per edge of every region, in dependency order', () => {
    const { units } = unitsFor({ regions: [{ name: 'eu', edges: 3 }, { name: 'us', edges: 1 }] }, dir);
    expect(units.map((u) => u.name)).toEqual(['redis', 'origin', 'edge-eu-1', 'edge-eu-2', 'edge-eu-3', 'edge-us-1', 'balancer', 'prometheus']);
    expect(units.find((u) => u.name === 'balancer')!.dependsOn).toEqual(['edge-eu-1', 'edge-eu-2', 'edge-eu-3', 'edge-us-1']);
  });

  test.each([
    ['filesystem', {}],
    ['S3 (raw assets from the bucket)', { storage: { kind: 's3', endpoint: 'https://127.0.0.1:9000', bucket: 'shop-assets', accessKeySecret: 'A', secretKeySecret: 'B' } }],
  ])('nginx accepts every rendered edge and balancer config (nginx -t), %s storage, with bypass cookies, slicing and signed downloads', (_, storage) => {
    // bypass cookies with every character a cookie name may hold, escaped in the map's regex
    const bypassCookies = ['session', "we!rd#$%&'*+-.^_`|~"];
    const { units } = unitsFor(
      // (/downloads/ is sliced and protected, /files/ only protected)
      { regions: [{ name: 'eu', edges: 2 }, { name: 'us', edges: 1 }], cache: { bypassCookies, slice: { prefixes: ['/downloads/', '/media/video/'], size: '4m' } }, downloads: { prefixes: ['/downloads/', '/files/'] }, ...storage },
      dir,
      path.join(dir, 'secrets'),
    );
    expect(units.find((u) => u.name === 'edge-eu-1')!.files[0].content).toContain(
      '"~(?:^|;)\\s*(?:session|we\\!rd\\#\\$\\%\\&\\\'\\*\\+\\-\\.\\^\\_\\`\\|\\~)=" 1;',
    );
    const nginxUnits = units.filter((u) => u.role === 'edge' || u.role === 'balancer');
    expect(nginxUnits).toHaveLength(4);
    for (const unit of nginxUnits) {
      for (const d of [...unit.dirs, 'logs']) fs.mkdirSync(path.join(unit.dir, d), { recursive: true });
      for (const f of unit.files) fs.writeFileSync(path.join(unit.dir, f.path), f.content);
      // -t parses the config and loads the modules; the hostnames of this fixed
      // topology need not resolve for that, so map them to loopback via the IPs.
      const conf = path.join(unit.dir, 'conf', 'nginx.conf');
      fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').replace(/server (origin|edge-[a-z0-9-]+):/g, 'server 127.0.0.1:'));
      const out = execFileSync('/usr/sbin/nginx', ['-t', '-p', unit.dir, '-c', conf, '-e', path.join(unit.dir, 'logs', 'error.log')], { encoding: 'utf8', stdio: 'pipe' });
      expect(out).toBe('');
    }
  });

  test("with S3 storage the edges read raw assets from the bucket with their own keys' files, or the origin's", () => {
    const s3 = { kind: 's3', endpoint: 'http://minio.internal:9000', bucket: 'shop-assets', region: 'eu-west-1', accessKeySecret: 'A', secretKeySecret: 'B' };
    const secrets = '/etc/cdn/secrets';
    const settingsOf = (storage: unknown) => {
      const edge = unitsFor({ regions: [{ name: 'eu', edges: 1 }], storage }, dir, secrets).units.find((u) => u.name === 'edge-eu-1')!;
      return { settings: JSON.parse(edge.files.find((f) => f.path === 'edge.json')!.content), conf: edge.files.find((f) => f.path === 'conf/nginx.conf')!.content };
    };
    const shared = settingsOf(s3);
    expect(shared.settings.bucket).toEqual({
      upstream: 'http://bucket',
      host: 'minio.internal:9000',
      sni: 'minio.internal',
      bucket: 'shop-assets',
      region: 'eu-west-1',
      accessKeyFile: `${secrets}/s3-access-key`,
      secretKeyFile: `${secrets}/s3-secret-key`,
      defaultCacheControl: 'public, max-age=3600',
      cacheControlByType: expect.arrayContaining([['image/*', 'public, max-age=86400']]),
      notFoundCacheControl: 'public, max-age=5',
      maxKeyLength: 1024,
      reservedFirstSegments: ['v1'],
      reservedKeys: expect.arrayContaining(['healthz', 'docs/openapi.json']),
      sandbox: { csp: expect.stringContaining('sandbox'), types: ['text/xml', 'application/xml'], suffix: '+xml' },
    });
    expect(shared.conf).toContain('server minio.internal:9000 max_fails=0;');
    expect(shared.conf).toContain('proxy_pass $cdn_upstream$cdn_s3_object;');
    const own = settingsOf({ ...s3, edgeAccessKeySecret: 'C', edgeSecretKeySecret: 'D' }).settings.bucket;
    expect([own.accessKeyFile, own.secretKeyFile]).toEqual([`${secrets}/s3-edge-access-key`, `${secrets}/s3-edge-secret-key`]);
    // filesystem storage: every miss goes to the origin, as before
    const fs_ = settingsOf({ kind: 'filesystem' });
    expect(fs_.settings.bucket).toBeUndefined();
    expect(fs_.conf).not.toMatch(/upstream bucket|location @bucket|set \$cdn_s3_object/);
  });

  test('with regional replicas the links that cross regions are TLS: replication, and the replica regions\' acknowledgements', () => {
    const secretsDir = path.join(dir, 'secrets');
    fs.mkdirSync(secretsDir);
    writeNativeRedisTls(secretsDir);
    const spec = parseSpec({ regions: [{ name: 'eu', edges: 1 }, { name: 'us', edges: 1 }], secrets: { adminToken: 'A', debugToken: 'D', redisPassword: 'R' } });
    const p = (host: string, port: number) => ({ listen: { host: '0.0.0.0', port }, reach: { host, port } });
    const topology: Topology = { ...fixedTopology([{ id: 'eu-1', region: 'eu', index: 1 }, { id: 'us-1', region: 'us', index: 1 }]), redisReplicas: { us: p('redis-us', 6379) }, redisTls: p('redis', 6380) };
    const layout = debianLayout({ repoRoot: REPO, stateDir: dir, secretsDir });
    const units = buildUnits({ spec, topology, layout, adminTokenFile: '/run/secrets/admin-token', debugTokenFile: '/run/secrets/debug-token', urlSigningKeysFile: '/run/secrets/url-signing-keys', withPrometheus: false });
    const unit = (name: string) => units.find((u) => u.name === name)!;
    const file = (name: string, f: string) => unit(name).files.find((x) => x.path === f)!.content;
    const tlsFiles = `tls-cert-file ${secretsDir}/redis-tls.crt\ntls-key-file ${secretsDir}/redis-tls.key\ntls-ca-cert-file ${secretsDir}/redis-tls-ca.crt\n`;
    expect(file('redis', 'redis.conf')).toContain(`port 6379\n`);
    expect(file('redis', 'redis.conf')).toContain(`tls-port 6380\ntls-auth-clients no\n${tlsFiles}`);
    expect(file('redis-us', 'redis.conf')).toContain('replicaof redis 6380\n');
    expect(file('redis-us', 'redis.conf')).toContain(`tls-replication yes\n${tlsFiles}`);
    expect(file('redis-us', 'redis.conf')).not.toContain('tls-port');
    for (const name of ['redis', 'redis-us']) expect(unit(name).secrets).toEqual(['redisAuthConf', 'redisPassword', 'redisTlsCert', 'redisTlsKey', 'redisTlsCa']);
    // the us edge reads its replica and acknowledges to the primary's TLS port; the eu edge reads and acknowledges on the primary's plain port
    const us = JSON.parse(file('edge-us-1', 'edge.json'));
    expect(us.redis).toMatchObject({ host: 'redis-us', port: 6379 });
    expect(us.acknowledge).toEqual({ host: 'redis', port: 6380, tls: { serverName: 'redis.cdn.internal' } });
    expect(JSON.parse(file('edge-eu-1', 'edge.json')).acknowledge).toBeUndefined();
    expect(file('edge-us-1', 'conf/nginx.conf')).toContain(`lua_ssl_trusted_certificate ${secretsDir}/redis-tls-ca.crt;`);
    expect(file('edge-eu-1', 'conf/nginx.conf')).not.toContain('lua_ssl_trusted_certificate');
    expect(unit('edge-us-1').secrets).toContain('redisTlsCa');
    expect(unit('edge-eu-1').secrets).not.toContain('redisTlsCa');
    // nothing from another region reaches the primary's plain port
    expect(unit('redis').accepts.filter((c) => c.port === 6380).map((c) => c.peer)).toEqual(['edge-us-1', 'redis-us']);
    expect(unit('redis').accepts.filter((c) => c.port === 6379).map((c) => c.peer)).toEqual(['edge-eu-1', 'origin']);
    // nginx loads the CA (nginx -t fails on a CA file it cannot read)
    const edge = unit('edge-us-1');
    for (const d of [...edge.dirs, 'logs']) fs.mkdirSync(path.join(edge.dir, d), { recursive: true });
    for (const f of edge.files) fs.writeFileSync(path.join(edge.dir, f.path), f.content);
    const conf = path.join(edge.dir, 'conf', 'nginx.conf');
    fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').replace(/server (origin|edge-[a-z0-9-]+):/g, 'server 127.0.0.1:'));
    expect(execFileSync('/usr/sbin/nginx', ['-t', '-p', edge.dir, '-c', conf, '-e', path.join(edge.dir, 'logs', 'error.log')], { encoding: 'utf8', stdio: 'pipe' })).toBe('');
    // a replica topology without the primary's TLS listener, or without secret files, is refused rather than rendered in the clear
    const { redisTls: _, ...withoutTls } = topology;
    expect(() => buildUnits({ spec, topology: withoutTls, layout, adminTokenFile: 'a', debugTokenFile: 'd', urlSigningKeysFile: 'k', withPrometheus: false })).toThrow(/TLS listener/);
    expect(() => buildUnits({ spec: { ...spec, secrets: { adminToken: 'A', debugToken: 'D', urlSigningKeys: 'K' } }, topology, layout: debianLayout({ repoRoot: REPO, stateDir: dir }), adminTokenFile: 'a', debugTokenFile: 'd', urlSigningKeysFile: 'k', withPrometheus: false })).toThrow(
      'a topology with a Redis TLS listener needs the TLS files to render redis.conf',
    );
  });

  test('edge settings point at Redis and the purge stream; the balancer lists every edge per region', () => {
    const { units } = unitsFor({ regions: [{ name: 'eu', edges: 2 }, { name: 'us', edges: 1 }], purge: { stream: 'shop:purges' } }, dir);
    const edge = JSON.parse(units.find((u) => u.name === 'edge-us-1')!.files.find((f) => f.path === 'edge.json')!.content);
    expect(edge).toEqual({ id: 'us-1', region: 'us', stream: 'shop:purges', redis: { host: 'redis', port: 6379 }, grace: 86400, busDownMaxTtl: 60, store5xx: true, max5xxTtl: 10, minStaleWhileRevalidate: 0, storeSetCookie: false, forwardCdnCacheControl: true, origins: [], debugTokenFile: '/run/secrets/debug-token', images: { enabled: true, widths: [...DEFAULT_IMAGE_WIDTHS], qualities: [50, 75, 90], defaultQuality: 75 }, downloads: { prefixes: [], maxTtl: 604800 }, urlSigningKeysFile: '/run/secrets/url-signing-keys', latencyBuckets: [...LATENCY_BUCKETS], sendfileAbove: SENDFILE_ABOVE, generationTtl: 7 * 86400 + 86400 });
    const balancer = JSON.parse(units.find((u) => u.name === 'balancer')!.files.find((f) => f.path === 'balancer.json')!.content);
    expect(balancer.order).toEqual(['eu', 'us']);
    expect(balancer.regions).toEqual([
      {
        name: 'eu',
        edges: [
          { id: 'eu-1', host: 'edge-eu-1', port: 8081, health: { host: 'edge-eu-1', port: 9145 } },
          { id: 'eu-2', host: 'edge-eu-2', port: 8081, health: { host: 'edge-eu-2', port: 9145 } },
        ],
      },
      { name: 'us', edges: [{ id: 'us-1', host: 'edge-us-1', port: 8081, health: { host: 'edge-us-1', port: 9145 } }] },
    ]);
    expect(balancer).toMatchObject({ retries: 1, boundedLoad: 1.25, health: { interval: 1, timeout: 0.5, fall: 2, rise: 2 }, hosts: null, tlsCertificates: [] });
    expect(balancer.revision).toMatch(/^[0-9a-f]{12}$/);
  });

  test('the balancer renders its routing, TLS and host options, and nginx accepts them', () => {
    const certDir = path.join(dir, 'tls');
    fs.mkdirSync(certDir);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=shop.example', '-keyout', path.join(certDir, 'key.pem'), '-out', path.join(certDir, 'cert.pem')], { stdio: 'pipe' });
    const { units } = unitsFor(
      {
        regions: [{ name: 'eu', edges: 1 }, { name: 'us', edges: 1 }],
        balancer: {
          trustedProxies: ['10.0.0.0/8', '2001:db8::/32'],
          cidrRegions: [{ cidr: '192.0.2.0/24', region: 'us' }, { cidr: '192.0.2.128/25', region: 'eu' }],
          tls: { cert: path.join(certDir, 'cert.pem'), key: path.join(certDir, 'key.pem') },
          hosts: ['shop.example'],
          maxConnsPerClient: 50,
        },
      },
      dir,
    );
    const unit = units.find((u) => u.name === 'balancer')!;
    const conf = unit.files.find((f) => f.path === 'conf/nginx.conf')!.content;
    expect(conf).toMatch(/listen 0\.0\.0\.0:8080 ssl backlog=4096;/);
    expect(conf).toContain('limit_conn cdn_conn 50;');
    // the certificate nginx serves is the one whose expiry the Lua exports
    expect(JSON.parse(unit.files.find((f) => f.path === 'balancer.json')!.content).tlsCertificates).toEqual([path.join(certDir, 'cert.pem')]);
    // longest prefix first, trusted proxies as geo proxies
    expect(conf.indexOf('192.0.2.128/25 eu;')).toBeLessThan(conf.indexOf('192.0.2.0/24 us;'));
    // routing depends on both region sources, and trusted proxies' X-Forwarded-For is extended
    expect(conf).toContain('set $cdn_route "$cdn_trusted_peer$http_x_cdn_region\\n$cdn_cidr_region\\n$host\\n$http_host\\n$request_uri";');
    expect(conf).toContain('proxy_set_header X-Forwarded-For $cdn_forwarded_for;');
    expect(conf).toContain('limit_conn_zone $cdn_conn_key zone=cdn_conn:10m;');
    expect(conf).toContain('proxy 2001:db8::/32;');
    // the status page lives on the internal listener only
    const internal = conf.slice(conf.indexOf('# Health and metrics'));
    expect(internal).toContain('location = /status ');
    expect(conf.slice(0, conf.indexOf('# Health and metrics'))).not.toContain('/status');
    for (const d of [...unit.dirs, 'logs']) fs.mkdirSync(path.join(unit.dir, d), { recursive: true });
    for (const f of unit.files) fs.writeFileSync(path.join(unit.dir, f.path), f.content);
    const file = path.join(unit.dir, 'conf', 'nginx.conf');
    expect(execFileSync('/usr/sbin/nginx', ['-t', '-p', unit.dir, '-c', file, '-e', path.join(unit.dir, 'logs', 'error.log')], { encoding: 'utf8', stdio: 'pipe' })).toBe('');
  });

  test('without trusted proxies or client networks, the balancer looks neither up per request', () => {
    const conf = unitsFor({}, dir).units.find((u) => u.name === 'balancer')!.files.find((f) => f.path === 'conf/nginx.conf')!.content;
    expect(conf).toContain('set $cdn_route "$host\\n$http_host\\n$request_uri";');
    expect(conf).toContain('proxy_set_header X-Forwarded-For $remote_addr;');
    expect(conf).toContain('limit_conn_zone $binary_remote_addr zone=cdn_conn:10m;');
    expect(conf).not.toContain('$cdn_forwarded_for');
  });

  test('the origin gets its settings and a token file, never a token', () => {
    const { units } = unitsFor({}, dir);
    const env = units.find((u) => u.name === 'origin')!.env;
    expect(env).toMatchObject({ CDN_REDIS_URL: 'redis://redis:6379', CDN_ADMIN_TOKEN_FILE: '/run/secrets/admin-token', CDN_PUBLIC_BASE_URL: 'https://cdn.shop.example' });
    expect(Object.keys(env)).not.toContain('CDN_ADMIN_TOKEN');
  });

  test('Prometheus scrapes every edge, the origin and the balancer, and promtool accepts it', () => {
    const { units, topology } = unitsFor({ regions: [{ name: 'eu', edges: 2 }, { name: 'us', edges: 3 }] }, dir);
    expect(scrapeTargets(topology).filter((t) => t.job === 'edge').map((t) => t.labels.edge)).toEqual(['eu-1', 'eu-2', 'us-1', 'us-2', 'us-3']);
    const prom = units.find((u) => u.name === 'prometheus')!;
    const file = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(file, prom.files[0].content);
    expect(prom.files[0].content).toContain('"edge-us-3:9145"');
    const out = execFileSync('promtool', ['check', 'config', file], { encoding: 'utf8', stdio: 'pipe' });
    expect(out).toContain('SUCCESS');
  });
});
