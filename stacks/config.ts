/**
 * Stack configuration (`cdn:target`, `cdn:spec` in Pulumi.<stack>.yaml) validated into
 * the same CdnSpec every target uses. Pure, so the Pulumi entry point stays a thin
 * wiring of config -> spec -> target.
 */
import { cdnError } from '../infra/model/errors';
import { parseSpec, type CdnSpec } from '../infra/model/spec';

export const TARGETS = ['docker', 'aws'] as const;
export type Target = (typeof TARGETS)[number];

export interface StackConfig {
  target: Target;
  spec: CdnSpec;
}

/** `config` maps Pulumi config keys (`cdn:target`, `cdn:spec`) to their values. */
export function stackConfig(config: Record<string, unknown>): StackConfig {
  const target = config['cdn:target'];
  if (typeof target !== 'string' || !(TARGETS as readonly string[]).includes(target)) {
    throw cdnError('CDN_ERR_CONFIG_INVALID', `cdn:target must be one of ${TARGETS.join(', ')}, got ${JSON.stringify(target)}`);
  }
  return { target: target as Target, spec: parseSpec(config['cdn:spec'] ?? {}) };
}
