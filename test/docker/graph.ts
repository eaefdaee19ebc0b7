/**
 * What `pulumi up -s local` would create, read from the program's own resource graph:
 * `stacks/program.ts` runs under Pulumi's mocks (test/support/pulumi-mocks.ts) with the
 * stack's config, and every `docker:*` resource is taken with its inputs. The runner
 * creates exactly these, so the docker target is described once, in the target.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { program } from '../../stacks/program';
import { plain, runProgram, type RecordedResource } from '../support/pulumi-mocks';

export const TYPES = {
  container: 'docker:index/container:Container',
  volume: 'docker:index/volume:Volume',
  network: 'docker:index/network:Network',
  image: 'docker:index/image:Image',
  remoteImage: 'docker:index/remoteImage:RemoteImage',
} as const;

/** One resource of the graph: its Pulumi name, its inputs with secrets unwrapped, what it depends on. */
export interface GraphResource {
  name: string;
  urn: string;
  inputs: Record<string, any>;
  /** Names of the containers it must wait for (dependsOn), in the graph's order. */
  after: string[];
}

export interface DockerGraph {
  config: Record<string, unknown>;
  networks: GraphResource[];
  volumes: GraphResource[];
  /** Images built from this repository's Dockerfiles. */
  builds: GraphResource[];
  /** Third-party images the target pulls (`docker:index/remoteImage:RemoteImage`). */
  pulls: GraphResource[];
  /** Containers in the order the program declares them (dependencies first). */
  containers: GraphResource[];
  /** Containers whose image is one of `pulls`, by container name. */
  pulledImageOf: Map<string, string>;
  /** The stack's outputs (balancerUrl, originApiUrl, edges, prometheusUrl, adminToken: the mocks' generated secret). */
  outputs: Record<string, unknown>;
}

/** The `config:` map of a Pulumi.<stack>.yaml. */
export function stackConfigFile(file: string): Record<string, unknown> {
  const doc = parseYaml(fs.readFileSync(file, 'utf8')) as { config?: Record<string, unknown> };
  return { ...(doc.config ?? {}) };
}

/**
 * The stack's config as this run uses it: Pulumi.<stack>.yaml, with filesystem storage
 * (no MinIO image can be had here), the base images made here as `cdn:images`, and a
 * balancer port that is free on this machine.
 */
export function runConfig(stackFile: string, images: { debian: string; node: string }, balancerPort: number): Record<string, unknown> {
  const config = stackConfigFile(stackFile);
  const spec = (config['cdn:spec'] ?? {}) as Record<string, unknown>;
  return {
    ...config,
    'cdn:spec': { ...spec, storage: { kind: 'filesystem' } },
    'cdn:images': { ...((config['cdn:images'] as object) ?? {}), ...images },
    'cdn:docker': { ...((config['cdn:docker'] as object) ?? {}), balancerPort },
  };
}

function valueOf<T>(o: unknown): Promise<T> {
  return new Promise((resolve) => (o as { apply: (f: (v: T) => void) => unknown }).apply((v) => resolve(v)));
}

/** Runs the program with `config` and returns its docker resources. */
export async function dockerGraph(config: Record<string, unknown>): Promise<DockerGraph> {
  const run = await runProgram(config, program);
  const byUrn = new Map(run.resources.map((r) => [r.urn, r]));
  const containers = run.ofType(TYPES.container);
  const take = (r: RecordedResource): GraphResource => ({
    name: r.name,
    urn: r.urn,
    inputs: plain(r.inputs),
    after: r.dependencies.map((u) => byUrn.get(u)).filter((d): d is RecordedResource => d?.type === TYPES.container).map((d) => d.name),
  });
  const pulledImageOf = new Map<string, string>();
  for (const c of containers) {
    const pulled = c.dependencies.map((u) => byUrn.get(u)).find((d) => d?.type === TYPES.remoteImage);
    if (pulled) pulledImageOf.set(c.name, plain(pulled.inputs).name);
  }
  const out = run.result as unknown as Record<string, unknown>;
  const outputs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(out)) outputs[k] = plain(await valueOf(v));
  return {
    config,
    networks: run.ofType(TYPES.network).map(take),
    volumes: run.ofType(TYPES.volume).map(take),
    builds: run.ofType(TYPES.image).map(take),
    pulls: run.ofType(TYPES.remoteImage).map(take),
    containers: containers.map(take),
    pulledImageOf,
    outputs,
  };
}

export const REPO_ROOT = path.resolve(__dirname, '..', '..', ...(path.basename(path.resolve(__dirname, '..', '..')) === 'dist' ? ['..'] : []));
