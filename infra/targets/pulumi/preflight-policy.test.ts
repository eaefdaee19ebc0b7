/**
 * The policy pack (policy/, preflight-policy.ts) without a Pulumi CLI: its
 * validation functions run on both stacks' mocked graphs, with the resources' inputs
 * behind the policy SDK's own unknown-checking proxy as the engine would hand them
 * over; they report what the pre-flight rules report; and policy/index.js starts
 * serving the pack.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Policies, PolicyResource, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy } from '@pulumi/policy';
import { parse } from 'yaml';
import { program } from '../../../stacks/program';
import { runProgram, type RecordedResource } from '../../../test/support/pulumi-mocks';
import { POLICY_PACK_NAME, preflightPolicies } from './preflight-policy';

const ROOT = path.resolve(__dirname, '../../..');
/** What the policy SDK's server wraps every resource's inputs in before a policy reads them (not in its typings). */
const { unknownCheckingProxy, unknownStringValue, UnknownValueError } = require('@pulumi/policy/proxy') as {
  unknownCheckingProxy: <T>(props: T) => T;
  unknownStringValue: unknown;
  UnknownValueError: new (...args: unknown[]) => Error;
};
const stackConfig = (stack: string) => parse(fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), 'utf8')).config;

const resourcePolicies = (policies: Policies) => policies.filter((p): p is ResourceValidationPolicy => 'validateResource' in p);
const stackPolicies = (policies: Policies) => policies.filter((p): p is StackValidationPolicy => 'validateStack' in p);

/** A recorded resource as the engine hands it to a policy: inputs behind the SDK's proxy. */
function policyResource(r: RecordedResource): PolicyResource {
  return { type: r.type, name: r.name, urn: r.urn, props: unknownCheckingProxy(r.inputs), opts: { parent: r.parent || undefined }, dependencies: [], propertyDependencies: {} } as unknown as PolicyResource;
}

/** Every violation the pack reports on a graph, as `urn: message`. */
async function violations(resources: RecordedResource[]): Promise<string[]> {
  const out: string[] = [];
  for (const policy of resourcePolicies(preflightPolicies)) {
    for (const r of resources) {
      const args = policyResource(r) as unknown as ResourceValidationArgs;
      const validations = [policy.validateResource!].flat();
      for (const validate of validations) await validate(args, (message, urn) => out.push(`${urn ?? r.urn}: ${message}`));
    }
  }
  for (const policy of stackPolicies(preflightPolicies)) {
    const args = { resources: resources.map(policyResource) } as unknown as StackValidationArgs;
    await policy.validateStack(args, (message, urn) => out.push(`${urn ?? '(stack)'}: ${message}`));
  }
  return out;
}

const devConfig = () => {
  const config = stackConfig('dev');
  return { ...config, 'cdn:aws': { ...config['cdn:aws'], amis: { 'eu-west-1': 'ami-0123456789abcdef0', 'us-east-1': 'ami-0fedcba9876543210' } } };
};

describe('the pre-flight policy pack', () => {
  test('is mandatory, with names the policy SDK accepts', () => {
    expect(POLICY_PACK_NAME).toMatch(/^[a-zA-Z0-9._-]+$/);
    expect(preflightPolicies.map((p) => [p.name, p.enforcementLevel])).toEqual([
      ['preflight-names-and-limits', 'mandatory'],
      ['preflight-unique', 'mandatory'],
    ]);
  });

  test.each([['local'], ['dev']])('passes the %s stack', async (stack) => {
    const run = await runProgram(stack === 'dev' ? devConfig() : stackConfig('local'), program);
    expect(await violations(run.resources)).toEqual([]);
  });

  test('reports a security group named sg-..., a duplicated rule (at its URN) and a type no rule knows', async () => {
    const run = await runProgram(devConfig(), program);
    const sg = run.ofType('aws:ec2/securityGroup:SecurityGroup')[0];
    const rule = run.ofType('aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule')[0];
    const broken: RecordedResource[] = [
      ...run.resources,
      { ...sg, name: 'sg-edge-eu-west-1', urn: `${sg.urn}-renamed` },
      { ...rule, name: `${rule.name}-again`, urn: `${rule.urn}-again` },
      { ...rule, type: 'aws:s3/bucketV2:BucketV2', name: 'assets', urn: 'urn:pulumi:test::cdn::aws:s3/bucketV2:BucketV2::assets', inputs: {} },
    ];
    const found = await violations(broken);
    expect(found).toEqual([
      expect.stringMatching(/-renamed: \[aws-security-group-name\] autonamed "sg-edge-eu-west-1-xxxxxxx" .*cannot start with sg-/),
      expect.stringMatching(/BucketV2::assets: \[resource-type-known\] no pre-flight rule knows aws:s3\/bucketV2:BucketV2/),
      expect.stringContaining(`${rule.urn}-again: [aws-security-group-rule-unique] ${rule.name}-again repeats ${rule.name} (`),
    ]);
  });

  test('an input unknown at preview stops the check of that resource (the SDK reports it as not checkable), never passes it', () => {
    const sg = { type: 'aws:ec2/securityGroup:SecurityGroup', name: 'edge-eu-west-1-sg', urn: 'urn:x', inputs: { name: unknownStringValue }, parent: '', id: '', dependencies: [] };
    const args = policyResource(sg) as unknown as ResourceValidationArgs;
    const validate = [resourcePolicies(preflightPolicies)[0].validateResource!].flat()[0];
    expect(() => validate(args, () => undefined)).toThrow(UnknownValueError);
  });

  test('policy/index.js serves the built policies (it prints the port the CLI connects to)', async () => {
    const child = spawn(process.execPath, ['index.js'], { cwd: path.join(ROOT, 'policy'), stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const firstLine = await new Promise<string>((resolve, reject) => {
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('\n')) resolve(out.split('\n')[0]);
        });
        child.stderr.on('data', (d) => (err += d));
        child.on('exit', (code) => reject(new Error(`policy/index.js exited ${code}: ${err}`)));
      });
      expect(firstLine).toMatch(/^\d+$/);
    } finally {
      child.kill();
    }
  });
});
