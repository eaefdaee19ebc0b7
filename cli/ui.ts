/** How the CLI talks to people: one error format, exit codes from the error catalogue. */
import { CdnError } from '../infra/model/errors';

export const ERROR_PREFIX = 'cdn: error:';

export function fail(err: unknown): never {
  if (err instanceof CdnError) {
    process.stderr.write(`${ERROR_PREFIX} ${err.message} [${err.code}]\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`${ERROR_PREFIX} ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
}
