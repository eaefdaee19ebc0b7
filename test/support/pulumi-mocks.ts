/**
 * Runs a Pulumi program under `pulumi.runtime.setMocks` and records every resource
 * it registers: type, name, inputs (secrets unwrapped), parent and dependencies;
 * also what the pre-flight rules (infra/targets/pulumi/preflight.ts) need and mocks
 * never show: every config key the program read, and whether a resource was
 * registered from inside an Output's `apply` callback (which `pulumi preview` does
 * not show while the value is unknown). Each call installs fresh mocks and config,
 * so runs (and test files) share no runtime state; jest also gives every test file
 * its own module registry.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { parse } from 'yaml';

/** The repository root, from the sources (ts-jest) or their build (dist/test/support: test:docker). */
const REPO_ROOT = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'Pulumi.yaml')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
})();

/** The project Pulumi.yaml names: URNs carry it, as they would on a real run. */
export const PROJECT: string = parse(fs.readFileSync(path.join(REPO_ROOT, 'Pulumi.yaml'), 'utf8')).name;

export interface RecordedResource {
  type: string;
  name: string;
  urn: string;
  id: string;
  inputs: Record<string, any>;
  parent: string;
  dependencies: string[];
  /**
   * Set when the resource was registered while an Output's apply callback ran:
   * where it was registered and where that apply was called.
   */
  registeredInApply?: string;
}

export interface ProgramRun<T> {
  result: T;
  resources: RecordedResource[];
  ofType(type: string): RecordedResource[];
  named(name: string, type?: string): RecordedResource;
  /** Every stack config key the program read (`cdn:target`, ...), set or not, in the order first read. */
  configReads: string[];
  /** The provider functions the program invoked (token, the provider's region, inputs). */
  calls: RecordedCall[];
}

export interface RecordedCall {
  token: string;
  region: string;
  inputs: Record<string, any>;
}

/** The value the mocks give a RandomPassword of this name. */
export function generatedSecret(resourceName: string): string {
  return `generated${resourceName.replace(/[^A-Za-z0-9]/g, '')}0123456789`;
}

/** The AWS region a logical name ends in (`admin-token-eu-west-1`), for realistic ARNs. */
function regionOfName(name: string): string {
  return /([a-z]{2}-[a-z]+-\d)$/.exec(name)?.[1] ?? 'eu-west-1';
}

/**
 * EC2's instance-type offerings per availability zone, as the mocks answer
 * aws.ec2.getInstanceTypeOfferings (location type availability-zone): every zone
 * a-f of a region offers every type asked for, except that us-east-1e offers no t3
 * type (as in the real us-east-1); zones come unsorted, as EC2 does not promise an order.
 */
export function instanceTypeOfferings(region: string, types: string[]): { instanceTypes: string[]; locations: string[]; locationTypes: string[] } {
  const zones = ['e', 'c', 'a', 'f', 'b', 'd'].map((z) => `${region}${z}`);
  const pairs = zones.flatMap((zone) => types.filter((t) => !(zone === 'us-east-1e' && t.startsWith('t3.'))).map((t) => [t, zone]));
  return { instanceTypes: pairs.map((p) => p[0]), locations: pairs.map((p) => p[1]), locationTypes: pairs.map(() => 'availability-zone') };
}

/** Values the providers would compute, so the program sees realistic outputs. */
function computed(type: string, name: string, inputs: Record<string, any>, seq: number): Record<string, any> {
  switch (type) {
    case 'random:index/randomPassword:RandomPassword':
      return { result: generatedSecret(name) };
    case 'aws:ec2/networkInterface:NetworkInterface':
      return { privateIp: `10.0.${Math.floor(seq / 250)}.${(seq % 250) + 4}` };
    case 'aws:ec2/eip:Eip':
      return { publicIp: `203.0.113.${(seq % 250) + 1}` };
    case 'aws:ec2/subnet:Subnet':
      return { availabilityZone: inputs.availabilityZone ?? 'zone-a' };
    case 'aws:ssm/parameter:Parameter':
      return { arn: `arn:aws:ssm:${regionOfName(name)}:123456789012:parameter${inputs.name}` };
    case 'aws:iam/role:Role':
      return { name: `${name}-0123abc`, arn: `arn:aws:iam::123456789012:role/${name}-0123abc` };
    case 'aws:iam/instanceProfile:InstanceProfile':
      return { name: `${name}-0123abc`, arn: `arn:aws:iam::123456789012:instance-profile/${name}-0123abc` };
    case 'aws:s3/bucket:Bucket':
      return { bucket: `${name}-0123abc`, arn: `arn:aws:s3:::${name}-0123abc` };
    // PEM-shaped stand-ins: what the provider would make, named by the resource (tests follow them into secret files)
    case 'tls:index/privateKey:PrivateKey':
      return { privateKeyPem: `-----BEGIN EC PRIVATE KEY-----\n${name}\n-----END EC PRIVATE KEY-----\n` };
    case 'tls:index/selfSignedCert:SelfSignedCert':
    case 'tls:index/locallySignedCert:LocallySignedCert':
      return { certPem: `-----BEGIN CERTIFICATE-----\n${name}\n-----END CERTIFICATE-----\n` };
    case 'tls:index/certRequest:CertRequest':
      return { certRequestPem: `-----BEGIN CERTIFICATE REQUEST-----\n${name}\n-----END CERTIFICATE REQUEST-----\n` };
    case 'docker:index/remoteImage:RemoteImage':
      return { imageId: `sha256:${name}` };
    default:
      return {};
  }
}

