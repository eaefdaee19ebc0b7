/**
 * The transform queue: how many run, how many wait, who is refused at once, and that a
 * slot comes back however the transform ended.
 */
import { describe, expect, test } from '@jest/globals';
import { CdnError } from '../../../infra/model/errors';
import { TransformQueue } from './transform-queue';

/** A promise the test settles by hand. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every already-settled promise callback run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('TransformQueue', () => {
  test('never runs more than `concurrency` at once, and runs the waiters in arrival order', async () => {
    const queue = new TransformQueue({ concurrency: 2, maxQueued: 10 });
    let inFlight = 0;
    let peak = 0;
    const started: number[] = [];
    const gates = Array.from({ length: 7 }, () => deferred());

    const results = gates.map((gate, i) =>
      queue.run(async () => {
        started.push(i);
        inFlight++;
        peak = Math.max(peak, inFlight);
        await gate.promise;
        inFlight--;
        return i * 10;
      }),
    );
    await settle();
    expect(started).toEqual([0, 1]);
    expect(queue.running).toBe(2);
    expect(queue.queued).toBe(5);

    // Finish them out of order: each finished one lets exactly the next waiter in.
    gates[1].resolve();
    await settle();
    expect(started).toEqual([0, 1, 2]);
    expect(queue.running).toBe(2);
    expect(queue.queued).toBe(4);

    for (const i of [0, 3, 2, 4, 6, 5]) {
      gates[i].resolve();
      await settle();
      expect(inFlight).toBeLessThanOrEqual(2);
    }
    expect(await Promise.all(results)).toEqual([0, 10, 20, 30, 40, 50, 60]);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(peak).toBe(2);
    expect(queue.running).toBe(0);
    expect(queue.queued).toBe(0);
  });

  test('the call after `concurrency` running and `maxQueued` waiting is refused at once with CDN_ERR_IMAGE_BUSY', async () => {
    const queue = new TransformQueue({ concurrency: 2, maxQueued: 3, retryAfterSeconds: 7 });
    const gate = deferred();
    const accepted = Array.from({ length: 5 }, () => queue.run(() => gate.promise));
    await settle();
    expect(queue.running).toBe(2);
    expect(queue.queued).toBe(3);

    let called = false;
    const refused = queue.run(async () => {
      called = true;
    });
    // Refused without waiting for a slot: it settles while all five are still held.
    const err = await refused.then(
      () => {
        throw new Error('expected a rejection');
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CdnError);
    expect(err).toMatchObject({ code: 'CDN_ERR_IMAGE_BUSY', httpStatus: 503, details: { retryAfterSeconds: 7 } });
    expect(called).toBe(false);
    expect(queue.running).toBe(2);
    expect(queue.queued).toBe(3); // the refused call took no place in the queue

    gate.resolve();
    await Promise.all(accepted);
    expect(queue.running).toBe(0);
    // With room again, the same call is accepted.
    await expect(queue.run(async () => 'ok')).resolves.toBe('ok');
  });

  test('maxQueued 0 refuses as soon as every slot is taken; retryAfterSeconds defaults to 1', async () => {
    const queue = new TransformQueue({ concurrency: 1, maxQueued: 0 });
    const gate = deferred();
    const first = queue.run(() => gate.promise);
    await expect(queue.run(async () => 'second')).rejects.toMatchObject({
      code: 'CDN_ERR_IMAGE_BUSY',
      details: { retryAfterSeconds: 1 },
    });
    gate.resolve();
    await first;
  });

  test('a slot is released when fn throws or rejects, and handed to the next waiter', async () => {
    const queue = new TransformQueue({ concurrency: 1, maxQueued: 2 });
    const gate = deferred();
    const failing = queue.run(async () => {
      await gate.promise;
      throw new Error('decode failed');
    });
    const throwingSync = queue.run((() => {
      throw new Error('thrown before any promise');
    }) as () => Promise<never>);
    const next = queue.run(async () => 'next');
    await settle();
    expect(queue.running).toBe(1);
    expect(queue.queued).toBe(2);

    gate.resolve();
    await expect(failing).rejects.toThrow('decode failed');
    await expect(throwingSync).rejects.toThrow('thrown before any promise');
    await expect(next).resolves.toBe('next');
    expect(queue.running).toBe(0);
    expect(queue.queued).toBe(0);

    // And the freed slots are really free: concurrency-many run again straight away.
    let ran = false;
    await queue.run(async () => {
      ran = true;
      expect(queue.running).toBe(1);
    });
    expect(ran).toBe(true);
  });

  test('refuses nonsense options', () => {
    expect(() => new TransformQueue({ concurrency: 0, maxQueued: 1 })).toThrow(RangeError);
    expect(() => new TransformQueue({ concurrency: 1.5, maxQueued: 1 })).toThrow(RangeError);
    expect(() => new TransformQueue({ concurrency: 1, maxQueued: -1 })).toThrow(RangeError);
    expect(() => new TransformQueue({ concurrency: 1, maxQueued: 1, retryAfterSeconds: 0.5 })).toThrow(RangeError);
  });
});
