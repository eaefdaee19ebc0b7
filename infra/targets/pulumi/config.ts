/**
 * Stack settings beyond the spec (`cdn:images`, `cdn:docker`, `cdn:aws`) and the
 * deployment plan both Pulumi targets share: which object store, which secrets.
 * Validated here with errors that name the config key, like the spec's.
 */
import { z } from 'zod';
import { cdnError } from '../../model/errors';
import { isCidr, type CdnSpec } from '../../model/spec';
import { DEFAULT_IMAGES, DIGEST, RUNTIME_IMAGES, type ImageCatalogue, type ImageName } from './images';

const cidr = z.string().refine(isCidr, 'expected a CIDR such as 10.89.0.0/24');
const ipv4 = z.string().regex(/^(\d{1,3})(\.\d{1,3}){3}$/, 'expected an IPv4 address such as 127.0.0.1');

export const dockerSettingsSchema = z
  .object({
    /** The CDN's bridge network; services get fixed addresses in it (docs/adr/0003). */
    subnet: cidr.default('10.89.0.0/24'),
    /** Host address the balancer and Grafana are published on: this machine only by default. */
    bindAddress: ipv4.default('127.0.0.1'),
    balancerPort: z.number().int().min(1).max(65535).default(8080),
    grafanaPort: z.number().int().min(1).max(65535).default(3000),
  })
  .strict();

const instanceType = z.string().regex(/^[a-z0-9]+\.[a-z0-9]+$/, 'expected an EC2 instance type such as t3.small');

/** An EC2 image id: ami- and 8 or 17 hexadecimal digits. */
const AMI_ID = /^ami-([0-9a-f]{8}|[0-9a-f]{17})$/;

/** How to find a region's current Debian 12 AMI (the Debian cloud team's account, 136693071363). */
export function findDebianAmi(region: string): string {
  return `aws ec2 describe-images --region ${region} --owners 136693071363 --filters 'Name=name,Values=debian-12-amd64-*' 'Name=architecture,Values=x86_64' --query 'sort_by(Images,&CreationDate)[-1].[ImageId,Name]' --output text`;
}

export const awsSettingsSchema = z
  .object({
    /**
     * The Debian 12 (amd64) AMI of each region of the spec, pinned: a new AMI replaces
     * every instance of its region, so it changes only when this setting does.
     */
    amis: z.record(z.string(), z.string().regex(AMI_ID, 'expected an AMI id such as ami-0123456789abcdef0'), {
      error: 'required: the Debian 12 AMI of each region of cdn:spec',
    }),
    instanceTypes: z
      .object({
        edge: instanceType.default('t3.small'),
        balancer: instanceType.default('t3.small'),
        origin: instanceType.default('t3.medium'),
        redis: instanceType.default('t3.small'),
        objectStore: instanceType.default('t3.small'),
        monitoring: instanceType.default('t3.medium'),
      })
      .strict()
      .prefault({}),
    /** Root disk of every instance (GiB); edges keep their cache there. */
    rootVolumeGb: z.number().int().min(8).max(16384).default(30),
    /** The object store's data volume (EBS, GiB). */
    objectStoreVolumeGb: z.number().int().min(1).max(16384).default(100),
    /** Node.js for the origin instance: the official linux-x64 tarball, checked against its SHASUMS256.txt. */
    nodeVersion: z.string().regex(/^20\.\d+\.\d+$/, 'expected a Node.js 20 version such as 20.19.5').default('20.19.5'),
    /** The VPC of region i is 10.(first + i).0.0/16. */
    firstCidrOctet: z.number().int().min(0).max(240).default(20),
    /** How long `pulumi up` waits for the balancer to say every edge is ready before it fails. */
    readinessTimeoutMinutes: z.number().int().min(1).max(120).default(20),
  })
  .strict();

