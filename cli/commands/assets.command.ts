/** `cdn assets ...`: declarative wiring only; behaviour lives in the actions. */
import type { Command } from 'commander';
import { AssetsSyncAction, DEFAULT_CONCURRENCY, DEFAULT_STATE_DIR } from '../actions/assets-sync.action';

export function loadAssetsCommand(program: Command): void {
  const assets = program.command('assets').description("Manage an origin's assets through its API");

  assets
    .command('sync')
    .description(
      'Upload a catalogue to the origin: only new or changed files (compared by sha256 with what the origin lists under --prefix); ' +
        'safe to interrupt and rerun',
    )
    .argument('<source>', 'a local directory, or s3://bucket/prefix (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION)')
    .requiredOption('--prefix <prefix>', 'key prefix the files go under, e.g. products/ (a file a/b.jpg becomes products/a/b.jpg)')
    .option('--tags <tags>', 'comma-separated surrogate keys (tags) for every uploaded asset')
    .option('--cache-control <value>', "Cache-Control stored with every uploaded asset (default: the origin's per-type policy)")
    .option('--concurrency <n>', `files hashed and uploaded at a time (default ${DEFAULT_CONCURRENCY})`)
    .option('--dry-run', 'change nothing; report what would be uploaded and deleted')
    .option('--delete', 'delete assets under --prefix that the source does not have')
    .option('--json', 'print one JSON summary on stdout (no progress bar)')
    .option('--origin <url>', 'the origin API to upload to (with --token-file or CDN_TOKEN) instead of a local stack')
    .option('--token-file <file>', 'file holding an API token with the upload scope')
    .option('--state-dir <dir>', `upload to the native stack running in this state directory (default ${DEFAULT_STATE_DIR})`)
    .option('--s3-endpoint <url>', 'S3 endpoint for an s3:// SOURCE (default: AWS_ENDPOINT_URL)')
    .action(async (source: string, flags) => new AssetsSyncAction().handle(source, flags));
}