/** The apply call the current code runs inside (a source location), if any; async work started there keeps it. */
const insideApply = new AsyncLocalStorage<string>();

/** The first stack frame outside Pulumi's SDK and this file (file:line:column): where the program called something. */
function programFrame(stack: string | undefined): string {
  const frames = (stack ?? '').split('\n').slice(1).map((l) => l.trim());
  const frame = frames.find((f) => !f.includes(`${path.sep}node_modules${path.sep}`) && !f.includes(__filename) && !f.includes('node:'));
  // `at fn (file:line:col)` or `at file:line:col`: keep file:line:col, relative to the repository
  const location = /\(([^()]+)\)$/.exec(frame ?? '')?.[1] ?? (frame ?? 'unknown').replace(/^at /, '');
  return location.replace(`${REPO_ROOT}${path.sep}`, '');
}

/**
 * Runs every apply callback inside `insideApply`, marked with the place the program
 * called `.apply` (pulumi.all(...).apply too: it returns the same Output class), and
 * notes where each resource registered inside one was constructed (`sites`, by
 * `type::name`). Whether a registration happened inside an apply is decided where the
 * engine receives it (the monitor hook below, which the async context reaches); the
 * construction site only makes the finding precise. Returns the undo.
 */
function trackApplyCallbacks(sites: Map<string, string>): () => void {
  const proto = (pulumi.Output as unknown as { prototype: { apply: (func: (v: unknown) => unknown, runWithUnknowns?: boolean) => unknown } }).prototype;
  const originalApply = proto.apply;
  proto.apply = function (this: unknown, func: (v: unknown) => unknown, runWithUnknowns?: boolean) {
    const site = programFrame(new Error().stack);
    return originalApply.call(this, (v: unknown) => insideApply.run(site, () => func(v)), runWithUnknowns);
  };
  // Every Resource constructor calls runtime/resource's registerResource(res, parent, type, name, ...) synchronously.
  const runtimeResource = require('@pulumi/pulumi/runtime/resource') as { registerResource: (...args: unknown[]) => unknown };
  const originalRegister = runtimeResource.registerResource;
  runtimeResource.registerResource = function (this: unknown, ...args: unknown[]) {
    if (insideApply.getStore() !== undefined) sites.set(`${String(args[2])}::${String(args[3])}`, programFrame(new Error().stack));
    return originalRegister.apply(this, args);
  };
  return () => {
    proto.apply = originalApply;
    runtimeResource.registerResource = originalRegister;
  };
}

/** Records every config key read through pulumi.Config (which reads them all through runtime/config's getConfig). Returns the undo. */
function trackConfigReads(reads: Set<string>): () => void {
  const runtimeConfig = require('@pulumi/pulumi/runtime/config') as { getConfig: (key: string) => string | undefined };
  const original = runtimeConfig.getConfig;
  runtimeConfig.getConfig = (key: string) => {
    reads.add(key);
    return original(key);
  };
  return () => {
    runtimeConfig.getConfig = original;
  };
}

