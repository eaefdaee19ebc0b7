/** `cdn local ...`: declarative wiring only; behaviour lives in the actions. */
import type { Command } from 'commander';
import { LocalDownAction } from '../actions/local-down.action';
import { LocalStatusAction } from '../actions/local-status.action';
import { LocalUpAction } from '../actions/local-up.action';

const STATE_DIR_HELP = 'directory for rendered files, logs, cache and state';
const DEFAULT_STATE_DIR = '.cdn';

export function loadLocalCommand(program: Command): void {
  const local = program.command('local').description('Run the whole CDN on this machine (no Docker needed)');

  local
    .command('up')
    .description('Start Redis, the origin, the edges, the balancer and Prometheus on 127.0.0.1')
    .option('--state-dir <dir>', STATE_DIR_HELP, DEFAULT_STATE_DIR)
    .option('-d, --detach', 'return once every service is healthy')
    .option('--regions <names>', 'comma-separated region names (default eu,us)')
    .option('--edges-per-region <n>', 'edges in each region (default 2)')
    .option('--port <port>', 'balancer port (default 8080, or a free one if 8080 is taken)')
    .option('--spec <file>', 'a JSON CdnSpec file (flags override it)')
    .option('--no-prometheus', 'do not start Prometheus even when installed')
    .option('--regional-replicas', 'a Redis replica in every region but the first, its edges reading the purge stream there; replication and acknowledgements over TLS (as the aws target runs)')
    .option(
      '--origin <origin>',
      'front an external origin: URL (catch-all), host=URL or /prefix/=URL; repeatable',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .action(async (flags) => new LocalUpAction().handle(flags));

  local
    .command('status')
    .description('Show the services of a running stack')
    .option('--state-dir <dir>', STATE_DIR_HELP, DEFAULT_STATE_DIR)
    .option('--json', 'print JSON')
    .action((flags) => new LocalStatusAction().handle(flags));

  local
    .command('down')
    .description('Stop a detached stack')
    .option('--state-dir <dir>', STATE_DIR_HELP, DEFAULT_STATE_DIR)
    .action(async (flags) => new LocalDownAction().handle(flags));
}
