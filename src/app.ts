import { createHash, randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
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
import bodyParsing from './plugins/body-parsing.ts';
import httpEdges from './plugins/http-edges.ts';
import databasePlugin from './plugins/database.ts';
import docsPlugin from './plugins/docs.ts';
import errorHandler, { clientErrorHandler, frameworkErrors } from './plugins/error-handler.ts';
import jwtPlugin from './plugins/jwt.ts';
import metricsPlugin from './plugins/metrics.ts';
import { AppMetrics, type PoolStats } from './services/metrics.ts';
import securityPlugin from './plugins/security.ts';
import throttlePlugin from './plugins/throttle.ts';
import accountEmailRoutes from './routes/account-emails.ts';
import authRoutes from './routes/auth.ts';
import { floodLimits } from './routes/limits.ts';
import healthRoutes from './routes/health.ts';
import keyRoutes from './routes/keys.ts';
import mfaRoutes from './routes/mfa.ts';
import { oauthMetrics } from './oauth/metrics.ts';
import oauthRoutes from './oauth/routes.ts';
import passkeyRoutes from './routes/passkeys.ts';
import { ErrorSchema, UserSchema } from './routes/schemas.ts';
import { buildSerializer, buildValidator } from './schema-compilers.ts';
import sessionRoutes from './routes/sessions.ts';
import userRoutes from './routes/users.ts';
import type { AuthEvents, AuthenticatedUser } from './services/auth.ts';
import { createServices, type Services } from './services/index.ts';
import type { PrincipalCache } from './services/principal-cache.ts';
import { PasswordHasher } from './services/passwords.ts';
import { SecretBox } from './services/secret-box.ts';
import { SigningKeyStore } from './services/signing-keys.ts';
import { TokenMetrics } from './services/token-metrics.ts';
import type { LiveSession } from './services/sessions.ts';
import type { AccountThrottledEvent } from './services/throttle.ts';

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
  /**
   * 32 bytes that encrypt private signing keys at rest: `config.auth.encryptionKey` when absent,
   * or the one server.ts generated under DATA_DIR. Needed unless JWT_ALGORITHM=HS256.
   */
  readonly encryptionKey?: Uint8Array;
  readonly hasher?: PasswordHasher;
  readonly clock?: () => Date;
  readonly authEvents?: AuthEvents;
  /**
   * Authenticated users as last read, dropped when their rows change (server.ts builds it with a
   * `UserChangeFeed` unless PRINCIPAL_CACHE_SECONDS=0); without it every request reads the row.
   */
  readonly principals?: PrincipalCache<AuthenticatedUser>;
  /**
   * Live sessions (`sid` → owner), kept fresh by the same feed as `principals` (lifecycle.ts);
   * without it every authenticated request reads its session's row.
   */
  readonly liveSessions?: PrincipalCache<LiveSession>;
  /** Shared with the database's query hook (server.ts); a fresh registry by default. */
  readonly metrics?: AppMetrics;
  /** The pool's counters for the /metrics gauges; absent when `db` is a borrowed transaction. */
  readonly poolStats?: () => PoolStats;
  /**
   * Called after a request's transaction that queued an email committed: server.ts wakes this
   * instance's outbox dispatcher with it, so the email goes out without waiting for the next poll.
   */
  readonly onEmailQueued?: () => void;
  /** Where logs go (tests capture them); stdout by default. */
  readonly logStream?: Writable;
  /** Pretty-print logs (server.ts asks for it when stdout is a terminal). */
  readonly prettyLogs?: boolean;
  /**
   * Told when an account's logins are slowed (distributed guessing), after the owner's
   * `login.throttled` audit event is written. Every slowdown is also logged at warn.
   */
  readonly onAccountThrottled?: (event: AccountThrottledEvent) => void | Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The asymmetric signing keys (undefined with JWT_ALGORITHM=HS256 and no ENCRYPTION_KEY). */
    signingKeys: SigningKeyStore | undefined;
  }
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

