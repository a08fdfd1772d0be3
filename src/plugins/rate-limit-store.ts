import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import type { RedisConfig } from '../config.ts';

/** The store options of @fastify/rate-limit: Redis, or none (its in-memory store). */
export interface RateLimitStoreOptions {
  readonly redis?: Redis;
  readonly nameSpace?: string;
}

/**
 * Where rate-limit counters live. With REDIS_URL, in Redis, so every instance behind the load
 * balancer counts the same attempts; otherwise in this process's memory, which is right for one
 * instance only (N instances would allow N times the limit).
 *
 * The client belongs to `app`: it is closed in `onClose`. A Redis that does not answer fails a
 * limited request quickly (one retry, 2 s to connect) instead of queueing it; the route answers
 * 503 rather than letting attempts through uncounted.
 *
 * @example
 * ```ts
 * await app.register(rateLimit, { global: false, ...rateLimitStore(app, config.redis) });
 * ```
 */
export function rateLimitStore(app: FastifyInstance, config: RedisConfig | undefined): RateLimitStoreOptions {
  if (config?.url === undefined) return {};
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
    app.log.warn({ err: error }, 'rate-limit store (Redis) unavailable');
  });
  app.addHook('onClose', async () => {
    if (redis.status === 'ready') {
      await redis.quit().catch(() => {
        redis.disconnect();
      });
    } else {
      redis.disconnect();
    }
  });
  return { redis, nameSpace: `${config.keyPrefix}rate-limit:` };
}
