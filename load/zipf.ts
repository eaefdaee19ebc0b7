/**
 * Zipf-distributed ranks, shared by the Node load generator (load/storefront.ts) and
 * the k6 scripts (load/k6/lib.ts): no imports, so both runtimes can load it.
 */
export function zipf(n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += 1 / Math.pow(i + 1, s);
    cdf[i] = total;
  }
  for (let i = 0; i < n; i++) cdf[i] /= total;
  return () => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}
