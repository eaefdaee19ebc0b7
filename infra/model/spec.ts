/**
 * The one model of a CDN deployment. Every target (native, docker, aws) starts from a
 * `CdnSpec`, resolves it with `parseSpec` (clear errors naming the field) and hands the
 * result to the same pure renderers. Nothing here knows about processes, containers or
 * cloud APIs.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { cdnError } from './errors';

const NAME = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/;
const SIZE = /^[1-9][0-9]*[kmg]$/;

const port = z.number().int().min(1).max(65535);
const size = z.string().regex(SIZE, 'expected a size such as 512m or 10g');

const region = z
  .object({
    name: z.string().regex(NAME, 'expected a lowercase name such as eu-west (a-z, 0-9, -)'),
    edges: z.number().int().min(1).max(64).default(2),
  })
  .strict();

/** An external origin: the shop's own storefront or API, mapped by host or path prefix. */
const externalOrigin = z
  .object({
    /** `*` (catch-all), a host (`shop.example`) or a path prefix starting with `/` (`/api/`). */
    match: z.string().min(1),
    url: z.url({ protocol: /^https?$/ }),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.match !== '*' && !o.match.startsWith('/') && !/^[a-z0-9.-]+$/.test(o.match)) {
      ctx.addIssue({ code: 'custom', path: ['match'], message: 'expected "*", a lowercase host or a path prefix starting with /' });
    }
  });

const storage = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('filesystem'), path: z.string().min(1).optional() }).strict(),
  z
    .object({
      kind: z.literal('s3'),
      endpoint: z.url(),
      bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name'),
      region: z.string().default('us-east-1'),
      /** Names of secrets (env vars, Pulumi secrets), never the values themselves. */
      accessKeySecret: z.string().min(1),
      secretKeySecret: z.string().min(1),
      /**
       * Keys the edges sign their reads of raw assets with (secret names, both or
       * neither): credentials allowed s3:GetObject (and s3:ListBucket, so a missing key
       * is a 404) on this bucket only. Left out, the edges use the origin's keys.
       */
      edgeAccessKeySecret: z.string().min(1).optional(),
      edgeSecretKeySecret: z.string().min(1).optional(),
    })
    .strict()
    .refine((s) => (s.edgeAccessKeySecret === undefined) === (s.edgeSecretKeySecret === undefined), {
      message: 'edgeAccessKeySecret and edgeSecretKeySecret go together: set both or neither',
      path: ['edgeSecretKeySecret'],
    }),
]);

/** `10.0.0.0/8`, `203.0.113.7/32`, `2001:db8::/32`: an address and a prefix length that fits it. */
export function isCidr(s: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const family = isIP(m[1]);
  const bits = Number(m[2]);
  return (family === 4 && bits <= 32) || (family === 6 && bits <= 128);
}

/** A cookie name: an RFC 6265 token (no separators, spaces or control characters). */
export const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const cookieName = z.string().regex(COOKIE_NAME, "expected a cookie name (an RFC 6265 token: letters, digits and !#$%&'*+-.^_`|~), such as session");

const cidr = z.string().refine(isCidr, 'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32');
const seconds = (max: number) => z.number().positive().max(max);

/**
 * The front door: how shoppers are routed to a region and an edge, how edges are
 * health-checked, and what the public listener accepts. Every field has a default,
 * so `balancer` may be left out.
 */
