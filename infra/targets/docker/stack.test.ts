/**
 * The docker target under Pulumi mocks: what `pulumi up -s local` would create,
 * the files each container gets (compared with the renderers' own output), what is
 * published, and how secrets travel.
 */
import * as path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { renderBalancer } from '../../../balancer/render';
import { renderEdge } from '../../../edge/render';
import { ACCESS_LOGS, DOCKER_SOCKET, renderAlloyConfig } from '../../../observability/alloy';
import { DATASOURCE_UIDS } from '../../../observability/grafana';
import { renderPrometheusConfig, scrapeTargets } from '../../../observability/prometheus';
import { program } from '../../../stacks/program';
import { deployPlan, specWithObjectStore } from '../pulumi/config';
import { RUNTIME_IMAGES, DEFAULT_IMAGES } from '../pulumi/images';
import { containerLayout, secretFile } from '../../model/layout';
import { NGINX_LOGROTATE_CONF, NGINX_OPEN_FILES, renderLogrotate } from '../../render/nginx';
import { renderRedis } from '../../render/redis';
import { parseSpec } from '../../model/spec';
import { generatedSecret, isSecret, plain, runProgram, secretsIn, type ProgramRun, type RecordedResource } from '../../../test/support/pulumi-mocks';
import { dockerAddresses, dockerTopology } from './topology';

const CONTAINER = 'docker:index/container:Container';
const SPEC = { name: 'shop', regions: [{ name: 'eu', edges: 2 }, { name: 'us', edges: 3 }] };

function config(extra: Record<string, unknown> = {}) {
  return { 'cdn:target': 'docker', 'cdn:spec': SPEC, ...extra };
}

function uploads(c: RecordedResource): { file: string; content: string; permissions?: string }[] {
  return plain(c.inputs.uploads) ?? [];
}

function fileIn(c: RecordedResource, file: string): string {
  const u = uploads(c).find((x) => x.file === file);
  if (!u) throw new Error(`${c.name} has no upload ${file}; has ${uploads(c).map((x) => x.file).join(', ')}`);
  return u.content;
}

/** The topology the test expects: the spec's ports on fixed addresses of the default subnet. */
function expectedTopology() {
  const plan = deployPlan(SPEC, parseSpec(SPEC), 'docker');
  return { plan, topology: dockerTopology(plan.spec, dockerAddresses(plan.spec, '10.89.0.0/24'), 'http://127.0.0.1:8080', { objectStore: true }) };
}

