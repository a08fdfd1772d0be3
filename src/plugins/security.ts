import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import type { HttpConfig } from '../config.ts';

export interface SecurityPluginOptions {
  readonly http: HttpConfig;
}

/**
 * Security headers (helmet), CORS for the configured origins only, and the rate limiter, which
 * applies only where a route asks for it (`app.rateLimit(…)` on login, register and refresh) so
 * /metrics and health checks are never throttled. Client addresses come from `request.ip`, which
 * honours X-Forwarded-For only as far as TRUST_PROXY allows: a spoofed header cannot reset a limit.
 */
export default fp<SecurityPluginOptions>(
  async (app, opts) => {
    await app.register(helmet, { global: true });
    await app.register(cors, {
      origin: opts.http.corsOrigins.length === 0 ? false : [...opts.http.corsOrigins],
      methods: ['GET', 'POST'],
      allowedHeaders: ['authorization', 'content-type', 'x-request-id'],
      exposedHeaders: ['x-request-id', 'retry-after'],
    });
    await app.register(rateLimit, { global: false });
  },
  { name: 'security' },
);
