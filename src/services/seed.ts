import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import { UserRepository } from '../repositories/users.ts';
import type { PasswordHasher } from './passwords.ts';

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
}

/**
 * Development data: one admin and `users` ordinary users. Idempotent: an account that exists
 * (by email) is left as it is, so running it again creates nothing.
 *
 * @example
 * ```ts
 * const { created } = await seedDevelopmentData({ db, hasher }, { users: 36 });
 * ```
 */
export async function seedDevelopmentData(
  deps: { readonly db: Kysely<DB>; readonly hasher: PasswordHasher },
  options: { readonly users: number },
): Promise<SeedResult> {
  const repository = new UserRepository(deps.db);
  const accounts = [
    { email: SEED_ADMIN.email, name: SEED_ADMIN.name, role: 'admin' as const, password: SEED_ADMIN.password },
    ...Array.from({ length: options.users }, (_, index) => {
      const number = String(index + 1).padStart(2, '0');
      return {
        email: `user${number}@example.com`,
        name: `Seed User ${number}`,
        role: 'user' as const,
        password: SEED_USER_PASSWORD,
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
  for (const account of accounts) {
    if ((await repository.findByEmail(account.email)) !== undefined) continue;
    await repository.create({
      email: account.email,
      name: account.name,
      role: account.role,
      passwordHash: await hashOf(account.password),
    });
    created += 1;
  }
  return { created, total: accounts.length };
}
