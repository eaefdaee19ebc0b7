/** `cdn local up`: build the spec from flags, start the stack, print the URLs. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cdnError } from '../../infra/model/errors';
import { up, type StackState } from '../../infra/targets/native/stack';
import { isAlive } from '../../infra/targets/native/supervisor';
import { parseSpec, type CdnSpecInput } from '../../infra/model/spec';

export interface LocalUpFlags {
  stateDir: string;
  detach?: boolean;
  regions?: string;
  edgesPerRegion?: string;
  port?: string;
  spec?: string;
  prometheus?: boolean;
  regionalReplicas?: boolean;
  /** Repeated: "URL" (catch-all), "host=URL" or "/prefix/=URL". */
  origin?: string[];
}

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

function intFlag(name: string, value: string | undefined, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw cdnError('CDN_ERR_FLAG_INVALID', `--${name} expects a whole number from ${min} to ${max}, got "${value}"`);
  }
  return Number(value);
}

/** Flags override a spec file, which overrides the defaults. */
export function specFromFlags(flags: LocalUpFlags) {
  let input: CdnSpecInput = {};
  if (flags.spec) {
    try {
      input = JSON.parse(fs.readFileSync(flags.spec, 'utf8')) as CdnSpecInput;
    } catch (err) {
      throw cdnError('CDN_ERR_FLAG_INVALID', `--spec ${flags.spec}: ${(err as Error).message}`);
    }
  }
  const edges = intFlag('edges-per-region', flags.edgesPerRegion, 1, 64);
  if (flags.regions !== undefined || edges !== undefined) {
    const names = flags.regions !== undefined ? flags.regions.split(',').map((s) => s.trim()) : (input.regions ?? [{ name: 'eu' }, { name: 'us' }]).map((r) => r.name);
    input = { ...input, regions: names.map((name) => ({ name, edges: edges ?? 2 })) };
  }
  if (flags.origin && flags.origin.length > 0) {
    input = { ...input, origins: [...(input.origins ?? []), ...flags.origin.map(originFlag)] };
  }
  return parseSpec(input);
}

/** `--origin URL` is the catch-all; `--origin host=URL` and `--origin /prefix/=URL` map one. */
export function originFlag(value: string): { match: string; url: string } {
  if (/^https?:\/\//.test(value)) return { match: '*', url: value };
  const eq = value.indexOf('=');
  if (eq <= 0) throw cdnError('CDN_ERR_FLAG_INVALID', `--origin expects URL, host=URL or /prefix/=URL, got "${value}"`);
  return { match: value.slice(0, eq), url: value.slice(eq + 1) };
}

export function printUrls(state: StackState, out: (s: string) => void): void {
  out('\nThe CDN is up:');
  out(`  balancer     ${state.balancer}   <- shoppers and storefronts use this`);
  out(`  origin API   ${state.origin}   (PUT /v1/assets/{key}, POST /v1/purge)`);
  for (const e of state.edges) out(`  edge ${e.id.padEnd(7)} ${e.url}   (region ${e.region})`);
  out(`  redis        ${state.redis}`);
  out(`  prometheus   ${state.prometheus ?? '(not started: --no-prometheus, or not installed; ./scripts/setup.sh installs it)'}`);
  out(`  admin token  ${state.adminTokenFile}`);
  out(`\nTry: curl -X PUT -H "Authorization: Bearer $(cat ${state.adminTokenFile})" -H 'Content-Type: text/plain' --data 'hello' ${state.origin}/v1/assets/hello.txt`);
  out(`     curl -i ${state.balancer}/hello.txt`);
}

export class LocalUpAction {
  async handle(flags: LocalUpFlags): Promise<void> {
    const spec = specFromFlags(flags);
    const out = (s: string) => process.stdout.write(s + '\n');
    out(`Starting the CDN in ${path.resolve(flags.stateDir)} ...`);
    const started = Date.now();
    const result = await up({
      spec,
      stateDir: flags.stateDir,
      repoRoot: REPO_ROOT,
      balancerPort: intFlag('port', flags.port, 1, 65535),
      prometheus: flags.prometheus,
      regionalReplicas: !!flags.regionalReplicas,
      detached: !!flags.detach,
      log: out,
    });
    printUrls(result.state, out);
    out(`\nHealthy in ${((Date.now() - started) / 1000).toFixed(1)}s.`);
    if (flags.detach) {
      out(`Detached. Stop it with: npx cdn local down --state-dir ${flags.stateDir}`);
      return;
    }
    out('Press Ctrl-C to stop.');
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        clearInterval(watch);
        out(`\n${signal}: stopping ...`);
        await result.stop();
        out('Stopped.');
        resolve();
      };
      // The children are detached and unref'd, so this interval is what keeps the
      // CLI alive in the foreground; it also reports services that die.
      const reported = new Set<string>();
      const watch = setInterval(() => {
        for (const svc of result.services) {
          if (!reported.has(svc.unit.name) && !isAlive(svc.pid)) {
            reported.add(svc.unit.name);
            process.stderr.write(`cdn: warning: ${svc.unit.name} stopped; see ${svc.log}\n`);
          }
        }
      }, 1000);
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
      process.once('SIGHUP', () => void stop('SIGHUP'));
    });
  }
}
