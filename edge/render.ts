/**
 * Renders one edge's files: nginx.conf and the JSON settings its Lua reads.
 * Pure: the same inputs give the same bytes on every target.
 */
import * as path from 'node:path';
import { clientLimits, DROP_OVERRIDE_HEADERS, internalServer, luaString, renderNginxConf } from '../infra/render/nginx';
import { Errors } from '../infra/model/errors';
import { MAX_KEY_LENGTH, RESERVED_FIRST_SEGMENTS, RESERVED_KEYS } from '../origin/contract/asset-key';
import { DEFAULT_CACHE_CONTROL, DEFAULT_CACHE_CONTROL_BY_TYPE, NOT_FOUND_CACHE_CONTROL } from '../origin/contract/cache-policy';
import { LATENCY_BUCKETS } from '../origin/contract/metrics';
import { SANDBOX_CSP, SANDBOXED_SUFFIX, SANDBOXED_TYPES } from '../origin/contract/sandbox';
import { secretFile, type Layout } from '../infra/model/layout';
import { durationSeconds, type CdnSpec } from '../infra/model/spec';
import { acknowledgedAt, hostPort, REDIS_TLS_SERVER_NAME, type EdgePlacement, type Topology } from '../infra/model/topology';
import type { RenderedFile } from '../infra/model/rendered-file';

export interface EdgeSettings {
  id: string;
  region: string;
  stream: string;
  /**
   * Where the edge follows the purge stream: its region's replica, else the primary.
   * `passwordFile` (mode 0600) holds the Redis password when the bus requires one.
   */
  redis: { host: string; port: number; passwordFile?: string };
  /**
   * The primary, when the stream is read from a replica: acknowledgements are
   * writes. The link crosses regions, so it is TLS: the server's certificate must
   * name `serverName` and chain to the CA nginx.conf trusts (lua_ssl_trusted_certificate).
   */
  acknowledge?: { host: string; port: number; tls: { serverName: string } };
  /** Default seconds of stale-if-error when the origin does not say. */
  grace: number;
  /** Whether 5xx responses with explicit freshness are stored (spec cache.store5xx). */
  store5xx: boolean;
  /** Seconds a stored 5xx stays fresh at most (spec cache.max5xxTtl). */
  max5xxTtl: number;
  /** Least stale-while-revalidate given to responses that do not forbid it (spec cache.minStaleWhileRevalidate). */
  minStaleWhileRevalidate: number;
  /** Whether responses that set a cookie may be stored (spec cache.storeSetCookie). */
  storeSetCookie: boolean;
  /** Whether the origin's CDN-Cache-Control is stored and passed on (spec cache.forwardCdnCacheControl). */
  forwardCdnCacheControl: boolean;
  /** Longest freshness given to responses stored while the purge stream is unreachable. */
  busDownMaxTtl: number;
  /** File holding the debug token, which unlocks the X-Cdn-Debug response headers (and nothing else). */
  debugTokenFile?: string;
  /** Image variants (spec `images`; cdn/edge/images.lua): the sizes requests snap to. */
  images: ImageSettings;
  /** Signed downloads (spec `downloads`; cdn/edge/downloads.lua): the protected path prefixes. */
  downloads: { prefixes: string[]; maxTtl: number };
  /** `<id>:<secret>,...` (spec secrets.urlSigningKeys): signed image URLs and download tokens are verified against every key. */
  urlSigningKeysFile?: string;
  /**
   * External origins in matching order: hosts, then path prefixes (longest first),
   * then the catch-all. Requests matching none go to the CDN's own origin.
   */
  origins: ExternalRoute[];
  /** With S3 storage: the bucket raw assets are read from on misses (see cdn/edge/bucket.lua). */
  bucket?: BucketSettings;
  /** Bounds of the latency histograms, in seconds: the same on every layer. */
  latencyBuckets: number[];
  /** Bodies larger than this many bytes are sent with sendfile (see SENDFILE_ABOVE). */
  sendfileAbove: number;
  /**
   * Seconds a purge counter outlives its last purge: a day more than the cache
   * keeps an entry nobody asks for (cache.inactive), so counters do not pile up.
   */
  generationTtl: number;
}

export interface ImageSettings {
  enabled: boolean;
  widths: number[];
  qualities: number[];
  defaultQuality: number;
}

/** Secret files an edge reads, where the target provides them. */
export interface EdgeSecretFiles {
  /** The debug token (X-Cdn-Debug). */
  debugTokenFile: string;
  /** The URL signing keys (signed image URLs). */
  urlSigningKeysFile?: string;
}

export interface BucketSettings {
  /** The value proxy_pass gets: scheme + the `bucket` upstream block. */
  upstream: string;
  /** Host header (and SigV4 host) of the endpoint: host[:port], no default port. */
  host: string;
  sni: string;
  bucket: string;
  region: string;
  /** Files (mode 0600) holding the keys reads are signed with; never the keys. */
  accessKeyFile: string;
  secretKeyFile: string;
  /** The origin's policy for assets without their own Cache-Control (cacheControlOf). */
  defaultCacheControl: string;
  cacheControlByType: (readonly [string, string])[];
  notFoundCacheControl: string;
  /** The origin's key rules (asset-key.ts): what is not a key it could have stored goes to it. */
  maxKeyLength: number;
  reservedFirstSegments: string[];
  reservedKeys: string[];
  /** The origin's sandbox for documents that could run script (origin/contract/sandbox.ts). */
  sandbox: { csp: string; types: string[]; suffix: string };
}

