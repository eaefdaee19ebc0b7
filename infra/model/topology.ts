/**
 * Where each service listens and how its peers reach it. The spec says what to run;
 * a topology says where: 127.0.0.1 with free ports natively, container names on a
 * Docker network, private IPs on EC2. Renderers take a resolved topology, so they
 * stay pure and target-independent.
 */
import type { EdgeIdentity } from './spec';

export interface Endpoint {
  host: string;
  port: number;
}

/** `listen` is the socket a service binds; `reach` is the address its peers dial. */
export interface Placement {
  listen: Endpoint;
  reach: Endpoint;
}

/** An nginx service with two listeners. */
export interface FrontPlacement {
  /** Shopper traffic. */
  traffic: Placement;
  /** Health and /metrics: never exposed to the internet. */
  internal: Placement;
}

export interface EdgePlacement extends EdgeIdentity, FrontPlacement {}

export interface Topology {
  /** The purge stream's Redis: the origin writes to it, the edges acknowledge to it. */
  redis: Placement;
  /**
   * Read-only replicas of it by region: a region's edges follow the purge stream from
   * their own replica, so they keep serving and catch up when the link between
   * regions flaps. Regions without one read the primary.
   */
  redisReplicas?: Record<string, Placement>;
  /**
   * The primary's TLS listener, present with redisReplicas: the replicas replicate
   * and the other regions' edges acknowledge through it, so nothing that crosses
   * regions is plain text. Its certificate names REDIS_TLS_SERVER_NAME.
   */
  redisTls?: Placement;
  /** The origin's delivery listener: what the edges fetch from (GET and HEAD of assets only). */
  origin: Placement;
  /** The origin's API listener (asset and purge API, docs, health, metrics): operators and monitoring only. */
  originApi: Placement;
  balancer: FrontPlacement;
  edges: EdgePlacement[];
  prometheus: Placement | null;
  /** The deployed stacks' own services from images: MinIO (unless the spec names an S3 endpoint), Loki, Grafana. */
  objectStore?: Placement;
  loki?: Placement;
  grafana?: Placement;
  /** The URL shoppers and storefronts use (the balancer, or a DNS name in front of it). */
  publicBaseUrl: string;
}

/** The name in the Redis servers' certificate, which clients verify (they dial addresses, not names). */
export const REDIS_TLS_SERVER_NAME = 'redis.cdn.internal';

/**
 * Where a region's edges acknowledge what they applied: the primary, through its
 * TLS listener when the region reads its own replica (the link crosses regions).
 */
export function acknowledgedAt(topology: Topology, region: string): Placement {
  if (!topology.redisReplicas?.[region]) return topology.redis;
  if (!topology.redisTls) throw new Error('a topology with Redis replicas needs the primary\'s TLS listener (redisTls)');
  return topology.redisTls;
}

export function url(e: Endpoint, path = ''): string {
  const host = e.host.includes(':') ? `[${e.host}]` : e.host;
  return `http://${host}:${e.port}${path}`;
}

export function hostPort(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}
