import { parseEncryptionKey } from '../secret-box.ts';
import type { ThrottlePolicy } from '../limits/throttle.ts';
import { DEFAULT_MEMORY_MAX_KEYS } from '../limits/throttle-store.ts';
import { readWebAuthnConfig, type WebAuthnConfig } from './passkeys.ts';
import type { EnvReader, SectionContext } from './reader.ts';

export type JwtAlgorithm = 'EdDSA' | 'ES256' | 'HS256';

export interface AuthConfig {
  /**
   * What signs access tokens: an asymmetric key kept in the database and published at
   * /.well-known/jwks.json (EdDSA, the default; ES256), or JWT_SECRET (HS256).
   */
  readonly jwtAlgorithm: JwtAlgorithm;
  /**
   * ENCRYPTION_KEY: encrypts private signing keys (and other secrets) at rest. `undefined`
   * outside production means: generate one and keep it under `dataDir`.
   */
  readonly encryptionKey: Uint8Array | undefined;
  /** `max-age` of the JWKS; a rotated key starts signing only after verifiers' copies expired. */
  readonly jwksMaxAgeSeconds: number;
  /** Bearer secrets accepted by POST /auth/introspect (several during their own rotation); empty: no route. */
  readonly introspectionTokens: readonly string[];
  /** Verified access tokens remembered until they expire (about 1 KB each); 0 verifies every request's signature. */
  readonly verifiedTokenCacheEntries: number;
  /** MFA_REQUIRED_ROLES: users of these roles must enrol a second factor before anything else works. */
  readonly mfaRequiredRoles: readonly ('user' | 'admin')[];
  /**
   * The WebAuthn relying party for passkeys (PASSKEYS_ENABLED, default true; WEBAUTHN_RP_ID,
   * WEBAUTHN_RP_NAME, WEBAUTHN_ORIGINS), or `undefined` when passkeys are disabled.
   */
  readonly webauthn: WebAuthnConfig | undefined;
  /** `undefined` outside production means: generate one and keep it under `dataDir`. */
  readonly jwtSecret: string | undefined;
  /**
   * Secrets that signed tokens before the last rotation: still accepted for verification (picked
   * by the token's `kid`) during the overlap, never used to sign.
   */
  readonly jwtPreviousSecrets: readonly string[];
  readonly jwtIssuer: string;
  readonly jwtAudience: string;
  readonly accessTokenTtlSeconds: number;
  readonly refreshTokenTtlSeconds: number;
  /**
   * Flood caps: requests per client address (IPv6 /64) within the window, whatever their outcome.
   * Sized for many users behind one NAT; failed attempts are throttled by `throttle` much sooner.
   */
  readonly loginRateLimit: number;
  readonly registerRateLimit: number;
  readonly refreshRateLimit: number;
  readonly logoutRateLimit: number;
  /** Every other route that checks a password or a token (password change, deletion, email tokens). */
  readonly credentialRateLimit: number;
  readonly rateLimitWindowMs: number;
  /** Failed-attempt throttling (api.md "Login throttling"), in milliseconds. */
  readonly throttle: ThrottlePolicy;
  /**
   * Counters (flood caps, failures, lockouts) held at most in memory when REDIS_URL is unset. None
   * is evicted before its window ends: at the bound, requests that need a new counter get 503.
   */
  readonly throttleMemoryMaxKeys: number;
  /** Concurrent argon2 hashes; more wait in a bounded queue. */
  readonly hashConcurrency: number;
  readonly hashQueueLimit: number;
  /**
   * Slots plus queue places one caller (an account, a client address) may hold at once, so one
   * caller cannot starve everyone else's logins. Default: a quarter of concurrency + queue.
   */
  readonly hashCallerShare: number;
  /**
   * Nice value of libuv's worker threads, where the hashes run (Linux; 0, the default, leaves them
   * alone). Above 0 the event loop outranks them: other requests wait less during a burst of
   * logins, but under a storm of refused logins the hashes starve (README, Design notes).
   */
  readonly hashThreadNice: number;
  /**
   * How long an authenticated user's row may serve later requests (0: read it on every request).
   * Entries are dropped as soon as the row changes (LISTEN/NOTIFY), so this only bounds the
   * worst case. Session pool mode only.
   */
  readonly principalCacheSeconds: number;
  /** Entries the principal cache keeps at most (least recently used evicted). */
  readonly principalCacheMaxEntries: number;
  /** Entries the live-session cache keeps at most (least recently used evicted). */
  readonly sessionCacheMaxEntries: number;
  /**
   * How long after a refresh token's rotation it may be presented again and get the same
   * successor back (0: never; reuse then ends the session at once).
   */
  readonly refreshReuseIntervalSeconds: number;
  /**
   * A change feed that has not heard its own heartbeat for this long is treated as down: the
   * caches it keeps fresh are not trusted until it is back.
   */
  readonly changeFeedHeartbeatTimeoutMs: number;
  /** Refuse logins (403 EMAIL_NOT_VERIFIED, after a correct password) until the address is verified. */
  readonly requireVerifiedEmail: boolean;
  /** Requests to each email route (verify, re-send, forgot, reset) per client address and per account, per window. */
  readonly emailRateLimit: number;
  /**
   * REGISTRATION_ENUMERATION_SAFE: register answers 202 `{status: "accepted"}` for a new and a taken
   * address alike (the taken address's owner gets a notice), and an email change to a taken
   * address is answered like any other. Off by default: v2 clients expect 201 `{user}` and 409.
   */
  readonly registrationEnumerationSafe: boolean;
}

