import { z } from 'zod';
import { cdnError } from '../../../infra/model/errors';
import type { OriginConfig } from '../config/origin-config';
import { checkTag } from '../common/surrogate-keys';
import { checkPurgeRequest, formatPath, PurgeBodyProblem, purgeGuardProblem, purgeRequestSchema, type PurgeRequest } from '../purge/purge-request';
import { warmBodySchema, warmUrlKey, type WarmBody } from '../warm/warm.service';

/** How far ahead a launch may be: further is more likely a wrong year than a plan. */
export const MAX_LAUNCH_AHEAD_DAYS = 30;
export const DEFAULT_WARM_LEAD_SECONDS = 60;
/** A warm earlier than a day before its launch would mostly warm what gets evicted again. */
export const MAX_WARM_LEAD_SECONDS = 86400;

/**
 * The body of POST /v1/launches: `{at, warm?, purge?, warmLeadSeconds?}`. `warm` is a
 * POST /v1/warm body and `purge` a POST /v1/purge body, checked by their own schemas,
 * so a launch cannot accept what those routes would refuse. It also documents the
 * route (launches.dto.ts derives the OpenAPI request body from it).
 */
export const launchRequestSchema = z
  .strictObject(
    {
      at: z.iso
        .datetime({ offset: true, error: 'must be an ISO-8601 time with a time zone, e.g. 2030-06-01T09:00:00Z' })
        .meta({ description: `When the purge goes out: in the future, at most ${MAX_LAUNCH_AHEAD_DAYS} days ahead`, examples: ['2030-06-01T09:00:00Z'] }),
      warm: warmBodySchema.optional().meta({ description: 'A POST /v1/warm body, run warmLeadSeconds before `at` (at once when less time is left)' }),
      purge: purgeRequestSchema.optional().meta({ description: 'A POST /v1/purge body, published at `at`' }),
      warmLeadSeconds: z
        .number({ error: 'must be a number of seconds' })
        .int('must be a whole number of seconds')
        .min(0, 'must be at least 0')
        .max(MAX_WARM_LEAD_SECONDS, `must be at most ${MAX_WARM_LEAD_SECONDS}`)
        .optional()
        .meta({ description: `How long before \`at\` the warm starts (default ${DEFAULT_WARM_LEAD_SECONDS})` }),
    },
    { error: 'the body must be a JSON object' },
  )
  .meta({ description: 'At least one of warm and purge' });

/** What a launch was asked to do, checked: kept in Redis as it is and run from there. */
export interface LaunchPlan {
  readonly id: string;
  /** Epoch milliseconds. */
  readonly at: number;
  readonly createdAt: number;
  /** The creating token's name (audit lines, the record). */
  readonly createdBy: string;
  /** The creating token held the admin scope: the purge guards are checked again with it when the purge runs. */
  readonly admin: boolean;
  readonly warm: WarmBody | null;
  /** Epoch milliseconds when the warm step is due (null without a warm). */
  readonly warmAt: number | null;
  readonly warmLeadSeconds: number | null;
  readonly purge: PurgeRequest | null;
}

export interface LaunchCreator {
  readonly name: string;
  readonly admin: boolean;
}

function invalid(field: string, reason: string): never {
  throw cdnError('CDN_ERR_LAUNCH_INVALID', `${field}: ${reason}`, { details: { field } });
}

/**
 * Checks a body as POST /v1/launches takes it: 400 CDN_ERR_LAUNCH_INVALID naming the
 * field, or 403 CDN_ERR_FORBIDDEN when the purge needs the admin scope the token lacks
 * (the rules of POST /v1/purge, applied now, when someone is there to be told).
 */
