import { Redis } from 'ioredis';
import type { RedisConfig } from '../config.ts';

/** The store options of @fastify/rate-limit: Redis, or none (its in-memory store). */
export interface RateLimitStoreOptions {
  readonly redis?: Redis;
  readonly nameSpace?: string;
}

/** The store options, and how to close the client they hold. */
export interface RateLimitStore {
  readonly options: RateLimitStoreOptions;
  /** Quits the Redis client (a no-op for the in-memory store). */
  close(): Promise<void>;
}

/**
 * Where rate-limit counters live. With REDIS_URL, in Redis, so every instance behind the load
 * balancer counts the same attempts; otherwise in this process's memory, which is right for one
 * instance only (N instances would allow N times the limit).
 *
 * The caller owns the client and calls `close()` (the security plugin does in `onClose`). A Redis
 * that does not answer fails a limited request quickly (one retry, 2 s to connect) instead of
 * queueing it; the route answers 503 rather than letting attempts through uncounted.
 *
 * @example
 * ```ts
 * const store = rateLimitStore(config.redis, (error) => app.log.warn({ err: error }, 'Redis unavailable'));
 * await app.register(rateLimit, { global: false, ...store.options });
 * app.addHook('onClose', () => store.close());
 * ```
 */
export function rateLimitStore(config: RedisConfig | undefined, onUnavailable: (error: Error) => void): RateLimitStore {
  if (config?.url === undefined) return { options: {}, close: async () => {} };
  const redis = new Redis(config.url, {
    connectTimeout: 2000,
    maxRetriesPerRequest: 1,
    // Named, so `CLIENT LIST` tells which deployment a connection belongs to.
    connectionName: `${config.keyPrefix}rate-limit`.replace(/[^\w:.-]/g, '_'),
  });
  let lastLogged = 0;
  redis.on('error', (error: Error) => {
    // ioredis reconnects by itself and reports every failed attempt: once a minute is enough.
    if (Date.now() - lastLogged < 60_000) return;
    lastLogged = Date.now();
    onUnavailable(error);
  });
  return {
    options: { redis, nameSpace: `${config.keyPrefix}rate-limit:` },
    close: async () => {
      if (redis.status === 'ready') {
        await redis.quit().catch(() => {
          redis.disconnect();
        });
      } else {
        redis.disconnect();
      }
    },
  };
}
