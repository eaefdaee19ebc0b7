/**
 * Latency histogram buckets in seconds, shared by every layer (origin, edges,
 * balancer), so their histograms aggregate and compare on one dashboard. The origin
 * uses them directly; the edges and the balancer get them in their rendered settings.
 */
export const LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
