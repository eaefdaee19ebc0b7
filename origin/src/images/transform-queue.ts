/**
 * Bounds image transforms in flight. Each one holds a decoded image and a libvips thread
 * pool's worth of CPU, so the origin runs a few at a time, lets a few more wait, and
 * answers the rest at once with CDN_ERR_IMAGE_BUSY (503 + Retry-After): a burst of
 * cache misses costs a retry, never an unbounded list of waiting closures and buffers.
 */
import { cdnError } from '../../../infra/model/errors';

export class TransformQueue {
  private readonly concurrency: number;
  private readonly maxQueued: number;
  private readonly retryAfterSeconds: number;
  private active = 0;
  /** Waiters in arrival order; each is resolved with a slot already counted in `active`. */
  private readonly waiting: Array<() => void> = [];

  /**
   * concurrency: transforms that run at once; maxQueued: transforms that may wait for a
   * slot (beyond them run() refuses); retryAfterSeconds: told to refused clients as
   * Retry-After, default 1.
   */
  constructor(options: { concurrency: number; maxQueued: number; retryAfterSeconds?: number }) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError(`TransformQueue: concurrency must be an integer >= 1, got ${options.concurrency}`);
    }
    if (!Number.isInteger(options.maxQueued) || options.maxQueued < 0) {
      throw new RangeError(`TransformQueue: maxQueued must be an integer >= 0, got ${options.maxQueued}`);
    }
    const retryAfter = options.retryAfterSeconds ?? 1;
    if (!Number.isInteger(retryAfter) || retryAfter < 0) {
      throw new RangeError(`TransformQueue: retryAfterSeconds must be an integer >= 0, got ${retryAfter}`);
    }
    this.concurrency = options.concurrency;
    this.maxQueued = options.maxQueued;
    this.retryAfterSeconds = retryAfter;
  }

  /**
   * Runs fn when a slot is free. When `concurrency` run and `maxQueued` wait already,
   * throws cdnError('CDN_ERR_IMAGE_BUSY', ..., { details: { retryAfterSeconds } }) at once
   * (no unbounded memory).
   */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active < this.concurrency) {
      this.active++;
    } else if (this.waiting.length < this.maxQueued) {
      // release() hands its slot straight to us (active is not decremented in between),
      // so a caller arriving meanwhile cannot jump the queue.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      throw cdnError('CDN_ERR_IMAGE_BUSY', `${this.active} running and ${this.waiting.length} waiting`, {
        details: { retryAfterSeconds: this.retryAfterSeconds },
      });
    }

    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) {
      next();
    } else {
      this.active--;
    }
  }
}