/** The auth section: signing keys and tokens, then what bounds abuse of the credential routes. */
export function readAuthConfig(reader: EnvReader, context: SectionContext): AuthConfig {
  return { ...readTokens(reader, context), ...readAbuseLimits(reader, context) };
}

type Tokens = Pick<
  AuthConfig,
  | 'jwtAlgorithm'
  | 'encryptionKey'
  | 'jwksMaxAgeSeconds'
  | 'introspectionTokens'
  | 'verifiedTokenCacheEntries'
  | 'mfaRequiredRoles'
  | 'webauthn'
  | 'jwtSecret'
  | 'jwtPreviousSecrets'
  | 'jwtIssuer'
  | 'jwtAudience'
  | 'accessTokenTtlSeconds'
  | 'refreshTokenTtlSeconds'
  | 'refreshReuseIntervalSeconds'
  | 'requireVerifiedEmail'
  | 'registrationEnumerationSafe'
>;

/** What signs and verifies tokens, how long they live, and who must sign in with what. */
function readTokens(reader: EnvReader, context: SectionContext): Tokens {
  const { env } = context;
  const jwtSecret = reader.string('JWT_SECRET');
  if (jwtSecret !== undefined && Buffer.byteLength(jwtSecret) < 32) {
    reader.problem('JWT_SECRET must be at least 32 bytes long');
  }
  const jwtAlgorithm = reader.oneOf('JWT_ALGORITHM', ['EdDSA', 'ES256', 'HS256'] as const, 'EdDSA');
  if (env === 'production' && jwtSecret === undefined && jwtAlgorithm === 'HS256') {
    reader.problem('JWT_SECRET is required when NODE_ENV=production and JWT_ALGORITHM=HS256');
  }
  const jwtPreviousSecrets = reader.list('JWT_PREVIOUS_SECRETS');
  if (jwtPreviousSecrets.some((secret) => Buffer.byteLength(secret) < 32)) {
    reader.problem('every secret in JWT_PREVIOUS_SECRETS must be at least 32 bytes long');
  }
  if (jwtPreviousSecrets.length > 0 && jwtSecret === undefined) {
    reader.problem('JWT_PREVIOUS_SECRETS needs JWT_SECRET (the key that signs) to be set');
  }
  const introspectionTokens = reader.list('INTROSPECTION_TOKEN');
  if (introspectionTokens.some((token) => Buffer.byteLength(token) < 32)) {
    reader.problem('every token in INTROSPECTION_TOKEN must be at least 32 bytes long');
  }
  return {
    jwtAlgorithm,
    encryptionKey: readEncryptionKey(reader, context),
    jwksMaxAgeSeconds: reader.integer('JWKS_MAX_AGE_SECONDS', 300, 1, 86_400),
    introspectionTokens,
    verifiedTokenCacheEntries: reader.integer('VERIFIED_TOKEN_CACHE_ENTRIES', 10_000, 0, 1_000_000),
    mfaRequiredRoles: readMfaRequiredRoles(reader),
    webauthn: readWebAuthnConfig(reader, context),
    jwtSecret,
    jwtPreviousSecrets,
    jwtIssuer: reader.string('JWT_ISSUER') ?? 'pg-fastify-backend',
    jwtAudience: reader.string('JWT_AUDIENCE') ?? 'pg-fastify-backend-api',
    accessTokenTtlSeconds: reader.integer('ACCESS_TOKEN_TTL_SECONDS', 900, 10, 86_400),
    refreshTokenTtlSeconds: reader.integer('REFRESH_TOKEN_TTL_SECONDS', 30 * 86_400, 60, 365 * 86_400),
    refreshReuseIntervalSeconds: reader.integer('REFRESH_REUSE_INTERVAL_SECONDS', 10, 0, 300),
    requireVerifiedEmail: reader.boolean('AUTH_REQUIRE_VERIFIED_EMAIL', false),
    registrationEnumerationSafe: reader.boolean('REGISTRATION_ENUMERATION_SAFE', false),
  };
}

