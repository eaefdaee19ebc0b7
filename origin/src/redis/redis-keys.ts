/**
 * Every Redis key the origin owns lives under the purge stream's name, so one
 * CDN_PURGE_STREAM keeps two CDNs sharing a Redis apart:
 *
 *   <stream>                       the invalidation stream (edges XREAD it)
 *   <stream>:applied               hash edge -> last applied stream id (written by edges)
 *   <stream>:purge:<id>            hash: streamId, at, source, message (TTL)
 *   <stream>:purge:<id>:edges      hash edge -> epoch ms the origin first saw it applied (TTL)
 *   <stream>:dedup:<sha256>        purge id of an identical recent purge (PX window)
 *   <stream>:rate:<token>:<sec>    API purges of a token in one second (expires)
 *   <stream>:tag:<tag>             sorted set of asset keys carrying the tag (score 0: by key)
 *   <stream>:revocations           hash of download revocations (t:<token id>, p:<path>), pruned
 *   <stream>:warm:<id>             a warming job's progress, JSON (TTL)
 *   <stream>:launches              sorted set of launch ids by time (score: epoch ms of `at`)
 *   <stream>:launches:due          sorted set of launch steps not yet run, "<id>:warm" and
 *                                  "<id>:purge" (score: epoch ms when due); whoever ZREMs one runs it
 *   <stream>:launch:<id>           hash: the launch as asked (field "launch", JSON) and one
 *                                  field per fact of its run (warmId, purgedAt, ...) (TTL)
 */
export class RedisKeys {
  constructor(readonly stream: string) {}

  get applied(): string {
    return `${this.stream}:applied`;
  }

  purge(id: string): string {
    return `${this.stream}:purge:${id}`;
  }

  purgeEdges(id: string): string {
    return `${this.stream}:purge:${id}:edges`;
  }

  dedup(hash: string): string {
    return `${this.stream}:dedup:${hash}`;
  }

  rate(tokenName: string, second: number): string {
    return `${this.stream}:rate:${tokenName}:${second}`;
  }

  tag(tag: string): string {
    return `${this.stream}:tag:${tag}`;
  }

  /** Download revocations (field t:<token id> or p:<path>), which restarting edges load. */
  get revocations(): string {
    return `${this.stream}:revocations`;
  }

  warm(id: string): string {
    return `${this.stream}:warm:${id}`;
  }

  get launches(): string {
    return `${this.stream}:launches`;
  }

  get launchesDue(): string {
    return `${this.stream}:launches:due`;
  }

  launch(id: string): string {
    return `${this.stream}:launch:${id}`;
  }
}

/** Stream ids are "<ms>-<seq>"; compares them numerically (ms, then seq). */
export function compareStreamIds(a: string, b: string): number {
  const [aMs, aSeq] = splitId(a);
  const [bMs, bSeq] = splitId(b);
  if (aMs !== bMs) {
    return aMs < bMs ? -1 : 1;
  }
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

function splitId(id: string): [bigint, bigint] {
  const match = /^(\d+)(?:-(\d+))?$/.exec(id);
  if (match === null) {
    return [-1n, -1n];
  }
  return [BigInt(match[1]), BigInt(match[2] ?? '0')];
}