describe('docker target', () => {
  let run: ProgramRun<ReturnType<typeof program>>;
  beforeAll(async () => {
    run = await runProgram(config(), program);
  });

  test('one container per service and edge, each edge in its region\'s fleet', () => {
    const names = run.ofType(CONTAINER).map((c) => c.name).sort();
    expect(names).toEqual(
      ['alloy', 'balancer', 'edge-eu-1', 'edge-eu-2', 'edge-us-1', 'edge-us-2', 'edge-us-3', 'grafana', 'loki', 'object-store', 'origin', 'prometheus', 'redis'].sort(),
    );
    const fleets = run.ofType('cdn:service:EdgeFleet');
    expect(fleets.map((f) => f.name).sort()).toEqual(['edges-eu', 'edges-us']);
    const us = run.named('edges-us', 'cdn:service:EdgeFleet');
    expect(run.ofType(CONTAINER).filter((c) => c.parent === us.urn).map((c) => c.name)).toEqual(['edge-us-1', 'edge-us-2', 'edge-us-3']);
  });

  test('containers start in dependency order: MinIO and Redis, origin, edges, balancer', () => {
    const deps = (name: string) => run.named(name, CONTAINER).dependencies;
    const urn = (name: string) => run.named(name, CONTAINER).urn;
    expect(deps('origin')).toEqual(expect.arrayContaining([urn('redis'), urn('object-store')]));
    expect(deps('edge-us-2')).toContain(urn('origin'));
    expect(deps('balancer')).toEqual(expect.arrayContaining(['edge-eu-1', 'edge-eu-2', 'edge-us-1', 'edge-us-2', 'edge-us-3'].map(urn)));
  });

  test('only the balancer and Grafana are published, on the loopback address', () => {
    const published = run.ofType(CONTAINER).filter((c) => (c.inputs.ports ?? []).length > 0);
    expect(published.map((c) => c.name).sort()).toEqual(['balancer', 'grafana']);
    expect(run.named('balancer', CONTAINER).inputs.ports).toEqual([{ internal: 8080, external: 8080, ip: '127.0.0.1' }]);
    expect(run.named('grafana', CONTAINER).inputs.ports).toEqual([{ internal: 3000, external: 3000, ip: '127.0.0.1' }]);
  });

  test("with an external S3 endpoint and edge keys, edges get only their own keys' files", async () => {
    const storage = { kind: 's3', endpoint: 'https://s3.example', bucket: 'shop-assets', accessKeySecret: 's3Key', secretKeySecret: 's3Secret', edgeAccessKeySecret: 's3EdgeKey', edgeSecretKeySecret: 's3EdgeSecret' };
    const keys = { 'cdn:s3Key': 'origin-key', 'cdn:s3Secret': 'origin-secret', 'cdn:s3EdgeKey': 'edge-key', 'cdn:s3EdgeSecret': 'edge-secret' };
    const external = await runProgram(config({ 'cdn:spec': { ...SPEC, storage }, ...keys }), program, Object.keys(keys));
    const edge = external.named('edge-eu-1', CONTAINER);
    const files = uploads(edge).map((u) => u.file).filter((f) => f.includes('/secrets/'));
    expect(files.sort()).toEqual(['/etc/cdn/secrets/debug-token', '/etc/cdn/secrets/redis-password', '/etc/cdn/secrets/s3-edge-access-key', '/etc/cdn/secrets/s3-edge-secret-key', '/etc/cdn/secrets/url-signing-keys'].sort());
    expect(fileIn(edge, '/etc/cdn/secrets/s3-edge-secret-key')).toBe('edge-secret\n');
    expect(JSON.parse(fileIn(edge, '/etc/cdn/edge-eu-1/edge.json')).bucket).toMatchObject({ upstream: 'https://bucket', host: 's3.example', secretKeyFile: '/etc/cdn/secrets/s3-edge-secret-key' });
    for (const c of external.ofType(CONTAINER)) expect(JSON.stringify(plain(c.inputs.envs) ?? [])).not.toMatch(/edge-secret|origin-secret/);
    expect(uploads(external.named('origin', CONTAINER)).map((u) => u.file)).not.toContain('/etc/cdn/secrets/s3-edge-secret-key');
  });

  test('with filesystem storage there is no object store: the origin keeps assets in its own volume', async () => {
    const fsRun = await runProgram(config({ 'cdn:spec': { ...SPEC, storage: { kind: 'filesystem' } } }), program);
    expect(fsRun.ofType(CONTAINER).map((c) => c.name)).not.toContain('object-store');
    expect(fsRun.ofType('docker:index/remoteImage:RemoteImage').map((i) => i.inputs.name)).not.toContain(DEFAULT_IMAGES.minio);
    const origin = fsRun.named('origin', CONTAINER);
    const env = Object.fromEntries((origin.inputs.envs as string[]).map((e) => e.split(/=(.*)/s).slice(0, 2)));
    expect(env).toMatchObject({ CDN_STORAGE_KIND: 'filesystem', CDN_STORAGE_PATH: '/etc/cdn/origin/storage', CDN_UNIT_DIRS: 'storage' });
    expect(env.CDN_S3_ENDPOINT).toBeUndefined();
    expect(origin.inputs.volumes).toEqual([{ volumeName: 'shop-origin-storage', containerPath: '/etc/cdn/origin/storage' }]);
    expect(fsRun.named('origin-storage', 'docker:index/volume:Volume').inputs.name).toBe('shop-origin-storage');
    // no bucket, so no bucket keys: neither generated nor on any container
    expect(fsRun.ofType('random:index/randomPassword:RandomPassword').map((r) => r.name).sort()).toEqual(['secret-cdn-admin-token', 'secret-cdn-debug-token', 'secret-cdn-url-signing-keys', 'secret-grafana-admin-password', 'secret-redis-password']);
    for (const c of fsRun.ofType(CONTAINER)) expect(uploads(c).map((u) => u.file).filter((f) => f.includes('/secrets/s3-'))).toEqual([]);
  });

  test('edge and balancer containers get exactly the renderers\' files', () => {
    const { plan, topology } = expectedTopology();
    const layout = containerLayout();
    for (const edge of topology.edges) {
      const c = run.named(`edge-${edge.id}`, CONTAINER);
      const spec = specWithObjectStore(plan, 'http://10.89.0.12:9000');
      for (const f of renderEdge(spec, topology, edge, layout, { debugTokenFile: secretFile(layout, 'debugToken')!, urlSigningKeysFile: secretFile(layout, 'urlSigningKeys')! })) {
        expect(fileIn(c, `/etc/cdn/edge-${edge.id}/${f.path}`)).toBe(f.content);
      }
    }
    const balancer = run.named('balancer', CONTAINER);
    for (const f of renderBalancer(plan.spec, topology, layout)) expect(fileIn(balancer, `/etc/cdn/balancer/${f.path}`)).toBe(f.content);
    // The balancer reaches edges by address: set_current_peer takes no host names.
    const settings = JSON.parse(fileIn(balancer, '/etc/cdn/balancer/balancer.json'));
    expect(settings.regions[1].edges.map((e: { host: string }) => e.host)).toEqual(['10.89.0.102', '10.89.0.103', '10.89.0.104']);
  });

  test('nginx containers allow the descriptors nginx.conf raises its limit to, and rotate their logs', () => {
    const { topology } = expectedTopology();
    for (const name of [...topology.edges.map((e) => `edge-${e.id}`), 'balancer']) {
      const c = run.named(name, CONTAINER);
      expect(plain(c.inputs.ulimits)).toEqual([{ name: 'nofile', soft: NGINX_OPEN_FILES, hard: NGINX_OPEN_FILES }]);
      expect(fileIn(c, `/etc/cdn/${name}/conf/nginx.conf`)).toContain(`worker_rlimit_nofile ${NGINX_OPEN_FILES};`);
      // run-unit.sh rotates the logs with the unit's logrotate config
      expect(fileIn(c, `/etc/cdn/${name}/${NGINX_LOGROTATE_CONF}`)).toBe(renderLogrotate(`/etc/cdn/${name}`));
      expect(c.inputs.envs).toContain(`CDN_LOGROTATE=/etc/cdn/${name}/${NGINX_LOGROTATE_CONF}`);
    }
    expect(run.named('origin', CONTAINER).inputs.ulimits).toBeUndefined();
  });

  test('every container\'s output is capped (json-file, 3 x 50 MB)', () => {
    const containers = run.resources.filter((r) => r.type === CONTAINER);
    expect(containers.length).toBeGreaterThan(5);
    for (const c of containers) {
      expect([c.name, c.inputs.logDriver, plain(c.inputs.logOpts)]).toEqual([c.name, 'json-file', { 'max-size': '50m', 'max-file': '3' }]);
    }
  });

  test('Redis requires the password from a secret include; redis.conf itself holds none', () => {
    const { topology } = expectedTopology();
    const redis = run.named('redis', CONTAINER);
    const conf = fileIn(redis, '/etc/cdn/redis/redis.conf');
    expect(conf).toBe(renderRedis(topology, { authInclude: '/etc/cdn/secrets/redis-auth.conf' })[0].content);
    const password = generatedSecret('secret-redis-password');
    expect(conf).not.toContain(password);
    expect(fileIn(redis, '/etc/cdn/secrets/redis-auth.conf')).toBe(`requirepass "${password}"\nmasterauth "${password}"\n`);
    const edgeSettings = JSON.parse(fileIn(run.named('edge-eu-1', CONTAINER), '/etc/cdn/edge-eu-1/edge.json'));
    expect(edgeSettings.redis).toEqual({ host: '10.89.0.10', port: 6379, passwordFile: '/etc/cdn/secrets/redis-password' });
  });

  test('secrets reach containers only as secret files, never in environment variables', () => {
    const secretValues = run.ofType('random:index/randomPassword:RandomPassword').map((r) => generatedSecret(r.name));
    // Admin and debug tokens, Redis password, both MinIO keys, Grafana's admin password.
    expect(secretValues).toHaveLength(7);
    for (const c of run.ofType(CONTAINER)) {
      const env = (c.inputs.envs ?? []).join('\n');
      for (const v of secretValues) expect(env).not.toContain(v);
      // Whatever carries a secret is marked secret, so Pulumi encrypts it in the state.
      for (const u of uploads(c).filter((x) => x.file.includes('/secrets/'))) {
        expect(isSecret(c.inputs.uploads)).toBe(true);
        expect(u.permissions).toBe('0400');
      }
    }
    const origin = run.named('origin', CONTAINER);
    expect(uploads(origin).map((u) => u.file).filter((f) => f.includes('/secrets/')).sort()).toEqual(
      ['/etc/cdn/secrets/admin-token', '/etc/cdn/secrets/debug-token', '/etc/cdn/secrets/redis-password', '/etc/cdn/secrets/s3-access-key', '/etc/cdn/secrets/s3-secret-key', '/etc/cdn/secrets/url-signing-keys'].sort(),
    );
    // Edges sign their bucket reads; with the stack's own MinIO they have no keys of their own.
    // They get the debug token (X-Cdn-Debug), never the admin token.
    expect(uploads(run.named('edge-eu-1', CONTAINER)).map((u) => u.file).filter((f) => f.includes('/secrets/')).sort()).toEqual(
      ['/etc/cdn/secrets/debug-token', '/etc/cdn/secrets/redis-password', '/etc/cdn/secrets/s3-access-key', '/etc/cdn/secrets/s3-secret-key', '/etc/cdn/secrets/url-signing-keys'].sort(),
    );
    // The balancer needs no secret at all.
    expect(uploads(run.named('balancer', CONTAINER)).filter((u) => u.file.includes('/secrets/'))).toEqual([]);
    expect(secretsIn(run.named('balancer', CONTAINER).inputs)).toEqual([]);
  });

  test('the origin stores assets in the stack\'s MinIO, with its keys in files', () => {
    const env = Object.fromEntries((run.named('origin', CONTAINER).inputs.envs as string[]).map((e) => e.split(/=(.*)/s).slice(0, 2)));
    expect(env).toMatchObject({
      CDN_STORAGE_KIND: 's3',
      CDN_S3_ENDPOINT: 'http://10.89.0.12:9000',
      CDN_S3_BUCKET: 'shop-assets',
      CDN_S3_REGION: 'us-east-1',
      CDN_S3_ACCESS_KEY_FILE: '/etc/cdn/secrets/s3-access-key',
      CDN_S3_SECRET_KEY_FILE: '/etc/cdn/secrets/s3-secret-key',
      CDN_REDIS_PASSWORD_FILE: '/etc/cdn/secrets/redis-password',
      CDN_ADMIN_TOKEN_FILE: '/etc/cdn/secrets/admin-token',
      CDN_RUN_AS: 'cdn',
    });
    const minio = run.named('object-store', CONTAINER);
    expect(minio.inputs.envs).toEqual(['MINIO_ROOT_USER_FILE=/etc/cdn/secrets/s3-access-key', 'MINIO_ROOT_PASSWORD_FILE=/etc/cdn/secrets/s3-secret-key']);
    expect(fileIn(minio, '/etc/cdn/secrets/s3-access-key')).toBe(fileIn(run.named('origin', CONTAINER), '/etc/cdn/secrets/s3-access-key'));
  });

  test('Prometheus scrapes every edge, the origin and the balancer by address', () => {
    const { topology } = expectedTopology();
    const prom = fileIn(run.named('prometheus', CONTAINER), '/etc/cdn/prometheus/prometheus.yml');
    expect(prom).toBe(renderPrometheusConfig(scrapeTargets(topology)));
    for (const ip of ['10.89.0.100', '10.89.0.101', '10.89.0.102', '10.89.0.103', '10.89.0.104']) expect(prom).toContain(`"${ip}:9145"`);
  });

  test('adding an edge to the spec adds its container and its scrape target, nothing else', async () => {
    const more = await runProgram(config({ 'cdn:spec': { ...SPEC, regions: [{ name: 'eu', edges: 3 }, { name: 'us', edges: 3 }] } }), program);
    expect(more.ofType(CONTAINER).length).toBe(run.ofType(CONTAINER).length + 1);
    const prom = fileIn(more.named('prometheus', CONTAINER), '/etc/cdn/prometheus/prometheus.yml');
    expect(prom).toContain('edge: "eu-3"');
  });

  test('Alloy reads every nginx unit\'s log volume read-only and the containers\' output, and pushes to Loki', () => {
    const alloy = run.named('alloy', CONTAINER);
    const loki = run.named('loki', CONTAINER);
    // the rendered docker variant, with Loki's address on the stack's network
    expect(fileIn(alloy, '/etc/alloy/config.alloy')).toBe(renderAlloyConfig({ source: 'docker', lokiPushUrl: 'http://10.89.0.32:3100/loki/api/v1/push', dockerNetwork: 'shop-net' }));
    // only this stack's containers: another stack's (or program's) logs on the host stay out
    expect(fileIn(alloy, '/etc/alloy/config.alloy')).toMatch(/filter \{\s+name\s+= "network"\s+values = \["shop-net"\]/);
    expect(alloy.inputs.command).toEqual(['run', '--server.http.listen-addr=127.0.0.1:12345', '--storage.path=/var/lib/alloy/data', '/etc/alloy/config.alloy']);
    expect(alloy.inputs.image).toBe('sha256:image-alloy');
    expect(alloy.dependencies).toContain(loki.urn);
    expect(alloy.inputs.networksAdvanced).toEqual([{ name: 'shop-net', ipv4Address: '10.89.0.33', aliases: ['alloy'] }]);
    expect(alloy.inputs.ports ?? []).toEqual([]);
    const volumes = alloy.inputs.volumes as { volumeName?: string; hostPath?: string; containerPath: string; readOnly?: boolean }[];
    // each nginx unit's logs/ is one volume: written by its container, read by Alloy
    const glob = new RegExp(`^${ACCESS_LOGS.docker.replace('*', '([a-z0-9-]+)').replace(/\./g, '\\.')}$`);
    for (const unit of ['balancer', 'edge-eu-1', 'edge-eu-2', 'edge-us-1', 'edge-us-2', 'edge-us-3']) {
      const written = (run.named(unit, CONTAINER).inputs.volumes as { volumeName: string; containerPath: string }[]).find((v) => v.containerPath === `/etc/cdn/${unit}/logs`);
      expect(written?.volumeName).toBe(`shop-${unit}-logs`);
      const read = volumes.find((v) => v.volumeName === `shop-${unit}-logs`);
      expect(read).toEqual({ volumeName: `shop-${unit}-logs`, containerPath: `/var/log/cdn/${unit}`, readOnly: true });
      // nginx's access.log in that directory is what the config's glob picks up
      expect(glob.exec(`${read!.containerPath}/access.log`)?.[1]).toBe(unit);
    }
    expect(volumes.filter((v) => v.volumeName?.endsWith('-logs'))).toHaveLength(6);
    expect(volumes).toContainEqual({ hostPath: DOCKER_SOCKET, containerPath: DOCKER_SOCKET, readOnly: true });
    expect(volumes).toContainEqual({ volumeName: 'shop-alloy-data', containerPath: '/var/lib/alloy/data' });
    // Loki itself is published nowhere
    expect(loki.inputs.ports ?? []).toEqual([]);
  });

  test('Grafana is provisioned with Prometheus and Loki under fixed uids', () => {
    const grafana = run.named('grafana', CONTAINER);
    const ds = fileIn(grafana, '/etc/grafana/provisioning/datasources/cdn.yaml');
    expect(ds).toContain(`uid: ${DATASOURCE_UIDS.prometheus}`);
    expect(ds).toContain('url: "http://10.89.0.30:9090"');
    expect(ds).toContain(`uid: ${DATASOURCE_UIDS.loki}`);
    expect(grafana.inputs.envs).toContain('GF_SECURITY_ADMIN_PASSWORD__FILE=/etc/cdn/secrets/grafana-admin-password');
  });

  test('images: ours built from the repository\'s Dockerfiles, third-party ones pinned by digest', () => {
    const builds = run.ofType('docker:index/image:Image').map((i) => [i.name, path.relative(path.resolve(__dirname, '../../..'), i.inputs.build.dockerfile)]);
    expect(Object.fromEntries(builds)).toEqual({
      'image-edge': 'edge/Dockerfile',
      'image-balancer': 'balancer/Dockerfile',
      'image-origin': 'origin/Dockerfile',
      'image-redis': 'infra/targets/docker/Dockerfile',
      'image-prometheus': 'infra/targets/docker/Dockerfile',
    });
    const pulled = run.ofType('docker:index/remoteImage:RemoteImage').map((i) => i.inputs.name);
    expect(pulled.sort()).toEqual(RUNTIME_IMAGES.map((n) => DEFAULT_IMAGES[n]).sort());
    for (const ref of pulled) expect(ref).toMatch(/@sha256:[0-9a-f]{64}$/);
  });

  test('outputs: balancer, asset base and Grafana URLs on this machine, edges per region, a secret admin token', async () => {
    const out = run.result;
    const value = <T>(o: { apply: (f: (v: T) => void) => unknown }) => new Promise<T>((r) => o.apply(r));
    expect(await value(out.balancerUrl)).toBe('http://127.0.0.1:8080');
    expect(await value(out.assetBaseUrl)).toBe('http://127.0.0.1:8080');
    expect(await value(out.grafanaUrl)).toBe('http://127.0.0.1:3000');
    // the API listener; the delivery one (3000) is the edges'
    expect(await value(out.originApiUrl)).toBe('http://10.89.0.11:3001');
    expect(await value(out.edges)).toEqual({
      eu: ['http://10.89.0.100:8081', 'http://10.89.0.101:8081'],
      us: ['http://10.89.0.102:8081', 'http://10.89.0.103:8081', 'http://10.89.0.104:8081'],
    });
    expect(await pulumi.isSecret(out.adminToken)).toBe(true);
  });
});
