import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import type { Kysely } from 'kysely';
import type { Config } from './platform/config.ts';
import type { DB } from './platform/db/database.ts';
import type { ReadDatabase } from './platform/db/replicas.ts';
import authPlugin from './auth/plugin.ts';
import bodyParsing from './platform/http/body-parsing.ts';
import httpEdges from './platform/http/http-edges.ts';
import databasePlugin from './platform/db/plugin.ts';
import docsPlugin from './platform/http/docs.ts';
import errorHandler from './platform/http/error-handler.ts';
import { createFastify, createLogger, type App } from './platform/http/fastify.ts';
import jwtPlugin from './keys/jwt.ts';
import metricsPlugin from './platform/metrics/plugin.ts';
import { AppMetrics, type PoolStats } from './platform/metrics/metrics.ts';
import securityPlugin from './platform/http/security.ts';
import throttlePlugin from './platform/limits/plugin.ts';
import accountEmailRoutes from './account-emails/routes.ts';
import authRoutes from './auth/routes.ts';
import { floodLimits } from './platform/limits/floods.ts';
import healthRoutes from './health/routes.ts';
import keyRoutes from './keys/routes.ts';
import mfaRoutes from './mfa/routes.ts';
import passkeyRoutes from './passkeys/routes.ts';
import { ErrorSchema, UserSchema } from './platform/http/schemas.ts';
import sessionRoutes from './sessions/routes.ts';
import userRoutes from './users/routes.ts';
import type { AuthEvents, AuthenticatedUser } from './auth/service.ts';
import { AuditLog } from './audit/service.ts';
import { createServices } from './services.ts';
import type { PrincipalCache } from './sessions/principal-cache.ts';
import { PasswordHasher } from './auth/passwords.ts';
import { SecretBox } from './platform/secret-box.ts';
import { SigningKeyStore } from './keys/signing-keys.ts';
import { TokenMetrics } from './keys/token-metrics.ts';
import type { LiveSession } from './sessions/service.ts';
import type { AccountThrottledEvent } from './platform/limits/throttle.ts';

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
  /** The process's logger (server.ts makes it first, for everything that logs); one of the app's own by default. */
  readonly logger?: FastifyBaseLogger;
  /** Where the app's own logger writes (tests capture it); stdout by default. */
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

export type { App } from './platform/http/fastify.ts';

/** Every /auth body is under 2 KB; the contract allows them at most 16 KiB. */
export const AUTH_BODY_LIMIT_BYTES = 16 * 1024;

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
  const app = createFastify(
    config,
    deps.logger ?? createLogger(config, { stream: deps.logStream, pretty: deps.prettyLogs }),
  );

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
  const audit = new AuditLog(deps.db);

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
        await audit.recordThrottled(event).catch((error: unknown) => {
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
    audit,
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
    relyingParty:
      config.auth.webauthn === undefined
        ? undefined
        : { id: config.auth.webauthn.rpId, name: config.auth.webauthn.rpName, origins: config.auth.webauthn.origins },
  });
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
