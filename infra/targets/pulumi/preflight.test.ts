/**
 * Pre-flight (preflight.ts) on both stacks: the committed Pulumi.yaml and
 * Pulumi.<stack>.yaml as Pulumi loads them, and the resources each stack's program
 * registers (with the committed config, and variants: TLS, an external S3 endpoint,
 * more regions and edges, named hosts), held against the rules Pulumi and the providers apply
 * before creating anything. Then each rule shown failing on input that breaks it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import * as random from '@pulumi/random';
import { parse } from 'yaml';
import { program } from '../../../stacks/program';
import { AWS_ONLY_OUTPUTS } from './outputs';
import { PROJECT, resolveOutputs, runProgram, type ProgramRun, type RecordedResource } from '../../../test/support/pulumi-mocks';
import {
  checkGraph,
  checkInternalNotPublic,
  checkNoResourcesInApply,
  checkOutputs,
  checkProjectFile,
  checkResources,
  checkStackFile,
  checkUniqueSecurityGroupRules,
  formatFindings,
  imageReferenceProblem,
  physicalName,
  RULES_BY_TYPE,
  USER_DATA_LIMIT,
  type Finding,
  type GraphResource,
} from './preflight';

const ROOT = path.resolve(__dirname, '../../..');
const yamlFile = (name: string) => parse(fs.readFileSync(path.join(ROOT, name), 'utf8'));
const PROJECT_FILE = yamlFile('Pulumi.yaml');
const STACK_FILES = { local: yamlFile('Pulumi.local.yaml'), dev: yamlFile('Pulumi.dev.yaml') };

/** What the README has an operator set on `dev` before the first `pulumi up` (Deploying with Pulumi): each region's AMI. */
const DEV_AMIS = { 'eu-west-1': 'ami-0123456789abcdef0', 'us-east-1': 'ami-0fedcba9876543210', 'ap-southeast-1': 'ami-00112233445566778' };
const DEV_OPERATOR_SETS = { amis: { 'eu-west-1': DEV_AMIS['eu-west-1'], 'us-east-1': DEV_AMIS['us-east-1'] } };

/** The outputs stacks/index.ts exports, which `pulumi stack output` shows. */
const EXPORTED = [...fs.readFileSync(path.join(ROOT, 'stacks/index.ts'), 'utf8').matchAll(/^export const (\w+) =/gm)].map((m) => m[1]);
/** What a stack of a target must export: docker has no artefact. */
const exportedBy = (stack: 'local' | 'dev') => (stack === 'dev' ? EXPORTED : EXPORTED.filter((k) => !AWS_ONLY_OUTPUTS.includes(k)));

function stackConfig(stack: 'local' | 'dev'): Record<string, unknown> {
  const config = { ...STACK_FILES[stack].config };
  if (stack === 'dev') config['cdn:aws'] = { ...(config['cdn:aws'] as object), ...DEV_OPERATOR_SETS };
  return config;
}

const graph = (run: ProgramRun<unknown>): GraphResource[] => run.resources;

/** Every pre-flight finding of one run: the graph and the outputs. */
async function preflight(run: ProgramRun<object>, stack: 'local' | 'dev'): Promise<Finding[]> {
  return [...checkGraph(graph(run)), ...checkOutputs(await resolveOutputs(run.result), exportedBy(stack))];
}

const expectClean = (findings: Finding[]) => expect(formatFindings(findings)).toBe('');

