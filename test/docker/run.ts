/**
 * `npm run test:docker`: the local Docker stack (`pulumi up -s local`, the docker
 * target) run for real, without the Pulumi CLI and without a registry:
 *
 *   1. the machine: Debian's docker.io and debootstrap (scripts/setup.sh --docker),
 *      a Docker engine (a dockerd started here when none runs, stopped at the end)
 *   2. the base images made here (debootstrap; Node and npm from the npm registry),
 *      kept between runs under a tag that hashes what they are made from
 *   3. the program (stacks/program.ts) run under Pulumi's mocks with Pulumi.local.yaml,
 *      filesystem storage, the bases as `cdn:images` and a free balancer port; its
 *      docker resources are what this run creates, input for input (graph.ts,
 *      containers.ts). Containers whose image must be pulled from a registry
 *      (Grafana, Loki, Alloy) are left out: no registry is reachable here
 *   4. every image built from the project's Dockerfiles (the engine's layer cache
 *      keeps warm runs short), the network, volumes and containers created and
 *      started in dependency order, each waited on until its health check passes
 *   5. the shop's path checked end to end (checks.ts)
 *   6. everything labelled cdn.test=docker-run removed, also after a failure (and
 *      an interrupted run's leftovers at the start); the images stay as the cache.
 *      CDN_DOCKER_KEEP=1 leaves the stack (and a dockerd started here) up for a look
 *
 * Prints what it built and ran and each check's figures, then `docker: N passed, N failed`.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type Docker from 'dockerode';
import { CACHE_LABEL, debianBase, forgetOtherBases, nodeBase, type BaseImage } from './bases';
import * as checks from './checks';
import { buildInputs, createOptions, networkOptions, uploadArchive, volumeOptions } from './containers';
import { connectEngine, ensurePackages, follow, imageId, removeLabelled, takeLock, type Engine } from './engine';
import { NGINX_ERROR_LOG } from '../../infra/render/nginx';
import { runsNginx, type Role } from '../../infra/units/units';
import { dockerGraph, REPO_ROOT, runConfig, type GraphResource } from './graph';

const STACK = 'local';
/** The load of the kill check: bounded, to 127.0.0.1 only. */
const LOAD = { requests: 3000, concurrency: 8 };

const started = Date.now();
const clock = () => `${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s`;
const log = (line: string) => console.log(`[${clock()}] ${line}`);
const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12);

interface Outcome {
  name: string;
  ok: boolean;
  detail: string;
  seconds: number;
}
const outcomes: Outcome[] = [];
/** Set on SIGINT/SIGTERM: the cleanup runs, and what fails because of it is not reported. */
let interrupted = false;