export interface ExternalRoute {
  match: string;
  /** The value proxy_pass gets: scheme + upstream block name. */
  upstream: string;
  /** TLS server name for https origins. */
  sni: string;
}

/** Upstream blocks and routes for the spec's external origins, in matching order. */
export function externalRoutes(spec: CdnSpec): (ExternalRoute & { server: string })[] {
  const rank = (m: string) => (m === '*' ? 2 : m.startsWith('/') ? 1 : 0);
  return spec.origins
    .map((o, i) => {
      const u = new URL(o.url);
      const port = u.port || (u.protocol === 'https:' ? '443' : '80');
      return { match: o.match, upstream: `${u.protocol.slice(0, -1)}://external_${i + 1}`, sni: u.hostname, server: `${u.hostname}:${port}` };
    })
    .sort((a, b) => rank(a.match) - rank(b.match) || b.match.length - a.match.length);
}

/**
 * The bucket the edges read raw assets from, when storage is S3 and the target provides
 * secret files. The edges' own keys when the spec names them (read-only ones, the
 * intent), else the origin's: a trade-off the README explains.
 */
export function bucketSettings(spec: CdnSpec, layout?: Layout): BucketSettings | undefined {
  const storage = spec.storage;
  if (storage.kind !== 's3' || !layout) return undefined;
  const own = storage.edgeAccessKeySecret !== undefined;
  const accessKeyFile = secretFile(layout, own ? 's3EdgeAccessKey' : 's3AccessKey');
  const secretKeyFile = secretFile(layout, own ? 's3EdgeSecretKey' : 's3SecretKey');
  if (!accessKeyFile || !secretKeyFile) return undefined;
  const u = new URL(storage.endpoint);
  return {
    upstream: `${u.protocol.slice(0, -1)}://bucket`,
    host: u.host,
    sni: u.hostname,
    bucket: storage.bucket,
    region: storage.region,
    accessKeyFile,
    secretKeyFile,
    defaultCacheControl: DEFAULT_CACHE_CONTROL,
    cacheControlByType: DEFAULT_CACHE_CONTROL_BY_TYPE.map(([t, cc]) => [t, cc] as const),
    notFoundCacheControl: NOT_FOUND_CACHE_CONTROL,
    maxKeyLength: MAX_KEY_LENGTH,
    reservedFirstSegments: [...RESERVED_FIRST_SEGMENTS],
    reservedKeys: [...RESERVED_KEYS],
    sandbox: { csp: SANDBOX_CSP, types: [...SANDBOXED_TYPES], suffix: SANDBOXED_SUFFIX },
  };
}

/** `layout` locates the Redis password file when the spec names a Redis password and the target provides secret files. */
export function edgeSettings(spec: CdnSpec, topology: Topology, edge: EdgePlacement, layout?: Layout, files?: EdgeSecretFiles): EdgeSettings {
  const passwordFile = spec.secrets.redisPassword && layout ? secretFile(layout, 'redisPassword') : undefined;
  const bucket = bucketSettings(spec, layout);
  const replica = topology.redisReplicas?.[edge.region];
  const read = replica ?? topology.redis;
  return {
    id: edge.id,
    region: edge.region,
    stream: spec.purge.stream,
    redis: { host: read.reach.host, port: read.reach.port, ...(passwordFile ? { passwordFile } : {}) },
    ...(replica ? { acknowledge: { ...acknowledgedAt(topology, edge.region).reach, tls: { serverName: REDIS_TLS_SERVER_NAME } } } : {}),
    grace: spec.cache.grace,
    store5xx: spec.cache.store5xx,
    max5xxTtl: spec.cache.max5xxTtl,
    minStaleWhileRevalidate: spec.cache.minStaleWhileRevalidate,
    storeSetCookie: spec.cache.storeSetCookie,
    forwardCdnCacheControl: spec.cache.forwardCdnCacheControl,
    busDownMaxTtl: spec.purge.busDownMaxTtl,
    origins: externalRoutes(spec).map(({ match, upstream, sni }) => ({ match, upstream, sni })),
    ...(files ? { debugTokenFile: files.debugTokenFile } : {}),
    images: {
      enabled: spec.images.enabled,
      widths: spec.images.widths,
      qualities: spec.images.qualities,
      defaultQuality: spec.images.defaultQuality,
    },
    downloads: { prefixes: spec.downloads.prefixes, maxTtl: spec.downloads.maxTtl },
    ...(files?.urlSigningKeysFile ? { urlSigningKeysFile: files.urlSigningKeysFile } : {}),
    ...(bucket ? { bucket } : {}),
    latencyBuckets: [...LATENCY_BUCKETS],
    sendfileAbove: SENDFILE_ABOVE,
    generationTtl: durationSeconds(spec.cache.inactive) + 86400,
  };
}

