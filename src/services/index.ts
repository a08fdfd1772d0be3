import type { Kysely } from 'kysely';
import type { DB } from '../db/database.ts';
import type { ReadDatabase } from '../db/replicas.ts';
import { AuthService, type AuthenticatedUser, type AuthEvents } from './auth.ts';
import type { PasswordHasher } from './passwords.ts';
import type { PrincipalCache } from './principal-cache.ts';
import type { AccessTokenSigner } from './tokens.ts';
import { UserService } from './users.ts';

/** The application's services, built once per app by {@link createServices}. */
export interface Services {
  readonly auth: AuthService;
  readonly users: UserService;
}

export interface ServiceDeps {
  readonly db: Kysely<DB>;
  /** Reads that may be slightly stale (the user listing); `db` when absent. */
  readonly readDb?: ReadDatabase | undefined;
  readonly hasher: PasswordHasher;
  readonly signer: AccessTokenSigner;
  readonly clock: () => Date;
  readonly refreshTokenTtlSeconds: number;
  readonly authEvents?: AuthEvents | undefined;
  readonly principals?: PrincipalCache<AuthenticatedUser> | undefined;
}

/**
 * The one place services are composed; `buildApp` calls it and hands each route plugin the
 * services it uses.
 *
 * @example
 * ```ts
 * const services = createServices({ db, hasher, signer: app.accessTokens, clock: () => new Date(), refreshTokenTtlSeconds });
 * await services.auth.login('ada@example.com', 'correct horse');
 * ```
 */
export function createServices(deps: ServiceDeps): Services {
  return {
    auth: new AuthService({
      db: deps.db,
      hasher: deps.hasher,
      signer: deps.signer,
      clock: deps.clock,
      refreshTokenTtlSeconds: deps.refreshTokenTtlSeconds,
      ...(deps.authEvents === undefined ? {} : { events: deps.authEvents }),
      ...(deps.principals === undefined ? {} : { principals: deps.principals }),
    }),
    users: new UserService({ db: deps.db, staleReads: deps.readDb }),
  };
}
