import { Inject, Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { z } from 'zod';
import { cdnError } from '../../../infra/model/errors';
import { checkAssetKey } from '../../contract/asset-key';
import { ORIGIN_CONFIG, type OriginConfig } from '../config/origin-config';
import { PINO, type OriginLog } from '../logging/origin-logger';
import { PurgeService, type PurgeActor } from '../purge/purge.service';
import { RedisConnection } from '../redis/redis-connection';
import { RedisKeys } from '../redis/redis-keys';
import { signDownloadQuery } from './download-token';

export const MAX_USES = 1000;
const MAX_REVOKE = 1000;

const signBody = z.strictObject(
  {
    key: z.string({ error: 'must be the asset key, e.g. downloads/ebook.pdf' }),
    ttl: z.number({ error: 'must be the lifetime in seconds' }).int('must be whole seconds').min(1, 'must be at least 1 second'),
    maxUses: z.number().int('must be a whole number').min(1, 'must be at least 1').max(MAX_USES, `must be at most ${MAX_USES}`).optional(),
    clientIp: z.string().refine((ip) => isIP(ip) !== 0, 'must be an IPv4 or IPv6 address').optional(),
  },
  { error: 'the body must be a JSON object' },
);

const revokeBody = z
  .strictObject(
    {
      tokenIds: z.array(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be token ids as POST /v1/signed-urls returned them')).max(MAX_REVOKE).optional(),
      keys: z.array(z.string()).max(MAX_REVOKE).optional(),
    },
    { error: 'the body must be a JSON object' },
  )
  .refine((b) => (b.tokenIds?.length ?? 0) + (b.keys?.length ?? 0) > 0, 'name at least one token id or key');

export interface SignedUrl {
  readonly url: string;
  readonly key: string;
  readonly tokenId: string;
  /** ISO-8601. */
  readonly expiresAt: string;
  readonly maxUses: number | null;
}

function invalid(issues: z.core.$ZodIssue[]): never {
  const issue = issues[0];
  throw cdnError('CDN_ERR_BODY_INVALID', `${issue.path.join('.') || 'body'}: ${issue.message}`);
}

/**
 * Signed download URLs (docs/downloads.md): signed here with the first URL signing key,
 * verified by the edges; revoked through the purge stream, so a revocation reaches every
 * edge as fast as a purge. Audited; a signature never reaches a log.
 */
@Injectable()
export class SignedUrlsService {
  constructor(
    @Inject(ORIGIN_CONFIG) private readonly config: OriginConfig,
    @Inject(PINO) private readonly log: OriginLog,
    private readonly purges: PurgeService,
    private readonly redis: RedisConnection,
  ) {}

  sign(body: unknown, actor: PurgeActor): SignedUrl {
    const parsed = signBody.safeParse(body);
    if (!parsed.success) invalid(parsed.error.issues);
    const { key, ttl, maxUses, clientIp } = parsed.data;
    const path = this.protectedPath(key);
    const { maxTtlSeconds } = this.config.downloads;
    if (ttl > maxTtlSeconds) {
      throw cdnError('CDN_ERR_BODY_INVALID', `ttl: must be at most ${maxTtlSeconds} seconds (spec downloads.maxTtl)`);
    }
    const signing = this.config.urlSigningKeys[0];
    if (signing === undefined) {
      throw cdnError('CDN_ERR_NOT_CONFIGURED', 'no URL signing key is configured (CDN_URL_SIGNING_KEYS_FILE)');
    }
    const iat = Math.floor(Date.now() / 1000);
    const tid = randomBytes(16).toString('base64url');
    const query = signDownloadQuery(path, { exp: iat + ttl, iat, tid, uses: maxUses, ip: clientIp }, { id: signing.id, secret: signing.secret.reveal() });
    this.log.info({ audit: 'signed-url', tokenId: tid, key, ttl, maxUses: maxUses ?? null, clientIp: clientIp ?? null, tokenName: actor.token, req_id: actor.requestId }, 'download URL signed');
    return { url: `${this.config.publicBaseUrl}${path}?${query}`, key, tokenId: tid, expiresAt: new Date((iat + ttl) * 1000).toISOString(), maxUses: maxUses ?? null };
  }

  /** Publishes the revocation on the purge stream; its id is a purge id (GET /v1/purge/{id}). */
  async revoke(body: unknown, actor: PurgeActor): Promise<{ id: string }> {
    const parsed = revokeBody.safeParse(body);
    if (!parsed.success) invalid(parsed.error.issues);
    const keys = (parsed.data.keys ?? []).map((key) => this.protectedPath(key));
    await this.keep(parsed.data.tokenIds ?? [], keys);
    const message = await this.purges.publish({ urls: [], prefixes: [], tags: [], revoke: { tokens: parsed.data.tokenIds ?? [], keys } }, 'revoke', actor);
    return { id: message.id };
  }

  /**
   * Keeps the revocation in Redis as well as on the stream: an edge that starts loads
   * these, since it replays only the last minute of the stream. Written before the
   * stream entry, so no edge can start between the two and miss it. Kept a day longer
   * than any token lives; expired fields are pruned here.
   */
  private async keep(tokens: readonly string[], paths: readonly string[]): Promise<void> {
    const now = Date.now();
    const until = now + (this.config.downloads.maxTtlSeconds + 86400) * 1000;
    const fields: string[] = [];
    for (const tid of tokens) fields.push(`t:${tid}`, String(until));
    for (const path of paths) fields.push(`p:${path}`, `${now}:${until}`);
    const hash = new RedisKeys(this.config.purge.stream).revocations;
    try {
      const all = await this.redis.client.hgetall(hash);
      const expired = Object.entries(all)
        .filter(([, value]) => Number(value.split(':').pop()) < now)
        .map(([field]) => field);
      if (expired.length > 0) await this.redis.client.hdel(hash, ...expired);
      await this.redis.client.hset(hash, ...fields);
    } catch (err) {
      throw cdnError('CDN_ERR_BUS_UNAVAILABLE', 'the revocation was not recorded; retry', { cause: err });
    }
  }

  /** `/key` when the key is valid and under a protected prefix (else no edge would ask for a token). */
  private protectedPath(key: string): string {
    const check = checkAssetKey(key);
    if (!check.ok) throw cdnError('CDN_ERR_KEY_INVALID', check.reason);
    const path = `/${key}`;
    const { prefixes } = this.config.downloads;
    if (!prefixes.some((p) => path.startsWith(p))) {
      throw cdnError('CDN_ERR_BODY_INVALID', `key: ${key} is not under a protected prefix (spec downloads.prefixes: ${prefixes.join(', ') || 'none'}); the edges serve it without a token`);
    }
    return path;
  }
}