/** A PCRE matching `name` literally (cookie names are RFC 6265 tokens: escape every non-alphanumeric). */
function literalRegex(name: string): string {
  return name.replace(/[^0-9A-Za-z]/g, (c) => `\\${c}`);
}

/**
 * `$cdn_cookie_bypass` is "1" when the request carries one of the spec's bypass cookies.
 * Evaluated by nginx only (no Lua); a request without cookies is not even matched.
 */
function cookieBypassMap(names: string[]): string {
  if (names.length === 0) return '';
  return `
    # Requests with one of these cookies (cache.bypassCookies) skip the cache and
    # are never stored: what they get may be personal (a session, a cart).
    map $http_cookie $cdn_cookie_bypass {
        default "";
        "~(?:^|;)\\s*(?:${names.map(literalRegex).join('|')})=" 1;
    }
`;
}

/** Requests with a bypass cookie neither use nor fill the cache (the variable comes from cookieBypassMap). */
const COOKIE_BYPASS = `            # A bypass cookie (cache.bypassCookies): answered by the origin, never stored.
            proxy_cache_bypass $cdn_cookie_bypass;
            proxy_no_cache $cdn_cookie_bypass;
`;

/** cache.storeSetCookie: nginx stores nothing that sets a cookie unless told to ignore the field. */
const STORE_SET_COOKIE = `            # cache.storeSetCookie: a response that sets a cookie may be stored (the
            # internal hop decided whether it is), and its cookie is replayed.
            proxy_ignore_headers Set-Cookie;
`;

/**
 * The edge's Lua module, bound to a global as nginx loads the file (init_by_lua):
 * the chunks of the public server call through it, as a require() per phase
 * costs a HIT about 250 instructions (a C call into package.loaded) that a
 * global read does not.
 */
const EDGE = 'CDN_EDGE';

interface CacheLocationOptions {
  /** The header filter function, e.g. `CDN_EDGE.header_filter`. */
  headerFilter: string;
  /** proxy_pass target: the internal hop, with the original URI after a rewrite. */
  upstream: string;
  /** Count sent body bytes in a log phase (HEAD, Range, debug and sliced responses). */
  sizedAtLog: boolean;
  policy: CachePolicy;
  /** Slice size: the object is fetched and stored in slices of this size (cache.slice). */
  slice?: string;
  /** The log phase handler of a sizedAtLog location, when not log_sent_bytes. */
  log?: string;
  /**
   * Requests with a Range header were sent elsewhere before this location's
   * lookup ("location /"): the signature then says "no Range" without
   * evaluating $cdn_range_ignored.
   */
  noRange?: boolean;
}

/** What every cache location of the edge shares, from the spec's `cache`. */
interface CachePolicy {
  /** Requests with a bypass cookie neither use nor fill the cache (cache.bypassCookies). */
  bypassCookies: boolean;
  /** proxy_cache_use_stale: "updating" or "off" (cache.staleWhileUpdating). */
  useStale: 'updating' | 'off';
  /** Responses that set a cookie may be stored (cache.storeSetCookie). */
  storeSetCookie: boolean;
}

/** Outside sliced locations a client's own X-Cdn-Slice must not let a 206 be stored. */
const NOT_A_SLICE = `            # Not a slice: a client's own X-Cdn-Slice must not let a 206 be stored.
            proxy_set_header X-Cdn-Slice "";
`;

/**
 * Large objects (cache.slice): fetched and stored in slices, each its own cache entry
 * (the key gets the slice's range). A Range request only fetches the slices it covers.
 * X-Cdn-Slice tells the internal hop that a 206 answers a slice and may be stored.
 */
function sliceDirectives(size: string): string {
  return `            slice ${size};
            proxy_set_header Range $slice_range;
            proxy_set_header X-Cdn-Slice 1;
`;
}

/** Methods the sliced locations hand to the unsliced one (nginx would repeat them per slice). */
const UNSLICED_METHODS = `
    map $request_method $cdn_method_unsliced {
        default 1;
        GET "";
        HEAD "";
    }
`;

/**
 * The cache lookup and fetch, shared by the public location, the sliced ones and
 * the internal ones for debug and for HEAD/Range requests (which differ only in their header filter,
 * in counting sent bytes in the log phase and in passing the original URI).
 */
