/** Renders redis.conf for the invalidation bus. */
import type { Topology } from '../model/topology';
import type { RenderedFile } from '../model/rendered-file';

export interface RedisOptions {
  /**
   * A secret-only file holding `requirepass ...` (see renderRedisAuth), included
   * last so redis.conf itself never carries the password.
   */
  authInclude?: string;
  /** Render a read-only replica of the primary for this region (topology.redisReplicas). */
  replicaOf?: string;
  /** The certificate, key and CA files (secret files), wanted when the topology has redisTls. */
  tls?: RedisTlsFiles;
}

export interface RedisTlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/**
 * The links that cross regions are TLS: the primary opens a TLS port beside its
 * plain one (same bind address), and a replica dials it. Redis wants a certificate
 * and key for either role, so the replicas carry the same ones as the primary.
 */
function renderTls(topology: Topology, role: 'primary' | 'replica', files: RedisTlsFiles | undefined): string {
  const tls = topology.redisTls;
  if (!tls) return '';
  if (!files) throw new Error('a topology with a Redis TLS listener needs the TLS files to render redis.conf');
  const common = `tls-cert-file ${files.cert}\ntls-key-file ${files.key}\ntls-ca-cert-file ${files.ca}\n`;
  if (role === 'replica') return `# Replication crosses regions: over TLS, to the primary's TLS port, verified against the CA.\ntls-replication yes\n${common}`;
  if (tls.listen.host !== topology.redis.listen.host) throw new Error('the Redis TLS listener must bind the address the plain one binds');
  return `# The links from other regions (replicas, edges acknowledging) arrive here, over TLS.
# Clients prove themselves with the password, not a certificate.
tls-port ${tls.listen.port}
tls-auth-clients no
${common}`;
}

export function renderRedis(topology: Topology, options: RedisOptions = {}): RenderedFile[] {
  const listen = options.replicaOf ? topology.redisReplicas![options.replicaOf].listen : topology.redis.listen;
  const replica = options.replicaOf
    ? `# A read-only replica of the primary, for the edges of region ${options.replicaOf}: it
# keeps answering while the link to the primary is down (replica-serve-stale-data)
# and catches up with a partial resync when it returns.
replicaof ${(topology.redisTls ?? topology.redis).reach.host} ${(topology.redisTls ?? topology.redis).reach.port}
replica-read-only yes
replica-serve-stale-data yes
# The stream's backlog a replica may need after a flap: partial resyncs, not full ones.
repl-backlog-size 64mb
`
    : topology.redisReplicas
      ? `# Regional replicas sync from here: start a full sync at once (Redis waits 5 s
# for more replicas by default), so a new or returning region catches up quickly.
repl-diskless-sync-delay 0
repl-backlog-size 64mb
`
      : '';
  const conf = `# Rendered by the CDN's renderer: do not edit, change the spec instead.
bind ${listen.host}
port ${listen.port}
protected-mode yes
daemonize no
dir ./data
logfile ""
# The purge stream must survive a Redis restart so edges can catch up from it.
appendonly yes
appendfsync everysec
save ""
${replica}${renderTls(topology, options.replicaOf ? 'replica' : 'primary', options.tls)}${options.authInclude ? `# Clients authenticate with the password in this secret file (a replica to its primary too).\ninclude ${options.authInclude}\n` : ''}`;
  return [{ path: 'redis.conf', content: conf }];
}

/**
 * The content of the secret file redis.conf includes. Passwords are limited to
 * visible ASCII without quotes or backslashes, so they need no escaping here and
 * survive the edge's and the origin's trimmed one-line reads unchanged.
 */
export function renderRedisAuth(password: string): string {
  if (!/^[\x21-\x7e]{16,}$/.test(password) || /["'\\]/.test(password)) {
    throw new Error('the Redis password must be at least 16 visible ASCII characters without quotes, backslashes or spaces');
  }
  // masterauth: a replica authenticates to its primary with the same password
  return `requirepass "${password}"\nmasterauth "${password}"\n`;
}
