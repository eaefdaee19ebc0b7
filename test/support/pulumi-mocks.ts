/**
 * Runs a Pulumi program under `pulumi.runtime.setMocks` and records every resource
 * it registers: type, name, inputs (secrets unwrapped), parent and dependencies.
 * Each call installs fresh mocks and config, so runs (and test files) share no
 * runtime state; jest also gives every test file its own module registry.
 */
import * as pulumi from '@pulumi/pulumi';

export interface RecordedResource {
  type: string;
  name: string;
  urn: string;
  id: string;
  inputs: Record<string, any>;
  parent: string;
  dependencies: string[];
}

export interface ProgramRun<T> {
  result: T;
  resources: RecordedResource[];
  ofType(type: string): RecordedResource[];
  named(name: string, type?: string): RecordedResource;
}

/** The value the mocks give a RandomPassword of this name. */
export function generatedSecret(resourceName: string): string {
  return `generated${resourceName.replace(/[^A-Za-z0-9]/g, '')}0123456789`;
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
      return { availabilityZone: 'zone-a' };
    case 'docker:index/remoteImage:RemoteImage':
      return { imageId: `sha256:${name}` };
    default:
      return {};
  }
}

export async function runProgram<T>(config: Record<string, unknown>, program: () => T, secretKeys: string[] = []): Promise<ProgramRun<T>> {
  const resources: RecordedResource[] = [];
  const pending = new Map<string, { parent: string; dependencies: string[] }>();
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
        if (args.token === 'aws:ec2/getAmi:getAmi') return { id: 'ami-debian12', name: 'debian-12-amd64-20250101' };
        return {};
      },
    },
    'shop-cdn',
    'test',
    false,
  );
  // Parents and dependencies are not passed to mocks; read them off the requests.
  const monitor = pulumi.runtime.getMonitor() as any;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req: any, callback: any) => {
    pending.set(`${req.getType()}::${req.getName()}`, { parent: req.getParent(), dependencies: req.getDependenciesList() });
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
  let result: T;
  try {
    result = program();
  } catch (err) {
    await settle();
    throw err;
  }
  await settle();
  const ofType = (type: string) => resources.filter((r) => r.type === type);
  return {
    result,
    resources,
    ofType,
    named(name, type) {
      const found = resources.filter((r) => r.name === name && (!type || r.type === type));
      if (found.length !== 1) throw new Error(`expected one resource named ${name}${type ? ` of ${type}` : ''}, found ${found.length}`);
      return found[0];
    },
  };
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
