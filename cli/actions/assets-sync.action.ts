/** `cdn assets sync SOURCE --prefix P`: upload a catalogue (a directory or an S3 prefix) to the origin, by sha256. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SingleBar } from 'cli-progress';
import { cdnError } from '../../infra/model/errors';
import { status } from '../../infra/targets/native/stack';
import { checkAssetKey } from '../../origin/contract/asset-key';
import { checkTag, MAX_TAGS_PER_ASSET } from '../../origin/src/common/surrogate-keys';
import { AssetApi } from '../sync/asset-api';
import { LocalSource, parseS3Url, S3Source, type Source } from '../sync/sources';
import { syncAssets, type SyncEvent, type SyncSummary } from '../sync/sync';

export interface AssetsSyncFlags {
  prefix: string;
  tags?: string;
  cacheControl?: string;
  concurrency?: string;
  dryRun?: boolean;
  delete?: boolean;
  json?: boolean;
  origin?: string;
  tokenFile?: string;
  stateDir?: string;
  s3Endpoint?: string;
}

/** The same default as `cdn local`. */
export const DEFAULT_STATE_DIR = '.cdn';
export const DEFAULT_CONCURRENCY = 8;
const MAX_CONCURRENCY = 64;
const MAX_HEADER_VALUE = 1024;

const flagError = (detail: string) => cdnError('CDN_ERR_FLAG_INVALID', detail);

/** `--prefix products` and `--prefix products/` both mean the "directory" products/. */
export function parsePrefix(value: string): string {
  const trimmed = value.replace(/\/+$/, '');
  const check = checkAssetKey(trimmed);
  if (!check.ok) throw flagError(`--prefix "${value}" is not a key prefix: ${check.reason}`);
  return `${trimmed}/`;
}

export function parseTags(value: string | undefined): string[] {
  if (value === undefined) return [];
  const tags = [...new Set(value.split(',').map((t) => t.trim()).filter((t) => t !== ''))];
  for (const tag of tags) {
    const reason = checkTag(tag);
    if (reason !== undefined) throw flagError(`--tags: ${reason} (${JSON.stringify(tag)})`);
  }
  if (tags.length > MAX_TAGS_PER_ASSET) throw flagError(`--tags: at most ${MAX_TAGS_PER_ASSET} tags, got ${tags.length}`);
  return tags;
}

function parseCacheControl(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === '' || trimmed.length > MAX_HEADER_VALUE || !/^[\x20-\x7e]*$/.test(trimmed)) {
    throw flagError(`--cache-control must be printable ASCII, 1 to ${MAX_HEADER_VALUE} characters (e.g. "public, max-age=3600")`);
  }
  return trimmed;
}

function parseConcurrency(value: string | undefined): number {
  if (value === undefined) return DEFAULT_CONCURRENCY;
  if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > MAX_CONCURRENCY) {
    throw flagError(`--concurrency expects a whole number from 1 to ${MAX_CONCURRENCY}, got "${value}"`);
  }
  return Number(value);
}

function readToken(file: string, flag: string): string {
  let token: string;
  try {
    token = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw flagError(`${flag} ${file}: ${(err as Error).message}`);
  }
  if (token === '') throw flagError(`${flag} ${file} is empty`);
  return token;
}

