import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import type { HttpConfig, RedisConfig } from '../config.ts';
import { rateLimitStore } from './rate-limit-store.ts';

export interface SecurityPluginOptions {
  readonly http: HttpConfig;
  /** With a URL, rate-limit counters are shared through Redis by every instance. */
  readonly redis?: RedisConfig;
}

/**
 * Security headers (helmet), CORS for the configured origins only, and the rate limiter, which
 * applies only where a route asks for it (`app.rateLimit(…)` on login, register and refresh) so
 * /metrics and health checks are never throttled. Client addresses come from `request.ip`, which
 * honours X-Forwarded-For only as far as TRUST_PROXY allows: a spoofed header cannot reset a limit.
 */
export default fp<SecurityPluginOptions>(
  async (app, opts) => {
    await app.register(helmet, {
      global: true,
      // TLS ends at the proxy in front of the app; upgrading subresources would break plain-HTTP use
      // (Swagger UI on http://localhost).
      contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
    });
    await app.register(cors, {
      origin: opts.http.corsOrigins.length === 0 ? false : [...opts.http.corsOrigins],
      methods: ['GET', 'POST'],
      allowedHeaders: ['authorization', 'content-type', 'x-request-id'],
      exposedHeaders: ['x-request-id', 'retry-after'],
    });
    await app.register(rateLimit, { global: false, ...rateLimitStore(app, opts.redis) });
  },
  { name: 'security' },
);
