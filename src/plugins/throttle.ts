import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { RedisConfig } from '../config.ts';
import { CredentialThrottle, type ThrottleEvents, type ThrottlePolicy } from '../services/throttle.ts';
import { MemoryThrottleStore, RedisThrottleStore, type ThrottleStore } from '../services/throttle-store.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Failed-attempt throttling for every route that checks a secret (see src/routes/limits.ts). */
    throttle: CredentialThrottle;
  }
}

export interface ThrottlePluginOptions {
  readonly policy: ThrottlePolicy;
  /** With a URL, counters are shared through Redis by every instance. */
  readonly redis?: RedisConfig | undefined;
  readonly events?: ThrottleEvents | undefined;
}

/**
 * Decorates `app.throttle`: a {@link CredentialThrottle} on Redis when REDIS_URL is set (every
 * instance counts the same failures), in memory otherwise (correct for one instance). A Redis
 * that does not answer fails a throttled attempt quickly with 503 instead of letting it through.
 */
export default fp<ThrottlePluginOptions>(
  async (app, opts) => {
    let store: ThrottleStore;
    const url = opts.redis?.url;
    if (url === undefined || opts.redis === undefined) {
      const memory = new MemoryThrottleStore();
      app.addHook('onClose', async () => {
        memory.close();
      });
      store = memory;
    } else {
      const prefix = opts.redis.keyPrefix;
      const redis = new Redis(url, {
        connectTimeout: 2000,
        maxRetriesPerRequest: 1,
        // Named, so `CLIENT LIST` tells which deployment a connection belongs to.
        connectionName: `${prefix}throttle`.replace(/[^\w:.-]/g, '_'),
      });
      let lastLogged = 0;
      redis.on('error', (error: Error) => {
        // ioredis reconnects by itself and reports every failed attempt: once a minute is enough.
        if (Date.now() - lastLogged < 60_000) return;
        lastLogged = Date.now();
        app.log.warn({ err: error }, 'throttle store (Redis) unavailable');
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
      store = new RedisThrottleStore(redis, prefix);
    }
    app.decorate('throttle', new CredentialThrottle(store, opts.policy, opts.events));
  },
  { name: 'throttle' },
);