const balancer = z
  .object({
    /** Peers (load balancers, CDNs in front) whose region header and X-Forwarded-For are believed. */
    trustedProxies: z.array(cidr).default([]),
    /** Header a trusted peer sets to the shopper's region (a region name). */
    regionHeader: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9-]*$/, 'expected a header name such as X-CDN-Region')
      .default('X-CDN-Region'),
    /** Client networks mapped to regions, checked when no trusted header names one. Longest prefix wins. */
    cidrRegions: z.array(z.object({ cidr, region: z.string().min(1) }).strict()).default([]),
    /**
     * Active checks of each edge's internal /healthz (seconds). An edge is marked down after `fall`
     * consecutive failures (checks or proxied connections) and back after `rise` good checks:
     * a dead edge is out within interval x fall (+ timeout when it hangs), 2-2.5 s by default.
     */
    health: z
      .object({
        interval: seconds(60).default(1),
        timeout: seconds(30).default(0.5),
        fall: z.number().int().min(1).max(20).default(2),
        rise: z.number().int().min(1).max(20).default(2),
      })
      .strict()
      .prefault({}),
    /** Bounded-load factor c: an edge holding more than c x the mean in-flight requests is skipped. */
    boundedLoad: z.number().min(1).max(10).default(1.25),
    /**
     * In-flight requests an edge always takes before the bound applies: below it an
     * object's requests stay on its home edge (its cache) whatever the others carry,
     * so the bound moves load only under real overload, not at a handful of requests.
     */
    boundedLoadFloor: z.number().int().min(1).max(100000).default(128),
    /** Extra attempts on other edges for idempotent requests. */
    retries: z.number().int().min(0).max(4).default(1),
    /** Seconds to wait for a TCP connection to an edge before trying the next one. */
    connectTimeout: seconds(30).default(1),
    /** Requests in progress per client address (limit_conn); trusted proxies are not limited. */
    maxConnsPerClient: z.number().int().min(1).max(100000).default(256),
    /** Largest request body shoppers may send (forms, carts); larger ones get 413 before they are read. */
    maxRequestBody: size.default('16m'),
    /** Seconds a client may take to send its header, or between two reads of its body; then it is cut off. */
    clientTimeout: seconds(300).default(10),
    /** TLS termination on the public listener: PEM file paths on the balancer's host. */
    tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
    /** Hosts the CDN serves; others get 421. Absent: any host. */
    hosts: z
      .array(z.string().regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, 'expected a lowercase host without a port, such as shop.example'))
      .min(1)
      .optional(),
  })
  .strict();

/** References to secrets. Values never live in the spec; targets resolve the references. */
const secrets = z
  .object({
    adminToken: z.string().min(1).default('CDN_ADMIN_TOKEN'),
    /** The token that unlocks the edges' X-Cdn-Debug headers (scope `debug` only). */
    debugToken: z.string().min(1).default('CDN_DEBUG_TOKEN'),
    redisPassword: z.string().min(1).optional(),
    /**
     * Keys that sign URLs (image variants outside the configured sizes, downloads):
     * `<key id>:<secret>` pairs separated by commas, the first one current; the others
     * are still accepted, so a key can rotate without breaking URLs already handed out.
     * Generated (one key, id `k1`) when not set.
     */
    urlSigningKeys: z.string().min(1).default('CDN_URL_SIGNING_KEYS'),
  })
  .strict();

/**
 * Signed downloads (digital goods): under these path prefixes the edges serve only
 * requests carrying a valid token from POST /v1/signed-urls (docs/downloads.md); the
 * object is cached once for every token holder.
 */
const downloads = z
  .object({
    prefixes: z.array(z.string().regex(/^\/[A-Za-z0-9._~\/-]*\/$/, 'expected a path prefix such as /downloads/ (starting and ending with /)')).default([]),
    /** Longest lifetime of a signed URL, in seconds. */
    maxTtl: z.number().int().min(1).max(30 * 86400).default(7 * 86400),
  })
  .strict();

/** Next.js's default deviceSizes and imageSizes together: what storefront templates already ask for. */
export const DEFAULT_IMAGE_WIDTHS = [16, 32, 48, 64, 96, 128, 256, 384, 640, 750, 828, 1080, 1200, 1920, 2048, 3840];

/**
 * Image variants: `?w=&h=&fit=&q=&fmt=&dpr=` on an image asset's URL (docs/images.md).
 * Widths, heights and qualities snap to the sets below at the edge, so the number of
 * variants per image is bounded; anything else needs a signed URL.
 */