describe('pre-flight: the committed project and stacks', () => {
  const runs: Partial<Record<'local' | 'dev', ProgramRun<object>>> = {};
  beforeAll(async () => {
    runs.local = await runProgram(stackConfig('local'), program);
    runs.dev = await runProgram(stackConfig('dev'), program);
  });

  test('the mocks run under the project Pulumi.yaml names', () => {
    expect(PROJECT).toBe(PROJECT_FILE.name);
    expect(runs.local!.resources[0].urn).toContain(`::${PROJECT}::`);
  });

  test('Pulumi.yaml loads', () => {
    expectClean(checkProjectFile(PROJECT_FILE));
  });

  test.each(['local', 'dev'] as const)('Pulumi.%s.yaml loads, sets what the project declares, and the program reads every key it sets', (stack) => {
    expectClean(checkStackFile({ stack, project: PROJECT_FILE, stackFile: STACK_FILES[stack], programReads: runs[stack]!.configReads }));
  });

  test.each(['local', 'dev'] as const)('the %s stack\'s resources pass every rule of their type, and its outputs resolve', async (stack) => {
    expectClean(await preflight(runs[stack]!, stack));
  });

  test('every resource type the stacks register has rules (the graphs hold these types)', () => {
    const types = new Set([...runs.local!.resources, ...runs.dev!.resources].map((r) => r.type));
    const ruled = Object.keys(RULES_BY_TYPE);
    expect([...types].filter((t) => !t.startsWith('cdn:service:') && !t.startsWith('pulumi:providers:') && !ruled.includes(t))).toEqual([]);
    // and no rule is kept for a type neither stack registers
    expect(ruled.filter((t) => !types.has(t))).toEqual([]);
  });

  test('index.ts exports exactly what the program returns (docker: all but the aws-only outputs)', () => {
    expect([...EXPORTED].sort()).toEqual(Object.keys(runs.dev!.result).sort());
    expect(exportedBy('local').sort()).toEqual(Object.keys(runs.local!.result).sort());
  });
});

describe('pre-flight: variants', () => {
  const devSpec = () => STACK_FILES.dev.config['cdn:spec'];
  const localSpec = () => STACK_FILES.local.config['cdn:spec'];
  const external = { kind: 's3', endpoint: 'https://s3.eu-west-1.amazonaws.com', bucket: 'shop-assets', accessKeySecret: 's3Key', secretKeySecret: 's3Secret', edgeAccessKeySecret: 's3EdgeKey', edgeSecretKeySecret: 's3EdgeSecret' };
  const externalSecrets = { 'cdn:s3Key': 'AKIA0000000000000000', 'cdn:s3Secret': 'S'.repeat(40), 'cdn:s3EdgeKey': 'AKIA1111111111111111', 'cdn:s3EdgeSecret': 'E'.repeat(40) };
  const manyEdges = { regions: [{ name: 'eu-west-1', edges: 6 }, { name: 'us-east-1', edges: 6 }, { name: 'ap-southeast-1', edges: 6 }] };

  const variants: [string, 'local' | 'dev', Record<string, unknown>, string[]][] = [
    ['dev with TLS at the balancer', 'dev', { 'cdn:spec': { ...devSpec(), balancer: { tls: { cert: '/etc/cdn/tls/cert.pem', key: '/etc/cdn/tls/key.pem' } } } }, []],
    ['dev on an external S3 endpoint, edges with their own keys', 'dev', { 'cdn:spec': { ...devSpec(), storage: external }, ...externalSecrets }, Object.keys(externalSecrets)],
    ['dev with three regions of six edges', 'dev', { 'cdn:spec': { ...devSpec(), ...manyEdges }, 'cdn:aws': { ...(stackConfig('dev')['cdn:aws'] as object), amis: DEV_AMIS } }, []],
    ['dev serving named hosts only (the readiness check sends one as Host)', 'dev', { 'cdn:spec': { ...devSpec(), balancer: { hosts: ['shop.example'] } } }, []],
    ['local on an external S3 endpoint', 'local', { 'cdn:spec': { ...localSpec(), storage: external }, ...externalSecrets }, Object.keys(externalSecrets)],
    ['local with three regions of six edges', 'local', { 'cdn:spec': { ...localSpec(), regions: [{ name: 'eu', edges: 6 }, { name: 'us', edges: 6 }, { name: 'ap', edges: 6 }] } }, []],
  ];

  test.each(variants)('%s', async (_name, stack, overrides, secretKeys) => {
    const run = await runProgram({ ...stackConfig(stack), ...overrides }, program, secretKeys);
    expectClean(await preflight(run, stack));
    const stackFile = { config: { ...STACK_FILES[stack].config, ...overrides } };
    expectClean(checkStackFile({ stack, project: PROJECT_FILE, stackFile, programReads: run.configReads }));
  });
});

