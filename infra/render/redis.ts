/** Renders redis.conf for the invalidation bus. */
import type { Topology } from '../model/topology';
import type { RenderedFile } from '../model/rendered-file';

export interface RedisOptions {
  /**
   * A secret-only file holding `requirepass ...` (see renderRedisAuth), included
   * last so redis.conf itself never carries the password.
   */
  authInclude?: string;
}

export function renderRedis(topology: Topology, options: RedisOptions = {}): RenderedFile[] {
  const conf = `# Rendered by the CDN's renderer: do not edit, change the spec instead.
bind ${topology.redis.listen.host}
port ${topology.redis.listen.port}
protected-mode yes
daemonize no
dir ./data
logfile ""
# The purge stream must survive a Redis restart so edges can catch up from it.
appendonly yes
appendfsync everysec
save ""
${options.authInclude ? `# Clients authenticate with the password in this secret file.\ninclude ${options.authInclude}\n` : ''}`;
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
  return `requirepass "${password}"\n`;
}
