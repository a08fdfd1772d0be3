import type { EnvReader } from './reader.ts';

/** The shared store of state several instances must agree on (rate-limit counters). */
export interface RedisConfig {
  /** `undefined`: rate-limit counters live in this process's memory (one instance only). */
  readonly url: string | undefined;
  /** Prefix of every key this application writes, so several deployments can share one Redis. */
  readonly keyPrefix: string;
}

export function readRedisConfig(reader: EnvReader): RedisConfig {
  return {
    url: reader.redisUrl('REDIS_URL'),
    keyPrefix: reader.string('REDIS_KEY_PREFIX') ?? 'pg-fastify-backend:',
  };
}