function cacheLocation(o: CacheLocationOptions): string {
  return `${o.slice ? sliceDirectives(o.slice) : NOT_A_SLICE}            # The request's signature, one variable for the Lua key lookup.
            # ($cdn_rq, $cdn_rs, $cdn_cc, $cdn_cs: short, as Lua reads them by name; see edge.lua)
            set $cdn_rq "${o.noRange ? '0' : '$cdn_range_ignored'}$cdn_if_modified_since$http_accept_encoding\\n$http_accept\\n$http_host$request_uri";
            set_by_lua_block $cdn_cache_key { return ${EDGE}.cache_key() }
            if ($cdn_cache_key = "") {
                rewrite ^ /__cdn_reject last;
            }

            proxy_cache edge;
            proxy_cache_key $cdn_cache_key${o.slice ? '$slice_range' : ''};
            # Set for the one request that refreshes a soft-purged object.
            proxy_cache_bypass $cdn_refresh;
${o.policy.bypassCookies ? COOKIE_BYPASS : ''}${o.policy.storeSetCookie ? STORE_SET_COOKIE : ''}            proxy_cache_methods GET HEAD;
            # Conditional revalidation of expired entries (If-None-Match / If-Modified-Since).
            proxy_cache_revalidate on;
            # Concurrent misses for one key wait for the first fetch (collapsing).
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            proxy_cache_lock_age 10s;
            # How long stale entries may be used is decided per response by the
            # internal hop (stale-while-revalidate / stale-if-error, cut to 0 by
            # must-revalidate or no-cache); error or timeout here would serve
            # stale regardless of those limits. updating (cache.staleWhileUpdating):
            # while one request refreshes an expired entry, the others get it as is.
            # With it, nginx would also serve the request that starts a refresh stale
            # and refresh in the background, every time: so no background updates then
            # (the first request after expiry waits, as RFC 9111 asks).
            proxy_cache_use_stale ${o.policy.useStale};
            proxy_cache_background_update ${o.policy.useStale === 'updating' ? 'off' : 'on'};
            # Byte ranges are cut from the stored object (also on the miss that
            # stores it), whether or not the origin advertises Accept-Ranges.
            proxy_force_ranges on;

            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The Host the key was built from (an absolute-form target cannot
            # make the origin answer for another host than the one keyed).
            proxy_set_header Host $http_host;
            proxy_set_header X-Request-Id $cdn_request_id;
            # Tells the internal hop this fetch revalidates an expired entry.
            proxy_set_header X-Cdn-Cache-State $upstream_cache_status;
            # Under which key a 304 to a revalidation is recorded (revalidated.lua).
            proxy_set_header X-Cdn-Key $cdn_cache_key${o.slice ? '$slice_range' : ''};
            # The debug token of a debug request never leaves the edge.
            proxy_set_header X-Cdn-Debug "";
${DROP_OVERRIDE_HEADERS}
            # 16 KiB buffers: nginx's 4 KiB ones cost about twice the CPU per 100 KiB response.
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            proxy_buffers 16 16k;
            proxy_buffer_size 16k;
            proxy_pass ${o.upstream};

            # The stored Date is the origin's. The stored Cache-Control is the one
            # written for nginx; the header filter restores the origin's from
            # X-Cdn-Meta for browsers.
            proxy_pass_header Date;
            proxy_hide_header Cache-Control;
            proxy_hide_header X-Cdn-Meta;
            proxy_hide_header Surrogate-Key;
            proxy_hide_header Cache-Status;
            # The origin's request id belongs to the request that fetched the
            # object, not to the ones served from the cache.
            proxy_hide_header X-Request-Id;

            header_filter_by_lua_block { ${o.headerFilter}(${o.sizedAtLog ? 'true' : ''}) }
${RESPONSE_HEADERS}${o.sizedAtLog ? `            log_by_lua_block { ${o.log ?? `${EDGE}.log_sent_bytes`}() }\n` : ''}`;
}

/**
 * The headers the public header filter decides (edge.lua) are added by nginx
 * from the variables it sets: a variable write costs the hit path about a
 * quarter of what adding a header from Lua does (callgrind). Runs after the Lua
 * filter; an empty variable adds nothing. "always": a stored 404 says them too.
 */
const RESPONSE_HEADERS = `            add_header Cache-Control $cdn_cc always;
            add_header Age $cdn_age always;
            add_header Cache-Status $cdn_cs always;
`;

/**
 * HITs on hot objects reuse the cache file's descriptor instead of an open, fstat
 * and close each (3 of a small HIT's 8 system calls). Safe with proxy_cache: nginx
 * passes the stored entry's inode and reopens the file when a newer response has
 * replaced it. A file the cache manager removed keeps its disk space until it has
 * been idle for `inactive`. renderNginxConf's descriptor limit leaves room for
 * `max` beside the connections. Exported for the benchmark's tuned reference.
 */
/**
 * A body up to this size leaves with its header in one write, one packet: sendfile
 * would send the header and the body in two, which costs a 1 KiB HIT about 40% of
 * its throughput (bench:edge). Larger bodies go out by sendfile, from the page
 * cache: read into memory they would take several reads and writes of
 * output_buffers each (32 KiB: nginx's default, for which the crossover measured
 * here lies between 32 and 48 KiB).
 */
export const SENDFILE_ABOVE = 32 * 1024;

/**
 * The public location's switch between the two: sendfile off, unless the key
 * lookup found that the last response to the same request was larger than
 * SENDFILE_ABOVE (or of unknown size) and set $cdn_sendfile. An `if` here only
 * switches the location's settings; the request is still proxied and cached.
 */