function readEncryptionKey(reader: EnvReader, { env }: SectionContext): Uint8Array | undefined {
  const text = reader.string('ENCRYPTION_KEY');
  const key = text === undefined ? undefined : parseEncryptionKey(text);
  if (text !== undefined && key === undefined) {
    reader.problem('ENCRYPTION_KEY must be 32 random bytes in base64 (generate one: openssl rand -base64 32)');
  }
  if (env === 'production' && text === undefined) {
    reader.problem('ENCRYPTION_KEY is required when NODE_ENV=production (generate one: openssl rand -base64 32)');
  }
  return key;
}

function readMfaRequiredRoles(reader: EnvReader): ('user' | 'admin')[] {
  return reader.list('MFA_REQUIRED_ROLES').flatMap((role): ('user' | 'admin')[] => {
    if (role === 'user' || role === 'admin') return [role];
    reader.problem(`MFA_REQUIRED_ROLES lists roles among user, admin (got "${role}")`);
    return [];
  });
}

/** Flood caps, failed-attempt throttling, the hashing queue and the caches in front of the database. */
function readAbuseLimits(reader: EnvReader, { poolMode }: SectionContext): Omit<AuthConfig, keyof Tokens> {
  const principalCacheSeconds = reader.integer('PRINCIPAL_CACHE_SECONDS', poolMode === 'session' ? 60 : 0, 0, 3600);
  if (poolMode === 'transaction' && principalCacheSeconds > 0) {
    reader.problem(
      'PRINCIPAL_CACHE_SECONDS cannot be used with DB_POOL_MODE=transaction: the cache is kept fresh by LISTEN, ' +
        'which needs a session of its own (unset it, or set it to 0)',
    );
  }
  const hashConcurrency = reader.integer('HASH_CONCURRENCY', 2, 1, 64);
  const hashQueueLimit = reader.integer('HASH_QUEUE_LIMIT', 64, 0, 100_000);
  return {
    loginRateLimit: reader.integer('RATE_LIMIT_LOGIN', 300, 1, 1_000_000),
    registerRateLimit: reader.integer('RATE_LIMIT_REGISTER', 20, 1, 1_000_000),
    refreshRateLimit: reader.integer('RATE_LIMIT_REFRESH', 600, 1, 1_000_000),
    logoutRateLimit: reader.integer('RATE_LIMIT_LOGOUT', 600, 1, 1_000_000),
    credentialRateLimit: reader.integer('RATE_LIMIT_CREDENTIALS', 60, 1, 1_000_000),
    rateLimitWindowMs: reader.integer('RATE_LIMIT_WINDOW_MS', 60_000, 1000, 86_400_000),
    throttle: readThrottle(reader),
    throttleMemoryMaxKeys: reader.integer('THROTTLE_MEMORY_MAX_KEYS', DEFAULT_MEMORY_MAX_KEYS, 1000, 100_000_000),
    hashConcurrency,
    hashQueueLimit,
    hashCallerShare: reader.integer(
      'HASH_CALLER_SHARE',
      Math.max(1, Math.floor((hashConcurrency + hashQueueLimit) / 4)),
      1,
      200_000,
    ),
    hashThreadNice: reader.integer('HASH_THREAD_NICE', 0, 0, 19),
    principalCacheSeconds: poolMode === 'session' ? principalCacheSeconds : 0,
    principalCacheMaxEntries: reader.integer('PRINCIPAL_CACHE_MAX_ENTRIES', 10_000, 1, 10_000_000),
    sessionCacheMaxEntries: reader.integer('SESSION_CACHE_MAX_ENTRIES', 100_000, 1, 10_000_000),
    changeFeedHeartbeatTimeoutMs: reader.integer('CHANGE_FEED_HEARTBEAT_TIMEOUT_MS', 3000, 300, 600_000),
    emailRateLimit: reader.integer('RATE_LIMIT_EMAIL', 10, 1, 1_000_000),
  };
}

function readThrottle(reader: EnvReader): ThrottlePolicy {
  return {
    pairMaxFailures: reader.integer('LOGIN_MAX_FAILURES', 5, 1, 1_000_000),
    pairLockoutMs: reader.integer('LOGIN_LOCKOUT_SECONDS', 60, 1, 86_400) * 1000,
    maxLockoutMs: reader.integer('LOGIN_MAX_LOCKOUT_SECONDS', 3600, 1, 86_400) * 1000,
    accountMaxFailures: reader.integer('LOGIN_ACCOUNT_MAX_FAILURES', 20, 1, 1_000_000),
    failureWindowMs: reader.integer('LOGIN_FAILURE_WINDOW_SECONDS', 900, 1, 86_400) * 1000,
    accountDelayMs: 1000,
    accountMaxDelayMs: reader.integer('LOGIN_ACCOUNT_MAX_DELAY_SECONDS', 60, 1, 3600) * 1000,
  };
}
