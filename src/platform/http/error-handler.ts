import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import {
  AppError,
  AuthenticationError,
  AuthorizationError,
  InternalError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitError,
  RequestHeadersTooLargeError,
  RequestTimeoutError,
  ServiceUnavailableError,
  UnsupportedMediaTypeError,
  ValidationError,
  type ErrorDetail,
} from '../errors/index.ts';

/**
 * Every error, whatever produced it, leaves as the contract's one JSON shape with the request id.
 * 5xx bodies say only "Internal server error" / "Service unavailable"; the cause is logged.
 */
export default fp(
  async (app) => {
    app.setErrorHandler(async (error: unknown, request, reply) => sendError(toAppError(error), request, reply, error));
    app.setNotFoundHandler(async (request, reply) =>
      sendError(
        new NotFoundError(`Route ${request.method} ${request.url.replace(/\?.*$/s, '')} not found`),
        request,
        reply,
      ),
    );
  },
  { name: 'error-handler' },
);

function sendError(appError: AppError, request: FastifyRequest, reply: FastifyReply, original: unknown = appError) {
  if (appError.statusCode >= 500 && isLoadShedding(appError)) {
    // Expected under overload and possibly thousands per second: no stack to log, nothing failed.
    request.log.warn({ code: appError.code, statusCode: appError.statusCode }, appError.message);
  } else if (appError.statusCode >= 500) {
    request.log.error({ err: original, code: appError.code }, 'request failed');
  } else {
    request.log.info({ code: appError.code, statusCode: appError.statusCode }, appError.message);
  }
  if (appError.retryAfterSeconds !== undefined) reply.header('retry-after', String(appError.retryAfterSeconds));
  return reply.code(appError.statusCode).type('application/json; charset=utf-8').send(appError.toJSON(request.id));
}

/**
 * A 503 the app chose to answer (a full hash queue), or one of an outage the server logs once
 * when it starts and once when it ends (the database gone: src/platform/db/availability.ts), as opposed
 * to one something failed to do.
 */
function isLoadShedding(error: AppError): boolean {
  return (
    error instanceof ServiceUnavailableError && (error.code === 'OVERLOADED' || error.code === 'DATABASE_UNAVAILABLE')
  );
}

/** Maps what Fastify and its plugins throw onto the error family; anything unknown is a 500. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const fastifyError = error as Partial<FastifyError> & { validation?: unknown };
  if (Array.isArray(fastifyError.validation)) {
    const details = validationDetails(fastifyError.validation, fastifyError.validationContext);
    const only = details.length === 1 ? details[0] : undefined;
    // `field` names the one property at fault (`/body/email` → `email`); a whole-body failure has none.
    const field = only?.path.replace(/^\/(body|querystring|params|headers)\/?/, '');
    return new ValidationError(only === undefined ? 'Request is invalid' : `${only.path} ${only.message}`, {
      details,
      field: field === '' ? undefined : field,
      cause: error,
    });
  }
  const status = fastifyError.statusCode;
  const options = { cause: error };
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new PayloadTooLargeError(undefined, options);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new UnsupportedMediaTypeError(undefined, options);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ValidationError('Body must not be empty when content-type is application/json', options);
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new ValidationError('Body is not valid JSON', options);
    default:
      break;
  }
  if (error instanceof SyntaxError && status === 400) return new ValidationError('Body is not valid JSON', options);
  switch (status) {
    case 400:
      return new ValidationError('Bad request', options);
    case 401:
      return new AuthenticationError('Authentication required', 'INVALID_TOKEN', options);
    case 403:
      return new AuthorizationError(undefined, 'FORBIDDEN', options);
    case 404:
      return new NotFoundError(undefined, options);
    case 413:
      return new PayloadTooLargeError(undefined, options);
    case 415:
      return new UnsupportedMediaTypeError(undefined, options);
    case 429:
      return new RateLimitError(undefined, options);
    default:
      return new InternalError(undefined, options);
  }
}

interface AjvError {
  readonly instancePath?: string;
  readonly message?: string;
  readonly keyword?: string;
  readonly params?: { readonly missingProperty?: string; readonly additionalProperty?: string };
}

function validationDetails(errors: readonly AjvError[], context: string | undefined): ErrorDetail[] {
  return errors.map((item) => {
    let path = `/${context ?? 'body'}${item.instancePath ?? ''}`;
    if (item.params?.missingProperty !== undefined) path += `/${item.params.missingProperty}`;
    if (item.params?.additionalProperty !== undefined) path += `/${item.params.additionalProperty}`;
    return { path, message: item.message ?? 'is invalid' };
  });
}

/**
 * Fastify's `frameworkErrors`: failures found while routing, before any hook runs (an undecodable
 * URL such as `/users/%`, an over-long path parameter). They get the one error shape too.
 */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const appError =
    error.code === 'FST_ERR_BAD_URL'
      ? new ValidationError('The URL is not valid', { cause: error })
      : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new ValidationError('A path parameter is too long', { cause: error })
        : toAppError(error);
  reply.header('x-request-id', request.id);
  void sendError(appError, request, reply, error);
}

const REASONS: Partial<Record<number, string>> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};

/**
 * Node's `clientError`: requests HTTP itself cannot parse (bad request line, NUL in a header,
 * oversized headers, conflicting length headers) or that timed out. There is no request object, so
 * the response is written to the socket directly, still in the one error shape with a request id.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const appError =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new RequestTimeoutError(undefined, { cause: error })
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? new RequestHeadersTooLargeError(undefined, { cause: error })
        : new ValidationError('Malformed HTTP request', { cause: error });
  const requestId = randomUUID();
  const body = JSON.stringify(appError.toJSON(requestId));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${appError.statusCode} ${REASONS[appError.statusCode] ?? 'Bad Request'}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