const images = z
  .object({
    enabled: z.boolean().default(true),
    /** Widths (and heights) a request snaps up to; the largest is the most a variant gets. */
    widths: z.array(z.number().int().min(1).max(8192)).min(1).default(DEFAULT_IMAGE_WIDTHS),
    /** Qualities `q` snaps up to. */
    qualities: z.array(z.number().int().min(1).max(100)).min(1).default([50, 75, 90]),
    /** Quality when the request names none (one of `qualities`). */
    defaultQuality: z.number().int().min(1).max(100).default(75),
    /** Largest source in pixels (width x height x frames): a decompression bomb is refused (422) from its header. */
    maxInputPixels: z.number().int().min(1).max(1_000_000_000).default(50_000_000),
    /** Largest source file transformed. */
    maxInputSize: size.default('50m'),
    /** Largest variant produced. */
    maxOutputSize: size.default('20m'),
    /** Seconds one transform may take before it is abandoned (503). */
    timeout: seconds(120).default(10),
    /** Transforms running at once per origin process: sharp gives each one libvips thread on glibc without jemalloc, so about the origin's cores. */
    concurrency: z.number().int().min(1).max(64).default(2),
    /** Transforms waiting for a slot; beyond, 503 with Retry-After. */
    queue: z.number().int().min(0).max(10000).default(32),
    /** Rasterise SVG sources (off: an SVG from an untrusted upload is never rendered here). */
    allowSvg: z.boolean().default(false),
  })
  .strict()
  .superRefine((i, ctx) => {
    if (!i.qualities.includes(i.defaultQuality)) {
      ctx.addIssue({ code: 'custom', path: ['defaultQuality'], message: `expected one of qualities (${i.qualities.join(', ')})` });
    }
  })
  .transform((i) => ({ ...i, widths: [...new Set(i.widths)].sort((a, b) => a - b), qualities: [...new Set(i.qualities)].sort((a, b) => a - b) }));

