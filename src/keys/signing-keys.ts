import type { CryptoKey } from 'jose';
import type { Kysely } from 'kysely';
import type { DB } from '../platform/db/database.ts';
import { withTransaction } from '../platform/db/transactions.ts';
import type { SecretBox } from '../platform/secret-box.ts';
import { ImportedKeys, newKey, publicJwk, type PublishedJwk } from './key-material.ts';
import {
  activeKey,
  algorithmOf,
  CLOCK_SKEW_MS,
  keyStates,
  published,
  type AsymmetricAlgorithm,
  type SigningKeyInfo,
} from './key-states.ts';
import { SigningKeyRepository, type SigningKeyRow } from './signing-keys.repository.ts';

export interface SigningKeyPolicy {
  /** The algorithm of the keys this installation creates (JWT_ALGORITHM when asymmetric). */
  readonly algorithm: AsymmetricAlgorithm;
  readonly accessTokenTtlSeconds: number;
  /** How long verifiers may cache the JWKS (its `max-age`): a new key waits this long before it signs. */
  readonly jwksMaxAgeSeconds: number;
}

/** How stale an instance's copy of the keys may get: a new key waits this long too before it signs. */
export const KEY_RELOAD_INTERVAL_MS = 30_000;
/** An unknown `kid` reloads the keys at most this often (a flood of forged kids costs one query a second). */
const UNKNOWN_KID_RELOAD_MS = 1000;

export interface SigningKeyStoreDeps {
  readonly db: Kysely<DB>;
  readonly box: SecretBox;
  readonly policy: SigningKeyPolicy;
  readonly clock: () => Date;
}

/**
 * The asymmetric keys that sign access tokens, shared by every instance through the database.
 * Each instance keeps a copy, read again when older than {@link KEY_RELOAD_INTERVAL_MS} (before
 * signing it waits for the fresh copy) or when a token names a key it does not know. Which key
 * signs is decided by the rows' timestamps alone, so instances agree without talking.
 *
 * @example
 * ```ts
 * const keys = new SigningKeyStore({ db, box, policy, clock: () => new Date() });
 * const { kid, key, algorithm } = await keys.signingKey(); // creates the first key when there is none
 * const jwks = await keys.jwks(); // { keys: [...] } for /.well-known/jwks.json
 * ```
 */
export class SigningKeyStore {
  readonly #deps: SigningKeyStoreDeps;
  #rows: readonly SigningKeyRow[] = [];
  /** Each key by kid with the instant it leaves the JWKS (Infinity: no successor yet), rebuilt on reload. */
  #byKid = new Map<string, { row: SigningKeyRow; publishedUntil: number }>();
  #loadedAt = Number.NEGATIVE_INFINITY;
  #loading: Promise<void> | undefined;
  readonly #imported: ImportedKeys;

  constructor(deps: SigningKeyStoreDeps) {
    this.#deps = deps;
    this.#imported = new ImportedKeys(deps.box);
  }

  /** How long after publication a rotated key starts signing: every verifier has fetched it by then. */
  get rotationDelayMs(): number {
    return this.#deps.policy.jwksMaxAgeSeconds * 1000 + KEY_RELOAD_INTERVAL_MS;
  }

