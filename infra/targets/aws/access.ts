/**
 * What instances may read, and nothing more:
 *
 *   secrets    one SSM SecureString parameter per secret and region that needs it,
 *              named /<stack>/<secret file> (the units' secret names), encrypted with
 *              the account's default key for SSM (aws/ssm)
 *   artefact   the stack's bucket (private, versioned, encrypted, public access
 *              blocked, TLS only) holding the artefact under its sha256
 *   profiles   an IAM role and instance profile per instance: read exactly the
 *              parameters its units list and the one artefact object, and
 *              AmazonSSMManagedInstanceCore for Session Manager. That managed policy
 *              allows ssm:GetParameter(s) on every parameter, so the role also denies
 *              reading any parameter but its own.
 *
 * No kms:Decrypt is granted: the AWS managed key aws/ssm lets every IAM principal of
 * the account decrypt through SSM (its key policy, kms:ViaService ssm), so what an
 * instance can read is decided by the ssm: permissions above
 * (https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-restrict-decryption.html).
 */
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { SECRET_FILES, type SecretName } from '../../model/layout';
import type { ServiceUnit } from '../../units/units';
import { CdnService } from '../pulumi/component';
import type { StackSecrets } from '../pulumi/secrets';
import { unitSecretFiles } from '../pulumi/units';
import { artefactKey, type Artefact } from './artefact';
import type { RegionNetwork } from './network';

/** The SSM parameter holding a secret of a stack. */
export function parameterName(stack: string, secret: SecretName): string {
  return `/${stack}/${SECRET_FILES[secret]}`;
}

/** The secrets of the units on one instance, each once, in the units' order. */
export function secretsOf(units: ServiceUnit[]): SecretName[] {
  return [...new Set(units.flatMap((u) => u.secrets))];
}

/** region -> secret -> its parameter. */
export type Parameters = Map<string, Map<SecretName, aws.ssm.Parameter>>;

/**
 * A SecureString parameter per secret and region whose instances read it; the value
 * is the secret's file content without its final newline (the bootstrap's
 * `aws ssm get-parameter --output text` prints it back with one).
 */
export function createParameters(needs: { region: string; network: RegionNetwork; units: ServiceUnit[] }[], secrets: StackSecrets, stack: string): Parameters {
  const component = new CdnService('Secrets', 'secrets');
  const out: Parameters = new Map();
  for (const { region, network, units } of needs) {
    const mine = out.get(region) ?? new Map<SecretName, aws.ssm.Parameter>();
    out.set(region, mine);
    for (const u of units) {
      unitSecretFiles(u, secrets).forEach((file, i) => {
        const secret = u.secrets[i];
        if (mine.has(secret)) return;
        mine.set(
          secret,
          new aws.ssm.Parameter(
            `${SECRET_FILES[secret].replace(/\./g, '-')}-${region}`,
            {
              name: parameterName(stack, secret),
              type: 'SecureString',
              value: pulumi.secret(file.content.apply((c) => c.replace(/\n$/, ''))),
              description: `CDN ${stack}: ${secret}, read at boot by the instances whose units list it`,
              tags: { 'cdn:stack': stack },
            },
            { parent: component, provider: network.provider },
          ),
        );
      });
    }
  }
  component.done();
  return out;
}

export interface ArtefactObject {
  bucket: aws.s3.Bucket;
  object: aws.s3.BucketObjectv2;
  key: string;
  region: string;
  sha256: string;
}