/** Where to upload: --origin with a token, or the native stack running in a state directory. */
export function resolveTarget(flags: AssetsSyncFlags, env: NodeJS.ProcessEnv): { origin: string; token: string } {
  if (flags.origin !== undefined) {
    if (flags.stateDir !== undefined) throw flagError('--origin and --state-dir exclude each other');
    let url: URL;
    try {
      url = new URL(flags.origin);
    } catch {
      throw flagError(`--origin expects an http:// or https:// URL, got "${flags.origin}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw flagError(`--origin expects an http:// or https:// URL, got "${flags.origin}"`);
    if (flags.tokenFile !== undefined) return { origin: flags.origin, token: readToken(flags.tokenFile, '--token-file') };
    const token = env.CDN_TOKEN?.trim();
    if (!token) throw flagError('--origin needs an API token with the upload scope: --token-file FILE, or CDN_TOKEN in the environment');
    return { origin: flags.origin, token };
  }
  const stateDir = flags.stateDir ?? DEFAULT_STATE_DIR;
  const state = status(stateDir);
  const origin = state.services.find((s) => s.role === 'origin');
  if (origin !== undefined && !origin.running) {
    throw cdnError('CDN_ERR_STACK_NOT_RUNNING', `the origin of the stack in ${path.resolve(stateDir)} is not running (see ${origin.log})`);
  }
  return {
    origin: state.origin,
    token: flags.tokenFile !== undefined ? readToken(flags.tokenFile, '--token-file') : readToken(state.adminTokenFile, 'the admin token file'),
  };
}

/** SOURCE: a directory, or s3://bucket/prefix with keys and endpoint from the environment. */
export function resolveSource(value: string, flags: AssetsSyncFlags, env: NodeJS.ProcessEnv): Source {
  if (/^s3:\/\//i.test(value)) {
    const location = parseS3Url(value);
    if (location === null) throw flagError(`SOURCE "${value}" is not of the form s3://bucket/prefix`);
    const endpoint = flags.s3Endpoint ?? env.AWS_ENDPOINT_URL;
    const missing = [
      env.AWS_ACCESS_KEY_ID ? null : 'AWS_ACCESS_KEY_ID',
      env.AWS_SECRET_ACCESS_KEY ? null : 'AWS_SECRET_ACCESS_KEY',
      endpoint ? null : 'AWS_ENDPOINT_URL (or --s3-endpoint)',
    ].filter((m): m is string => m !== null);
    if (missing.length > 0) {
      throw cdnError('CDN_ERR_CONFIG_INVALID', `reading ${value} needs AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL (or --s3-endpoint) in the environment; not set: ${missing.join(', ')}`);
    }
    let url: URL | null = null;
    try {
      url = new URL(endpoint!);
    } catch {
      url = null;
    }
    if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw flagError(`the S3 endpoint must be an http:// or https:// URL, got "${endpoint}"`);
    }
    return new S3Source(location, {
      endpoint: endpoint!,
      region: env.AWS_REGION || 'us-east-1',
      accessKey: env.AWS_ACCESS_KEY_ID!,
      secretKey: env.AWS_SECRET_ACCESS_KEY!,
      sessionToken: env.AWS_SESSION_TOKEN || undefined,
    });
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(value);
  } catch (err) {
    throw flagError(`SOURCE ${value}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
  }
  if (!stat.isDirectory()) throw flagError(`SOURCE ${value} is not a directory (or an s3://bucket/prefix URL)`);
  return new LocalSource(value);
}

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

export function summaryLine(s: SyncSummary): string {
  const seconds = (s.durationMs / 1000).toFixed(1);
  if (s.dryRun) {
    return `Dry run, nothing was changed: would upload ${s.uploaded}, ${s.unchanged} unchanged, would delete ${s.deleted}, ${s.failed} failed (${s.source} -> ${s.origin} ${s.prefix}, ${seconds} s).`;
  }
  return `Synced ${s.source} -> ${s.origin} ${s.prefix} in ${seconds} s: ${s.uploaded} uploaded (${humanBytes(s.bytesUploaded)}), ${s.unchanged} unchanged, ${s.deleted} deleted, ${s.failed} failed.`;
}

export class AssetsSyncAction {
  async handle(sourceArg: string, flags: AssetsSyncFlags): Promise<void> {
    const env = process.env;
    const prefix = parsePrefix(flags.prefix);
    const tags = parseTags(flags.tags);
    const cacheControl = parseCacheControl(flags.cacheControl);
    const concurrency = parseConcurrency(flags.concurrency);
    const target = resolveTarget(flags, env);
    const source = resolveSource(sourceArg, flags, env);
    const api = new AssetApi(target.origin, target.token, { maxSockets: concurrency });

    const out = (line: string) => process.stdout.write(line + '\n');
    const dryRun = !!flags.dryRun;
    const bar = !flags.json && process.stderr.isTTY
      ? new SingleBar({
          format: '{bar} {percentage}% | {value}/{total} | {uploaded} ' + (dryRun ? 'to upload' : 'uploaded') + ', {unchanged} unchanged, {failed} failed | ETA {eta_formatted}',
          hideCursor: true,
          clearOnComplete: true,
          etaBuffer: 50,
          stream: process.stderr,
        })
      : null;
    const lines = !flags.json && bar === null;
    const counts = { uploaded: 0, unchanged: 0, failed: 0 };
    let total = 0;
    let done = 0;

    const onEvent = (e: SyncEvent) => {
      switch (e.kind) {
        case 'listed':
          total = e.files;
          bar?.start(total, 0, counts);
          return;
        case 'deleting':
          total += e.count;
          bar?.setTotal(total);
          return;
        case 'uploaded':
          counts.uploaded++;
          if (lines) out(`${dryRun ? 'would upload' : 'uploaded'} ${e.key} (${e.reason})`);
          break;
        case 'unchanged':
          counts.unchanged++;
          break;
        case 'deleted':
          if (lines) out(`${dryRun ? 'would delete' : 'deleted'} ${e.key}`);
          break;
        case 'failed':
          counts.failed++;
          break;
      }
      done++;
      bar?.update(done, counts);
    };

    // An interrupt loses nothing: every PUT the origin finished is a whole asset, the
    // rest never became visible, and the next run compares against what is there.
    const interrupted = (signal: NodeJS.Signals, code: number) => () => {
      bar?.stop();
      source.closeSync();
      process.stderr.write(
        dryRun
          ? `cdn: ${signal}: stopped; a dry run changes nothing.\n`
          : `cdn: ${signal}: stopped after ${counts.uploaded} uploads; the origin has only whole assets. Run the same command again to finish the sync.\n`,
      );
      process.exit(code);
    };
    const onSigint = interrupted('SIGINT', 130);
    const onSigterm = interrupted('SIGTERM', 143);
    process.once('SIGINT', onSigint);
    process.once('SIGTERM', onSigterm);

    let summary: SyncSummary;
    try {
      summary = await syncAssets({ source, api, prefix, tags, cacheControl, concurrency, dryRun, delete: !!flags.delete }, onEvent);
    } finally {
      bar?.stop();
      process.removeListener('SIGINT', onSigint);
      process.removeListener('SIGTERM', onSigterm);
      source.closeSync();
      api.close();
    }

    if (flags.json) {
      out(JSON.stringify(summary, null, 2));
    } else {
      if (bar !== null && dryRun) {
        for (const u of summary.uploads) out(`would upload ${u.key} (${u.reason})`);
        for (const key of summary.deletions) out(`would delete ${key}`);
      }
      out(summaryLine(summary));
      if (summary.failures.length > 0) {
        process.stderr.write(`${summary.failed} failed:\n`);
        for (const f of summary.failures) {
          const key = f.key !== null && f.key !== f.file ? ` (${f.key})` : '';
          process.stderr.write(`  ${f.file}${key}: ${f.reason}\n`);
        }
      }
    }
    if (summary.failed > 0) {
      const tried = summary.uploaded + summary.unchanged + summary.deleted + summary.failed;
      throw cdnError('CDN_ERR_SYNC_FAILED', `${summary.failed} of ${tried} failed${flags.json ? ' (see "failures")' : ' (listed above)'}; the rest is synced, and a rerun retries only what is missing`);
    }
  }
}