  /**
   * The key that signs now. Creates the installation's first key (signing at once: no verifier
   * can hold a JWKS without it yet) when no key signs.
   */
  async signingKey(): Promise<{ kid: string; algorithm: AsymmetricAlgorithm; key: CryptoKey }> {
    let active = activeKey(await this.#fresh(), this.#now());
    if (active === undefined) {
      await this.ensure();
      active = activeKey(this.#rows, this.#now());
    }
    if (active === undefined) throw new Error('No signing key is active after creating one');
    return { kid: active.kid, algorithm: algorithmOf(active), key: await this.#imported.privateKey(active) };
  }

  /**
   * Makes sure a key signs (the first one, at once) and that the configured algorithm takes over
   * when JWT_ALGORITHM changed: a key of that algorithm is published to sign after the usual delay.
   * Safe to run on every instance at once (one transaction-scoped lock).
   *
   * Then checks that ENCRYPTION_KEY opens the active key. When it does not (the key was changed or
   * lost), `replaceUnreadable` (development) puts a new key in its place at once; otherwise this
   * throws {@link UnreadableSigningKeyError}, so a misconfigured instance refuses to start instead
   * of failing every sign-in, or replacing the keys its healthy siblings use.
   */
  async ensure(options: { replaceUnreadable?: boolean } = {}): Promise<void> {
    await this.#ensureKeys();
    const active = activeKey(this.#rows, this.#now());
    if (active === undefined || (await this.#opens(active))) return;
    if (options.replaceUnreadable !== true) throw new UnreadableSigningKeyError(active.kid);
    await this.rotate({ signNow: true });
  }

  async #opens(row: SigningKeyRow): Promise<boolean> {
    try {
      await this.#imported.privateKey(row);
      return true;
    } catch {
      return false;
    }
  }

  async #ensureKeys(): Promise<void> {
    const { algorithm } = this.#deps.policy;
    await withTransaction(this.#deps.db, async (trx) => {
      const keys = new SigningKeyRepository(trx);
      await keys.lockForCreation();
      const rows = await keys.listAll();
      const now = this.#now();
      const active = activeKey(rows, now);
      if (active === undefined && rows.length === 0) {
        await keys.insert(await newKey(this.#deps.box, algorithm, now, now));
        return;
      }
      const pending = rows.filter((row) => row.signs_from.getTime() > now.getTime());
      const current = pending.at(-1) ?? active;
      if (current !== undefined && current.algorithm !== algorithm) {
        await keys.insert(await newKey(this.#deps.box, algorithm, now, this.#after(now, this.rotationDelayMs)));
      }
    });
    await this.#reload();
  }

  /**
   * Starts a rotation: a new key is published now and signs once every verifier has had time to
   * fetch it ({@link rotationDelayMs}); keys retired for good are deleted. `signNow` makes it sign
   * at once (the active key cannot be used): verifiers holding a cached JWKS fetch it again when
   * they meet the new `kid`.
   */
  async rotate(options: { signNow?: boolean } = {}): Promise<SigningKeyInfo> {
    const created = await withTransaction(this.#deps.db, async (trx) => {
      const keys = new SigningKeyRepository(trx);
      await keys.lockForCreation();
      const now = this.#now();
      const retired = keyStates(await keys.listAll(), now, this.#ttlMs()).filter((key) => key.state === 'retired');
      await keys.deleteRetired(retired.map((key) => key.kid));
      const signsFrom = options.signNow === true ? now : this.#after(now, this.rotationDelayMs);
      return keys.insert(await newKey(this.#deps.box, this.#deps.policy.algorithm, now, signsFrom));
    });
    await this.#reload();
    const info = (await this.list()).find((key) => key.kid === created.kid);
    if (info === undefined) throw new Error('The new key vanished');
    return info;
  }

  /** Every key with its state, read afresh. */
  async list(): Promise<SigningKeyInfo[]> {
    await this.#reload();
    return keyStates(this.#rows, this.#now(), this.#ttlMs());
  }

  /** The public keys verifiers need now: next, active and retiring keys. */
  async jwks(): Promise<{ keys: PublishedJwk[] }> {
    return { keys: published(await this.#fresh(), this.#now(), this.#ttlMs()).map(publicJwk) };
  }

  /**
   * The public key a token's `kid` names, if that key is published. An unknown kid reloads the
   * keys (at most once a second): another instance may have just created the first key.
   */
  async verificationKey(kid: string): Promise<{ algorithm: AsymmetricAlgorithm; key: CryptoKey } | undefined> {
    await this.#fresh();
    let row = this.#publishedByKid(kid);
    if (row === undefined && this.#now().getTime() - this.#loadedAt >= UNKNOWN_KID_RELOAD_MS) {
      await this.#reload();
      row = this.#publishedByKid(kid);
    }
    if (row === undefined) return undefined;
    return { algorithm: algorithmOf(row), key: await this.#imported.publicKey(row) };
  }

  /** Whether `kid` is published now (a query only when the copy is due for its reload): a cached verification checks it. */
  async isPublished(kid: string): Promise<boolean> {
    await this.#fresh();
    return this.#publishedByKid(kid) !== undefined;
  }

  /** The key `kid` names while it is published; the same answer as {@link keyStates}, without sorting per request. */
  #publishedByKid(kid: string): SigningKeyRow | undefined {
    const entry = this.#byKid.get(kid);
    return entry !== undefined && this.#now().getTime() < entry.publishedUntil ? entry.row : undefined;
  }

  /**
   * Until when HS256 tokens are still accepted after this installation switched to public keys:
   * those signed before its first asymmetric key began signing expire by then. `undefined` while
   * no asymmetric key signs yet (HS256 is all there is).
   */
  hs256AcceptedUntil(): Date | undefined {
    const first = this.#rows[0];
    if (first === undefined || first.signs_from.getTime() > this.#now().getTime()) return undefined;
    return new Date(first.signs_from.getTime() + this.#ttlMs() + CLOCK_SKEW_MS);
  }

  /** Seconds since the active key began signing, as of the last read (the key-age alert's gauge). */
  activeKeyAgeSeconds(): number | undefined {
    const active = activeKey(this.#rows, this.#now());
    return active === undefined ? undefined : (this.#now().getTime() - active.signs_from.getTime()) / 1000;
  }

  async #fresh(): Promise<readonly SigningKeyRow[]> {
    if (this.#now().getTime() - this.#loadedAt < KEY_RELOAD_INTERVAL_MS) return this.#rows;
    try {
      await this.#reload();
    } catch (error) {
      // The database is down: tokens keep verifying with the keys last read (what changes them
      // needs the database too); the next request tries again a second later, not at once.
      if (this.#rows.length === 0) throw error;
      this.#loadedAt = this.#now().getTime() - KEY_RELOAD_INTERVAL_MS + UNKNOWN_KID_RELOAD_MS;
    }
    return this.#rows;
  }

  async #reload(): Promise<void> {
    this.#loading ??= (async () => {
      try {
        const at = this.#now().getTime();
        const rows = await new SigningKeyRepository(this.#deps.db).listAll();
        this.#rows = rows;
        this.#byKid = new Map(
          rows.map((row, index) => {
            const successor = rows[index + 1];
            const until =
              successor === undefined ? Infinity : successor.signs_from.getTime() + this.#ttlMs() + CLOCK_SKEW_MS;
            return [row.kid, { row, publishedUntil: until }];
          }),
        );
        this.#loadedAt = at;
      } finally {
        this.#loading = undefined;
      }
    })();
    await this.#loading;
  }

  #now(): Date {
    return this.#deps.clock();
  }

  #ttlMs(): number {
    return this.#deps.policy.accessTokenTtlSeconds * 1000;
  }

  #after(from: Date, ms: number): Date {
    return new Date(from.getTime() + ms);
  }
}

/** ENCRYPTION_KEY does not open the active signing key: it was created under another key. */
export class UnreadableSigningKeyError extends Error {
  override readonly name = 'UnreadableSigningKeyError';

  readonly kid: string;

  constructor(kid: string) {
    super(
      `ENCRYPTION_KEY does not open the active signing key ${kid}: set the ENCRYPTION_KEY it was created with, ` +
        'or, if that key is lost, run `npm run keys:rotate -- --now` to sign with a new key at once ' +
        '(tokens already issued stay valid until they expire).',
    );
    this.kid = kid;
  }
}