/** Settings that no longer exist, and what replaced them. */
const REMOVED_AWS_SETTINGS: Record<string, string> = {
  sshCidr:
    'SSH is closed on every instance and no key is installed; reach an instance with Session Manager (aws ssm start-session --target <instance-id>; port forwarding: see the README, "Deploying with Pulumi"). Remove the setting',
  source:
    'instances no longer check out a git ref; they run the artefact pulumi up packs from this working tree (run npm run build first). Remove the setting',
};

/** `cdn:aws`, validated against the spec it deploys: one AMI per region of the spec, nothing removed. */
export function parseAwsSettings(value: unknown, spec: CdnSpec): AwsSettings {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, why] of Object.entries(REMOVED_AWS_SETTINGS)) {
      if (key in value) throw cdnError('CDN_ERR_CONFIG_INVALID', `cdn:aws.${key}: ${why}`);
    }
  }
  const raw = (value ?? {}) as { amis?: unknown };
  if (raw.amis === undefined) {
    const first = spec.regions[0].name;
    throw cdnError(
      'CDN_ERR_CONFIG_INVALID',
      `cdn:aws.amis: required: the Debian 12 AMI of each region of cdn:spec (${spec.regions.map((r) => r.name).join(', ')}), pinned so that a new Debian image replaces instances only when you change it. Find one with: ${findDebianAmi(first)}; then: pulumi config set --path 'cdn:aws.amis.${first}' ami-...`,
    );
  }
  const settings = parseSettings('cdn:aws', awsSettingsSchema, value);
  const problems: string[] = [];
  for (const r of spec.regions) {
    if (!settings.amis[r.name]) problems.push(`cdn:aws.amis.${r.name}: required (every region of cdn:spec has its AMI); find it with: ${findDebianAmi(r.name)}`);
  }
  for (const region of Object.keys(settings.amis)) {
    if (!spec.regions.some((r) => r.name === region)) problems.push(`cdn:aws.amis.${region}: no region of cdn:spec is named ${region}`);
  }
  if (problems.length > 0) throw cdnError('CDN_ERR_CONFIG_INVALID', problems.join('; '));
  return settings;
}

export type DockerSettings = z.output<typeof dockerSettingsSchema>;
export type AwsSettings = z.output<typeof awsSettingsSchema>;

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/\.\[/g, '[');
}

/** Parses one stack config object; errors name the key (`cdn:aws.source.repository: ...`). */
export function parseSettings<T extends z.ZodType>(key: string, schema: T, value: unknown): z.output<T> {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `${key}${formatPath(i.path)}: ${i.message}`);
  throw cdnError('CDN_ERR_CONFIG_INVALID', lines.join('; '));
}

export function imageCatalogue(overrides: unknown): ImageCatalogue {
  const value = overrides ?? {};
  if (typeof value !== 'object' || Array.isArray(value)) throw cdnError('CDN_ERR_CONFIG_INVALID', 'cdn:images: expected an object of image references');
  const images: ImageCatalogue = { ...DEFAULT_IMAGES };
  for (const [name, ref] of Object.entries(value as Record<string, unknown>)) {
    if (!(name in DEFAULT_IMAGES)) {
      throw cdnError('CDN_ERR_CONFIG_INVALID', `cdn:images.${name}: unknown image; known: ${Object.keys(DEFAULT_IMAGES).join(', ')}`);
    }
    if (typeof ref !== 'string' || ref.length === 0) throw cdnError('CDN_ERR_CONFIG_INVALID', `cdn:images.${name}: expected an image reference`);
    if (RUNTIME_IMAGES.includes(name as ImageName) && !DIGEST.test(ref)) {
      throw cdnError('CDN_ERR_CONFIG_INVALID', `cdn:images.${name}: pin the image by digest (name:tag@sha256:...), got ${ref}`);
    }
    images[name as ImageName] = ref;
  }
  return images;
}

/** The Pulumi targets (stacks/config.ts names them too); they differ in where assets may live. */
export type PulumiTarget = 'docker' | 'aws';

