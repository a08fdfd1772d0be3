import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { ExpectationFailedError, ValidationError } from '../errors/index.ts';

/**
 * What the HTTP server would otherwise answer on its own, outside the error shape:
 *
 * - an HTTP/1.1 request without `Host` (Node answers a bare 400; the app is built with
 *   `requireHostHeader: false` so the request reaches this check and gets the error shape);
 * - an `Expect` other than `100-continue` (Node answers a bare 417);
 * - integers in query strings written as anything but decimal digits (`1e2`, `0x10`, ` 5`), which
 *   the query coercion would otherwise read as numbers.
 */
export default fp(
  async (app) => {
    app.addHook('onRequest', async (request: FastifyRequest) => {
      const { httpVersionMajor, httpVersionMinor } = request.raw;
      if (httpVersionMajor === 1 && httpVersionMinor >= 1 && request.headers.host === undefined) {
        throw new ValidationError('The Host header is required');
      }
    });

    app.server.on('checkExpectation', (_request: IncomingMessage, response: ServerResponse) => {
      const requestId = randomUUID();
      const body = JSON.stringify(new ExpectationFailedError().toJSON(requestId));
      response.writeHead(417, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'x-request-id': requestId,
        connection: 'close',
      });
      response.end(body);
    });

    app.addHook('onRoute', (route) => {
      const integers = integerQueryParameters(route);
      if (integers.length === 0) return;
      const check = async (request: FastifyRequest): Promise<void> => {
        const query = request.query as Record<string, unknown>;
        for (const name of integers) {
          for (const raw of [query[name]].flat()) {
            if (typeof raw === 'string' && !/^-?(?:0|[1-9][0-9]*)$/.test(raw)) {
              throw new ValidationError(`/querystring/${name} must be an integer in decimal digits`, {
                field: name,
                details: [{ path: `/querystring/${name}`, message: 'must be an integer in decimal digits' }],
              });
            }
          }
        }
      };
      route.preValidation = [...hooks(route.preValidation), check];
    });
  },
  { name: 'http-edges' },
);

/**
 * preHandler/onRequest: `cache-control: no-store` (and `pragma: no-cache` for HTTP/1.0 caches) on
 * responses with personal data or tokens.
 */
export async function noStore(_request: FastifyRequest, reply: FastifyReply): Promise<void> {
  reply.header('cache-control', 'no-store');
  reply.header('pragma', 'no-cache');
}

function integerQueryParameters(route: RouteOptions): string[] {
  const querystring = (
    route.schema as { querystring?: { properties?: Record<string, { type?: unknown }> } } | undefined
  )?.querystring;
  return Object.entries(querystring?.properties ?? {})
    .filter(([, schema]) => schema.type === 'integer')
    .map(([name]) => name);
}

function hooks<T>(value: T | readonly T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? [...(value as readonly T[])] : [value as T];
}