const SENDFILE_BY_SIZE = {
  off: `            # Small bodies leave with their header in one write (SENDFILE_ABOVE).
            sendfile off;
            output_buffers 2 ${SENDFILE_ABOVE / 1024}k;
`,
  on: `            # Larger ones by sendfile: the key lookup remembers the size per request.
            if ($cdn_sendfile) {
                sendfile on;
            }
`,
};

export const OPEN_FILE_CACHE = `        # Hot cache files stay open: a HIT skips an open, fstat and close.
        open_file_cache max=4096 inactive=30s;
        open_file_cache_valid 30s;
`;

/**
 * On the internal listener: the balancer's invalidation of what a write answered
 * by another edge named in Location / Content-Location (RFC 9111 §4.4;
 * balancer/lua/cdn/balancer/writes.lua, edge/lua/cdn/edge/internal.lua).
 */
const INVALIDATE_LOCATION = '        location = /invalidate { content_by_lua_block { require("cdn.edge.internal").serve_invalidate() } }';

/** The object store, for raw asset reads on misses (S3 storage only). */
function bucketUpstream(spec: CdnSpec): string {
  if (spec.storage.kind !== 's3') return '';
  const u = new URL(spec.storage.endpoint);
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  return `
    # Object storage: raw assets are read from the bucket directly on misses.
    upstream bucket {
        server ${u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname}:${port} max_fails=0;
        keepalive 32;
    }
`;
}

// Set by upstream() for a read from the bucket: the object path, and whether the
// client sent Authorization (the request then carries the edge's signature).
const BUCKET_VARIABLES = `        set $cdn_s3_object "";
        set $cdn_client_auth "";
        set $cdn_bucket_host "";
`;

// Misses and revalidations from the bucket take one location that turns S3's
// answers into the origin's (the freshness rules run on them as on any other).
const BUCKET_JUMP = `            if ($cdn_s3_object) {
                return 419;
            }
            error_page 419 = @bucket;
`;

function bucketLocations(): string {
  return `
        # S3's error bodies name the bucket and key and are never passed on: a
        # missing key is the origin's 404 (cached briefly: creating the asset
        # purges it), anything else a dropped connection, so a miss fails and an
        # expired object is served stale within its stale-if-error, and nothing
        # is stored. Not-modified (304) answers go through.
        location @bucket {
            proxy_intercept_errors on;
            error_page 404 = @bucket_missing;
            error_page 301 302 307 400 403 405 409 411 412 416 500 501 502 503 504 = @bucket_refused;
            # The Host the read is signed for: $http_host would be the value the
            # request arrived with if anything read it before upstream() replaced it
            # (nginx keeps a variable's first value for the request).
            proxy_set_header Connection "";
            proxy_set_header Host $cdn_bucket_host;
            proxy_pass $cdn_upstream$cdn_s3_object;
        }
        location @bucket_missing {
            return 404 '${JSON.stringify({ error: Errors.CDN_ERR_ASSET_NOT_FOUND.code, message: Errors.CDN_ERR_ASSET_NOT_FOUND.message })}\\n';
        }
        location @bucket_refused {
            content_by_lua_block { require("cdn.edge.fetch").bucket_refused() }
        }
`;
}

/**
 * Signed downloads under `prefix` (spec downloads.prefixes, docs/downloads.md): the
 * key lookup verifies the token (403 before any lookup) and keys the object without
 * it; tokens with a use limit continue in a location of their own, where Redis counts
 * the bytes served. Every response says Cache-Control: private and no-referrer.
 */
function downloadLocation(prefix: string, index: number, sliceSize: string | undefined, policy: CachePolicy): string {
  const counted = `/__cdn_download_counted_${index}`;
  const unsliced = sliceSize
    ? `            # only GET and HEAD are sliced: nginx would repeat any other method
            # once per slice
            if ($cdn_method_unsliced) {
                rewrite ^ /__cdn_partial last;
            }
`
    : '';
  const filter = `${EDGE}.download_header_filter`;
  return `
        # Signed downloads under ${prefix}: a valid token or 403; tokens never
        # reach the cache key, the origin or a log (docs/downloads.md).
        location ^~ ${prefix} {
${unsliced}${cacheLocation({ headerFilter: filter, upstream: 'http://fetch', sizedAtLog: true, policy, slice: sliceSize })}            # a token with a use limit: counted, fleet-wide, in Redis
            if ($cdn_download_counted) {
                rewrite ^ ${counted} last;
            }
        }
        location = ${counted} {
            internal;
            access_by_lua_block { require("cdn.edge.downloads").access() }
${cacheLocation({ headerFilter: filter, upstream: 'http://fetch$request_uri', sizedAtLog: true, policy, slice: sliceSize, log: `${EDGE}.log_download` })}        }
`;
}