/**
 * Where assets live: the stack's own MinIO, an S3-compatible endpoint the spec names,
 * or (docker only) no object store at all: the origin keeps them in its unit's volume.
 */
export type ObjectStorePlan =
  | {
      kind: 'builtin';
      bucket: string;
      region: string;
      accessKeySecret: string;
      secretKeySecret: string;
      /** The edges' read-only key pair (a MinIO user the object store's unit creates), where the target sets one up. */
      edgeAccessKeySecret?: string;
      edgeSecretKeySecret?: string;
    }
  | { kind: 'external' }
  /** Filesystem storage (docker only): the origin keeps the assets in its own volume. */
  | { kind: 'none' };

export interface DeployPlan {
  /** The spec with the deployed stacks' defaults: a Redis password is always required. */
  spec: CdnSpec;
  objectStore: ObjectStorePlan;
}

/**
 * `rawSpec` is the stack's `cdn:spec` as written: an absent `storage` means "run the
 * stack's own MinIO"; `kind: s3` points at an existing S3-compatible endpoint. The
 * docker target also takes `kind: filesystem`: one origin on one machine keeps the
 * assets in its `storage` volume (what `npm run test:docker` runs, where no MinIO
 * image can be had). The aws target refuses it: its origin's disk is no place for
 * the only copy of the assets.
 */
export function deployPlan(rawSpec: unknown, spec: CdnSpec, target: PulumiTarget): DeployPlan {
  const rawStorage = (rawSpec as { storage?: unknown } | undefined)?.storage;
  const filesystem = rawStorage !== undefined && spec.storage.kind === 'filesystem';
  if (filesystem && target !== 'docker') {
    throw cdnError(
      'CDN_ERR_CONFIG_INVALID',
      `cdn:spec.storage: the ${target} target keeps assets in S3-compatible storage; leave storage out to run the stack's own MinIO, or set kind: s3 with an endpoint`,
    );
  }
  if (filesystem && spec.storage.kind === 'filesystem' && spec.storage.path !== undefined) {
    throw cdnError('CDN_ERR_CONFIG_INVALID', 'cdn:spec.storage.path: on the docker target the origin keeps assets in its own storage volume; leave path out');
  }
  const deployed: CdnSpec = { ...spec, secrets: { ...spec.secrets, redisPassword: spec.secrets.redisPassword ?? 'redisPassword' } };
  const objectStore: ObjectStorePlan =
    spec.storage.kind === 's3'
      ? { kind: 'external' }
      : filesystem
        ? { kind: 'none' }
        : {
            kind: 'builtin',
            bucket: `${spec.name}-assets`,
            region: 'us-east-1',
            accessKeySecret: 'objectStoreAccessKey',
            secretKeySecret: 'objectStoreSecretKey',
            // aws gives the edges a read-only MinIO user; docker keeps them on the root keys (see docs/deploying.md)
            ...(target === 'aws' ? { edgeAccessKeySecret: 'objectStoreEdgeAccessKey', edgeSecretKeySecret: 'objectStoreEdgeSecretKey' } : {}),
          };
  return { spec: deployed, objectStore };
}

/** The spec the renderers see once the object store's endpoint is known. */
export function specWithObjectStore(plan: DeployPlan, endpoint: string): CdnSpec {
  const os = plan.objectStore;
  if (os.kind !== 'builtin') return plan.spec;
  return {
    ...plan.spec,
    storage: {
      kind: 's3',
      endpoint,
      bucket: os.bucket,
      region: os.region,
      accessKeySecret: os.accessKeySecret,
      secretKeySecret: os.secretKeySecret,
      ...(os.edgeAccessKeySecret && os.edgeSecretKeySecret ? { edgeAccessKeySecret: os.edgeAccessKeySecret, edgeSecretKeySecret: os.edgeSecretKeySecret } : {}),
    },
  };
}
