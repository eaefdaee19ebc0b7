/** The `cdn` command. */
import { Command } from 'commander';
import { loadAssetsCommand } from './commands/assets.command';
import { loadLocalCommand } from './commands/local.command';
import { ERROR_PREFIX, fail } from './ui';

export function buildProgram(): Command {
  const program = new Command('cdn')
    .description('A self-hosted CDN for e-commerce')
    .version(require('../../package.json').version)
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(`${ERROR_PREFIX} ${str.replace(/^error: /, '')}`) });
  program.exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });
  loadLocalCommand(program);
  loadAssetsCommand(program);
  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch(fail);
}