export function renderEdge(spec: CdnSpec, topology: Topology, edge: EdgePlacement, layout: Layout, files?: EdgeSecretFiles): RenderedFile[] {
  const dir = layout.unitDir(`edge-${edge.id}`);
  const settingsPath = path.join(dir, 'edge.json');
  const fetchSocket = path.join(dir, 'fetch.sock');
  const bucket = bucketSettings(spec, layout);
  const policy: CachePolicy = {
    bypassCookies: spec.cache.bypassCookies.length > 0,
    useStale: spec.cache.staleWhileUpdating ? 'updating' : 'off',
    storeSetCookie: spec.cache.storeSetCookie,
  };
  const slice = spec.cache.slice;
  // Longer prefixes than "/" (^~: and no regex is tried): their requests never
  // take the debug or HEAD/Range detours of "location /" (their bytes are all
  // counted in the log phase anyway).
  const downloads = spec.downloads.prefixes;
  const slicedLocations = (slice?.prefixes ?? [])
    // (a protected prefix is sliced in its own location: downloadLocations)
    .filter((prefix) => !downloads.includes(prefix))
    .map(
      (prefix) => `
        # Large objects under ${prefix}: fetched and stored in ${slice!.size} slices.
        location ^~ ${prefix} {
            # only GET and HEAD are sliced: nginx would repeat any other method
            # once per slice
            if ($cdn_method_unsliced) {
                rewrite ^ /__cdn_partial last;
            }
${cacheLocation({ headerFilter: `${EDGE}.slice_header_filter`, upstream: 'http://fetch', sizedAtLog: true, policy, slice: slice!.size })}        }
`,
    )
    .join('');
  const downloadLocations = downloads.map((prefix, i) => downloadLocation(prefix, i, slice?.prefixes.includes(prefix) ? slice.size : undefined, policy)).join('');
  const acknowledgesAcrossRegions = topology.redisReplicas?.[edge.region] !== undefined;
  const ackCa = acknowledgesAcrossRegions ? secretFile(layout, 'redisTlsCa') : undefined;
  if (acknowledgesAcrossRegions && !ackCa) throw new Error('an edge acknowledging across regions needs the Redis CA file (a layout with secret files)');
  const ackTls = ackCa
    ? `    # Acknowledgements go to the primary in another region, over TLS: its
    # certificate must chain to the stack's Redis CA (and name ${REDIS_TLS_SERVER_NAME}).
    lua_ssl_trusted_certificate ${ackCa};
    lua_ssl_verify_depth 2;

`
    : '';
  // A cosocket's own error lines name the request, whose URL holds a download token;
  // the Lua that uses them logs what matters itself, without it.
  const quietSockets = downloads.length > 0 ? '    # (signed downloads) no request URL, so no token, in cosocket error lines\n    lua_socket_log_errors off;\n\n' : '';
  const http = `${ackTls}${quietSockets}    # Disk cache. Keys are computed in Lua (host, normalised path, filtered query,
    # invalidation generations); purges change the key instead of deleting files.
    # https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_cache_path
    proxy_cache_path cache levels=1:2 keys_zone=edge:${spec.cache.keysZone} max_size=${spec.cache.maxSize} inactive=${spec.cache.inactive} use_temp_path=off;
    proxy_temp_path tmp;
    client_body_temp_path tmp;

    # The CDN's own origin: misses for the assets it stores, and whatever no
    # external origin or the bucket answers. max_fails=0: one origin, never
    # marked down (a failed fetch is served stale within its limits instead).
    upstream origin {
        server ${hostPort(topology.origin.reach)} max_fails=0;
        keepalive 32;
    }
${externalRoutes(spec)
  .map((r) => `
    # External origin for "${r.match}"
    upstream ${r.upstream.replace(/^https?:\/\//, '')} {
        server ${r.server} max_fails=0;
        keepalive 16;
    }
`)
  .join('')}
${bucket ? bucketUpstream(spec) : ''}
    # The internal hop that decides freshness before the public server stores a
    # response (nginx reads it from headers while receiving them; see freshness.lua).
    upstream fetch {
        server unix:${fetchSocket} max_fails=0;
        keepalive 64;
    }

    # RFC 9110 §14.2: an unparsable Range is ignored (the whole body, 200);
    # nginx would answer 416, so the key lookup drops it.
    map $http_range $cdn_range_ignored {
        "" 0;
        "~^bytes=[\\d\\s]*-[\\d\\s]*[\\d\\s,-]*$" 0;
        default 1;
    }

    # What the public header filter reads, as one variable: each ngx.var read
    # costs the hit path about as much as nginx's cache lookup (see edge.lua).
    map "" $cdn_rs {
        default "$upstream_cache_status $upstream_http_x_cdn_meta";
    }

    # "?" in the request's signature marks a request conditional on a date
    # (If-Modified-Since): the key lookup then lets If-None-Match take
    # precedence (RFC 9110 §13.2.2), before nginx's not-modified filter runs.
    map $http_if_modified_since $cdn_if_modified_since {
        "" "";
        default "?";
    }

${cookieBypassMap(spec.cache.bypassCookies)}
${slice ? UNSLICED_METHODS : ''}
    # Shopper traffic, from the balancer.
    server {
        listen ${hostPort(edge.traffic.listen)} backlog=4096;
        server_name _;
${OPEN_FILE_CACHE}        # One range per response: a multi-range request gets the whole object
        # (1,100 ranges once made a 124 KB multipart answer of a small one).
        max_ranges 1;
        # Bodies (forms, carts to an external origin) are passed on as they arrive,
        # not read whole first: an origin that refuses them answers at once.
        proxy_request_buffering off;
        # The variables the Lua phases set are declared in /__cdn_vars below, not
        # set to "" here by every request (six sets cost a HIT ~650 instructions);
        # one never set reads as "", which is all the config asks of them.
        uninitialized_variable_warn off;

        # Purging is an API of the origin with a token, never a method here
        # (PURGE and BAN are methods other caches take). Two comparisons cost
        # every request less than a map.
        if ($request_method = PURGE) {
            return 405;
        }
        if ($request_method = BAN) {
            return 405;
        }

        location / {
            # With an X-Cdn-Debug header the same lookup runs in a location whose
            # header filter adds the key, variant and tags (for the debug token
            # only). One native test here keeps that Lua off every other request;
            # being inside "location /", it never reaches the exact matches below.
            if ($http_x_cdn_debug) {
                rewrite ^ /__cdn_debug last;
            }
            # HEAD and Range responses send fewer body bytes than the stored
            # object's length, and nginx cuts ranges after the header filter ran:
            # their bytes are counted in a log phase that plain GETs do without.
            if ($request_method = HEAD) {
                rewrite ^ /__cdn_partial last;
            }
            # (any value, "0" too: the lookup here takes Range as absent)
            if ($http_range != "") {
                rewrite ^ /__cdn_partial last;
            }
${SENDFILE_BY_SIZE.off}${cacheLocation({ headerFilter: `${EDGE}.header_filter`, upstream: 'http://fetch', sizedAtLog: false, policy, noRange: true })}${SENDFILE_BY_SIZE.on}        }
${slicedLocations}${downloadLocations}

        # HEAD and Range requests (rewritten from "location /"): the same lookup,
        # with the bytes actually sent counted in the log phase.
        location = /__cdn_partial {
            internal;
${cacheLocation({ headerFilter: `${EDGE}.header_filter`, upstream: 'http://fetch$request_uri', sizedAtLog: true, policy })}        }

        # Requests with X-Cdn-Debug: the same lookup; with the debug token the
        # response also names the cache key, the variant and the tags.
        location = /__cdn_debug {
            internal;
${cacheLocation({ headerFilter: 'require("cdn.edge.debug").header_filter', upstream: 'http://fetch$request_uri', sizedAtLog: true, policy })}        }

        # Declares the variables the Lua phases set (no request comes here). The key
        # lookup sets $cdn_reject (why a target is refused), $cdn_refresh (for the one
        # request that refreshes a soft-purged object) and $cdn_sendfile (for large
        # bodies); the public header filter sets $cdn_cc, $cdn_age and $cdn_cs, which
        # nginx adds as Cache-Control, Age and Cache-Status (RESPONSE_HEADERS).
        location = /__cdn_vars {
            internal;
            set $cdn_reject "";
            set $cdn_refresh "";
            set $cdn_sendfile "";
            set $cdn_cc "";
            set $cdn_age "";
            set $cdn_cs "";
${downloads.length > 0 ? '            # set by the key lookup for a download token with a use limit\n            set $cdn_download_counted "";\n' : ''}            return 404;
        }

        # Targets the key lookup refused: 400 with the reason ($cdn_reject), 403
        # for an image URL whose signature fails.
        location = /__cdn_reject {
            internal;
            content_by_lua_block { ${EDGE}.reject() }
        }

        # The origin's operational endpoints are for monitoring, not the internet
        # (exact matches: a regex location would be tried on every request).
        location = /metrics { return 404; }
        location = /healthz { return 404; }
        location = /readyz { return 404; }
    }

    # The internal hop, on a unix socket: picks the origin of a miss and decides,
    # from the response's headers, whether and how long the public server above
    # stores it (nginx decides that while reading the headers, before any Lua
    # filter of the public server could change them).
    server {
        listen unix:${fetchSocket};
        access_log off;
        proxy_request_buffering off;
        # Headers leave as soon as they are decided, not with the first body
        # bytes: the 502 fetch.lua puts in place of an origin's 1xx reaches the
        # public server at once (what follows is read until the origin closes).
        postpone_output 0;
        set $cdn_upstream_sni "";
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Cdn-Cache-State "";
        proxy_set_header X-Cdn-Slice "";
        proxy_set_header X-Cdn-Key "";
        # Origins see the shopper's Host, never an upstream block's name.
        proxy_set_header Host $http_host;
        # Freshness is computed from the origin's Date, not this hop's clock.
        proxy_pass_header Date;
        # The origin's request id belongs to the request that fetched the
        # object: never stored, so no HIT parses it only to hide it.
        proxy_hide_header X-Request-Id;
        # Nor its Accept-Ranges: the public server cuts ranges itself
        # (proxy_force_ranges), advertises them itself, and drops an upstream's.
        proxy_hide_header Accept-Ranges;
        # The origin's Expires is put back by the header filter after
        # X-Accel-Expires (fetch.lua): ahead of it, nginx would refuse to store a
        # response whose Expires is past or invalid even when max-age allows it.
        proxy_hide_header Expires;
        # Which origin serves this request: the CDN's own or an external one
        # mapped by host or path prefix (every method is passed through); with S3
        # storage, raw asset reads go to the bucket ($cdn_s3_object, signed).
        # It also sets $cdn_fetch_uri: the raw path with the query exactly as keyed
        # (sorted, marketing parameters dropped), so an origin can never answer
        # for parameters the cache key does not contain.
        set $cdn_fetch_uri "";
        # The cache key of the fetch and, for a revalidation, the stored copy's
        # validator (kept before a bucket read drops the request's headers; see
        # revalidated.lua).
        set $cdn_fetch_key "";
        set $cdn_fetch_validator "";
        # "1" for a revalidation whose failure may fall back on the stored copy
        # (upstream(): not when the stored copy is itself a 5xx).
        set $cdn_revalidate "";
${bucket ? BUCKET_VARIABLES : ''}        set_by_lua_block $cdn_upstream { return require("cdn.edge.fetch").upstream() }
        proxy_ssl_server_name on;
        proxy_ssl_name $cdn_upstream_sni;
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
        proxy_connect_timeout 2s;
        proxy_read_timeout 30s;
        proxy_buffers 16 16k;
        proxy_buffer_size 16k;
        # Retries only for idempotent requests, on connection errors only.
        proxy_next_upstream error timeout;
        header_filter_by_lua_block { require("cdn.edge.fetch").header_filter() }
        # (drops the body of a response the header filter replaced: not an asset,
        # or a 1xx nginx 1.22 would take as final)
        body_filter_by_lua_block { require("cdn.edge.fetch").body_filter() }

        # A failed revalidation must look like a connection error to the public
        # server: nginx only honours a response's own stale-if-error (and so
        # must-revalidate and the grace) for those; for 5xx statuses it would
        # serve stale without any bound.
        # @revalidate is itself reached through error_page, and must hand its
        # failures on to @drop.
        recursive_error_pages on;
        location / {
            # A GET or HEAD with a body (RFC 9110 §9.3.1: content with no meaning):
            # an origin that reads it could shape a stored response the key does
            # not describe (fat GET poisoning). Refused on the way to the origin;
            # a HIT passes no body anywhere, so the hit path pays nothing for it.
            if ($cdn_upstream = "") {
                return 400 "bad request: a GET or HEAD request with a body\\n";
            }
${bucket ? BUCKET_JUMP : ''}            if ($cdn_revalidate) {
                return 418;
            }
            error_page 418 = @revalidate;
            error_page 502 504 = @drop;
            proxy_pass $cdn_upstream$cdn_fetch_uri;
        }
        location @revalidate {
            proxy_intercept_errors on;
            error_page 500 502 503 504 = @drop;
            proxy_pass $cdn_upstream$cdn_fetch_uri;
        }
        location @drop {
            return 444;
        }
${bucket ? bucketLocations() : ''}    }

${internalServer(hostPort(edge.internal.listen), 'cdn.edge.internal', INVALIDATE_LOCATION)}`;
  const conf = renderNginxConf({
    layout,
    workers: spec.workers,
    client: clientLimits(spec),
    luaRoots: [layout.edgeLuaRoot, layout.sharedLuaRoot],
    sharedDicts: {
      cdn_gens: { size: '16m', holds: 'Invalidation generations per path and prefix, part of every cache key (purges)' },
      cdn_tags: { size: '32m', holds: 'The paths each Surrogate-Key tag was fetched for (tag purges)' },
      cdn_stored: { size: '8m', holds: 'Paths that may have a stored response (invalidation by unsafe methods)' },
      cdn_fetching: { size: '4m', holds: 'GETs on their way to the origin (a write meanwhile still invalidates them)' },
      cdn_revalidated: { size: '8m', holds: "What the last 304 said of a stored response (nginx keeps the stored headers)" },
      cdn_freshness: { size: '8m', holds: 'The freshness fields of stored responses, for the 304s that repeat none (RFC 9111 §4.3.4)' },
      cdn_state: { size: '1m', holds: "The purge reader's position and connection state" },
      cdn_metrics: { size: '4m', holds: 'Counters and histograms served on /metrics' },
      // (kept for a day longer than any token lives)
      cdn_revoked: { size: '4m', holds: 'Revoked download tokens, and paths whose earlier tokens are revoked (docs/downloads.md)' },
      ...(bucket ? { cdn_bucket: { size: '8m', holds: 'Sha256, Cache-Control and tags of objects read from the bucket (a 304 from S3 repeats none)' } } : {}),
    },
    init: `${EDGE} = require("cdn.edge"); ${EDGE}.init(${luaString(settingsPath)})`,
    initWorker: `${EDGE}.init_worker()`,
    continueRequestId: true,
    redactSignatures: spec.downloads.prefixes.length > 0,
    http,
  });
  return [
    { path: 'conf/nginx.conf', content: conf },
    { path: 'edge.json', content: JSON.stringify(edgeSettings(spec, topology, edge, layout, files), null, 2) + '\n' },
  ];
}
