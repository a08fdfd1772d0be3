import cors from '@fastify/cors';
import { ifError } from 'node:assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet, { type HelmetOptions } from 'helmet';
import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import type { HttpConfig, RedisConfig } from '../config.ts';
import { rateLimitStore } from '../services/rate-limit-store.ts';

export interface SecurityPluginOptions {
  readonly http: HttpConfig;
  /** With a URL, rate-limit counters are shared through Redis by every instance. */
  readonly redis?: RedisConfig;
}

/**
 * Security headers (helmet's), CORS for the configured origins only, and the rate limiter, which
 * applies only where a route asks for it (`app.rateLimit(…)` on login, register and refresh) so
 * /metrics and health checks are never throttled. Client addresses come from `request.ip` (see `clientAddress`), which
 * honours X-Forwarded-For only as far as TRUST_PROXY allows: a spoofed header cannot reset a limit.
 */
export default fp<SecurityPluginOptions>(
  async (app, opts) => {
    const headers = securityHeaders({
      // TLS ends at the proxy in front of the app; upgrading subresources would break plain-HTTP use
      // (Swagger UI on http://localhost).
      contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
    });
    app.addHook('onRequest', async (_request, reply) => {
      reply.headers(headers);
    });
    await app.register(cors, {
      origin: opts.http.corsOrigins.length === 0 ? false : [...opts.http.corsOrigins],
      methods: ['GET', 'POST'],
      allowedHeaders: ['authorization', 'content-type', 'x-request-id'],
      exposedHeaders: ['x-request-id', 'retry-after'],
    });
    const store = rateLimitStore(opts.redis, (error) => {
      app.log.warn({ err: error }, 'rate-limit store (Redis) unavailable');
    });
    app.addHook('onClose', () => store.close());
    await app.register(rateLimit, { global: false, ...store.options });
  },
  { name: 'security' },
);

/**
 * The headers helmet sets, computed once. They depend only on the options (no CSP nonces here),
 * and @fastify/helmet rebuilt the whole middleware, CSP parsing included, on every request: about
 * 5% of a request's CPU in the benchmark's profile.
 */
export function securityHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: number | string | readonly string[]) {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader(name: string) {
      // Headers helmet removes (X-Powered-By) are never set by Fastify.
      Reflect.deleteProperty(headers, name.toLowerCase());
    },
  };
  // The middlewares read nothing from the request; they only set and remove response headers.
  const request: unknown = {};
  // helmet throws bad options itself; `next` receives an error only from older versions.
  helmet(options)(request as IncomingMessage, recorder as unknown as ServerResponse, ifError);
  return headers;
}