describe('pre-flight rules bite', () => {
  const resource = (type: string, name: string, inputs: Record<string, unknown> = {}): GraphResource => ({ type, name, inputs });
  const rules = (findings: Finding[]) => findings.map((f) => f.rule);

  test('a typed config key outside the project namespace fails the project, naming the key', () => {
    const findings = checkProjectFile({ ...PROJECT_FILE, name: 'shop-cdn' });
    expect(findings.map((f) => f.message)).toEqual([
      expect.stringContaining("Configuration key 'cdn:target' is not namespaced by the project and should not define a type: the project is 'shop-cdn'"),
    ]);
    expect(findings[0].message).toContain('https://github.com/pulumi/pulumi/blob/master/sdk/go/common/workspace/project.go');
    // a foreign key may only carry a value; a project key may carry a type and default of that type
    expect(rules(checkProjectFile({ name: 'p', runtime: 'nodejs', config: { 'aws:region': { default: 'x' }, 'k8s:ns': { description: 'd' } } }))).toEqual(['project-config', 'project-config']);
    expect(checkProjectFile({ name: 'p', runtime: 'nodejs', config: { 'aws:region': { value: 'eu-west-1' }, size: { type: 'integer', default: 3 }, 'p:tags': { type: 'array', items: { type: 'string' } } } })).toEqual([]);
    expect(rules(checkProjectFile({ name: 'p', runtime: 'nodejs', config: { size: { type: 'integer', default: 'big' }, list: { type: 'array' } } }))).toEqual(['project-config', 'project-config']);
  });

  test('project and stack names, config key grammar', () => {
    expect(rules(checkProjectFile({ name: '1cdn', runtime: 'nodejs' }))).toEqual(['project-name']);
    expect(rules(checkProjectFile({ name: 'a'.repeat(101), runtime: 'nodejs' }))).toEqual(['project-name']);
    expect(rules(checkProjectFile({ name: 'cdn' }))).toEqual(['project-runtime']);
    expect(rules(checkStackFile({ stack: 'dev env', project: PROJECT_FILE, stackFile: { config: { 'cdn:target': 'aws', target: 'x', 'a:b:c': 1 } } }))).toEqual(['stack-name', 'stack-config-key', 'stack-config-key']);
  });

  test('a stack must set the project\'s typed keys, with their type; a key the program never reads is reported', () => {
    const missing = checkStackFile({ stack: 'dev', project: PROJECT_FILE, stackFile: { config: { 'cdn:spec': {} } } });
    expect(missing.map((f) => f.message)).toEqual([expect.stringContaining("Stack 'dev' is missing configuration value 'cdn:target'")]);
    const wrongType = checkStackFile({ stack: 'dev', project: PROJECT_FILE, stackFile: { config: { 'cdn:target': { kind: 'aws' } } } });
    expect(wrongType.map((f) => f.message)).toEqual([expect.stringContaining("Stack 'dev' with configuration key 'cdn:target' must be of type 'string'")]);
    const typo = checkStackFile({ stack: 'local', project: PROJECT_FILE, stackFile: { config: { 'cdn:target': 'docker', 'cdn:dokcer': {}, 'aws:region': 'eu-west-1' } }, programReads: ['cdn:target', 'cdn:docker'] });
    expect(typo.map((f) => `${f.rule} ${f.subject}`)).toEqual(['stack-config-read Pulumi.local.yaml cdn:dokcer']);
  });

  test('security groups: a name starting with sg- (as autonamed), too long, or with characters EC2 refuses', () => {
    expect(physicalName(resource('x', 'sg-edge-eu-west-1'))).toEqual({ name: 'sg-edge-eu-west-1-xxxxxxx', autonamed: true });
    const sg = (name: string, inputs: Record<string, unknown> = {}) => resource('aws:ec2/securityGroup:SecurityGroup', name, inputs);
    const found = checkResources([sg('sg-edge-eu-west-1'), sg('edge', { name: 'e'.repeat(256) }), sg('edge', { name: 'edge<1>' }), sg('edge', { description: "shop's edge" }), sg('edge', { namePrefix: 'sg-' })]);
    expect(rules(found)).toEqual(['aws-security-group-name', 'aws-security-group-name', 'aws-security-group-name', 'aws-security-group-description', 'aws-security-group-name']);
    expect(found[0].message).toContain('autonamed "sg-edge-eu-west-1-xxxxxxx"');
    expect(found[0].message).toContain('https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html');
    expect(checkResources([sg('edge-eu-west-1-sg', { description: 'CDN edge (eu-west-1)' })])).toEqual([]);
  });

  test('a security-group rule made twice is reported, however the CIDR is written; ports and descriptions are checked', async () => {
    const dev = await runProgram(stackConfig('dev'), program);
    const rule = dev.ofType('aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule')[0];
    const twice = [...graph(dev), { ...rule, name: `${rule.name}-again`, urn: `${rule.urn}-again` }];
    const found = checkUniqueSecurityGroupRules(twice);
    expect(found).toHaveLength(1);
    expect(found[0].message).toContain(`${rule.name}-again repeats ${rule.name}`);
    // 10.0.0.9/24 is 10.0.0.0/24 to AWS
    const ingress = (name: string, cidr: string) => resource('aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule', name, { securityGroupId: 'sg-1', ipProtocol: 'tcp', fromPort: 80, toPort: 80, cidrIpv4: cidr });
    expect(checkUniqueSecurityGroupRules([ingress('a', '10.0.0.0/24'), ingress('b', '10.0.0.9/24')])).toHaveLength(1);
    expect(checkUniqueSecurityGroupRules([ingress('a', '10.0.0.0/24'), ingress('b', '10.0.1.0/24')])).toEqual([]);
    const bad = resource('aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule', 'r', { ipProtocol: 'tcp', fromPort: 90, toPort: 80, description: 'shop\'s "edge"' });
    expect(rules(checkResources([bad]))).toEqual(['aws-security-group-rule-description', 'aws-security-group-rule-ports']);
  });

  test('user data over 16 KiB raw; tags too long or reserved; VPC and subnet sizes; EBS sizes', () => {
    const instance = (userData: string) => resource('aws:ec2/instance:Instance', 'edge', { userData });
    expect(checkResources([instance('x'.repeat(USER_DATA_LIMIT))])).toEqual([]);
    expect(rules(checkResources([instance('x'.repeat(USER_DATA_LIMIT + 1))]))).toEqual(['aws-user-data-size']);
    // raw bytes, not characters
    expect(rules(checkResources([instance('é'.repeat(USER_DATA_LIMIT / 2 + 1))]))).toEqual(['aws-user-data-size']);
    const tagged = resource('aws:ec2/eip:Eip', 'ip', { tags: { Name: 'v'.repeat(257), 'aws:owner': 'x', ['k'.repeat(128)]: 'y' } });
    expect(rules(checkResources([tagged]))).toEqual(['aws-tag', 'aws-tag', 'aws-tag']);
    expect(rules(checkResources([resource('aws:ec2/vpc:Vpc', 'v', { cidrBlock: '10.0.0.0/8' }), resource('aws:ec2/subnet:Subnet', 's', { cidrBlock: '10.0.0.0/29' })]))).toEqual(['aws-vpc-cidr', 'aws-subnet-cidr']);
    expect(rules(checkResources([resource('aws:ebs/volume:Volume', 'd', { type: 'gp3', size: 70000 }), resource('aws:ebs/volume:Volume', 'd2', { type: 'gp3', size: 100 })]))).toEqual(['aws-ebs-volume-size']);
  });

  test('IAM names and policies, SSM parameter names and values, S3 bucket names and keys, the readiness check', () => {
    const found = checkResources([
      resource('aws:iam/role:Role', 'r'.repeat(57)),
      resource('aws:iam/role:Role', 'edge', { name: 'edge role' }),
      resource('aws:iam/instanceProfile:InstanceProfile', 'p'.repeat(121)),
      resource('aws:iam/rolePolicy:RolePolicy', 'read', { policy: JSON.stringify({ Statement: [{ Resource: 'x'.repeat(10241) }] }) }),
      resource('aws:iam/rolePolicy:RolePolicy', 'read2', { policy: '{not json' }),
      resource('aws:ssm/parameter:Parameter', 'a', { name: '/aws/secret' }),
      resource('aws:ssm/parameter:Parameter', 'b', { name: 'shop/secret' }),
      resource('aws:ssm/parameter:Parameter', 'c', { name: '/shop/sec ret' }),
      resource('aws:ssm/parameter:Parameter', 'd', { name: `/${Array.from({ length: 16 }, () => 'l').join('/')}` }),
      resource('aws:ssm/parameter:Parameter', 'e', { name: '/shop/big', value: 'v'.repeat(4097) }),
      resource('aws:s3/bucket:Bucket', 'Artefacts'),
      resource('aws:s3/bucket:Bucket', 'b', { bucket: 'a..b' }),
      resource('aws:s3/bucketObjectv2:BucketObjectv2', 'o', { key: 'k'.repeat(1025) }),
      resource('pulumi-nodejs:dynamic/cdn:ReadinessCheck', 'ready', { url: 'ftp://x/', timeoutSeconds: 10, intervalSeconds: 20, requestTimeoutSeconds: 0 }),
    ]);
    expect(rules(found)).toEqual([
      'aws-iam-role-name',
      'aws-iam-role-name',
      'aws-iam-instance-profile-name',
      'aws-iam-role-policy',
      'aws-iam-role-policy',
      'aws-ssm-parameter-name',
      'aws-ssm-parameter-name',
      'aws-ssm-parameter-name',
      'aws-ssm-parameter-name',
      'aws-ssm-parameter-value',
      'aws-s3-bucket-name',
      'aws-s3-bucket-name',
      'aws-s3-object-key',
      'readiness-check',
      'readiness-check',
      'readiness-check',
    ]);
    expect(found[0].message).toContain('autonamed "' + 'r'.repeat(57) + '-xxxxxxx" (the logical name plus Pulumi\'s 7-character suffix) is 65 characters; at most 64');
    expect(
      checkResources([
        resource('aws:iam/role:Role', 'role-edge-eu-west-1-1', { description: 'CDN shop: the edge-eu-west-1-1 instance' }),
        resource('aws:ssm/parameter:Parameter', 'admin-token-eu-west-1', { name: '/shop-cdn-dev/admin-token', value: 'x'.repeat(32) }),
        resource('aws:s3/bucket:Bucket', 'artefacts'),
        resource('pulumi-nodejs:dynamic/cdn:ReadinessCheck', 'readiness', { url: 'http://203.0.113.7/.well-known/cdn-ready', timeoutSeconds: 1200, intervalSeconds: 10, requestTimeoutSeconds: 5 }),
      ]),
    ).toEqual([]);
  });

  test('docker names and image references', () => {
    const found = checkResources([
      resource('docker:index/container:Container', 'c', { name: '-edge', image: 'shop/Edge:local' }),
      resource('docker:index/volume:Volume', 'v', { name: 'a' }),
      resource('docker:index/network:Network', 'n', { name: 'shop net' }),
      resource('docker:index/remoteImage:RemoteImage', 'i', { name: 'grafana/grafana:' }),
      resource('docker:index/image:Image', 'j', { imageName: `${'a'.repeat(256)}:local` }),
    ]);
    expect(rules(found)).toEqual(['docker-container-name', 'docker-image-reference', 'docker-volume-name', 'docker-network-name', 'docker-image-reference', 'docker-image-reference']);
    expect(imageReferenceProblem('quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z@sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e')).toBeUndefined();
    expect(imageReferenceProblem('localhost:5000/shop-cdn-local/edge:local')).toBeUndefined();
    // a container may run an image by the ID its RemoteImage computed
    expect(checkResources([resource('docker:index/container:Container', 'c', { name: 'shop-edge', image: 'sha256:0123' })])).toEqual([]);
  });

  test('a resource type without rules is a finding; so are a bad type token, a bad password length and a duplicate URN', () => {
    const found = checkGraph([
      resource('aws:s3/bucketV2:BucketV2', 'assets'),
      resource('cdn:Edge', 'edge'),
      resource('random:index/randomPassword:RandomPassword', 'p', { length: 0 }),
      { ...resource('docker:index/volume:Volume', 'cache', { name: 'shop-cache' }), urn: 'urn:x' },
      { ...resource('docker:index/volume:Volume', 'cache', { name: 'shop-cache' }), urn: 'urn:x' },
    ]);
    expect(rules(found)).toEqual(['resource-type-known', 'resource-type-known', 'random-password-length', 'urn-unique']);
    expect(rules(checkResources([resource('cdn:service:Edge Fleet:x', 'e')]))).toEqual(['type-token']);
  });

  test('TLS keys and certificates: an algorithm, curve or key usage the provider does not know, and a validity that is not whole hours, are findings', () => {
    const key = (inputs: Record<string, unknown>) => resource('tls:index/privateKey:PrivateKey', 'k', inputs);
    const cert = (inputs: Record<string, unknown>) => resource('tls:index/locallySignedCert:LocallySignedCert', 'c', inputs);
    expect(checkResources([key({ algorithm: 'ECDSA', ecdsaCurve: 'P256' }), cert({ allowedUses: ['serverAuth', 'clientAuth'], validityPeriodHours: 43800 })])).toEqual([]);
    expect(rules(checkResources([key({ algorithm: 'EC' }), key({ algorithm: 'ECDSA', ecdsaCurve: 'prime256v1' })]))).toEqual(['tls-key-algorithm', 'tls-key-curve']);
    expect(rules(checkResources([cert({ allowedUses: ['server_auth'], validityPeriodHours: 1.5 }), resource('tls:index/selfSignedCert:SelfSignedCert', 's', { validityPeriodHours: 0 })]))).toEqual([
      'tls-cert-uses',
      'tls-cert-validity',
      'tls-cert-uses',
      'tls-cert-validity',
    ]);
  });

  test('nothing internal is reachable from the internet: world-open ports other than 80/443, and docker ports published by other units or on every interface, are findings', () => {
    const rule = (name: string, inputs: Record<string, unknown>) => resource('aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule', name, { securityGroupId: 'sg', ipProtocol: 'tcp', description: 'x', ...inputs });
    const found = checkInternalNotPublic([
      rule('shoppers', { fromPort: 80, toPort: 80, cidrIpv4: '0.0.0.0/0' }),
      rule('redis', { fromPort: 6379, toPort: 6379, cidrIpv4: '0.0.0.0/0' }),
      rule('api', { fromPort: 3001, toPort: 3001, cidrIpv6: '::/0' }),
      rule('inside', { fromPort: 3001, toPort: 3001, cidrIpv4: '10.20.0.0/16' }),
      resource('docker:index/container:Container', 'balancer', { name: 'shop-balancer', ports: [{ internal: 8080, external: 8080, ip: '127.0.0.1' }] }),
      resource('docker:index/container:Container', 'origin', { name: 'shop-origin', ports: [{ internal: 3001, external: 3001, ip: '127.0.0.1' }] }),
      resource('docker:index/container:Container', 'grafana', { name: 'shop-grafana', ports: [{ internal: 3000, external: 3000 }] }),
    ]);
    expect(found.map((f) => f.subject.split('::')[1])).toEqual(['redis', 'api', 'origin', 'grafana']);
  });

  test('outputs: unknown, missing or holding undefined are reported', () => {
    const found = checkOutputs({ a: { known: false, value: undefined }, b: { known: true, value: { eu: ['x', undefined] } }, c: { known: true, value: 'ok' } }, ['a', 'b', 'c', 'd']);
    expect(found.map((f) => `${f.subject}: ${f.message.replace(/ \(https.*$/, '')}`)).toEqual([
      'd: the stack exports no d',
      'a: a is unknown after a run in which every input was known',
      'b: b.eu[1] is undefined',
    ]);
  });

  describe('no resource is created inside an apply', () => {
    /** A program that makes a resource only once an Output's value is known: preview would not show it. */
    function badProgram() {
      const first = new random.RandomPassword('first', { length: 16 });
      first.result.apply((v) => new random.RandomPassword('second', { length: v.length }));
      // and one more level down, inside pulumi.all(...).apply with an async callback
      pulumi.all([first.result, first.id]).apply(async ([v]) => {
        await Promise.resolve();
        new random.RandomPassword('third', { length: v.length });
      });
      return {};
    }

    /** The same resources, each registered at the top level with the Output as an input. */
    function goodProgram() {
      const first = new random.RandomPassword('first', { length: 16 });
      new random.RandomPassword('second', { length: 16, keepers: { first: first.result } });
      return { length: first.result.apply((v) => v.length) };
    }

    test('fires on resources registered in an apply callback, naming where', async () => {
      const run = await runProgram({}, badProgram);
      const found = checkNoResourcesInApply(graph(run));
      expect(found.map((f) => f.subject)).toEqual(['random:index/randomPassword:RandomPassword::second', 'random:index/randomPassword:RandomPassword::third']);
      expect(found[0].message).toMatch(/second is registered at infra\/targets\/pulumi\/preflight\.test\.ts:\d+:\d+, inside the apply called at infra\/targets\/pulumi\/preflight\.test\.ts:\d+:\d+/);
      expect(found[0].message).toContain('https://www.pulumi.com/docs/iac/concepts/inputs-outputs/apply/');
    });

    test('stays quiet when every resource is registered by the program itself', async () => {
      const run = await runProgram({}, goodProgram);
      expect(run.resources.map((r: RecordedResource) => r.name)).toEqual(['first', 'second']);
      expect(checkNoResourcesInApply(graph(run))).toEqual([]);
    });
  });
});