export function parseLaunchRequest(body: unknown, creator: LaunchCreator, config: OriginConfig, id: string, now: number): LaunchPlan {
  const parsed = launchRequestSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = formatPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      const names = issue.keys.map((key) => JSON.stringify(key)).join(', ');
      const expected = where === '' ? ' (expected at, warm, purge, warmLeadSeconds)' : '';
      invalid(where === '' ? issue.keys[0] : `${where}.${issue.keys[0]}`, `unknown field ${names}${expected}`);
    }
    invalid(where === '' ? 'body' : where, issue.message);
  }
  const data = parsed.data;

  const at = Date.parse(data.at);
  if (at <= now) {
    invalid('at', `must be in the future (it is ${new Date(now).toISOString()} now)`);
  }
  if (at > now + MAX_LAUNCH_AHEAD_DAYS * 86400_000) {
    invalid('at', `must be at most ${MAX_LAUNCH_AHEAD_DAYS} days ahead`);
  }
  if (data.warm === undefined && data.purge === undefined) {
    invalid('body', 'name warm, purge or both');
  }
  if (data.warm === undefined && data.warmLeadSeconds !== undefined) {
    invalid('warmLeadSeconds', 'only with warm');
  }

  let purge: PurgeRequest | null = null;
  if (data.purge !== undefined) {
    // the raw body, not zod's output: checkPurgeRequest parses it itself
    const checked = checkPurgeRequest((body as { purge: unknown }).purge);
    if (checked instanceof PurgeBodyProblem) {
      // the reason names the field itself ("urls[0]: ..."): named once, under purge.
      const { field, reason } = checked;
      invalid(field === undefined ? 'purge' : `purge.${field}`, field !== undefined && reason.startsWith(`${field}: `) ? reason.slice(field.length + 2) : reason);
    }
    const problem = purgeGuardProblem(checked, creator.admin, config.purge.protectedTags);
    if (problem !== undefined) {
      if (problem.kind === 'forbidden') {
        throw cdnError('CDN_ERR_FORBIDDEN', `purge.${problem.field}: ${problem.reason}`, { details: problem.tag !== undefined ? { tag: problem.tag } : undefined });
      }
      invalid(`purge.${problem.field}`, problem.reason);
    }
    purge = checked;
  }

  let warmAt: number | null = null;
  if (data.warm !== undefined) {
    checkWarm(data.warm, config);
    const lead = data.warmLeadSeconds ?? DEFAULT_WARM_LEAD_SECONDS;
    warmAt = Math.max(now, at - lead * 1000);
  }

  return {
    id,
    at,
    createdAt: now,
    createdBy: creator.name,
    admin: creator.admin,
    warm: data.warm ?? null,
    warmAt,
    warmLeadSeconds: data.warm === undefined ? null : (data.warmLeadSeconds ?? DEFAULT_WARM_LEAD_SECONDS),
    purge,
  };
}

/**
 * What WarmService.start would refuse at the launch's hour and can be known now. Not
 * whether the named assets exist: a launch's are often uploaded after it is scheduled.
 */
function checkWarm(warm: WarmBody, config: OriginConfig): void {
  const { balancerInternalUrl, regions: known } = config.warming;
  if (balancerInternalUrl === null) {
    invalid('warm', 'this origin cannot warm: it has no balancer (CDN_BALANCER_INTERNAL_URL)');
  }
  if ((warm.urls?.length ?? 0) + (warm.prefixes?.length ?? 0) + (warm.tags?.length ?? 0) === 0) {
    invalid('warm', 'name urls, prefixes or tags to warm');
  }
  (warm.urls ?? []).forEach((url, i) => {
    const result = warmUrlKey(url);
    if ('reason' in result) invalid(`warm.urls[${i}]`, result.reason);
  });
  (warm.tags ?? []).forEach((tag, i) => {
    const reason = checkTag(tag);
    if (reason !== undefined) invalid(`warm.tags[${i}]`, reason);
  });
  const unknown = (warm.regions ?? []).filter((r) => !known.includes(r));
  if (unknown.length > 0 || warm.regions?.length === 0) {
    invalid('warm.regions', `unknown ${unknown.join(', ') || '(none given)'}; known: ${known.join(', ')}`);
  }
}
