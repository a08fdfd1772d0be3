import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryThrottleStore,
  RedisThrottleStore,
  type ThrottleStore,
} from '../../../src/platform/limits/throttle-store.ts';
import { assertRedisAnswers, TEST_REDIS_URL } from '../../helpers/redis.ts';

// The contract both throttling stores keep (src/platform/limits/throttle-store.ts), on a real Redis and in
// memory: a counter starts at 1 and expires on its own, reads of an absent key are zero, set and
// delete. Needs Redis: runs with SCALE_OUT=1 (vitest.config.ts), as the other Redis suites do.

let redis: Redis;
let clock = 1_000_000;
const memory = new MemoryThrottleStore({ maxKeys: 1000, now: () => clock });

beforeAll(async () => {
  await assertRedisAnswers();
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  memory.close();
  const keys = await redis.keys('throttle-store-test:*');
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const key = () => randomBytes(6).toString('hex');

describe.for([
  { name: 'memory', store: (): ThrottleStore => memory },
  { name: 'redis', store: (): ThrottleStore => new RedisThrottleStore(redis, 'throttle-store-test:') },
])('$name store', ({ store }) => {
  it('counts from 1, keeping the first expiry; an absent key reads as zero', async () => {
    const s = store();
    const k = key();
    expect(await s.read(k)).toEqual({ count: 0, ttlMs: 0 });
    const first = await s.increment(k, 60_000);
    expect(first.count).toBe(1);
    expect(first.ttlMs).toBeGreaterThan(59_000);
    expect(first.ttlMs).toBeLessThanOrEqual(60_000);
    // Later increments do not push the expiry out (a window, not a sliding timeout).
    const second = await s.increment(k, 120_000);
    expect(second.count).toBe(2);
    expect(second.ttlMs).toBeLessThanOrEqual(60_000);
    expect((await s.read(k)).count).toBe(2);
  });

  it('set replaces a counter and its expiry; delete removes every key named, and none is fine', async () => {
    const s = store();
    const [a, b] = [key(), key()];
    await s.set(a, 7, 30_000);
    await s.increment(b, 30_000);
    const read = await s.read(a);
    expect(read.count).toBe(7);
    expect(read.ttlMs).toBeGreaterThan(29_000);
    await s.delete();
    expect((await s.read(a)).count).toBe(7);
    await s.delete(a, b);
    expect(await s.read(a)).toEqual({ count: 0, ttlMs: 0 });
    expect(await s.read(b)).toEqual({ count: 0, ttlMs: 0 });
  });
});

describe('expiry', () => {
  it('memory: an expired counter reads as zero and starts over at 1', async () => {
    const k = key();
    await memory.increment(k, 1000);
    await memory.increment(k, 1000);
    clock += 1000;
    expect(await memory.read(k)).toEqual({ count: 0, ttlMs: 0 });
    await memory.increment(k, 1000);
    clock += 1000;
    expect((await memory.increment(k, 1000)).count).toBe(1);
  });

  it('redis: a counter expires on its own; a key without expiry or not a number counts as no time left / zero', async () => {
    const s = new RedisThrottleStore(redis, 'throttle-store-test:');
    const k = key();
    await s.increment(k, 50);
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(await s.read(k)).toEqual({ count: 0, ttlMs: 0 });
    // Written by hand, without PX (an operator's SET): PTTL is -1, which is no time left, not negative.
    await redis.set(`throttle-store-test:${k}`, '3');
    expect(await s.read(k)).toEqual({ count: 3, ttlMs: 0 });
    await redis.set(`throttle-store-test:${k}`, 'garbage', 'PX', 10_000);
    expect(await s.read(k)).toEqual({ count: 0, ttlMs: 0 });
  });
});
