import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import { pino } from 'pino';
import type { Config } from '../config.ts';
import { clientErrorHandler, frameworkErrors } from './error-handler.ts';
import { buildSerializer, buildValidator } from './schema-compilers.ts';

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** Log fields that must never be written: credentials, tokens, cookies. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.currentPassword',
  '*.newPassword',
  '*.refreshToken',
  '*.accessToken',
  '*.token',
];

/** A request id from the client is kept only when it is short and plain. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface LoggerOptions {
  /** Where logs go (tests capture them); stdout by default. */
  readonly stream?: Writable | undefined;
  /** Pretty-print (server.ts asks for it when stdout is a terminal). */
  readonly pretty?: boolean | undefined;
}

/**
 * The process's logger, made before anything that logs (the database's query hooks, the email
 * dispatcher, the app), so each is given it once.
 *
 * @example
 * ```ts
 * const log = createLogger(config, { pretty: process.stdout.isTTY });
 * ```
 */
export function createLogger(config: Config, options: LoggerOptions = {}): FastifyBaseLogger {
  const base = { level: config.logLevel, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
  if (options.stream !== undefined) return pino(base, options.stream);
  if (options.pretty === true) return pino({ ...base, transport: { target: 'pino-pretty' } });
  return pino(base);
}

/**
 * The Fastify instance every feature registers on: body limit, proxy trust, request ids, the
 * schema compilers, framework errors in the one error shape, one log line per request.
 */
export function createFastify(config: Config, logger: FastifyBaseLogger): App {
  return Fastify({
    loggerInstance: logger,
    bodyLimit: config.http.bodyLimitBytes,
    trustProxy: trustProxyOption(config.http.trustProxy),
    requestIdHeader: false,
    genReqId: (request) => {
      const header = request.headers['x-request-id'];
      return typeof header === 'string' && SANE_REQUEST_ID.test(header) ? header : randomUUID();
    },
    schemaController: { compilersFactory: { buildValidator, buildSerializer } },
    // A client that sends headers and then stalls cannot hold a socket for ever.
    requestTimeout: 30_000,
    // Node's own answer to a request without Host is a bare 400; http-edges answers it in the error shape.
    http: { requireHostHeader: false },
    frameworkErrors,
    clientErrorHandler,
    logController: new OneLineRequestLog(),
  }).withTypeProvider<TypeBoxTypeProvider>();
}

/**
 * One log line per request, written when the response has gone out, with the request and the
 * response in it; Fastify's default is two (received, completed), twice the logging work.
 */
class OneLineRequestLog extends LogController {
  override incomingRequest(): void {
    // Logged with the outcome instead.
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const fields = { req: request, res: reply, responseTime: reply.elapsedTime };
    if (error !== null && error !== undefined) reply.log.error({ ...fields, err: error }, 'request errored');
    else reply.log.info(fields, 'request completed');
  }
}

/** A hop count becomes a function: Fastify accepts numbers at run time but its types do not. */
function trustProxyOption(
  value: boolean | number | string,
): boolean | string | ((address: string, hop: number) => boolean) {
  return typeof value === 'number' ? (_address, hop) => hop < value : value;
}