/** Every /auth body is under 2 KB; the contract allows them at most 16 KiB. */
export const AUTH_BODY_LIMIT_BYTES = 16 * 1024;

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
    schemaController: { compilersFactory: { buildValidator, buildSerializer } },
    // A client that sends headers and then stalls cannot hold a socket for ever.
    requestTimeout: 30_000,
    // Node's own answer to a request without Host is a bare 400; http-edges answers it in the error shape.
    http: { requireHostHeader: false },
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
    new PasswordHasher({
      concurrency: config.auth.hashConcurrency,
      queueLimit: config.auth.hashQueueLimit,
      callerShare: config.auth.hashCallerShare,
    });

  const metrics = deps.metrics ?? new AppMetrics();
  // Built once the jwt plugin is registered; the throttle below reports to the audit log through it.
  const built: { services?: Services } = {};

  await app.register(errorHandler);
  await app.register(httpEdges);
  await app.register(bodyParsing, {
    smallBodyPrefixes: ['/auth'],
    smallBodyLimitBytes: AUTH_BODY_LIMIT_BYTES,
    bodyTimeoutMs: config.http.bodyTimeoutMs,
  });
  await app.register(securityPlugin, { http: config.http });
  await app.register(throttlePlugin, {
    policy: config.auth.throttle,
    floods: { limits: floodLimits(config.auth), windowMs: config.auth.rateLimitWindowMs },
    redis: config.redis,
    memoryMaxKeys: config.auth.throttleMemoryMaxKeys,
    events: {
      onFloodLimited: (limiter) => {
        metrics.onRateLimited(limiter);
      },
      onRefused: (scope, reason) => {
        metrics.onRateLimited(`${scope}-${reason}`);
      },
      onAccountThrottled: async (event) => {
        // No email here: the logs must not collect the addresses of people under attack.
        app.log.warn(
          { scope: event.scope, address: event.address, failures: event.failures, delaySeconds: event.delaySeconds },
          'account throttled after repeated failed attempts from several addresses',
        );
        // The owner is told through the audit log; a failure to write it must not unblock the throttle.
        await built.services?.audit.recordThrottled(event).catch((error: unknown) => {
          app.log.error({ err: error }, 'could not record login.throttled in the audit log');
        });
        await deps.onAccountThrottled?.(event);
      },
    },
  });
  if (config.docs.enabled) await app.register(docsPlugin);
  await app.register(metricsPlugin, {
    metrics,
    poolStats: deps.poolStats,
    replicaStatus: deps.readDb === undefined ? undefined : () => deps.readDb?.replicas() ?? [],
    hashQueueDepth: () => hasher.queueDepth,
    bearerToken: config.metrics.bearerToken,
  });
  await app.register(databasePlugin, { db: deps.db });
  const clock = deps.clock ?? (() => new Date());
  const encryptionKey = deps.encryptionKey ?? config.auth.encryptionKey;
  const secretBox = encryptionKey === undefined ? undefined : new SecretBox(encryptionKey);
  const signingKeys = signingKeyStore(deps.db, config.auth, secretBox, clock);
  app.decorate('signingKeys', signingKeys);
  const tokenMetrics = new TokenMetrics(metrics.registry, () => signingKeys?.activeKeyAgeSeconds());
  await app.register(jwtPlugin, {
    config: config.auth,
    jwtSecret: deps.jwtSecret,
    keys: signingKeys,
    clock,
    events: tokenMetrics.events,
  });
  const services = createServices({
    db: deps.db,
    readDb: deps.readDb,
    hasher,
    signer: app.accessTokens,
    clock,
    refreshTokenTtlSeconds: config.auth.refreshTokenTtlSeconds,
    refreshReuseIntervalSeconds: config.auth.refreshReuseIntervalSeconds,
    refreshSuccessorKeys: derivedKeys('refresh-successor', deps.jwtSecret, config.auth.jwtPreviousSecrets),
    deviceTokenKeys: derivedKeys('device-token', deps.jwtSecret, config.auth.jwtPreviousSecrets),
    authEvents: deps.authEvents ?? metrics.authEvents,
    sessionEvents: metrics.sessionEvents,
    adminEvents: metrics.adminEvents,
    principals: deps.principals,
    liveSessions: deps.liveSessions,
    email: {
      appUrl: config.email.appUrl,
      verificationTtlSeconds: config.email.verificationTtlSeconds,
      passwordResetTtlSeconds: config.email.passwordResetTtlSeconds,
    },
    requireVerifiedEmail: config.auth.requireVerifiedEmail,
    enumerationSafe: config.auth.registrationEnumerationSafe,
    onEmailQueued: deps.onEmailQueued,
    secretBox,
    mfaIssuer: config.auth.jwtIssuer,
    mfaEvents: tokenMetrics.mfaEvents,
    oauth: config.oauth,
    oauthEvents: oauthMetrics(metrics.registry),
    relyingParty:
      config.auth.webauthn === undefined
        ? undefined
        : { id: config.auth.webauthn.rpId, name: config.auth.webauthn.rpName, origins: config.auth.webauthn.origins },
  });
  built.services = services;
  await app.register(authPlugin, { authenticator: services.auth, mfaRequiredRoles: config.auth.mfaRequiredRoles });

  await app.register(healthRoutes);
  await app.register(authRoutes, { config: config.auth, services });
  await app.register(accountEmailRoutes, { services });
  await app.register(sessionRoutes, { services });
  if (services.mfa !== undefined) {
    await app.register(mfaRoutes, { mfa: services.mfa, devices: services.devices });
  }
  if (services.passkeys !== undefined) {
    await app.register(passkeyRoutes, { passkeys: services.passkeys, devices: services.devices });
  }
  await app.register(oauthRoutes, {
    oauth: services.oauth,
    identities: services.identities,
    devices: services.devices,
    secureCookies: config.oauth.secureCookies,
  });
  await app.register(keyRoutes, {
    config: config.auth,
    keys: signingKeys,
    auth: services.auth,
    onIntrospection: (outcome) => {
      tokenMetrics.introspections.inc({ outcome });
    },
  });
  await app.register(userRoutes, { services });
  return app;
}

