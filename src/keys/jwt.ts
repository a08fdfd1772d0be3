import fp from 'fastify-plugin';
import { errors, jwtVerify, SignJWT, type CryptoKey, type JWTHeaderParameters } from 'jose';
import type { AuthConfig } from '../platform/config/auth.ts';
import { AuthenticationError } from '../platform/errors/index.ts';
import type { SigningKeyStore } from './signing-keys.ts';
import {
  keyRing,
  type AccessTokenClaims,
  type AccessTokenSigner,
  type AssuranceLevel,
  type KeyRing,
} from './tokens.ts';

/** A verified access token: who, which session, and what that session's sign-in proved. */
export interface VerifiedAccessToken {
  readonly sub: string;
  readonly sid: string;
  readonly aal: AssuranceLevel;
  readonly amr: readonly string[];
  readonly iat: number;
  readonly exp: number;
  readonly kid: string | undefined;
}

/** Signs access tokens and verifies them back to their subject. */
export interface AccessTokens extends AccessTokenSigner {
  /**
   * The claims of a valid access token.
   *
   * @throws {AuthenticationError} `TOKEN_EXPIRED` or `INVALID_TOKEN` for every other failure.
   */
  verify(token: string): Promise<VerifiedAccessToken>;
}

/** Told of every token signed and every token verified, by key id (the metrics count them). */
export interface TokenEvents {
  onSigned?(kid: string): void;
  onVerified?(kid: string): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The access-token codec: the auth service signs with it, the auth plugin verifies with it. */
    accessTokens: AccessTokens;
  }
}

export interface JwtPluginOptions {
  readonly config: AuthConfig;
  /** At least 32 bytes; resolved by the caller (configured, or generated under DATA_DIR). */
  readonly jwtSecret: string;
  /** The asymmetric keys; required unless JWT_ALGORITHM=HS256 (then they still verify). */
  readonly keys: SigningKeyStore | undefined;
  readonly clock: () => Date;
  readonly events?: TokenEvents;
}

