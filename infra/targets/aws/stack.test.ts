/**
 * The aws target under Pulumi mocks: the resource graph per region, every security
 * group rule, and the user data each instance boots with (decoded and compared with
 * the renderers' own output).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ACCESS_LOGS, renderSystemdAlloyConfig } from '../../../observability/alloy';
import { renderBalancer } from '../../../balancer/render';
import { renderEdge } from '../../../edge/render';
import { program } from '../../../stacks/program';
import { containerLayout, secretFile } from '../../model/layout';
import { parseSpec } from '../../model/spec';
import type { Topology } from '../../model/topology';
import { generatedSecret, isSecret, plain, runProgram, valueOf, type ProgramRun, type RecordedResource } from '../../../test/support/pulumi-mocks';
import { ALLOY_DROPIN_PATH, BOOTSTRAP_PATH, GRAFANA_APT, USER_DATA_LIMIT } from './cloud-init';

const INSTANCE = 'aws:ec2/instance:Instance';
const INGRESS = 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule';
const SPEC = { name: 'shop', regions: [{ name: 'eu-west-1', edges: 2 }, { name: 'us-east-1', edges: 3 }], defaultRegion: 'eu-west-1' };
const AWS = { source: { repository: 'https://git.example/shop-cdn.git', ref: 'abc123' } };

function config(extra: Record<string, unknown> = {}) {
  return { 'cdn:target': 'aws', 'cdn:spec': SPEC, 'cdn:aws': AWS, ...extra };
}

interface CloudConfig {
  write_files: { path: string; encoding: string; content: string; permissions: string }[];
  runcmd: string[][];
}

function userData(run: ProgramRun<unknown>, instance: string): { raw: string; files: Record<string, { content: string; permissions: string }> } {
  const raw = plain<string>(run.named(instance, INSTANCE).inputs.userData);
  expect(raw.startsWith('#cloud-config\n')).toBe(true);
  const parsed = JSON.parse(raw.slice('#cloud-config\n'.length)) as CloudConfig;
  const files = Object.fromEntries(
    parsed.write_files.map((f) => [f.path, { content: gunzipSync(Buffer.from(f.content, 'base64')).toString('utf8'), permissions: f.permissions }]),
  );
  expect(parsed.runcmd).toEqual([['bash', BOOTSTRAP_PATH]]);
  return { raw, files };
}

describe('aws target', () => {
  let run: ProgramRun<ReturnType<typeof program>>;
  beforeAll(async () => {
    run = await runProgram(config(), program);
  });

  test('a VPC, two subnets and a NAT gateway per region; the primary region peered with the other', () => {
    for (const type of ['aws:ec2/vpc:Vpc', 'aws:ec2/natGateway:NatGateway', 'pulumi:providers:aws']) expect(run.ofType(type)).toHaveLength(2);
    expect(run.ofType('aws:ec2/subnet:Subnet')).toHaveLength(4);
    const peering = run.ofType('aws:ec2/vpcPeeringConnection:VpcPeeringConnection');
    expect(peering).toHaveLength(1);
    expect(peering[0].inputs.peerRegion).toBe('us-east-1');
    expect(run.named('vpc-eu-west-1').inputs.cidrBlock).toBe('10.20.0.0/16');
    expect(run.named('vpc-us-east-1').inputs.cidrBlock).toBe('10.21.0.0/16');
  });

  test('one instance per edge in its own region, and the central services in the primary region', () => {
    const instances = run.ofType(INSTANCE);
    expect(instances.map((i) => i.name).sort()).toEqual(
      ['balancer', 'edge-eu-west-1-1', 'edge-eu-west-1-2', 'edge-us-east-1-1', 'edge-us-east-1-2', 'edge-us-east-1-3', 'monitoring', 'object-store', 'origin', 'redis', 'redis-us-east-1'].sort(),
    );
    // the second region's replica of the purge stream lives in that region
    expect(run.named('eni-redis-us-east-1').inputs.subnetId).toBe('private-us-east-1-id');
    const fleet = run.named('edges-us-east-1', 'cdn:service:EdgeFleet');
    expect(instances.filter((i) => i.parent === fleet.urn).map((i) => i.name)).toEqual(['edge-us-east-1-1', 'edge-us-east-1-2', 'edge-us-east-1-3']);
    for (const i of instances) {
      expect(i.inputs.ami).toBe('ami-debian12');
      expect(i.inputs.metadataOptions.httpTokens).toBe('required');
      expect(i.inputs.rootBlockDevice.encrypted).toBe(true);
    }
    const edgeEni = run.named('eni-edge-us-east-1-2');
    expect(edgeEni.inputs.subnetId).toBe('private-us-east-1-id');
    expect(run.named('eni-balancer').inputs.subnetId).toBe('public-eu-west-1-id');
    expect(run.named('eni-origin').inputs.subnetId).toBe('private-eu-west-1-id');
  });

  test('instances wait for what their services depend on', () => {
    const urn = (n: string) => run.named(n, INSTANCE).urn;
    const deps = (n: string) => run.named(n, INSTANCE).dependencies;
    expect(deps('origin')).toEqual(expect.arrayContaining([urn('redis'), urn('object-store')]));
    // (and so after Redis, which the origin waits for)
    expect(deps('edge-us-east-1-3')).toContain(urn('origin'));
    expect(deps('balancer')).toEqual(expect.arrayContaining(['edge-eu-west-1-1', 'edge-eu-west-1-2', 'edge-us-east-1-1', 'edge-us-east-1-2', 'edge-us-east-1-3'].map(urn)));
    // Edges across the peering boot only once the route back to the origin exists.
    expect(deps('edge-us-east-1-1')).toContain(run.named('peer-route-private-us-east-1-eu-west-1').urn);
    // MinIO's data lives on its own encrypted EBS volume.
    expect(run.named('object-store-data', 'aws:ebs/volume:Volume').inputs).toMatchObject({ encrypted: true, size: 100, availabilityZone: 'zone-a' });
    expect(run.named('object-store-data', 'aws:ec2/volumeAttachment:VolumeAttachment').inputs.instanceId).toBe('object-store-id');
  });

  describe('security groups', () => {
    const groupOf = (rule: RecordedResource) => String(rule.inputs.securityGroupId).replace(/-sg-id$/, '');
    const rules = () => run.ofType(INGRESS).map((r) => ({ group: groupOf(r), port: r.inputs.fromPort as number, to: r.inputs.toPort as number, cidr: r.inputs.cidrIpv4 as string }));

    test('the internet reaches the balancer on port 80 and nothing else', () => {
      const open = rules().filter((r) => r.cidr === '0.0.0.0/0' || r.cidr.endsWith('/0'));
      expect(open).toEqual([{ group: 'balancer-eu-west-1', port: 80, to: 80, cidr: '0.0.0.0/0' }]);
      expect(run.ofType(INGRESS).every((r) => r.inputs.cidrIpv6 === undefined)).toBe(true);
    });

    test('SSH is closed everywhere by default', () => {
      expect(rules().filter((r) => r.port <= 22 && r.to >= 22)).toEqual([]);
    });

    test('every other rule admits single addresses or the primary VPC only, one port at a time', () => {
      for (const r of rules().filter((x) => x.cidr !== '0.0.0.0/0')) {
        expect(r.port).toBe(r.to);
        expect(r.cidr === '10.20.0.0/16' || /^10\.0\.\d+\.\d+\/32$/.test(r.cidr)).toBe(true);
      }
    });

    test('edges admit traffic only from the balancer, and their internal port from the balancer and Prometheus', () => {
      const edgeRules = rules().filter((r) => r.group.startsWith('edge-'));
      const traffic = edgeRules.filter((r) => r.port === 8081);
      const internal = edgeRules.filter((r) => r.port === 9145);
      const byName = (n: string) => run.named(`ingress-${n}`).inputs.cidrIpv4;
      expect(new Set(traffic.map((r) => r.cidr))).toEqual(new Set([byName('edge-eu-west-1-8081-from-balancer')]));
      expect(new Set(internal.map((r) => r.cidr)).size).toBe(2);
      expect(edgeRules.map((r) => r.port).every((p) => p === 8081 || p === 9145)).toBe(true);
      expect(byName('edge-eu-west-1-8081-from-balancer')).toBe(byName('edge-us-east-1-9145-from-balancer'));
      // A region's edges share one group: three rules per group, not per edge.
      expect(edgeRules).toHaveLength(6);
    });

    test('Redis, the origin and MinIO admit only their clients', () => {
      const ports = (group: string) => [...new Set(rules().filter((r) => r.group === group).map((r) => r.port))];
      expect(ports('redis-eu-west-1')).toEqual([6379]);
      // five edges (the us ones only acknowledge here) + the origin + the us replica
      expect(rules().filter((r) => r.group === 'redis-eu-west-1')).toHaveLength(7);
      expect(rules().filter((r) => r.group === 'redis-us-east-1-us-east-1').map((r) => r.port)).toEqual([6379, 6379, 6379]);
      // delivery (3000) from the edges; the API (3001) from the VPC and Prometheus
      expect(ports('origin-eu-west-1').sort()).toEqual([3000, 3001]);
      const origin = rules().filter((r) => r.group === 'origin-eu-west-1');
      expect(origin.filter((r) => r.port === 3000).every((r) => r.cidr.endsWith('/32'))).toBe(true);
      expect(ports('object-store-eu-west-1')).toEqual([9000]);
      expect(rules().filter((r) => r.group === 'object-store-eu-west-1')).toHaveLength(6); // the origin + five edges reading raw assets
      expect(ports('monitoring-eu-west-1').sort()).toEqual([3000, 3100]);
    });

    test('no two rules admit the same port from the same source into one group (AWS refuses duplicates)', () => {
      const keys = rules().map((r) => `${r.group} ${r.port} ${r.cidr}`);
      expect(new Set(keys).size).toBe(keys.length);
    });

    test('Loki admits log pushes from the stack\'s own instances only, one address each; Alloy opens no port', () => {
      const loki = rules().filter((r) => r.group === 'monitoring-eu-west-1' && r.port === 3100);
      const others = run.ofType(INSTANCE).map((i) => i.name).filter((n) => n !== 'monitoring');
      expect(loki).toHaveLength(others.length);
      expect(new Set(loki.map((r) => r.cidr)).size).toBe(others.length);
      for (const r of loki) expect(r.cidr).toMatch(/^10\.0\.\d+\.\d+\/32$/);
      const cidr = (n: string) => run.named(`ingress-${n}`).inputs.cidrIpv4;
      expect(cidr('monitoring-eu-west-1-3100-from-edge-us-east-1-2')).toBe(cidr('redis-eu-west-1-6379-from-edge-us-east-1-2'));
      expect(cidr('monitoring-eu-west-1-3100-from-origin')).toBe(cidr('redis-eu-west-1-6379-from-origin'));
      expect(cidr('monitoring-eu-west-1-3100-from-balancer')).toBe(cidr('edge-eu-west-1-8081-from-balancer'));
      // Alloy's HTTP server (12345) is on each instance's loopback: no rule anywhere
      expect(rules().filter((r) => r.port === 12345)).toEqual([]);
    });

    test('an SSH network opens port 22 from it only; the whole internet is refused', async () => {
      const ssh = await runProgram(config({ 'cdn:aws': { ...AWS, sshCidr: '198.51.100.0/24' } }), program);
      const sshRules = ssh.ofType(INGRESS).filter((r) => r.inputs.fromPort === 22);
      expect(sshRules.length).toBeGreaterThan(0);
      expect(sshRules.every((r) => r.inputs.cidrIpv4 === '198.51.100.0/24')).toBe(true);
      await expect(runProgram(config({ 'cdn:aws': { ...AWS, sshCidr: '0.0.0.0/0' } }), program)).rejects.toThrow(/cdn:aws.sshCidr: SSH must not be open to the whole internet/);
    });

    test('with TLS in the spec the balancer opens 443 instead of 80', async () => {
      const tls = await runProgram(config({ 'cdn:spec': { ...SPEC, balancer: { tls: { cert: '/etc/cdn/tls/cert.pem', key: '/etc/cdn/tls/key.pem' } } } }), program);
      const open = tls.ofType(INGRESS).filter((r) => r.inputs.cidrIpv4 === '0.0.0.0/0').map((r) => r.inputs.fromPort);
      expect(open).toEqual([443]);
    });
  });

  describe('user data', () => {
    function topologyFromBalancer(): Topology {
      // The addresses the stack resolved, read back from what it rendered.
      const b = JSON.parse(userData(run, 'balancer').files['/etc/cdn/balancer/balancer.json'].content);
      const edgesById = new Map<string, { host: string; port: number }>();
      for (const r of b.regions) for (const e of r.edges) edgesById.set(e.id, { host: e.host, port: e.port });
      const originEnv = userData(run, 'origin').files['/etc/systemd/system/cdn-origin.service'].content;
      const env = (k: string) => new RegExp(`Environment=${k}=(\\S+)`).exec(originEnv)![1];
      const redis = new URL(env('CDN_REDIS_URL'));
      const p = (host: string, port: number) => ({ listen: { host: '0.0.0.0', port }, reach: { host, port } });
      // the us edges read the purge stream from their region's replica
      const replica = JSON.parse(userData(run, 'edge-us-east-1-1').files['/etc/cdn/edge-us-east-1-1/edge.json'].content).redis.host;
      const origin = new URL(userData(run, 'edge-eu-west-1-1').files['/etc/cdn/edge-eu-west-1-1/conf/nginx.conf'].content.match(/server ([\d.]+:3000)/)![0].replace('server ', 'http://'));
      return {
        redis: p(redis.hostname, 6379),
        redisReplicas: { 'us-east-1': p(replica, 6379) },
        origin: p(origin.hostname, 3000),
        originApi: p(origin.hostname, 3001),
        // The edge renderer reads neither the balancer's nor Prometheus's placement.
        balancer: { traffic: p('unused', 80), internal: p('unused', 9145) },
        edges: [...edgesById.entries()].map(([id, e]) => {
          const region = id.replace(/-\d+$/, '');
          return { id, region, index: Number(id.split('-').pop()), traffic: p(e.host, 8081), internal: p(e.host, 9145) };
        }),
        prometheus: p('unused', 9090),
        publicBaseUrl: env('CDN_PUBLIC_BASE_URL'),
      };
    }

    test('every edge instance writes exactly the edge renderer\'s files', () => {
      const topology = topologyFromBalancer();
      // The stack's own MinIO, as the origin was told about it: the edges read raw assets there too.
      const originEnv = userData(run, 'origin').files['/etc/systemd/system/cdn-origin.service'].content;
      const env = (k: string) => new RegExp(`Environment=${k}=(\\S+)`).exec(originEnv)![1];
      const storage = { kind: 's3' as const, endpoint: env('CDN_S3_ENDPOINT'), bucket: env('CDN_S3_BUCKET'), region: 'us-east-1', accessKeySecret: 'objectStoreAccessKey', secretKeySecret: 'objectStoreSecretKey' };
      const spec = { ...parseSpec(SPEC), storage, secrets: { adminToken: 'CDN_ADMIN_TOKEN', debugToken: 'CDN_DEBUG_TOKEN', redisPassword: 'redisPassword' } };
      for (const edge of topology.edges) {
        const files = userData(run, `edge-${edge.id}`).files;
        for (const f of renderEdge(spec, topology, edge, containerLayout(), secretFile(containerLayout(), 'debugToken'))) expect(files[`/etc/cdn/edge-${edge.id}/${f.path}`].content).toBe(f.content);
      }
      expect(topology.publicBaseUrl).toMatch(/^http:\/\/203\.0\.113\.\d+$/);
    });

    test('the balancer instance writes exactly the balancer renderer\'s files', () => {
      const topology = topologyFromBalancer();
      const spec = { ...parseSpec(SPEC), secrets: { adminToken: 'CDN_ADMIN_TOKEN', debugToken: 'CDN_DEBUG_TOKEN', redisPassword: 'redisPassword' } };
      const files = userData(run, 'balancer').files;
      const balancerTopology = { ...topology, balancer: { traffic: { listen: { host: '0.0.0.0', port: 80 }, reach: { host: 'x', port: 80 } }, internal: { listen: { host: '0.0.0.0', port: 9145 }, reach: { host: 'x', port: 9145 } } } };
      for (const f of renderBalancer(spec, balancerTopology, containerLayout())) expect(files[`/etc/cdn/balancer/${f.path}`].content).toBe(f.content);
      expect(files['/etc/cdn/balancer/conf/nginx.conf'].content).toContain('listen 0.0.0.0:80 ');
    });

    test('systemd runs each unit\'s command through run-unit.sh, and bootstrap installs with setup.sh', () => {
      const edge = userData(run, 'edge-us-east-1-2').files;
      const service = edge['/etc/systemd/system/cdn-edge-us-east-1-2.service'].content;
      expect(service).toContain(
        'ExecStart=/opt/cdn/scripts/run-unit.sh /usr/sbin/nginx -p /etc/cdn/edge-us-east-1-2 -c /etc/cdn/edge-us-east-1-2/conf/nginx.conf -e /etc/cdn/edge-us-east-1-2/logs/error.log -g "daemon off;"',
      );
      expect(service).toContain('Environment=CDN_RUN_AS=root');
      const bootstrap = edge[BOOTSTRAP_PATH].content;
      expect(bootstrap).toContain('git clone --quiet https://git.example/shop-cdn.git /opt/cdn');
      expect(bootstrap).toContain('git -C /opt/cdn checkout --quiet --detach abc123');
      expect(bootstrap).toContain('/opt/cdn/scripts/setup.sh --system --role edge');
      expect(bootstrap).toContain('systemctl enable --now cdn-edge-us-east-1-2.service');
      // The origin builds as CI does: the full setup (npm ci + build) on Node 20.
      const origin = userData(run, 'origin').files[BOOTSTRAP_PATH].content;
      expect(origin).toMatch(/\/opt\/cdn\/scripts\/setup\.sh --role origin\n/);
      expect(origin).toContain("grep ' node-v20.19.5-linux-x64.tar.xz$' SHASUMS256.txt | sha256sum -c -");
      expect(userData(run, 'redis').files[BOOTSTRAP_PATH].content).toContain('setup.sh --system --role redis');
      expect(userData(run, 'monitoring').files[BOOTSTRAP_PATH].content).toContain('setup.sh --system --role prometheus');
    });

    test('Prometheus on the monitoring instance scrapes every edge, the origin and the balancer', () => {
      const topology = topologyFromBalancer();
      const prom = userData(run, 'monitoring').files['/etc/cdn/prometheus/prometheus.yml'].content;
      for (const e of topology.edges) expect(prom).toContain(`"${e.internal.reach.host}:9145"`);
      // the origin's metrics are on its API listener
      expect(prom).toContain(`"${topology.originApi.reach.host}:3001"`);
      expect((prom.match(/- targets:/g) ?? []).length).toBe(topology.edges.length + 2);
    });

    test('secrets are files of mode 0400 and the user data is a Pulumi secret', () => {
      const redis = userData(run, 'redis').files;
      expect(redis['/etc/cdn/secrets/redis-auth.conf']).toEqual({ content: `requirepass "${generatedSecret('secret-redis-password')}"\nmasterauth "${generatedSecret('secret-redis-password')}"\n`, permissions: '0400' });
      expect(redis['/etc/cdn/redis/redis.conf'].content).toContain('include /etc/cdn/secrets/redis-auth.conf');
      expect(redis['/etc/cdn/redis/redis.conf'].content).not.toContain(generatedSecret('secret-redis-password'));
      expect(Object.keys(userData(run, 'balancer').files).filter((f) => f.includes('/secrets/'))).toEqual([]);
      for (const i of run.ofType(INSTANCE)) expect(isSecret(i.inputs.userData)).toBe(true);
    });

    test('every instance runs Alloy with the rendered systemd configuration, pushing to Loki on the monitoring instance', async () => {
      const monitoringIp = new URL(await valueOf(run.result.grafanaUrl)).hostname;
      const committed = fs.readFileSync(path.join(__dirname, '../../../examples/rendered/aws/alloy/config.alloy'), 'utf8');
      for (const i of run.ofType(INSTANCE)) {
        const files = userData(run, i.name).files;
        expect(files['/etc/cdn/alloy/config.alloy']).toEqual({ content: renderSystemdAlloyConfig(), permissions: '0644' });
        expect(files['/etc/cdn/alloy/config.alloy'].content).toBe(committed);
        // the monitoring instance too reaches Loki at its own private address
        const dropIn = files[ALLOY_DROPIN_PATH].content;
        expect(dropIn).toContain(`Environment=CDN_LOKI_PUSH_URL=http://${monitoringIp}:3100/loki/api/v1/push`);
        expect(dropIn).toContain('ExecStart=/usr/bin/alloy run --server.http.listen-addr=127.0.0.1:12345 --storage.path=/var/lib/alloy/data /etc/cdn/alloy/config.alloy');
        const bootstrap = files[BOOTSTRAP_PATH].content;
        // the repository key is checked before apt trusts it; the version is the image's
        const check = bootstrap.indexOf(`[ "$primary" = ${GRAFANA_APT.fingerprint} ]`);
        expect(check).toBeGreaterThan(0);
        expect(bootstrap.indexOf('signed-by=/etc/apt/keyrings/grafana.gpg')).toBeGreaterThan(check);
        expect(bootstrap).toContain('apt-get install -y -qq --no-install-recommends alloy=1.10.2-1\n');
        expect(bootstrap.trimEnd().split('\n').slice(-2)).toEqual(['systemctl daemon-reload', '[ ! -x /usr/bin/alloy ] || systemctl enable --now alloy.service']);
      }
      // the nginx units on an instance write where the configuration reads
      const edge = userData(run, 'edge-us-east-1-2').files['/etc/cdn/edge-us-east-1-2/conf/nginx.conf'].content;
      expect(edge).toContain('access_log logs/access.log cdn_json');
      expect(ACCESS_LOGS.systemd).toBe('/etc/cdn/*/logs/access.log');
    });

    test('every instance\'s user data fits AWS\'s 16 KiB limit', () => {
      for (const i of run.ofType(INSTANCE)) expect(Buffer.byteLength(userData(run, i.name).raw)).toBeLessThan(USER_DATA_LIMIT);
    });
  });

  test('outputs: the public balancer URL, private Grafana and origin URLs, edges per region', async () => {
    const value = <T>(o: { apply: (f: (v: T) => void) => unknown }) => new Promise<T>((r) => o.apply(r));
    const out = run.result;
    expect(await value(out.balancerUrl)).toMatch(/^http:\/\/203\.0\.113\.\d+$/);
    expect(await value(out.assetBaseUrl)).toBe(await value(out.balancerUrl));
    expect(await value(out.grafanaUrl)).toMatch(/^http:\/\/10\.0\.\d+\.\d+:3000$/);
    const edges = await value(out.edges);
    expect(Object.keys(edges)).toEqual(['eu-west-1', 'us-east-1']);
    expect(edges['us-east-1']).toHaveLength(3);
  });

  test('config errors name the key', async () => {
    await expect(runProgram(config({ 'cdn:aws': {} }), program)).rejects.toThrow(/cdn:aws.source: required: the git repository/);
    await expect(runProgram(config({ 'cdn:aws': undefined }), program)).rejects.toThrow(/cdn:aws is not set/);
    await expect(runProgram(config({ 'cdn:aws': { ...AWS, instanceTypes: { edge: 'huge' } } }), program)).rejects.toThrow(/cdn:aws.instanceTypes.edge: expected an EC2 instance type/);
    const external = { ...SPEC, storage: { kind: 's3', endpoint: 'https://s3.eu-west-1.amazonaws.com', bucket: 'shop-assets', accessKeySecret: 's3Key', secretKeySecret: 's3Secret' } };
    await expect(runProgram(config({ 'cdn:spec': external }), program)).rejects.toThrow(/cdn:s3Key is not set; set it with: pulumi config set --secret cdn:s3Key/);
  });
});