/** The artefact bucket in the primary region, and the artefact in it under its sha256. */
export function createArtefactBucket(artefact: Artefact, primary: RegionNetwork, stack: string): ArtefactObject {
  const component = new CdnService('Artefact', 'artefact');
  const o = { parent: component, provider: primary.provider };
  const tags = { Name: `${stack}-artefacts`, 'cdn:stack': stack };
  // Autonamed (artefacts-<7 characters>): bucket names are global.
  const bucket = new aws.s3.Bucket('artefacts', { forceDestroy: true, tags }, o);
  const block = new aws.s3.BucketPublicAccessBlock('artefacts', { bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true }, o);
  new aws.s3.BucketOwnershipControls('artefacts', { bucket: bucket.id, rule: { objectOwnership: 'BucketOwnerEnforced' } }, o);
  new aws.s3.BucketVersioning('artefacts', { bucket: bucket.id, versioningConfiguration: { status: 'Enabled' } }, o);
  const encryption = new aws.s3.BucketServerSideEncryptionConfiguration(
    'artefacts',
    { bucket: bucket.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: 'AES256' }, bucketKeyEnabled: true }] },
    o,
  );
  new aws.s3.BucketPolicy(
    'artefacts',
    {
      bucket: bucket.id,
      policy: bucket.arn.apply((arn) =>
        JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Sid: 'TlsOnly', Effect: 'Deny', Principal: '*', Action: 's3:*', Resource: [arn, `${arn}/*`], Condition: { Bool: { 'aws:SecureTransport': 'false' } } }],
        }),
      ),
    },
    { ...o, dependsOn: [block] },
  );
  const key = artefactKey(artefact.sha256);
  const object = new aws.s3.BucketObjectv2(
    'artefact',
    { bucket: bucket.id, key, source: new pulumi.asset.FileAsset(artefact.file), contentType: 'application/x-tar', tags: { 'cdn:stack': stack, 'cdn:sha256': artefact.sha256 } },
    { ...o, dependsOn: [encryption] },
  );
  component.done({ bucket: bucket.bucket, key });
  return { bucket, object, key, region: primary.region, sha256: artefact.sha256 };
}

const SSM_READ = ['ssm:GetParameter', 'ssm:GetParameters'];
/** Every way to read a parameter's value, denied outside the instance's own. */
const SSM_ANY_READ = ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath', 'ssm:GetParameterHistory'];

/** The instance role's own policy: its parameters, the artefact, no other parameter. */
export function instancePolicy(parameterArns: string[], artefactArn: string): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      ...(parameterArns.length > 0 ? [{ Sid: 'ReadOwnSecrets', Effect: 'Allow', Action: SSM_READ, Resource: parameterArns }] : []),
      { Sid: 'ReadTheArtefact', Effect: 'Allow', Action: 's3:GetObject', Resource: artefactArn },
      // AmazonSSMManagedInstanceCore allows ssm:GetParameter(s) on "*": not here.
      parameterArns.length > 0
        ? { Sid: 'NoOtherParameters', Effect: 'Deny', Action: SSM_ANY_READ, NotResource: parameterArns }
        : { Sid: 'NoOtherParameters', Effect: 'Deny', Action: SSM_ANY_READ, Resource: '*' },
    ],
  });
}

export const ASSUME_ROLE_EC2 = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
});

/** An instance's profile, and the grants on its role the instance waits for (IAM applies them apart). */
export interface InstanceAccess {
  profile: aws.iam.InstanceProfile;
  grants: pulumi.Resource[];
}

/** An instance's role and profile: read its own secrets and the artefact; Session Manager. */
export function createInstanceProfile(
  group: string,
  secrets: aws.ssm.Parameter[],
  artefact: ArtefactObject,
  network: RegionNetwork,
  parent: pulumi.Resource,
  stack: string,
): InstanceAccess {
  const o = { parent, provider: network.provider };
  const tags = { Name: `${stack}-${group}`, 'cdn:stack': stack };
  const role = new aws.iam.Role(`role-${group}`, { assumeRolePolicy: ASSUME_ROLE_EC2, description: `CDN ${stack}: the ${group} instance`, tags }, o);
  const ssm = new aws.iam.RolePolicyAttachment(`role-${group}-ssm`, { role: role.name, policyArn: aws.iam.ManagedPolicy.AmazonSSMManagedInstanceCore }, o);
  const artefactArn = pulumi.interpolate`${artefact.bucket.arn}/${artefact.key}`;
  const read = new aws.iam.RolePolicy(
    `role-${group}-read`,
    { role: role.id, policy: pulumi.all([pulumi.all(secrets.map((p) => p.arn)), artefactArn]).apply(([arns, object]) => instancePolicy(arns, object)) },
    o,
  );
  return { profile: new aws.iam.InstanceProfile(`profile-${group}`, { role: role.name, tags }, o), grants: [read, ssm] };
}