const ALGORITHMS = ['HS256', 'EdDSA', 'ES256'];
const REQUIRED_CLAIMS = ['exp', 'iat', 'sub', 'iss', 'aud', 'typ', 'sid'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const AMR_METHOD = /^[a-z0-9_:-]{1,64}$/;

/**
 * Access tokens through jose, with verification pinned: HS256, EdDSA or ES256 only, each
 * checked against a key of its own kind; `exp`/`iat`/`sub`/`iss`/`aud`/`typ`/`sid` required,
 * issuer and audience checked. Every failure is a 401 of the error family, never a 500.
 *
 * Signing follows JWT_ALGORITHM: the active key of the key store (named by its `kid`), or
 * JWT_SECRET. Verification picks the key by the token's `kid`: a published asymmetric key, or
 * JWT_SECRET / one of JWT_PREVIOUS_SECRETS. HS256 tokens stop being accepted once the tokens
 * signed before this installation switched to asymmetric keys have expired.
 */
export default fp<JwtPluginOptions>(
  async (app, opts) => {
    const { config, keys, clock, events } = opts;
    const previousSecrets = config.jwtPreviousSecrets;
    if ([opts.jwtSecret, ...previousSecrets].some((secret) => Buffer.byteLength(secret) < 32)) {
      throw new Error('Every JWT secret must be at least 32 bytes');
    }
    if (config.jwtAlgorithm !== 'HS256' && keys === undefined) {
      throw new Error(`JWT_ALGORITHM=${config.jwtAlgorithm} needs the signing-key store`);
    }
    const ring = keyRing(opts.jwtSecret, previousSecrets);
    const hmacKeys = new HmacKeys(ring);
    const verifiedTokens = new VerifiedTokens(config.verifiedTokenCacheEntries);

    const signingKey = async (): Promise<{ alg: string; kid: string; key: CryptoKey }> => {
      if (config.jwtAlgorithm === 'HS256' || keys === undefined) {
        return { alg: 'HS256', kid: ring.signing.kid, key: await hmacKeys.get(ring.signing.secret) };
      }
      const active = await keys.signingKey();
      return { alg: active.algorithm, kid: active.kid, key: active.key };
    };

    const assertHs256Accepted = () => {
      const until = config.jwtAlgorithm === 'HS256' ? undefined : keys?.hs256AcceptedUntil();
      if (until !== undefined && clock().getTime() > until.getTime()) {
        throw new AuthenticationError('HS256 access tokens are no longer accepted', 'INVALID_TOKEN');
      }
    };

    const verificationKey = async (header: JWTHeaderParameters): Promise<CryptoKey> => {
      if (header.alg === 'HS256') {
        assertHs256Accepted();
        return hmacKeys.get(hmacSecret(ring, header.kid));
      }
      const found = typeof header.kid === 'string' ? await keys?.verificationKey(header.kid) : undefined;
      if (found === undefined || found.algorithm !== header.alg) {
        throw new AuthenticationError('Access token signed with an unknown key', 'INVALID_TOKEN');
      }
      return found.key;
    };

    app.decorate('accessTokens', {
      expiresIn: config.accessTokenTtlSeconds,
      sign: async (claims: AccessTokenClaims) => {
        const { alg, kid, key } = await signingKey();
        const iat = Math.floor(clock().getTime() / 1000);
        const token = await new SignJWT({ ...claims, amr: [...claims.amr] })
          .setProtectedHeader({ alg, kid, typ: 'JWT' })
          .setIssuer(config.jwtIssuer)
          .setAudience(config.jwtAudience)
          .setIssuedAt(iat)
          .setExpirationTime(iat + config.accessTokenTtlSeconds)
          .sign(key);
        events?.onSigned?.(kid);
        return token;
      },
      verify: async (token: string) => {
        const known = verifiedTokens.get(token, clock());
        if (known !== undefined) {
          // The same bytes verified before; only what time and key retirement change is checked again.
          if (known.alg === 'HS256') assertHs256Accepted();
          else if (known.kid === undefined || (await keys?.isPublished(known.kid)) !== true) {
            throw new AuthenticationError('Access token signed with an unknown key', 'INVALID_TOKEN');
          }
          if (known.kid !== undefined) events?.onVerified?.(known.kid);
          return known;
        }
        const verified = await verifyAccessToken(token, (presented) =>
          jwtVerify(presented, verificationKey, {
            algorithms: ALGORITHMS,
            issuer: config.jwtIssuer,
            audience: config.jwtAudience,
            requiredClaims: REQUIRED_CLAIMS,
            currentDate: clock(),
          }),
        );
        verifiedTokens.remember(token, verified);
        if (verified.kid !== undefined) events?.onVerified?.(verified.kid);
        return verified;
      },
    } satisfies AccessTokens);
  },
  { name: 'jwt' },
);

/**
 * Access tokens already verified, by their exact text, until they expire: a client sends the same
 * token with every request for its whole lifetime, and an EdDSA signature check costs several
 * times an HS256 one (bench/results/tokens.md). Only successes are kept; the oldest entry goes
 * when full. A hit still checks expiry, and the caller checks that the key is still published.
 */
class VerifiedTokens {
  readonly #entries = new Map<string, VerifiedAccessToken & { readonly alg: string }>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  get(token: string, now: Date): (VerifiedAccessToken & { readonly alg: string }) | undefined {
    const entry = this.#entries.get(token);
    if (entry === undefined) return undefined;
    if (entry.exp * 1000 <= now.getTime()) {
      this.#entries.delete(token);
      throw new AuthenticationError('Access token has expired', 'TOKEN_EXPIRED');
    }
    return entry;
  }

  remember(token: string, verified: VerifiedAccessToken & { readonly alg: string }): void {
    if (this.#max === 0) return;
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(token, verified);
  }
}

/** HMAC keys imported once each (jose would import a raw secret again for every token). */
class HmacKeys {
  readonly #imported = new Map<string, Promise<CryptoKey>>();

  constructor(ring: KeyRing) {
    for (const secret of ring.verifying.values()) this.get(secret).catch(() => undefined);
  }

  get(secret: string): Promise<CryptoKey> {
    let key = this.#imported.get(secret);
    if (key === undefined) {
      key = crypto.subtle.importKey('raw', Buffer.from(secret), { name: 'HMAC', hash: 'SHA-256' }, false, [
        'sign',
        'verify',
      ]);
      this.#imported.set(secret, key);
    }
    return key;
  }
}

/**
 * The secret an HS256 token's `kid` names: JWT_SECRET or one of JWT_PREVIOUS_SECRETS. No `kid`:
 * the signing secret (tokens signed before key ids). A `kid` naming no accepted secret: 401.
 */
function hmacSecret(ring: KeyRing, kid: unknown): string {
  if (kid === undefined) return ring.signing.secret;
  const secret = typeof kid === 'string' ? ring.verifying.get(kid) : undefined;
  if (secret === undefined) throw new AuthenticationError('Access token signed with an unknown key', 'INVALID_TOKEN');
  return secret;
}

async function verifyAccessToken(
  token: string,
  verify: (token: string) => Promise<{ payload: Record<string, unknown>; protectedHeader: JWTHeaderParameters }>,
): Promise<VerifiedAccessToken & { readonly alg: string }> {
  let verified: Awaited<ReturnType<typeof verify>>;
  try {
    verified = await verify(token);
  } catch (error) {
    if (error instanceof AuthenticationError) throw error;
    if (error instanceof errors.JWTExpired) {
      throw new AuthenticationError('Access token has expired', 'TOKEN_EXPIRED', { cause: error });
    }
    throw new AuthenticationError('Invalid access token', 'INVALID_TOKEN', { cause: error });
  }
  const claims = verified.payload;
  const { sub, sid, iat, exp } = claims;
  const aal = claims['aal'] ?? 'aal1';
  const amr = claims['amr'] ?? ['pwd'];
  if (
    claims['typ'] !== 'access' ||
    typeof sub !== 'string' ||
    !UUID.test(sub) ||
    typeof sid !== 'string' ||
    !UUID.test(sid) ||
    typeof iat !== 'number' ||
    typeof exp !== 'number' ||
    (aal !== 'aal1' && aal !== 'aal2') ||
    !Array.isArray(amr) ||
    !amr.every((method): method is string => typeof method === 'string' && AMR_METHOD.test(method))
  ) {
    throw new AuthenticationError('Invalid access token', 'INVALID_TOKEN');
  }
  const { kid, alg } = verified.protectedHeader;
  return { sub: sub.toLowerCase(), sid: sid.toLowerCase(), aal, amr, iat, exp, kid, alg };
}
