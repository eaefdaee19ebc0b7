import { CdnError, cdnError, Errors } from './errors';

describe('error catalogue', () => {
  test('each entry is named by its code, with an exit code a shell can report and an HTTP status only where a request can end in it', () => {
    for (const [name, def] of Object.entries(Errors)) {
      expect(def.code).toBe(name);
      expect(def.exitCode).toBeGreaterThanOrEqual(1);
      expect(def.exitCode).toBeLessThan(126);
      if (def.httpStatus !== undefined) {
        expect(def.httpStatus).toBeGreaterThanOrEqual(400);
        expect(def.httpStatus).toBeLessThan(600);
      }
    }
  });

  test('the CLI and start-up errors have their own exit codes and no HTTP status; request errors keep theirs', () => {
    const spec = cdnError('CDN_ERR_SPEC_INVALID', 'regions[0].name: bad');
    expect(spec).toBeInstanceOf(CdnError);
    expect([spec.exitCode, spec.httpStatus, spec.message]).toEqual([2, undefined, 'Invalid CDN spec: regions[0].name: bad']);
    expect([Errors.CDN_ERR_PORT_IN_USE.exitCode, Errors.CDN_ERR_STACK_NOT_RUNNING.exitCode]).toEqual([3, 6]);
    const auth = cdnError('CDN_ERR_UNAUTHORIZED');
    expect([auth.httpStatus, auth.exitCode]).toEqual([401, 1]);
  });
});
