/** Renders redis.conf for the invalidation bus. */
import type { Topology } from './topology';
import type { RenderedFile } from './units';

export function renderRedis(topology: Topology): RenderedFile[] {
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
`;
  return [{ path: 'redis.conf', content: conf }];
}
