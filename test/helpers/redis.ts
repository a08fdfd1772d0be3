import { Redis } from 'ioredis';

/** The Redis the tests share (CI runs one at 127.0.0.1:6379); every test writes under a prefix of its own. */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Fails with what to do when no Redis answers, instead of a test failing on a refused connection. */
export async function assertRedisAnswers(): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL, {
    lazyConnect: true,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on('error', () => {
    // Reported below, with what to do.
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw new Error(`These tests need a Redis at ${TEST_REDIS_URL} (start redis-server, or set TEST_REDIS_URL)`, {
      cause: error,
    });
  } finally {
    redis.disconnect();
  }
}