export const cdnSpecSchema = z
  .object({
    name: z.string().regex(NAME, 'expected a lowercase name (a-z, 0-9, -)').default('cdn'),
    regions: z
      .array(region)
      .min(1, 'at least one region is needed')
      .default([
        { name: 'eu', edges: 2 },
        { name: 'us', edges: 2 },
      ]),
    /** Order in which the balancer falls back between regions; defaults to `regions` order. */
    defaultRegion: z.string().optional(),
    cache: z
      .object({
        maxSize: size.default('1g'),
        keysZone: size.default('64m'),
        inactive: z.string().regex(/^[1-9][0-9]*[smhd]$/, 'expected a duration such as 7d').default('7d'),
        /** Seconds a stored response may be served stale while the origin fails, unless the origin says otherwise (stale-if-error, must-revalidate). */
        grace: z.number().int().min(0).default(86400),
        /**
         * Store 5xx responses that carry explicit freshness, as RFC 9111 §3 allows: a flash
         * sale's "sold out, come back" 503 with `max-age=5` then reaches the failing origin
         * once per edge instead of once per shopper. Never for longer than `max5xxTtl`, and
         * not served stale (but to requests that arrive during its refresh): a framework that puts its route's `max-age=3600` on an error
         * page cannot pin that error for an hour. false: no 5xx is stored.
         */
        store5xx: z.boolean().default(true),
        /** Seconds a stored 5xx stays fresh at most, whatever the origin said (see store5xx). */
        max5xxTtl: z.number().int().min(1).default(10),
        /**
         * While one request refreshes an expired object, the requests for it that arrive
         * meanwhile get the stored copy (Cache-Status `hit` with a negative `ttl`) instead of
         * all reaching the origin: no stampede when a hot object expires. The first request
         * after expiry always waits for the refresh (RFC 9111), so a lone request never gets
         * a stale copy. This applies to must-revalidate and no-cache objects too, for as long
         * as the one refresh takes. false: every request for an expired object goes to the
         * origin.
         */
        staleWhileUpdating: z.boolean().default(true),
        /**
         * Seconds an expired response is served (and refreshed in the background) when the
         * origin allows less stale-while-revalidate, and nothing forbids it (must-revalidate,
         * no-cache). 0 by default: staleWhileUpdating already keeps the stampede off the
         * origin, and any window here makes a request in it get a stale copy.
         */
        minStaleWhileRevalidate: z.number().int().min(0).max(60).default(0),
        /**
         * Store responses that set a cookie (RFC 9111 allows it; the cookie is then handed
         * to every shopper who gets the stored copy). false by default: a shared cache that
         * stores one shopper's session cookie gives it to the next. For origins whose
         * cookies are the same for everyone (a consent banner's default).
         */
        storeSetCookie: z.boolean().default(false),
        /**
         * Pass the origin's CDN-Cache-Control on to clients (RFC 9213: it speaks to every CDN
         * cache on the way, so a CDN chained in front of this one needs it; browsers ignore
         * it). false strips it here. Surrogate-Control and Surrogate-Key are always stripped.
         */
        forwardCdnCacheControl: z.boolean().default(true),
        /**
         * Requests carrying any of these cookies (a session, a cart) skip the cache and their
         * responses are never stored. Empty by default: which cookies mark a personal page is
         * the shop's to say, and such pages should also be `private` at the origin.
         */
        bypassCookies: z.array(cookieName).default([]),
        /**
         * Large objects (downloads, videos) under these path prefixes are fetched and stored in
         * slices of `size` (nginx slice module): a Range request fetches only the slices it
         * covers, and a huge object never has to be fetched in one piece. The origins of these
         * paths must answer Range requests with 206.
         */
        slice: z
          .object({
            prefixes: z.array(z.string().regex(/^\/[A-Za-z0-9._~\/-]*$/, 'expected a path prefix such as /downloads/ (letters, digits, . _ ~ - /)')).min(1),
            size: size.default('1m'),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({ maxSize: '1g', keysZone: '64m', inactive: '7d', grace: 86400, store5xx: true, max5xxTtl: 10, staleWhileUpdating: true, minStaleWhileRevalidate: 0, storeSetCookie: false, forwardCdnCacheControl: true, bypassCookies: [] }),
    /** Ports the services listen on inside their host or container (native picks free ones). */
    ports: z
      .object({
        balancer: port.default(8080),
        edge: port.default(8081),
        edgeInternal: port.default(9145),
        origin: port.default(3000),
        /** The origin's API (never reached through the edges). */
        originApi: port.default(3001),
        redis: port.default(6379),
        /** The primary Redis's TLS listener: the links that cross regions (replication, other regions' acknowledgements). */
        redisTls: port.default(6380),
        prometheus: port.default(9090),
      })
      .strict()
      .default({ balancer: 8080, edge: 8081, edgeInternal: 9145, origin: 3000, originApi: 3001, redis: 6379, redisTls: 6380, prometheus: 9090 }),
    workers: z.number().int().min(1).max(64).default(1),
    storage: storage.default({ kind: 'filesystem' }),
    origins: z.array(externalOrigin).default([]),
    secrets: secrets.prefault({}),
    images: images.prefault({}),
    downloads: downloads.prefault({}),
    /** Cache warming (POST /v1/warm, launches): its own bound on origin load, apart from shoppers' misses. */
    warming: z
      .object({
        /** Warm requests in flight at once, per origin process. */
        concurrency: z.number().int().min(1).max(256).default(4),
        /** Warm requests started per second, per origin process. */
        ratePerSecond: z.number().int().min(1).max(10000).default(50),
      })
      .strict()
      .prefault({}),
    purge: z
      .object({
        stream: z.string().min(1).default('cdn:purges'),
        maxLen: z.number().int().min(100).default(100000),
        /** While an edge cannot reach the stream, what it stores is fresh for at most this many seconds. */
        busDownMaxTtl: z.number().int().min(1).default(60),
        /**
         * Tags only an admin token may purge (403 for a purge-scoped token), by the API
         * and by launches: tags whose purge empties much of every edge's cache at once
         * ("all-products"). Asset writes still purge them (a write purges its own tags).
         */
        protectedTags: z
          .array(z.string().regex(/^[\x21-\x2b\x2d-\x7e]{1,128}$/, 'must be a tag: 1-128 printable ASCII characters, no spaces or commas'))
          .default([]),
      })
      .strict()
      .default({ stream: 'cdn:purges', maxLen: 100000, busDownMaxTtl: 60, protectedTags: [] }),
    balancer: balancer.prefault({}),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.regions.forEach((r, i) => {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: ['regions', i, 'name'], message: `duplicate region "${r.name}"` });
      seen.add(r.name);
    });
    if (spec.defaultRegion !== undefined && !seen.has(spec.defaultRegion)) {
      ctx.addIssue({ code: 'custom', path: ['defaultRegion'], message: `unknown region "${spec.defaultRegion}"; known: ${[...seen].join(', ')}` });
    }
    spec.balancer.cidrRegions.forEach((c, i) => {
      if (!seen.has(c.region)) {
        ctx.addIssue({ code: 'custom', path: ['balancer', 'cidrRegions', i, 'region'], message: `unknown region "${c.region}"; known: ${[...seen].join(', ')}` });
      }
    });
    const matches = new Set<string>();
    spec.origins.forEach((o, i) => {
      if (matches.has(o.match)) ctx.addIssue({ code: 'custom', path: ['origins', i, 'match'], message: `duplicate origin match "${o.match}"` });
      matches.add(o.match);
    });
  });

export type CdnSpecInput = z.input<typeof cdnSpecSchema>;
export type CdnSpec = z.output<typeof cdnSpecSchema>;

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
}

/** Validates raw input (stack config, CLI flags, a JSON file) into a complete spec. */
export function parseSpec(input: unknown): CdnSpec {
  const result = cdnSpecSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => `${formatPath(issue.path) || '(spec)'}: ${issue.message}`);
  throw cdnError('CDN_ERR_SPEC_INVALID', lines.join('; '), { details: { issues: lines } });
}

