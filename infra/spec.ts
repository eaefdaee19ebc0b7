/**
 * The one model of a CDN deployment. Every target (native, docker, aws) starts from a
 * `CdnSpec`, resolves it with `parseSpec` (clear errors naming the field) and hands the
 * result to the same pure renderers. Nothing here knows about processes, containers or
 * cloud APIs.
 */
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
    })
    .strict(),
]);

/** References to secrets. Values never live in the spec; targets resolve the references. */
const secrets = z
  .object({
    adminToken: z.string().min(1).default('CDN_ADMIN_TOKEN'),
    redisPassword: z.string().min(1).optional(),
  })
  .strict();

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
      })
      .strict()
      .default({ maxSize: '1g', keysZone: '64m', inactive: '7d' }),
    /** Ports the services listen on inside their host or container (native picks free ones). */
    ports: z
      .object({
        balancer: port.default(8080),
        edge: port.default(8081),
        edgeInternal: port.default(9145),
        origin: port.default(3000),
        redis: port.default(6379),
        prometheus: port.default(9090),
      })
      .strict()
      .default({ balancer: 8080, edge: 8081, edgeInternal: 9145, origin: 3000, redis: 6379, prometheus: 9090 }),
    workers: z.number().int().min(1).max(64).default(1),
    storage: storage.default({ kind: 'filesystem' }),
    origins: z.array(externalOrigin).default([]),
    secrets: secrets.default({ adminToken: 'CDN_ADMIN_TOKEN' }),
    purge: z
      .object({
        stream: z.string().min(1).default('cdn:purges'),
        maxLen: z.number().int().min(100).default(100000),
      })
      .strict()
      .default({ stream: 'cdn:purges', maxLen: 100000 }),
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
