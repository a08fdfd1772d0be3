import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import {
  AccountTokenRepository,
  type AccountTokenRow,
  type NewAccountToken,
} from '../../src/account-emails/account-tokens.repository.ts';
import {
  EmailOutboxRepository,
  type NewOutboxMessage,
  type OutboxRow,
} from '../../src/platform/email/email-outbox.repository.ts';
import {
  RefreshTokenRepository,
  type NewRefreshToken,
  type RefreshTokenRow,
} from '../../src/sessions/refresh-tokens.repository.ts';
import {
  AuditEventRepository,
  type AuditEventRow,
  type NewAuditEvent,
} from '../../src/audit/audit-events.repository.ts';
import { SessionRepository, type NewSession, type SessionRow } from '../../src/sessions/sessions.repository.ts';
import { UserRepository, type NewUser, type UserRow } from '../../src/users/users.repository.ts';
import { uuidv7 } from '../../src/platform/db/ids.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { newAccountToken } from '../../src/account-emails/account-tokens.ts';
import { hashRefreshToken, newRefreshToken } from '../../src/keys/tokens.ts';
import { TEST_ARGON2 } from './app.ts';

// Test data, one factory per table. Each inserts through the table's repository into the `db` it
// is given — the test's transaction (test/helpers/database.ts), rolled back when the test ends —
// fills every column a test does not care about with a valid, unique value, and returns the row
// (for token tables, also the token in the clear, which the database never stores).

/** The password of every user {@link createUser} makes. */
export const PASSWORD = 'correct horse battery staple';

// A login verifies at the stored hash's cost, whatever the app's hasher is: the cheap test cost.
const hasher = new PasswordHasher({ params: TEST_ARGON2, concurrency: 4, queueLimit: 64 });
let passwordHash: Promise<string> | undefined;

/** One argon2id hash of {@link PASSWORD} per test file, so making users costs no hashing. */
function hashOfPassword(): Promise<string> {
  passwordHash ??= hasher.hash(PASSWORD);
  return passwordHash;
}

const HOUR_MS = 3_600_000;

/**
 * A user whose password is {@link PASSWORD} (hashed once per file), with a unique email. They get
 * one live session whose id is their user id, so an access token can name a real session (`sid`)
 * without a login (`accessTokenFor` in test/helpers/http.ts).
 *
 * @example
 * ```ts
 * const admin = await createUser(db, { role: 'admin' });
 * ```
 */
export async function createUser(db: Kysely<DB>, fields: Partial<NewUser> = {}): Promise<UserRow> {
  const user = await new UserRepository(db).create({
    email: fields.email ?? `user-${randomUUID()}@example.com`,
    name: fields.name ?? 'Test User',
    passwordHash: fields.passwordHash ?? (await hashOfPassword()),
    ...(fields.role === undefined ? {} : { role: fields.role }),
  });
  await createSession(db, { id: user.id, userId: user.id });
  return user;
}

/** A live session (a login's refresh-token family) of `userId` or a new user, for a day. */
export async function createSession(db: Kysely<DB>, fields: Partial<NewSession> = {}): Promise<SessionRow> {
  const createdAt = fields.createdAt ?? new Date();
  return new SessionRepository(db).insert({
    id: fields.id ?? randomUUID(),
    userId: fields.userId ?? (await createUser(db)).id,
    createdAt,
    expiresAt: fields.expiresAt ?? new Date(createdAt.getTime() + 24 * HOUR_MS),
    userAgent: fields.userAgent ?? null,
    ipAddress: fields.ipAddress ?? null,
  });
}

/** An audit event (`login.succeeded` of a new user unless told otherwise). */
export async function createAuditEvent(db: Kysely<DB>, fields: Partial<NewAuditEvent> = {}): Promise<AuditEventRow> {
  const userId = fields.userId === undefined ? (await createUser(db)).id : fields.userId;
  return new AuditEventRepository(db).append({
    id: fields.id ?? uuidv7(),
    type: fields.type ?? 'login.succeeded',
    userId,
    actorId: fields.actorId ?? userId,
    sessionId: fields.sessionId ?? null,
    ipAddress: fields.ipAddress ?? null,
    userAgent: fields.userAgent ?? null,
    details: fields.details ?? {},
  });
}

/**
 * A live refresh token, for `userId` or a new user: the first of a family (and session) of its
 * own unless `familyId` is given.
 */
export async function createRefreshToken(
  db: Kysely<DB>,
  fields: Partial<Omit<NewRefreshToken, 'tokenHash'>> = {},
): Promise<{ row: RefreshTokenRow; token: string }> {
  const token = newRefreshToken();
  const userId = fields.userId ?? (await createUser(db)).id;
  const expiresAt = fields.expiresAt ?? new Date(Date.now() + HOUR_MS);
  const row = await new RefreshTokenRepository(db).insert({
    userId,
    familyId: fields.familyId ?? (await createSession(db, { userId, expiresAt })).id,
    tokenHash: hashRefreshToken(token),
    expiresAt,
  });
  return { row, token };
}

/** An unused email-verification (or `purpose`) token, valid for an hour unless `expiresAt` says otherwise. */
export async function createAccountToken(
  db: Kysely<DB>,
  fields: Partial<Omit<NewAccountToken, 'tokenHash'>> = {},
): Promise<{ row: AccountTokenRow; token: string }> {
  const { token, tokenHash } = newAccountToken();
  const row = await new AccountTokenRepository(db).insert({
    userId: fields.userId ?? (await createUser(db)).id,
    purpose: fields.purpose ?? 'email_verification',
    tokenHash,
    expiresAt: fields.expiresAt ?? new Date(Date.now() + HOUR_MS),
  });
  return { row, token };
}

/** A pending outbox message, due now. */
export async function createOutboxMessage(db: Kysely<DB>, fields: Partial<NewOutboxMessage> = {}): Promise<OutboxRow> {
  const userId = fields.userId === undefined ? (await createUser(db)).id : fields.userId;
  const id = await new EmailOutboxRepository(db).enqueue({
    userId,
    recipient: fields.recipient ?? `user-${randomUUID()}@example.com`,
    template: fields.template ?? 'email_verification',
    data: fields.data ?? { token: newAccountToken().token, name: 'Test User' },
  });
  // The repository hands back the id only; a test wants the row it can assert on.
  return db.selectFrom('email_outbox').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}