async function check<T>(name: string, fn: () => Promise<T>, describe: (v: T) => string = String): Promise<T | undefined> {
  const t0 = Date.now();
  try {
    const v = await fn();
    const o = { name, ok: true, detail: describe(v), seconds: (Date.now() - t0) / 1000 };
    outcomes.push(o);
    log(`check ${name}: ok (${o.seconds.toFixed(1)} s)\n    ${o.detail}`);
    return v;
  } catch (err) {
    const o = { name, ok: false, detail: (err as Error).message, seconds: (Date.now() - t0) / 1000 };
    outcomes.push(o);
    if (!interrupted) log(`check ${name}: FAILED (${o.seconds.toFixed(1)} s)\n    ${o.detail}`);
    return undefined;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Removes an image the run no longer refers to; one still in use (a container, a child image) stays. */
async function removeUnused(docker: Docker, id: string): Promise<void> {
  try {
    await docker.getImage(id).remove();
  } catch (err) {
    if (![404, 409].includes((err as { statusCode?: number }).statusCode ?? 0)) throw err;
  }
}

/**
 * Builds one Image resource of the graph from the repository's Dockerfile, with the
 * engine's layer cache. The results of a multi-stage build's earlier stages (the
 * origin's npm ci and TypeScript build) are tagged `<tag>-stageN`: otherwise nothing
 * refers to them, and an image prune would throw the slowest cache away. An image a
 * tag moves away from is removed, so the cache holds one version of each.
 */
async function build(docker: Docker, img: GraphResource): Promise<{ name: string; id: string; seconds: number; steps: number; cached: number; unchanged: boolean }> {
  const b = buildInputs(img);
  const t0 = Date.now();
  const before = await imageId(docker, b.imageName);
  const src = fs.readdirSync(b.context);
  const stream = await docker.buildImage({ context: b.context, src }, {
    t: b.imageName,
    dockerfile: path.relative(b.context, b.dockerfile),
    buildargs: b.args,
    ...(b.platform ? { platform: b.platform } : {}),
    labels: { [CACHE_LABEL.key]: CACHE_LABEL.value },
    rm: true,
    forcerm: true,
  });
  const lines: string[] = [];
  const stages: string[] = [];
  let steps = 0;
  let cached = 0;
  let froms = 0;
  let last: string | null = null;
  try {
    await follow(docker, stream, (e) => {
      if (typeof e.stream !== 'string') return;
      lines.push(e.stream);
      if (/^Step \d+\/\d+ :/.test(e.stream)) steps++;
      if (/^Step \d+\/\d+ : FROM /i.test(e.stream) && froms++ > 0 && last) stages.push(last);
      if (/Using cache/.test(e.stream)) cached++;
      const id = /^ ---> ([0-9a-f]{12})\s*$/.exec(e.stream)?.[1];
      if (id) last = id;
    });
  } catch (err) {
    throw new Error(`building ${b.imageName} from ${path.relative(b.context, b.dockerfile)}: ${(err as Error).message}\n${lines.join('').split('\n').slice(-25).join('\n')}`);
  }
  const id = await imageId(docker, b.imageName);
  if (!id) throw new Error(`building ${b.imageName} left no image`);
  const [repo, tag] = b.imageName.split(/:(?=[^:/]+$)/);
  for (const [i, stage] of stages.entries()) {
    const stageTag = `${tag ?? 'latest'}-stage${i + 1}`;
    const old = await imageId(docker, `${repo}:${stageTag}`);
    await docker.getImage(stage).tag({ repo, tag: stageTag });
    if (old && !old.startsWith(`sha256:${stage}`)) await removeUnused(docker, old);
  }
  if (before && before !== id) await removeUnused(docker, before);
  return { name: b.imageName, id, seconds: (Date.now() - t0) / 1000, steps, cached, unchanged: before === id };
}

/** At most `n` at once, in order. */
async function limited<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

async function tail(docker: Docker, name: string, lines = 30): Promise<string> {
  try {
    const buf = (await docker.getContainer(name).logs({ stdout: true, stderr: true, tail: lines })) as unknown as Buffer;
    // strip the 8-byte stream headers of the multiplexed log format
    const out: string[] = [];
    for (let i = 0; i + 8 <= buf.length; ) {
      const size = buf.readUInt32BE(i + 4);
      out.push(buf.subarray(i + 8, i + 8 + size).toString());
      i += 8 + size;
    }
    return out.join('').trimEnd();
  } catch (err) {
    return `(no logs: ${(err as Error).message})`;
  }
}

/** Waits until the container's health check passes (or, without one, until it runs). */
async function ready(docker: Docker, c: GraphResource): Promise<void> {
  const name = c.inputs.name as string;
  const limit = (c.inputs.waitTimeout ?? 60) * 1000;
  const t0 = Date.now();
  for (;;) {
    const s = (await docker.getContainer(name).inspect()).State;
    if (s.Status === 'exited' || s.Status === 'dead') throw new Error(`${name} exited (${s.ExitCode}) before it was healthy:\n${await tail(docker, name)}`);
    if (!c.inputs.wait || !c.inputs.healthcheck) {
      if (s.Running) return;
    } else if (s.Health?.Status === 'healthy') return;
    else if (s.Health?.Status === 'unhealthy') throw new Error(`${name} is unhealthy: ${s.Health.Log?.at(-1)?.Output ?? ''}\n${await tail(docker, name)}`);
    if (Date.now() - t0 > limit) throw new Error(`${name} not healthy after ${limit / 1000} s (waitTimeout): ${s.Health?.Log?.at(-1)?.Output ?? s.Status}\n${await tail(docker, name)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Started {
  name: string;
  address: string;
  image: string;
  imageId: string;
  files: number;
  healthySeconds: number;
}

/** Creates and starts the containers, each once the containers it depends on are healthy. */
async function startContainers(docker: Docker, included: GraphResource[]): Promise<Started[]> {
  const names = new Set(included.map((c) => c.name));
  const done = new Map<string, Promise<Started>>();
  const t0 = Date.now();
  for (const c of included) {
    const missing = c.after.filter((d) => !names.has(d));
    if (missing.length > 0) throw new Error(`${c.name} depends on ${missing.join(', ')}, which this run leaves out`);
    done.set(
      c.name,
      (async () => {
        await Promise.all(c.after.map((d) => done.get(d)!));
        const options = createOptions(c);
        const container = await docker.createContainer(options);
        const archive = uploadArchive(c);
        if (archive) await container.putArchive(archive.tar, { path: '/' });
        await container.start();
        await ready(docker, c);
        const info = await container.inspect();
        const s: Started = {
          name: options.name!,
          address: Object.values(info.NetworkSettings.Networks)[0]?.IPAddress ?? '',
          image: options.Image!,
          imageId: info.Image,
          files: archive?.files ?? 0,
          healthySeconds: (Date.now() - t0) / 1000,
        };
        log(`container ${s.name.padEnd(28)} ${s.address.padEnd(12)} ${s.image} (${short(s.imageId)}), ${s.files} files uploaded, ${c.inputs.healthcheck ? 'healthy' : 'running'} at +${s.healthySeconds.toFixed(1)} s`);
        return s;
      })(),
    );
  }
  const settled = await Promise.allSettled(done.values());
  const failed = settled.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  // a container's failure also fails those waiting on it: report each failure once
  if (failed.length > 0) throw new Error([...new Set(failed.map((f) => (f.reason as Error).message))].join('\n'));
  return settled.map((r) => (r as PromiseFulfilledResult<Started>).value);
}

/** Stops every container with its `destroyGraceSeconds` (SIGTERM, then SIGKILL), as `pulumi destroy` would; returns exit codes. */
async function stopContainers(docker: Docker, included: GraphResource[], killed: string | null): Promise<string> {
  const results = await Promise.all(
    [...included].reverse().map(async (c) => {
      const name = c.inputs.name as string;
      const t0 = Date.now();
      try {
        const container = docker.getContainer(name);
        const before = (await container.inspect()).State;
        if (before.Running) await container.stop({ t: c.inputs.destroyGraceSeconds ?? 10 });
        const s = (await container.inspect()).State;
        return { name, code: s.ExitCode, seconds: (Date.now() - t0) / 1000, wasRunning: before.Running };
      } catch (err) {
        return { name, code: -1, seconds: 0, wasRunning: false, error: (err as Error).message };
      }
    }),
  );
  // the killed edge may be down still (when it did not come back); every running one must exit 0
  const bad = results.filter((r) => (r.wasRunning ? r.code !== 0 : r.name !== killed));
  const figures = results.map((r) => `${r.name.replace(/^.*?-(?=[a-z]+(-[a-z]+-\d+)?$)/, '')} ${r.wasRunning ? `exit ${r.code} in ${r.seconds.toFixed(1)} s` : `already down (exit ${r.code})`}`).join(', ');
  if (bad.length > 0) {
    const logs = await Promise.all(bad.map(async (r) => `--- ${r.name}\n${await tail(docker, r.name, 15)}`));
    throw new Error(`${figures}\n  not stopped cleanly: ${bad.map((r) => r.name).join(', ')}\n${logs.join('\n')}`);
  }
  return figures;
}

async function main(): Promise<number> {
  log(`test:docker: the docker target (Pulumi.${STACK}.yaml) on this machine's Docker engine`);
  ensurePackages(REPO_ROOT, log);
  const release = takeLock();
  let engine: Engine | undefined;
  let tornDown = false;
  const teardown = async () => {
    if (tornDown || !engine) return;
    tornDown = true;
    if (process.env.CDN_DOCKER_KEEP === '1') {
      log('cleanup: skipped (CDN_DOCKER_KEEP=1): the stack stays for a look; the next run removes it');
      return;
    }
    const removed = await removeLabelled(engine.docker);
    log(`cleanup: removed ${removed.containers.length} containers, ${removed.networks.length} networks (${removed.networks.join(', ')}), ${removed.volumes.length} volumes; the images stay (the cache)`);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted = true;
    log(`${sig}: cleaning up`);
    void teardown()
      .then(() => engine?.release())
      .finally(() => {
        release();
        process.exit(130);
      });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    engine = await connectEngine(log);
    const { docker } = engine;
    log(`engine: Docker ${engine.version} (API ${engine.apiVersion})${engine.started ? `, dockerd pid ${engine.started.pid} started by test:docker` : ', already running (left running)'}`);
    const leftovers = await removeLabelled(docker);
    if (leftovers.containers.length + leftovers.networks.length + leftovers.volumes.length > 0) {
      log(`cleanup: an earlier run left ${leftovers.containers.join(' ') || 'no containers'}; networks ${leftovers.networks.join(' ') || 'none'}; ${leftovers.volumes.length} volumes: removed`);
    }

    // 2. bases
    const baseLine = (b: BaseImage) => log(`base ${b.role.padEnd(6)} ${b.tag} ${short(b.id)} ${b.made ? `made in ${b.seconds.toFixed(1)} s` : 'cached'}: ${b.what}`);
    const debian = await debianBase(docker, log);
    baseLine(debian);
    const node = await nodeBase(docker, debian, REPO_ROOT, log);
    baseLine(node);
    const forgotten = await forgetOtherBases(docker, [debian, node]);
    if (forgotten.length > 0) log(`base: untagged earlier bases ${forgotten.join(', ')}`);

    // 3. the graph
    const config = runConfig(path.join(REPO_ROOT, `Pulumi.${STACK}.yaml`), { debian: debian.tag, node: node.tag }, await freePort());
    const graph = await dockerGraph(config);
    const leftOut = graph.containers.filter((c) => graph.pulledImageOf.has(c.name));
    const included = graph.containers.filter((c) => !graph.pulledImageOf.has(c.name));
    log(
      `graph: ${graph.containers.length} containers, ${graph.volumes.length} volumes, ${graph.networks.length} network, ${graph.builds.length} images to build, ${graph.pulls.length} to pull ` +
        `(stacks/program.ts under mocks: Pulumi.${STACK}.yaml + storage filesystem, images debian/node, balancerPort ${(config['cdn:docker'] as { balancerPort: number }).balancerPort})`,
    );
    log(`left out (image from a registry this machine cannot reach): ${leftOut.map((c) => `${c.name} (${graph.pulledImageOf.get(c.name)})`).join(', ') || 'nothing'}`);

    // 4. images, network, volumes, containers
    const images = await limited(graph.builds, 2, async (img) => {
      const r = await build(docker, img);
      log(`image ${r.name.padEnd(32)} ${r.id} ${r.unchanged ? 'unchanged' : 'built'} in ${r.seconds.toFixed(1)} s (${r.cached} of ${r.steps} steps from the layer cache)`);
      return r;
    });
    for (const n of graph.networks) {
      const o = networkOptions(n);
      await docker.createNetwork(o);
      log(`network ${o.Name} ${(o.IPAM?.Config ?? []).map((c) => c.Subnet).join(' ')}`);
    }
    const usedVolumes = new Set(included.flatMap((c) => ((c.inputs.volumes ?? []) as { volumeName?: string }[]).map((v) => v.volumeName).filter(Boolean)));
    const volumes = graph.volumes.filter((v) => usedVolumes.has(v.inputs.name));
    for (const v of volumes) await docker.createVolume(volumeOptions(v));
    log(`volumes: ${volumes.map((v) => v.inputs.name).join(', ')}${volumes.length < graph.volumes.length ? ` (not the left-out containers' ${graph.volumes.length - volumes.length})` : ''}`);
    const t0 = Date.now();
    await check(
      'containers healthy',
      () => startContainers(docker, included),
      (s) => `${s.length} containers started in dependency order, all healthy ${((Date.now() - t0) / 1000).toFixed(1)} s after the first create; images ${images.map((i) => `${i.name} ${short(i.id)}`).join(', ')}`,
    );
    if (!outcomes.every((o) => o.ok)) throw new Error('the stack did not come up');

    // 5. the shop's path
    const outputs = graph.outputs as { balancerUrl: string; originApiUrl: string; prometheusUrl: string; edges: Record<string, string[]>; adminToken: string };
    const byAddress = new Map(included.map((c) => [(c.inputs.networksAdvanced as { ipv4Address: string }[])[0].ipv4Address, c]));
    const stack: checks.StackUnderTest = {
      docker,
      balancer: outputs.balancerUrl,
      origin: outputs.originApiUrl,
      prometheus: outputs.prometheusUrl,
      edges: Object.values(outputs.edges)
        .flat()
        .map((u) => {
          const c = byAddress.get(new URL(u).hostname)!;
          return { id: (c.inputs.hostname as string).replace(/^edge-/, ''), url: u, container: c.inputs.name as string };
        }),
      adminToken: outputs.adminToken,
      killed: null,
      outages: [],
    };
    log(`stack: balancer ${stack.balancer}, origin API ${stack.origin}, Prometheus ${stack.prometheus}, edges ${stack.edges.map((e) => `${e.id} ${e.url}`).join(', ')}`);
    await check('upload through the origin API', () => checks.upload(stack));
    await check('miss then hit through the balancer', () => checks.missThenHit(stack));
    await check('the origin API and everything internal unreachable from outside', () => checks.internalNotPublic(stack));
    await check('overwrite seen on every edge', () => checks.overwrite(stack));
    await check('tag purge seen on every edge', () => checks.tagPurge(stack));
    await check('Prometheus: every target up', () => checks.prometheusTargets(stack));
    await check('edge killed under load: no failed request', () => checks.killUnderLoad(stack, LOAD));
    await check('the killed edge comes back', () => checks.restartKilledEdge(stack));
    await check('a crashed edge is restarted by its restart policy', () => checks.crashedEdgeRestarts(stack));
    await check('every container stops on SIGTERM within its grace, exit 0', () => stopContainers(docker, included, stack.killed));
    const nginxLogs = included
      .filter((c) => runsNginx(((c.inputs.labels ?? []) as { label: string; value: string }[]).find((l) => l.label === 'cdn.role')?.value as Role))
      .map((c) => ({ container: c.inputs.name as string, file: path.posix.join(c.inputs.workingDir as string, NGINX_ERROR_LOG) }));
    await check("nginx's error logs: nothing unexpected", () => checks.nginxErrorLogs(stack, nginxLogs));
  } catch (err) {
    outcomes.push({ name: 'run', ok: false, detail: (err as Error).stack ?? String(err), seconds: 0 });
    if (!interrupted) log(`run: FAILED\n${(err as Error).stack ?? err}`);
  } finally {
    try {
      await teardown();
    } catch (err) {
      outcomes.push({ name: 'cleanup', ok: false, detail: (err as Error).message, seconds: 0 });
      log(`cleanup: FAILED ${(err as Error).message}`);
    }
    if (process.env.CDN_DOCKER_KEEP === '1') {
      if (engine?.started) log(`engine: the dockerd this run started (pid ${engine.started.pid}) stays up (CDN_DOCKER_KEEP=1)`);
    } else {
      await engine?.release();
    }
    release();
  }
  const failed = outcomes.filter((o) => !o.ok);
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  for (const o of failed) console.log(`FAILED ${o.name}: ${o.detail.split('\n')[0]}`);
  console.log(`docker: ${outcomes.length - failed.length} passed, ${failed.length} failed`);
  return failed.length === 0 ? 0 : 1;
}

void main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`test:docker: ${(err as Error).stack ?? err}`);
    console.log('docker: 0 passed, 1 failed');
    process.exit(1);
  },
);
