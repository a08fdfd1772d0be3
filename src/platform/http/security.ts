import cors from '@fastify/cors';
import { ifError } from 'node:assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet, { type HelmetOptions } from 'helmet';
import fp from 'fastify-plugin';
import type { HttpConfig } from '../config/http.ts';

export interface SecurityPluginOptions {
  readonly http: HttpConfig;
}

/**
 * Security headers (helmet's) and CORS for the configured origins only. Rate limits live in the
 * abuse-control plugin (plugins/throttle.ts); the client addresses they key on come from
 * `request.ip` (through `clientAddress`: only when it parses as an IP address), which honours
 * X-Forwarded-For only as far as TRUST_PROXY allows.
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