export async function runProgram<T>(config: Record<string, unknown>, program: () => T, secretKeys: string[] = []): Promise<ProgramRun<T>> {
  const resources: RecordedResource[] = [];
  const pending = new Map<string, { parent: string; dependencies: string[]; registeredInApply?: string }>();
  const configReads = new Set<string>();
  const constructedAt = new Map<string, string>();
  const calls: RecordedCall[] = [];
  let seq = 0;
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const id = `${args.name}-id`;
        const key = `${args.type}::${args.name}`;
        const meta = pending.get(key) ?? { parent: '', dependencies: [] };
        resources.push({ type: args.type, name: args.name, urn: '', id, inputs: args.inputs, ...meta });
        return { id, state: { ...args.inputs, ...computed(args.type, args.name, args.inputs, seq++) } };
      },
      call(args) {
        if (args.token === 'aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings') {
          // the provider reference is `<urn>::<id>`; the aws target names its providers aws-<region>
          const region = /::aws-([a-z0-9-]+)::/.exec(`${args.provider ?? ''}::`)?.[1] ?? 'eu-west-1';
          const types = (args.inputs.filters ?? []).find((f: { name: string }) => f.name === 'instance-type')?.values ?? [];
          calls.push({ token: args.token, region, inputs: args.inputs });
          return { id: region, ...instanceTypeOfferings(region, types) };
        }
        return {};
      },
    },
    PROJECT,
    'test',
    false,
  );
  // Parents and dependencies are not passed to mocks; read them off the requests.
  const monitor = pulumi.runtime.getMonitor() as any;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req: any, callback: any) => {
    // The registration was started inside an apply callback: the async context carries it here.
    const applySite = insideApply.getStore();
    const registeredAt = constructedAt.get(`${req.getType()}::${req.getName()}`) ?? 'an unknown place';
    pending.set(`${req.getType()}::${req.getName()}`, {
      parent: req.getParent(),
      dependencies: req.getDependenciesList(),
      ...(applySite ? { registeredInApply: `registered at ${registeredAt}, inside the apply called at ${applySite}` } : {}),
    });
    return register(req, (err: unknown, response: any) => {
      const recorded = resources.find((r) => r.type === req.getType() && r.name === req.getName() && r.urn === '');
      if (recorded && response) recorded.urn = response.getUrn();
      callback(err, response);
    });
  };
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(config).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])),
    secretKeys,
  );
  // Registrations finish asynchronously: wait until no more arrive, also when the
  // program failed half-way, so nothing of this run outlives it (or its test file).
  const settle = async () => {
    let last = -1;
    for (let stable = 0; stable < 5; ) {
      await new Promise((r) => setTimeout(r, 20));
      stable = resources.length === last ? stable + 1 : 0;
      last = resources.length;
    }
  };
  const untrack = [trackApplyCallbacks(constructedAt), trackConfigReads(configReads)];
  let result: T;
  try {
    result = program();
    await settle();
  } catch (err) {
    await settle();
    throw err;
  } finally {
    untrack.forEach((undo) => undo());
  }
  const ofType = (type: string) => resources.filter((r) => r.type === type);
  return {
    result,
    resources,
    configReads: [...configReads],
    calls,
    ofType,
    named(name, type) {
      const found = resources.filter((r) => r.name === name && (!type || r.type === type));
      if (found.length !== 1) throw new Error(`expected one resource named ${name}${type ? ` of ${type}` : ''}, found ${found.length}`);
      return found[0];
    },
  };
}

/** An output as `pulumi stack output` would have it: whether it is known, and its value. */
export interface ResolvedOutput {
  known: boolean;
  value: unknown;
}

/** Resolves every Output of a program's result (the stack outputs), known or not. */
export async function resolveOutputs(result: object): Promise<Record<string, ResolvedOutput>> {
  const out: Record<string, ResolvedOutput> = {};
  for (const [key, o] of Object.entries(result)) {
    if (!pulumi.Output.isInstance(o)) {
      out[key] = { known: true, value: o };
      continue;
    }
    // isKnown and promise(withUnknowns) are what the runtime itself reads when it exports a stack output.
    const internal = o as unknown as { isKnown: Promise<boolean>; promise(withUnknowns?: boolean): Promise<unknown> };
    const [known, value] = await Promise.all([internal.isKnown, internal.promise(true)]);
    out[key] = { known, value: plain(value) };
  }
  return out;
}

/** The value of an Output (secret or not). */
export function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

/** Pulumi's wire marker for a secret value. */
const SECRET_SIG = '4dabf18193072939515e22adb298388d';

export function isSecret(v: unknown): boolean {
  return typeof v === 'object' && v !== null && (v as Record<string, unknown>)[SECRET_SIG] !== undefined;
}

/** The value with every secret marker removed, for assertions on content. */
export function plain<T = any>(v: unknown): T {
  if (isSecret(v)) return plain((v as { value: unknown }).value);
  if (Array.isArray(v)) return v.map(plain) as T;
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)])) as T;
  return v as T;
}

/** Every secret value anywhere inside `v`, unwrapped. */
export function secretsIn(v: unknown): unknown[] {
  if (isSecret(v)) return [plain(v)];
  if (Array.isArray(v)) return v.flatMap(secretsIn);
  if (typeof v === 'object' && v !== null) return Object.values(v).flatMap(secretsIn);
  return [];
}
