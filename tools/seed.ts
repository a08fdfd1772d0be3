import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../db-types/index.ts';
import { withTransaction } from '../src/platform/db/transactions.ts';
import { RefreshTokenRepository } from '../src/sessions/refresh-tokens.repository.ts';
import { SessionRepository } from '../src/sessions/sessions.repository.ts';
import { UserRepository } from '../src/users/users.repository.ts';
import { NO_CONTEXT, recordAuditEvent } from '../src/audit/service.ts';
import type { PasswordHasher } from '../src/auth/passwords.ts';
import { hashRefreshToken, newRefreshToken } from '../src/keys/tokens.ts';

/** The development admin `npm run db:seed` creates; fixed so a second run can print it again. */
export const SEED_ADMIN = {
  email: 'admin@example.com',
  name: 'Seed Admin',
  password: 'seed-admin-Velvet-Harbour-42',
} as const;

/** The password of every seeded ordinary user (`user01@example.com` …). */
export const SEED_USER_PASSWORD = 'seed-user-Amber-Lantern-42';

export interface SeedResult {
  /** Accounts created by this run; 0 when everything already existed. */
  readonly created: number;
  /** Accounts the seed consists of, whether this run created them or not. */
  readonly total: number;
  /** Sessions this run opened for the accounts it created (one or two each). */
  readonly sessions: number;
  /** Audit events this run recorded: `user.registered` per account, `login.succeeded` per session. */
  readonly events: number;
  /** False when {@link SEED_ADMIN} existed already: its password was left as it was, maybe not {@link SEED_ADMIN}'s. */
  readonly adminCreated: boolean;
}

/** Where the seeded sessions were opened from, so `GET /auth/sessions` shows devices that differ. */
const SEED_DEVICES = [
  {
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 (db:seed)',
    ipAddress: '192.0.2.10',
  },
  {
    userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 (db:seed)',
    ipAddress: '198.51.100.20',
  },
] as const;

/** Default session lifetime (REFRESH_TOKEN_TTL_SECONDS' default). */
const DEFAULT_SESSION_TTL_SECONDS = 30 * 86_400;

/**
 * Development data: one admin and `users` ordinary users, each with what a real account would
 * have: its `user.registered` event, and one or two sessions (every other user two, as if signed in
 * on a laptop and a phone), each opened like a login opens one: a session row, a refresh-token
 * family of that id (whose token nobody holds), `last_login_at`, and a `login.succeeded` event.
 *
 * Idempotent: an account is created with its sessions and events in one transaction, so it exists
 * with all of them or not at all; an account that exists (by email) is left as it is, so running
 * it again creates nothing.
 *
 * @example
 * ```ts
 * const { created, sessions } = await seedDevelopmentData({ db, hasher }, { users: 36 });
 * ```
 */
export async function seedDevelopmentData(
  deps: { readonly db: Kysely<DB>; readonly hasher: PasswordHasher; readonly clock?: () => Date },
  options: { readonly users: number; readonly sessionTtlSeconds?: number },
): Promise<SeedResult> {
  const clock = deps.clock ?? (() => new Date());
  const ttlMs = (options.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS) * 1000;
  const accounts = [
    {
      email: SEED_ADMIN.email,
      name: SEED_ADMIN.name,
      role: 'admin' as const,
      password: SEED_ADMIN.password,
      sessions: 1,
    },
    ...Array.from({ length: options.users }, (_, index) => {
      const number = String(index + 1).padStart(2, '0');
      return {
        email: `user${number}@example.com`,
        name: `Seed User ${number}`,
        role: 'user' as const,
        password: SEED_USER_PASSWORD,
        sessions: index % 2 === 0 ? 1 : 2,
      };
    }),
  ];
  // One argon2 hash per distinct password, not per account: seeding stays about a second.
  const hashes = new Map<string, Promise<string>>();
  const hashOf = (password: string) => {
    const hash = hashes.get(password) ?? deps.hasher.hash(password);
    hashes.set(password, hash);
    return hash;
  };
  let created = 0;
  let adminCreated = false;
  let sessions = 0;
  let events = 0;
  for (const account of accounts) {
    if ((await new UserRepository(deps.db).findByEmail(account.email)) !== undefined) continue;
    const passwordHash = await hashOf(account.password);
    await withTransaction(deps.db, async (trx) => {
      const users = new UserRepository(trx);
      const user = await users.create({ email: account.email, name: account.name, role: account.role, passwordHash });
      await recordAuditEvent(trx, 'user.registered', user.id, NO_CONTEXT, { role: user.role });
      for (const device of SEED_DEVICES.slice(0, account.sessions)) {
        const now = clock();
        const sid = randomUUID();
        const expiresAt = new Date(now.getTime() + ttlMs);
        await new SessionRepository(trx).insert({ id: sid, userId: user.id, createdAt: now, expiresAt, ...device });
        await new RefreshTokenRepository(trx).insert({
          userId: user.id,
          familyId: sid,
          tokenHash: hashRefreshToken(newRefreshToken()),
          expiresAt,
        });
        await users.updateLastLogin(user.id, now);
        await recordAuditEvent(trx, 'login.succeeded', user.id, { ...device, sessionId: sid, actorId: user.id });
      }
    });
    created += 1;
    if (account.email === SEED_ADMIN.email) adminCreated = true;
    sessions += account.sessions;
    events += 1 + account.sessions;
  }
  return { created, total: accounts.length, sessions, events, adminCreated };
}