/**
 * The asymmetric signing keys, kept in the database and shared by every instance; none with
 * JWT_ALGORITHM=HS256 and no encryption key (HS256 alone, as before v3).
 */
function signingKeyStore(
  db: Kysely<DB>,
  auth: Config['auth'],
  box: SecretBox | undefined,
  clock: () => Date,
): SigningKeyStore | undefined {
  if (box === undefined) {
    if (auth.jwtAlgorithm === 'HS256') return undefined;
    throw new Error(`JWT_ALGORITHM=${auth.jwtAlgorithm} needs ENCRYPTION_KEY (or one generated under DATA_DIR)`);
  }
  const algorithm = auth.jwtAlgorithm === 'HS256' ? 'EdDSA' : auth.jwtAlgorithm;
  return new SigningKeyStore({
    db,
    box,
    policy: { algorithm, accessTokenTtlSeconds: auth.accessTokenTtlSeconds, jwksMaxAgeSeconds: auth.jwksMaxAgeSeconds },
    clock,
  });
}

/**
 * The HMAC keys of one `purpose` (refresh-token successors, device tokens): one per JWT secret
 * (the current one first), each its own derivation, so the JWT secret itself keys nothing but
 * signatures and every instance derives the same keys.
 */
function derivedKeys(purpose: string, jwtSecret: string, previousSecrets: readonly string[]): [string, ...string[]] {
  const derive = (secret: string) => createHash('sha256').update(`${purpose}\0`).update(secret).digest('base64url');
  return [derive(jwtSecret), ...previousSecrets.map(derive)];
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
