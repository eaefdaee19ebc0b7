/**
 * The parts of `npm run test:docker` that need no Docker engine: the graph it reads
 * from the program (with the run's config) and how each input of the docker target
 * becomes an Engine API call. The run itself (run.ts) needs an engine and root, so it
 * is not part of `npm test`; .ci/run runs it after.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildInputs, createOptions, nanoseconds, networkOptions, uploadArchive, volumeOptions } from './containers';
import { dockerGraph, REPO_ROOT, runConfig, type DockerGraph, type GraphResource } from './graph';
import { excusedErrorLine } from './checks';
import { firstFile, tarOf } from './tar';

let graph: DockerGraph;
const container = (name: string): GraphResource => graph.containers.find((c) => c.name === name)!;

beforeAll(async () => {
  graph = await dockerGraph(runConfig(path.join(REPO_ROOT, 'Pulumi.local.yaml'), { debian: 'cdn-test/debian:x', node: 'cdn-test/node:y' }, 18080));
});

describe('the graph test:docker reads', () => {
  test('the local stack with filesystem storage: no MinIO; Grafana, Loki and Alloy are the only pulled images', () => {
    const names = graph.containers.map((c) => c.name);
    expect(names).not.toContain('object-store');
    expect([...graph.pulledImageOf.keys()].sort()).toEqual(['alloy', 'grafana', 'loki']);
    // nothing of the CDN's own waits for what the run leaves out
    const own = graph.containers.filter((c) => !graph.pulledImageOf.has(c.name));
    for (const c of own) expect(c.after.filter((d) => graph.pulledImageOf.has(d))).toEqual([]);
    expect(own.map((c) => c.name)).toEqual(['redis', 'origin', 'edge-eu-1', 'edge-eu-2', 'edge-us-1', 'edge-us-2', 'balancer', 'prometheus']);
    expect(container('balancer').after).toEqual(['edge-eu-1', 'edge-eu-2', 'edge-us-1', 'edge-us-2']);
  });

  test('images are built FROM the bases the run made, from the repository as context', () => {
    const builds = Object.fromEntries(graph.builds.map((b) => [b.name, buildInputs(b)]));
    expect(builds['image-origin'].args).toEqual({ NODE_IMAGE: 'cdn-test/node:y' });
    expect(builds['image-redis'].args).toEqual({ BASE_IMAGE: 'cdn-test/debian:x', ROLE: 'redis' });
    for (const b of Object.values(builds)) {
      expect(b.context).toBe(REPO_ROOT);
      expect(fs.existsSync(b.dockerfile)).toBe(true);
    }
  });

  test('outputs give the run its addresses: the balancer on the free port, the origin and edges on the network', () => {
    expect(graph.outputs).toMatchObject({ balancerUrl: 'http://127.0.0.1:18080', originApiUrl: 'http://10.89.0.11:3001', prometheusUrl: 'http://10.89.0.30:9090' });
    expect(graph.outputs.adminToken).toMatch(/^generated/);
  });
});

describe('Engine API calls from the graph', () => {
  test('an edge: command, environment, volumes, health check, descriptor limit, restart policy, capped logs, fixed address', () => {
    const o = createOptions(container('edge-eu-1'));
    expect(o.name).toBe('shop-cdn-local-edge-eu-1');
    expect(o.Image).toBe('shop-cdn-local/edge:local');
    expect(o.Cmd?.[0]).toBe('/usr/sbin/nginx');
    expect(o.Env).toContain('CDN_UNIT_DIR=/etc/cdn/edge-eu-1');
    expect(o.WorkingDir).toBe('/etc/cdn/edge-eu-1');
    expect(o.Labels).toEqual({ 'cdn.role': 'edge', 'cdn.unit': 'edge-eu-1', 'cdn.test': 'docker-run' });
    expect(o.HostConfig?.Binds).toEqual(['shop-cdn-local-edge-eu-1-cache:/etc/cdn/edge-eu-1/cache', 'shop-cdn-local-edge-eu-1-logs:/etc/cdn/edge-eu-1/logs']);
    expect(o.Healthcheck).toEqual({ Test: ['CMD', 'curl', '-fsS', '-o', '/dev/null', 'http://127.0.0.1:9145/healthz'], Interval: 5e9, Timeout: 3e9, Retries: 12, StartPeriod: 5e9 });
    expect(o.HostConfig?.Ulimits).toEqual([{ Name: 'nofile', Soft: 16384, Hard: 16384 }]);
    expect(o.HostConfig?.RestartPolicy).toEqual({ Name: 'unless-stopped' });
    expect(o.HostConfig?.LogConfig).toEqual({ Type: 'json-file', Config: { 'max-size': '50m', 'max-file': '3' } });
    expect(o.HostConfig?.NetworkMode).toBe('shop-cdn-local-net');
    expect(o.NetworkingConfig?.EndpointsConfig?.['shop-cdn-local-net']).toEqual({ IPAMConfig: { IPv4Address: '10.89.0.100' }, Aliases: ['edge-eu-1'] });
    expect(o.HostConfig?.PortBindings).toEqual({});
  });

  test('the balancer is published on the loopback address only; the origin keeps its assets in its volume', () => {
    const b = createOptions(container('balancer'));
    expect(b.ExposedPorts).toEqual({ '8080/tcp': {} });
    expect(b.HostConfig?.PortBindings).toEqual({ '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '18080' }] });
    const o = createOptions(container('origin'));
    expect(o.HostConfig?.Binds).toEqual(['shop-cdn-local-origin-storage:/etc/cdn/origin/storage']);
    expect(o.Env).toEqual(expect.arrayContaining(['CDN_STORAGE_KIND=filesystem', 'CDN_STORAGE_PATH=/etc/cdn/origin/storage']));
  });

  test('an input the runner does not know stops it, rather than being dropped', () => {
    const c = container('redis');
    expect(() => createOptions({ ...c, inputs: { ...c.inputs, privileged: true } })).toThrow(/inputs this runner does not map: privileged/);
    const n = graph.networks[0];
    expect(() => networkOptions({ ...n, inputs: { ...n.inputs, internal: true } })).toThrow(/internal/);
    expect(networkOptions(n)).toMatchObject({ Name: 'shop-cdn-local-net', Driver: 'bridge', IPAM: { Config: [{ Subnet: '10.89.0.0/24' }] }, Labels: { 'cdn.test': 'docker-run' } });
    expect(volumeOptions(graph.volumes[0])).toEqual({ Name: graph.volumes[0].inputs.name, Labels: { 'cdn.test': 'docker-run' } });
  });

  test('uploads become one archive with their modes: rendered files 0644, secrets 0400', () => {
    const archive = uploadArchive(container('edge-eu-1'))!;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-upload-'));
    try {
      fs.writeFileSync(path.join(dir, 'a.tar'), archive.tar);
      const listing = execFileSync('tar', ['-tvf', path.join(dir, 'a.tar')], { encoding: 'utf8' });
      expect(listing).toMatch(/^-rw-r--r-- .* etc\/cdn\/edge-eu-1\/conf\/nginx\.conf$/m);
      expect(listing).toMatch(/^-r-------- .* etc\/cdn\/secrets\/debug-token$/m);
      expect(listing.trim().split('\n')).toHaveLength(archive.files);
      execFileSync('tar', ['-xf', path.join(dir, 'a.tar'), '-C', dir]);
      const uploads = container('edge-eu-1').inputs.uploads as { file: string; content: string }[];
      const conf = uploads.find((u) => u.file.endsWith('nginx.conf'))!;
      expect(fs.readFileSync(path.join(dir, conf.file), 'utf8')).toBe(conf.content);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('helpers', () => {
  test('Docker durations in nanoseconds', () => {
    expect(nanoseconds('5s')).toBe(5e9);
    expect(nanoseconds('250ms')).toBe(2.5e8);
    expect(nanoseconds('1m')).toBe(60e9);
    expect(nanoseconds(undefined)).toBeUndefined();
    expect(() => nanoseconds('soon')).toThrow(/unknown duration/);
  });

  test('tar: long paths, owners, and reading the first file back', () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(90)}`;
    const tar = tarOf([{ path: `/${long}`, content: Buffer.from('x'), mode: 0o400, uid: 472 }]);
    expect(firstFile(tar).toString()).toBe('x');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-tar-'));
    try {
      fs.writeFileSync(path.join(dir, 'a.tar'), tar);
      expect(execFileSync('tar', ['--numeric-owner', '-tvf', path.join(dir, 'a.tar')], { encoding: 'utf8' })).toMatch(new RegExp(`^-r-------- 472/0 .* ${long}$`, 'm'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(() => tarOf([{ path: '../etc/passwd', content: Buffer.from(''), mode: 0o644 }])).toThrow(/refusing/);
  });

  test("nginx error lines the edges taken down cause are excused, by address or (health probes) by time", () => {
    const outages = [{ edge: 'eu-1', address: '10.89.0.100', from: Date.UTC(2026, 11, 7, 6, 35, 37, 400), to: Date.UTC(2026, 11, 7, 6, 35, 43) }];
    const retried = '2026/12/07 06:35:38 [error] 15#15: *458 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 10.89.0.1, upstream: "http://10.89.0.100:8081/x", host: "127.0.0.1"';
    const probe = '2026/12/07 06:35:38 [error] 15#15: *505 recv() failed (104: Connection reset by peer), context: ngx.timer';
    expect(excusedErrorLine(retried, outages)).toBe(true);
    expect(excusedErrorLine(retried.replace('10.89.0.100', '10.89.0.101'), outages)).toBe(false);
    expect(excusedErrorLine(probe, outages)).toBe(true);
    expect(excusedErrorLine(probe.replace('06:35:38', '06:40:00'), outages)).toBe(false);
    expect(excusedErrorLine('2026/12/07 06:35:38 [error] 15#15: lua entry thread aborted: runtime error', outages)).toBe(false);
  });
});
