/**
 * The aws target under Pulumi mocks: the resource graph per region, every security
 * group rule, and the user data each instance boots with (decoded and compared with
 * the renderers' own output).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ACCESS_LOGS, renderSystemdAlloyConfig } from '../../../observability/alloy';
import { renderBalancer } from '../../../balancer/render';
import { renderEdge } from '../../../edge/render';
import { program } from '../../../stacks/program';
import { containerLayout, secretFile } from '../../model/layout';
import { parseSpec } from '../../model/spec';
import type { Topology } from '../../model/topology';
import { generatedSecret, instanceTypeOfferings, isSecret, plain, runProgram, valueOf, type ProgramRun, type RecordedResource } from '../../../test/support/pulumi-mocks';
import { READY_PATH } from '../../../balancer/render';
import { EDGE_POLICY_NAME, edgeReadPolicy } from '../../units/deployed';
import { chooseZone } from './network';
import { ALLOY_DROPIN_PATH, BOOTSTRAP_DONE, BOOTSTRAP_PATH, GRAFANA_APT, POST_START_EOF, USER_DATA_LIMIT, unpackUserData } from './cloud-init';

const INSTANCE = 'aws:ec2/instance:Instance';
const INGRESS = 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule';
const SPEC = { name: 'shop', regions: [{ name: 'eu-west-1', edges: 2 }, { name: 'us-east-1', edges: 3 }], defaultRegion: 'eu-west-1' };
const AMIS = { 'eu-west-1': 'ami-0123456789abcdef0', 'us-east-1': 'ami-0fedcba9876543210' };
const AWS = { amis: AMIS };

function config(extra: Record<string, unknown> = {}) {
  return { 'cdn:target': 'aws', 'cdn:spec': SPEC, 'cdn:aws': AWS, ...extra };
}

interface CloudConfig {
  write_files: { path: string; content: string; permissions: string }[];
  runcmd: string[][];
}

function userData(run: ProgramRun<unknown>, instance: string): { raw: string; files: Record<string, { content: string; permissions: string }> } {
  const raw = unpackUserData(plain<string>(run.named(instance, INSTANCE).inputs.userDataBase64));
  expect(raw.startsWith('#cloud-config\n')).toBe(true);
  const parsed = JSON.parse(raw.slice('#cloud-config\n'.length)) as CloudConfig;
  const files = Object.fromEntries(parsed.write_files.map((f) => [f.path, { content: f.content, permissions: f.permissions }]));
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
      // the AMI pinned for the instance's region
      expect(i.inputs.ami).toBe(i.name.includes('us-east-1') ? AMIS['us-east-1'] : AMIS['eu-west-1']);
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
    expect(run.named('object-store-data', 'aws:ebs/volume:Volume').inputs).toMatchObject({ encrypted: true, size: 100, availabilityZone: 'eu-west-1a' });
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
      expect(ports('redis-eu-west-1').sort()).toEqual([6379, 6380]);
      // five edges (the us ones only acknowledge here) + the origin + the us replica
      expect(rules().filter((r) => r.group === 'redis-eu-west-1')).toHaveLength(7);
      // what crosses regions (the us replica, the us edges' acknowledgements) is admitted on the TLS port only
      const from = (port: number) =>
        run.ofType(INGRESS).filter((r) => groupOf(r) === 'redis-eu-west-1' && r.inputs.fromPort === port).map((r) => r.name.replace(/^ingress-redis-eu-west-1-\d+-from-/, '')).sort();
      expect(from(6380)).toEqual(['edge-us-east-1-1', 'edge-us-east-1-2', 'edge-us-east-1-3', 'redis-us-east-1']);
      expect(from(6379)).toEqual(['edge-eu-west-1-1', 'edge-eu-west-1-2', 'origin']);
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
      expect(cidr('monitoring-eu-west-1-3100-from-edge-us-east-1-2')).toBe(cidr('redis-eu-west-1-6380-from-edge-us-east-1-2'));
      expect(cidr('monitoring-eu-west-1-3100-from-origin')).toBe(cidr('redis-eu-west-1-6379-from-origin'));
      expect(cidr('monitoring-eu-west-1-3100-from-balancer')).toBe(cidr('edge-eu-west-1-8081-from-balancer'));
      // Alloy's HTTP server (12345) is on each instance's loopback: no rule anywhere
      expect(rules().filter((r) => r.port === 12345)).toEqual([]);
    });

    test('there is no SSH setting any more: sshCidr is refused, pointing at Session Manager', async () => {
      for (const sshCidr of ['198.51.100.0/24', '0.0.0.0/0']) {
        await expect(runProgram(config({ 'cdn:aws': { ...AWS, sshCidr } }), program)).rejects.toThrow(/cdn:aws.sshCidr: SSH is closed on every instance and no key is installed; reach an instance with Session Manager \(aws ssm start-session --target <instance-id>/);
      }
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
        redisTls: p(redis.hostname, 6380),
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
      // (the edges sign with their own read-only keys: the object store's instance creates that MinIO user)
      const storage = { kind: 's3' as const, endpoint: env('CDN_S3_ENDPOINT'), bucket: env('CDN_S3_BUCKET'), region: 'us-east-1', accessKeySecret: 'objectStoreAccessKey', secretKeySecret: 'objectStoreSecretKey', edgeAccessKeySecret: 'objectStoreEdgeAccessKey', edgeSecretKeySecret: 'objectStoreEdgeSecretKey' };
      const spec = { ...parseSpec(SPEC), storage, secrets: { adminToken: 'CDN_ADMIN_TOKEN', debugToken: 'CDN_DEBUG_TOKEN', urlSigningKeys: 'CDN_URL_SIGNING_KEYS', redisPassword: 'redisPassword' } };
      for (const edge of topology.edges) {
        const files = userData(run, `edge-${edge.id}`).files;
        for (const f of renderEdge(spec, topology, edge, containerLayout(), { debugTokenFile: secretFile(containerLayout(), 'debugToken')!, urlSigningKeysFile: secretFile(containerLayout(), 'urlSigningKeys')! })) expect(files[`/etc/cdn/edge-${edge.id}/${f.path}`].content).toBe(f.content);
      }
      expect(topology.publicBaseUrl).toMatch(/^http:\/\/203\.0\.113\.\d+$/);
    });

    test('the balancer instance writes exactly the balancer renderer\'s files', () => {
      const topology = topologyFromBalancer();
      const spec = { ...parseSpec(SPEC), secrets: { adminToken: 'CDN_ADMIN_TOKEN', debugToken: 'CDN_DEBUG_TOKEN', urlSigningKeys: 'CDN_URL_SIGNING_KEYS', redisPassword: 'redisPassword' } };
      const files = userData(run, 'balancer').files;
      const balancerTopology = { ...topology, balancer: { traffic: { listen: { host: '0.0.0.0', port: 80 }, reach: { host: 'x', port: 80 } }, internal: { listen: { host: '0.0.0.0', port: 9145 }, reach: { host: 'x', port: 9145 } } } };
      for (const f of renderBalancer(spec, balancerTopology, containerLayout())) expect(files[`/etc/cdn/balancer/${f.path}`].content).toBe(f.content);
      expect(files['/etc/cdn/balancer/conf/nginx.conf'].content).toContain('listen 0.0.0.0:80 ');
    });

    test('systemd runs each unit\'s command through run-unit.sh, and bootstrap installs the artefact and setup.sh\'s packages', () => {
      const edge = userData(run, 'edge-us-east-1-2').files;
      const service = edge['/etc/systemd/system/cdn-edge-us-east-1-2.service'].content;
      expect(service).toContain(
        'ExecStart=/opt/cdn/scripts/run-unit.sh /usr/sbin/nginx -p /etc/cdn/edge-us-east-1-2 -c /etc/cdn/edge-us-east-1-2/conf/nginx.conf -e /etc/cdn/edge-us-east-1-2/logs/error.log -g "daemon off;"',
      );
      expect(service).toContain('Environment=CDN_RUN_AS=root');
      const bootstrap = edge[BOOTSTRAP_PATH].content;
      // no git: the artefact this run packed, from the stack's bucket, checked against its sha256
      expect(bootstrap).not.toContain('git ');
      const sha = run.ofType('aws:s3/bucketObjectv2:BucketObjectv2')[0].inputs.tags['cdn:sha256'];
      expect(bootstrap).toContain(`retry aws s3 cp --only-show-errors --region eu-west-1 s3://artefacts-0123abc/artefacts/${sha}.tar /var/lib/cdn/artefact.tar\n`);
      expect(bootstrap).toContain(`echo "${sha}  /var/lib/cdn/artefact.tar" | sha256sum --check --quiet --strict -`);
      expect(bootstrap.indexOf('tar -xf /var/lib/cdn/artefact.tar -C /opt/cdn')).toBeLessThan(bootstrap.indexOf('/opt/cdn/scripts/setup.sh --system --role edge'));
      expect(bootstrap).toContain('systemctl enable --now cdn-edge-us-east-1-2.service');
      // The origin runs the built origin from the artefact, its npm dependencies from the artefact's lockfile.
      const origin = userData(run, 'origin').files[BOOTSTRAP_PATH].content;
      expect(origin).toMatch(/\/opt\/cdn\/scripts\/setup\.sh --system --role origin\n/);
      expect(origin).toContain('cd /opt/cdn && retry npm ci --omit=dev --ignore-scripts');
      expect(origin.indexOf('npm ci')).toBeGreaterThan(origin.indexOf('tar -xf /var/lib/cdn/artefact.tar'));
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

    test('no secret value is anywhere in any instance\'s user data; each instance fetches its units\' secrets from SSM at boot', () => {
      const values = run.ofType('random:index/randomPassword:RandomPassword').map((r) => generatedSecret(r.name));
      expect(values.length).toBeGreaterThanOrEqual(7);
      for (const i of run.ofType(INSTANCE)) {
        const { raw, files } = userData(run, i.name);
        const everything = [raw, ...Object.values(files).map((f) => f.content)].join('\n');
        for (const v of values) expect(everything).not.toContain(v);
        // nothing secret flowed into it, so Pulumi does not mark it secret either (a preview shows its diff)
        expect(isSecret(i.inputs.userDataBase64)).toBe(false);
        expect(Object.keys(files).filter((f) => f.includes('/secrets/'))).toEqual([]);
      }
      const redis = userData(run, 'redis').files;
      expect(redis['/etc/cdn/redis/redis.conf'].content).toContain('include /etc/cdn/secrets/redis-auth.conf');
      const bootstrap = redis[BOOTSTRAP_PATH].content;
      expect(bootstrap).toContain('secret() { (trap - ERR; umask 0377 && retry aws ssm get-parameter --region eu-west-1 --with-decryption --name "$1" --query Parameter.Value --output text > "$2") || fail "cannot read the SSM parameter $1"; }');
      expect(bootstrap).toContain('secret /shop/redis-auth.conf /etc/cdn/secrets/redis-auth.conf\n');
      expect(bootstrap).toContain('secret /shop/redis-password /etc/cdn/secrets/redis-password\n');
      // the secrets are in place before any unit starts
      expect(bootstrap.indexOf('secret /shop/redis-auth.conf')).toBeLessThan(bootstrap.indexOf('systemctl enable --now cdn-redis.service'));
      // exactly the units' secrets: the balancer lists none, an edge its own three
      expect(userData(run, 'balancer').files[BOOTSTRAP_PATH].content).not.toMatch(/^secret /m);
      const edgeSecrets = userData(run, 'edge-us-east-1-1').files[BOOTSTRAP_PATH].content.match(/^secret \S+/gm);
      // (the CA its acknowledgements to the primary, across regions, are verified against)
      expect(edgeSecrets).toEqual(['secret /shop/debug-token', 'secret /shop/url-signing-keys', 'secret /shop/redis-password', 'secret /shop/redis-tls-ca.crt', 'secret /shop/s3-edge-access-key', 'secret /shop/s3-edge-secret-key']);
      expect(userData(run, 'edge-us-east-1-1').files[BOOTSTRAP_PATH].content).toContain('aws ssm get-parameter --region us-east-1 ');
    });

    test('the secrets are SSM SecureString parameters, one per secret and region that reads it, named under the stack', () => {
      const params = run.ofType('aws:ssm/parameter:Parameter');
      for (const p of params) {
        expect(p.inputs.type).toBe('SecureString');
        expect(p.inputs.name).toMatch(/^\/shop\/[a-z0-9.-]+$/);
        expect(isSecret(p.inputs.value)).toBe(true);
      }
      const byRegion = (region: string) => params.filter((p) => p.name.endsWith(region)).map((p) => p.inputs.name).sort();
      // us-east-1 has edges and their Redis replica: what they read, nothing else
      const tls = ['/shop/redis-tls-ca.crt', '/shop/redis-tls.crt', '/shop/redis-tls.key'];
      expect(byRegion('us-east-1')).toEqual(['/shop/debug-token', '/shop/redis-auth.conf', '/shop/redis-password', ...tls, '/shop/s3-edge-access-key', '/shop/s3-edge-secret-key', '/shop/url-signing-keys'].sort());
      expect(byRegion('eu-west-1')).toEqual(
        ['/shop/admin-token', '/shop/debug-token', '/shop/grafana-admin-password', '/shop/redis-auth.conf', '/shop/redis-password', ...tls, '/shop/s3-access-key', '/shop/s3-edge-access-key', '/shop/s3-edge-secret-key', '/shop/s3-secret-key', '/shop/url-signing-keys'].sort(),
      );
      // the PEMs as @pulumi/tls made them, the servers' key a secret like the rest
      expect(plain(params.find((p) => p.name === 'redis-tls-key-eu-west-1')!.inputs.value)).toBe('-----BEGIN EC PRIVATE KEY-----\nredis-tls-key\n-----END EC PRIVATE KEY-----');
      expect(plain(params.find((p) => p.name === 'redis-tls-ca-crt-us-east-1')!.inputs.value)).toBe('-----BEGIN CERTIFICATE-----\nredis-tls-ca\n-----END CERTIFICATE-----');
      // the value is the secret file's content without its final newline (get-parameter --output text adds it)
      const auth = params.find((p) => p.name === 'redis-auth-conf-eu-west-1')!;
      expect(plain(auth.inputs.value)).toBe(`requirepass "${generatedSecret('secret-redis-password')}"\nmasterauth "${generatedSecret('secret-redis-password')}"`);
      expect(plain(params.find((p) => p.name === 'admin-token-eu-west-1')!.inputs.value)).toBe(generatedSecret('secret-cdn-admin-token'));
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
        expect(bootstrap.trimEnd().split('\n').slice(-3)).toEqual(['systemctl daemon-reload', '[ ! -x /usr/bin/alloy ] || systemctl enable --now alloy.service', `touch ${BOOTSTRAP_DONE}`]);
      }
      // the nginx units on an instance write where the configuration reads
      const edge = userData(run, 'edge-us-east-1-2').files['/etc/cdn/edge-us-east-1-2/conf/nginx.conf'].content;
      expect(edge).toContain('access_log logs/access.log cdn_json');
      expect(ACCESS_LOGS.systemd).toBe('/etc/cdn/*/logs/access.log');
    });

    test('every instance\'s user data fits AWS\'s 16 KiB limit (gzipped, before base64), with room to grow', () => {
      for (const i of run.ofType(INSTANCE)) {
        const packed = Buffer.from(plain<string>(i.inputs.userDataBase64), 'base64');
        // (a fifth kept free, so that a growing config is noticed before AWS refuses it)
        expect(packed.length).toBeLessThan(USER_DATA_LIMIT * 0.8);
        // what cloud-init unpacks is the cloud-config itself
        expect(userData(run, i.name).raw.startsWith('#cloud-config\n')).toBe(true);
      }
    });
  });

  describe('production-grade', () => {
    test('both subnets of a region are in the first zone, sorted, that offers every instance type its hosts use', () => {
      for (const region of ['eu-west-1', 'us-east-1']) {
        expect(run.named(`public-${region}`).inputs.availabilityZone).toBe(`${region}a`);
        expect(run.named(`private-${region}`).inputs.availabilityZone).toBe(`${region}a`);
      }
      const asked = run.calls.filter((c) => c.token === 'aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings').map((c) => [c.region, c.inputs.locationType, c.inputs.filters]);
      expect(asked).toEqual([
        ['eu-west-1', 'availability-zone', [{ name: 'instance-type', values: ['t3.medium', 't3.small'] }]],
        // us-east-1 runs edges only
        ['us-east-1', 'availability-zone', [{ name: 'instance-type', values: ['t3.small'] }]],
      ]);
    });

    test('the zone choice skips a zone that refuses a type (t3 in us-east-1e) and fails, naming the key, when no zone offers them all', () => {
      const offer = (pairs: [string, string][]) => ({ instanceTypes: pairs.map((p) => p[0]), locations: pairs.map((p) => p[1]) });
      expect(chooseZone('us-east-1', ['t3.small'], offer([['t3.small', 'us-east-1f'], ['t3.small', 'us-east-1b']]))).toBe('us-east-1b');
      const offerings = instanceTypeOfferings('us-east-1', ['t3.small', 'm5.large']);
      expect(offerings.locations.filter((z, i) => z === 'us-east-1e' && offerings.instanceTypes[i].startsWith('t3.'))).toEqual([]);
      expect(chooseZone('us-east-1', ['m5.large'], { instanceTypes: ['m5.large'], locations: ['us-east-1e'] })).toBe('us-east-1e');
      // a zone that has one type but not the other is passed over
      expect(chooseZone('us-east-1', ['m5.large', 't3.small'], offer([['m5.large', 'us-east-1a'], ['t3.small', 'us-east-1b'], ['m5.large', 'us-east-1c'], ['t3.small', 'us-east-1c']]))).toBe('us-east-1c');
      expect(() => chooseZone('us-east-1', ['m5.large', 't3.small'], offer([['m5.large', 'us-east-1e'], ['t3.small', 'us-east-1a']]))).toThrow(
        /cdn:aws.instanceTypes: no availability zone of us-east-1 offers all of m5.large, t3.small \(us-east-1a: t3.small; us-east-1e: m5.large\)/,
      );
    });

    test('each instance has its own instance profile: its units\' parameters, the artefact, Session Manager, no other parameter', () => {
      const instances = run.ofType(INSTANCE);
      for (const i of instances) {
        expect(i.inputs.iamInstanceProfile).toBe(`profile-${i.name}-0123abc`);
        expect(run.named(`role-${i.name}-ssm`).inputs).toEqual({ role: `role-${i.name}-0123abc`, policyArn: 'arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore' });
        expect(JSON.parse(run.named(`role-${i.name}`).inputs.assumeRolePolicy).Statement).toEqual([{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }]);
      }
      const sha = await_sha();
      const artefactArn = `arn:aws:s3:::artefacts-0123abc/artefacts/${sha}.tar`;
      const policy = (group: string) => JSON.parse(run.named(`role-${group}-read`).inputs.policy).Statement;
      const params = (region: string, names: string[]) => names.map((n) => `arn:aws:ssm:${region}:123456789012:parameter/shop/${n}`);
      const edge = params('us-east-1', ['debug-token', 'url-signing-keys', 'redis-password', 'redis-tls-ca.crt', 's3-edge-access-key', 's3-edge-secret-key']);
      expect(policy('edge-us-east-1-2')).toEqual([
        { Sid: 'ReadOwnSecrets', Effect: 'Allow', Action: ['ssm:GetParameter', 'ssm:GetParameters'], Resource: edge },
        { Sid: 'ReadTheArtefact', Effect: 'Allow', Action: 's3:GetObject', Resource: artefactArn },
        // AmazonSSMManagedInstanceCore allows ssm:GetParameter(s) on every parameter: denied here
        { Sid: 'NoOtherParameters', Effect: 'Deny', Action: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath', 'ssm:GetParameterHistory'], NotResource: edge },
      ]);
      expect(policy('origin')[0].Resource).toEqual(params('eu-west-1', ['admin-token', 'debug-token', 'url-signing-keys', 'redis-password', 's3-access-key', 's3-secret-key']));
      // the balancer reads no secret at all
      expect(policy('balancer')).toEqual([
        { Sid: 'ReadTheArtefact', Effect: 'Allow', Action: 's3:GetObject', Resource: artefactArn },
        { Sid: 'NoOtherParameters', Effect: 'Deny', Action: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath', 'ssm:GetParameterHistory'], Resource: '*' },
      ]);
      // no kms grant: the aws/ssm key lets the account's principals decrypt through SSM
      for (const i of instances) expect(JSON.stringify(policy(i.name))).not.toContain('kms:');
    });

    function await_sha(): string {
      return run.ofType('aws:s3/bucketObjectv2:BucketObjectv2')[0].inputs.tags['cdn:sha256'];
    }

    test('the artefact: its own private, versioned, encrypted bucket; the object named by its sha256; the sha256 in the outputs', async () => {
      const sha = await_sha();
      expect(sha).toMatch(/^[0-9a-f]{64}$/);
      expect(await valueOf(run.result.artefactSha256!)).toBe(sha);
      const object = run.ofType('aws:s3/bucketObjectv2:BucketObjectv2')[0];
      expect(object.inputs.key).toBe(`artefacts/${sha}.tar`);
      expect(object.inputs.bucket).toBe('artefacts-id');
      const packed = await (object.inputs.source as { path: Promise<string> }).path;
      expect(createHash('sha256').update(fs.readFileSync(packed)).digest('hex')).toBe(sha);
      expect(run.named('artefacts', 'aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock').inputs).toMatchObject({ blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
      expect(run.named('artefacts', 'aws:s3/bucketVersioning:BucketVersioning').inputs.versioningConfiguration).toEqual({ status: 'Enabled' });
      expect(run.named('artefacts', 'aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration').inputs.rules[0].applyServerSideEncryptionByDefault).toEqual({ sseAlgorithm: 'AES256' });
      expect(run.named('artefacts', 'aws:s3/bucketOwnershipControls:BucketOwnershipControls').inputs.rule).toEqual({ objectOwnership: 'BucketOwnerEnforced' });
      expect(JSON.parse(run.named('artefacts', 'aws:s3/bucketPolicy:BucketPolicy').inputs.policy).Statement[0]).toMatchObject({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } });
      // every instance boots after its secrets and the artefact exist
      expect(run.named('edge-us-east-1-1', INSTANCE).dependencies).toEqual(
        expect.arrayContaining([object.urn, run.named('debug-token-us-east-1').urn, run.named('role-edge-us-east-1-1-read').urn, run.named('role-edge-us-east-1-1-ssm').urn]),
      );
    });

    test('pulumi up waits for the balancer\'s readiness answer, after every instance', async () => {
      const [check] = run.ofType('pulumi-nodejs:dynamic/cdn:ReadinessCheck');
      expect(check.name).toBe('readiness');
      expect(check.inputs.url).toBe(`${await valueOf(run.result.balancerUrl)}${READY_PATH}`);
      expect(check.inputs).toMatchObject({ timeoutSeconds: 1200, intervalSeconds: 10, requestTimeoutSeconds: 5, revision: await_sha() });
      expect(check.inputs.host).toBeUndefined();
      const instances = run.ofType(INSTANCE);
      expect(check.dependencies).toEqual(expect.arrayContaining(instances.map((i) => i.urn)));
      expect((check.inputs.instances as { name: string; id: string; region: string }[]).find((i) => i.name === 'edge-us-east-1-3')).toEqual({ name: 'edge-us-east-1-3', id: 'edge-us-east-1-3-id', region: 'us-east-1' });
      expect(check.inputs.instances).toHaveLength(instances.length);
      // the provider's code travels with the resource (Pulumi serialized it)
      expect(check.inputs.__provider).toContain('function /*probeOnce*/');
    });

    test('the edges read the bucket with their own read-only keys; the object store creates that MinIO user at boot', () => {
      const edgeJson = JSON.parse(userData(run, 'edge-eu-west-1-1').files['/etc/cdn/edge-eu-west-1-1/edge.json'].content);
      expect(JSON.stringify(edgeJson)).toContain('/etc/cdn/secrets/s3-edge-access-key');
      expect(JSON.stringify(edgeJson)).not.toContain('/etc/cdn/secrets/s3-access-key');
      const boot = userData(run, 'object-store').files[BOOTSTRAP_PATH].content;
      const lines = boot.split('\n');
      const open = lines.indexOf(`docker exec -i cdn-object-store sh -eu <<'${POST_START_EOF}'`);
      expect(open).toBeGreaterThan(lines.findIndex((l) => l.startsWith('docker run -d --name cdn-object-store')));
      const script = lines.slice(open + 1, lines.indexOf(POST_START_EOF, open)).join('\n');
      expect(script).toContain(`mc admin policy create cdn ${EDGE_POLICY_NAME} `);
      expect(script).toContain(JSON.stringify(edgeReadPolicy('shop-assets')));
      // the MinIO container gets the edge keys' files too (it creates the user with them)
      expect(boot).toContain('-v /etc/cdn/secrets/s3-edge-access-key:/etc/cdn/secrets/s3-edge-access-key:ro');
      expect(edgeReadPolicy('shop-assets')).toEqual({
        Version: '2012-10-17',
        Statement: [
          { Effect: 'Allow', Action: ['s3:GetObject'], Resource: ['arn:aws:s3:::shop-assets/*'] },
          { Effect: 'Allow', Action: ['s3:ListBucket'], Resource: ['arn:aws:s3:::shop-assets'] },
        ],
      });

      // run, with a stand-in mc: root keys in MC_HOST_cdn (never on mc's command line), the user, its policy
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdn-mc-'));
      try {
        fs.mkdirSync(path.join(dir, 'bin'));
        for (const [f, v] of Object.entries({ 's3-access-key': 'ROOTKEY', 's3-secret-key': 'ROOTSECRET', 's3-edge-access-key': 'EDGEKEY', 's3-edge-secret-key': 'EDGESECRET' })) fs.writeFileSync(path.join(dir, f), `${v}\n`);
        const mc = (attach: string) =>
          fs.writeFileSync(path.join(dir, 'bin', 'mc'), `#!/bin/sh\necho "$MC_HOST_cdn | $*" >> ${dir}/calls\ncase "$*" in *"policy attach"*) ${attach} ;; esac\n`, { mode: 0o755 });
        const runScript = () => spawnSync('sh', ['-eu', '-c', script.replaceAll(`/tmp/${EDGE_POLICY_NAME}`, `${dir}/${EDGE_POLICY_NAME}`).replaceAll('/etc/cdn/secrets', dir)], { encoding: 'utf8', env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH}` } });
        mc('exit 0');
        const first = runScript();
        expect(first.stderr).toBe('');
        expect(first.status).toBe(0);
        expect(fs.readFileSync(path.join(dir, 'calls'), 'utf8').trim().split('\n')).toEqual([
          `http://ROOTKEY:ROOTSECRET@127.0.0.1:9000 | admin policy create cdn ${EDGE_POLICY_NAME} ${dir}/${EDGE_POLICY_NAME}.json`,
          'http://ROOTKEY:ROOTSECRET@127.0.0.1:9000 | admin user add cdn EDGEKEY EDGESECRET',
          `http://ROOTKEY:ROOTSECRET@127.0.0.1:9000 | admin policy attach cdn ${EDGE_POLICY_NAME} --user EDGEKEY`,
        ]);
        // a second boot on the same data: an mc that refuses to attach twice is not a failure
        mc(`echo "mc: <ERROR> Unable to make user/group policy association. The specified policy change is already in effect." >&2; exit 1`);
        expect(runScript().status).toBe(0);
        mc('echo "mc: <ERROR> Unable to attach the policy" >&2; exit 1');
        const failed = runScript();
        expect(failed.status).toBe(1);
        expect(failed.stderr).toContain('Unable to attach the policy');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
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
    await expect(runProgram(config({ 'cdn:aws': {} }), program)).rejects.toThrow(
      /cdn:aws.amis: required: the Debian 12 AMI of each region of cdn:spec \(eu-west-1, us-east-1\), pinned .* Find one with: aws ec2 describe-images --region eu-west-1 --owners 136693071363 /,
    );
    await expect(runProgram(config({ 'cdn:aws': undefined }), program)).rejects.toThrow(/cdn:aws is not set; at least cdn:aws.amis/);
    await expect(runProgram(config({ 'cdn:aws': { amis: { 'eu-west-1': AMIS['eu-west-1'] } } }), program)).rejects.toThrow(
      /cdn:aws.amis.us-east-1: required \(every region of cdn:spec has its AMI\); find it with: aws ec2 describe-images --region us-east-1 --owners 136693071363/,
    );
    await expect(runProgram(config({ 'cdn:aws': { amis: { ...AMIS, 'ap-south-1': 'ami-0123456789abcdef0' } } }), program)).rejects.toThrow(/cdn:aws.amis.ap-south-1: no region of cdn:spec is named ap-south-1/);
    await expect(runProgram(config({ 'cdn:aws': { amis: { ...AMIS, 'us-east-1': 'debian-12' } } }), program)).rejects.toThrow(/cdn:aws.amis.us-east-1: expected an AMI id such as ami-0123456789abcdef0/);
    await expect(runProgram(config({ 'cdn:aws': { ...AWS, source: { repository: 'https://git.example/shop-cdn.git' } } }), program)).rejects.toThrow(/cdn:aws.source: instances no longer check out a git ref; they run the artefact pulumi up packs/);
    await expect(runProgram(config({ 'cdn:aws': { ...AWS, instanceTypes: { edge: 'huge' } } }), program)).rejects.toThrow(/cdn:aws.instanceTypes.edge: expected an EC2 instance type/);
    const external = { ...SPEC, storage: { kind: 's3', endpoint: 'https://s3.eu-west-1.amazonaws.com', bucket: 'shop-assets', accessKeySecret: 's3Key', secretKeySecret: 's3Secret' } };
    await expect(runProgram(config({ 'cdn:spec': external }), program)).rejects.toThrow(/cdn:s3Key is not set; set it with: pulumi config set --secret cdn:s3Key/);
  });
});
