import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import AjvCompiler from '@fastify/ajv-compiler';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from './config.ts';
import type { DB } from './db/database.ts';
import type { ReadDatabase } from './db/replicas.ts';
import authPlugin from './plugins/auth.ts';
import databasePlugin from './plugins/database.ts';
import docsPlugin from './plugins/docs.ts';
import errorHandler, { clientErrorHandler, frameworkErrors } from './plugins/error-handler.ts';
import metricsPlugin, { AppMetrics, type PoolStats } from './plugins/metrics.ts';
import securityPlugin from './plugins/security.ts';
import authRoutes from './routes/auth.ts';
import healthRoutes from './routes/health.ts';
import { ErrorSchema, UserSchema } from './routes/schemas.ts';
import sessionRoutes from './routes/sessions.ts';
import userRoutes from './routes/users.ts';
import type { AuthEvents, AuthenticatedUser } from './services/auth.ts';
import type { PrincipalCache } from './services/principal-cache.ts';
import type { LiveSession } from './services/sessions.ts';
import { PasswordHasher } from './services/passwords.ts';

export interface AppDeps {
  readonly config: Config;
  /** The root database, or a transaction (tests): the app never creates or closes it. */
  readonly db: Kysely<DB>;
  /**
   * Reads that may be slightly stale (the user listing) go here: read replicas when configured
   * (server.ts builds it from DATABASE_REPLICA_URLS); `db` otherwise. The app never closes it.
   */
  readonly readDb?: ReadDatabase;
  /** At least 32 bytes: `config.auth.jwtSecret`, or the one generated under DATA_DIR. */
  readonly jwtSecret: string;
  readonly hasher?: PasswordHasher;
  readonly clock?: () => Date;
  readonly authEvents?: AuthEvents;
  /**
   * Authenticated users as last read, dropped when their rows change (server.ts builds it with a
   * `UserChangeFeed` unless PRINCIPAL_CACHE_SECONDS=0); without it every request reads the row.
   */
  readonly principals?: PrincipalCache<AuthenticatedUser>;
  /** Live sessions (`sid` → owner), kept fresh by the same feed; without it each request reads its session. */
  readonly liveSessions?: PrincipalCache<LiveSession>;
  /** Shared with the database's query hook (server.ts); a fresh registry by default. */
  readonly metrics?: AppMetrics;
  /** The pool's counters for the /metrics gauges; absent when `db` is a borrowed transaction. */
  readonly poolStats?: () => PoolStats;
  /** Where logs go (tests capture them); stdout by default. */
  readonly logStream?: Writable;
  /** Pretty-print logs (server.ts asks for it when stdout is a terminal). */
  readonly prettyLogs?: boolean;
}

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

/**
 * Builds the application: every plugin and route, registered explicitly. It never listens and
 * never reads the environment; `server.ts` does both.
 *
 * @example
 * ```ts
 * const app = await buildApp({ config, db, jwtSecret });
 * const response = await app.inject({ method: 'GET', url: '/health/live' });
 * await app.close();
 * ```
 */
export async function buildApp(deps: AppDeps): Promise<App> {
  const { config } = deps;
  const app = Fastify({
    logger: loggerOptions(deps),
    bodyLimit: config.http.bodyLimitBytes,
    trustProxy: trustProxyOption(config.http.trustProxy),
    requestIdHeader: false,
    genReqId: (request) => {
      const header = request.headers['x-request-id'];
      return typeof header === 'string' && SANE_REQUEST_ID.test(header) ? header : randomUUID();
    },
    schemaController: { compilersFactory: { buildValidator: validatorFactory } },
    // A client that sends headers and then stalls cannot hold a socket for ever.
    requestTimeout: 30_000,
    frameworkErrors,
    clientErrorHandler,
    logController: new OneLineRequestLog(),
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addSchema(UserSchema);
  app.addSchema(ErrorSchema);

  const hasher =
    deps.hasher ??
    new PasswordHasher({ concurrency: config.auth.hashConcurrency, queueLimit: config.auth.hashQueueLimit });

  const metrics = deps.metrics ?? new AppMetrics();

  await app.register(errorHandler);
  await app.register(securityPlugin, { http: config.http, redis: config.redis });
  await app.register(docsPlugin);
  await app.register(metricsPlugin, {
    metrics,
    poolStats: deps.poolStats,
    replicaStatus: deps.readDb === undefined ? undefined : () => deps.readDb?.replicas() ?? [],
    hashQueueDepth: () => hasher.queueDepth,
    bearerToken: config.metrics.bearerToken,
  });
  await app.register(databasePlugin, { db: deps.db });
  await app.register(authPlugin, {
    config: config.auth,
    jwtSecret: deps.jwtSecret,
    readDb: deps.readDb,
    hasher,
    clock: deps.clock ?? (() => new Date()),
    events: deps.authEvents ?? metrics.authEvents,
    principals: deps.principals,
    liveSessions: deps.liveSessions,
    sessionEvents: metrics.sessionEvents,
    adminEvents: metrics.adminEvents,
  });

  await app.register(healthRoutes);
  await app.register(authRoutes, {
    config: config.auth,
    onRateLimited: (limiter) => {
      metrics.onRateLimited(limiter);
    },
  });
  await app.register(sessionRoutes);
  await app.register(userRoutes);
  return app;
}

/**
 * One log line per request, written when the response has gone out, with the request and the
 * response in it. Fastify's default is two (received, completed): the logging work, a measurable
 * share of a request's CPU (bench/results/analysis.md), halves.
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

function loggerOptions(deps: AppDeps): FastifyServerOptions['logger'] {
  const base = { level: deps.config.logLevel, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
  if (deps.logStream !== undefined) return { ...base, stream: deps.logStream };
  if (deps.prettyLogs === true) return { ...base, transport: { target: 'pino-pretty' } };
  return base;
}

/**
 * Bodies are validated strictly (a number is not silently turned into a string password) and
 * report every failure; query strings and params are coerced from their string form.
 */
function validatorFactory(
  externalSchemas: Parameters<ReturnType<typeof AjvCompiler>>[0],
): ReturnType<ReturnType<typeof AjvCompiler>> {
  const body = AjvCompiler()(externalSchemas, { customOptions: { coerceTypes: false, allErrors: true } });
  const other = AjvCompiler()(externalSchemas, { customOptions: { coerceTypes: 'array', allErrors: true } });
  return (route) => (route.httpPart === 'body' ? body(route) : other(route));
}
