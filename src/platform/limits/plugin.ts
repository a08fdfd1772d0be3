import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { RedisConfig } from '../config/redis.ts';
import type { FloodName } from './floods.ts';
import {
  CredentialThrottle,
  FloodLimiter,
  type FloodEvents,
  type FloodLimit,
  type ThrottleEvents,
  type ThrottlePolicy,
} from './throttle.ts';
import { MemoryThrottleStore, RedisThrottleStore, type ThrottleStore } from './throttle-store.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Failed-attempt throttling for every route that checks a secret (see src/platform/limits/floods.ts). */
    throttle: CredentialThrottle;
    /** The flood caps declared in src/platform/limits/floods.ts, counted in the same store. */
    floods: FloodLimiter<FloodName>;
  }
}

export interface ThrottlePluginOptions {
  readonly policy: ThrottlePolicy;
  /** Every flood cap (`floodLimits(config.auth)`) and their window. */
  readonly floods: { readonly limits: Readonly<Record<FloodName, FloodLimit>>; readonly windowMs: number };
  /** With a URL, counters are shared through Redis by every instance. */
  readonly redis?: RedisConfig | undefined;
  /** Keys the in-memory store holds at most (without Redis); at the bound, new keys are refused. */
  readonly memoryMaxKeys: number;
  readonly events?: (ThrottleEvents & { readonly onFloodLimited?: FloodEvents }) | undefined;
}

/**
 * The one abuse-control store and what counts in it: `app.throttle` (failures per account and
 * address, or per device) and `app.floods` (every request per caller key). On Redis when
 * REDIS_URL is set (one client, every instance counts the same attempts), in memory otherwise
 * (correct for one instance; bounded, see `MemoryThrottleStore`). A store that cannot count an
 * attempt (Redis not answering, memory at its bound) refuses it with 503 instead of letting it through.
 */
export default fp<ThrottlePluginOptions>(
  async (app, opts) => {
    const store = openStore(app, opts);
    app.decorate('throttle', new CredentialThrottle(store, opts.policy, opts.events));
    app.decorate(
      'floods',
      new FloodLimiter<FloodName>(store, opts.floods.limits, opts.floods.windowMs, opts.events?.onFloodLimited),
    );
  },
  { name: 'throttle' },
);

function openStore(
  app: Parameters<Parameters<typeof fp<ThrottlePluginOptions>>[0]>[0],
  opts: ThrottlePluginOptions,
): ThrottleStore {
  const url = opts.redis?.url;
  if (url === undefined || opts.redis === undefined) {
    const memory = new MemoryThrottleStore({
      maxKeys: opts.memoryMaxKeys,
      onFull: (maxKeys) => {
        app.log.error(
          { maxKeys },
          'throttle counters are at THROTTLE_MEMORY_MAX_KEYS: new callers get 503 until counters expire',
        );
      },
    });
    app.addHook('onClose', async () => {
      memory.close();
    });
    return memory;
  }
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
  return new RedisThrottleStore(redis, prefix);
}