/** A duration such as `7d`, `12h`, `30m`, `45s` (the spec's durations), in seconds. */
export function durationSeconds(duration: string): number {
  const m = /^([1-9][0-9]*)([smhd])$/.exec(duration);
  if (!m) throw cdnError('CDN_ERR_SPEC_INVALID', `expected a duration such as 7d, got ${duration}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** A size such as `512m` or `10g` (the spec's sizes), in bytes. */
export function sizeBytes(size: string): number {
  const m = /^([1-9][0-9]*)([kmg])$/.exec(size);
  if (!m) throw cdnError('CDN_ERR_SPEC_INVALID', `expected a size such as 512m, got ${size}`);
  return Number(m[1]) * { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2] as 'k' | 'm' | 'g'];
}

/** The edges a spec asks for, with stable ids (`<region>-<n>`). */
export interface EdgeIdentity {
  id: string;
  region: string;
  index: number;
}

export function edgeIdentities(spec: CdnSpec): EdgeIdentity[] {
  return spec.regions.flatMap((r) => Array.from({ length: r.edges }, (_, i) => ({ id: `${r.name}-${i + 1}`, region: r.name, index: i + 1 })));
}

/** Regions in the balancer's fallback order: the default region first, then the rest as declared. */
export function regionOrder(spec: CdnSpec): string[] {
  const names = spec.regions.map((r) => r.name);
  const first = spec.defaultRegion ?? names[0];
  return [first, ...names.filter((n) => n !== first)];
}
