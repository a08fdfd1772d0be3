import { randomBytes, randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import type { Kysely } from 'kysely';
import type { DB } from '../../db-types/index.ts';
import { Secret, TOTP } from 'otpauth';
import type { App } from '../../src/app.ts';
import type { AuthenticatedUser } from '../../src/auth/service.ts';
import { PrincipalCache } from '../../src/sessions/principal-cache.ts';
import type { LiveSession } from '../../src/sessions/service.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { bearer, createUser, expectError, login, PASSWORD, type LoginJson } from '../helpers/http.ts';

// The step-up rule (aal2 once the account has a second factor) is checked by the route with the
// account as authentication read it, then again under the account's row lock. Here the principal
// cache hears no change (as between a commit and its notification), so the route lets a
// password-only session through after the owner turned on a factor: the second check must stop it.

interface Setup {
  readonly app: App;
  readonly db: Kysely<DB>;
  /** A session with the password only, authenticated (and cached) before the factor existed. */
  readonly stale: LoginJson;
  readonly userId: string;
  readonly factorId: string;
  /** A TOTP enrolment the stale session began while the account had no factor. */
  readonly pending: { readonly id: string; readonly secret: string };
}

const codeOf = (secret: string) => TOTP.generate({ secret: Secret.fromBase32(secret), period: 30, digits: 6 });

interface Enrolment {
  readonly factor: { readonly id: string };
  readonly secret: string;
}

async function send(app: App, method: 'POST' | 'DELETE', url: string, token: string, body?: unknown) {
  return app.inject({
    method,
    url,
    headers: { ...bearer(token), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

const ACTIONS: ReadonlyArray<readonly [string, (setup: Setup) => Promise<LightMyRequestResponse>]> = [
  ['new recovery codes', ({ app, stale }) => send(app, 'POST', '/auth/mfa/recovery-codes', stale.accessToken)],
  [
    "removing the owner's factor",
    ({ app, stale, factorId }) => send(app, 'DELETE', `/auth/mfa/factors/${factorId}`, stale.accessToken),
  ],
  [
    'a password change',
    ({ app, stale }) =>
      send(app, 'POST', '/auth/password', stale.accessToken, {
        currentPassword: PASSWORD,
        newPassword: 'a brand new passphrase',
      }),
  ],
  [
    'an email change',
    ({ app, stale }) =>
      send(app, 'POST', '/auth/email/change', stale.accessToken, {
        newEmail: `elsewhere-${randomUUID()}@example.com`,
        password: PASSWORD,
      }),
  ],
  [
    'activating the factor it began to enrol before',
    ({ app, stale, pending }) =>
      send(app, 'POST', `/auth/mfa/totp/${pending.id}/verify`, stale.accessToken, { code: codeOf(pending.secret) }),
  ],
  [
    'deleting the account',
    ({ app, stale }) => send(app, 'DELETE', '/auth/me', stale.accessToken, { password: PASSWORD }),
  ],
  [
    'removing a passkey',
    async ({ app, db, stale, userId }) => {
      const id = randomUUID();
      await db
        .insertInto('passkey_credentials')
        .values({
          id,
          user_id: userId,
          credential_id: randomBytes(32).toString('base64url'),
          public_key: randomBytes(77),
          backed_up: false,
          device_type: 'singleDevice',
          name: 'Laptop',
          created_at: new Date(),
        })
        .execute();
      return send(app, 'DELETE', `/auth/passkeys/${id}`, stale.accessToken);
    },
  ],
];

describe('the step-up rule under the row lock', () => {
  test.for(ACTIONS)(
    '%s by a session the route still saw without a factor is 403 MFA_REQUIRED',
    async ([, act], { db, onTestFinished }) => {
      // Hears nothing: what it cached stays until its TTL.
      const principals = new PrincipalCache<AuthenticatedUser>({ ttlMs: 60_000, maxEntries: 100, isLive: () => true });
      const liveSessions = new PrincipalCache<LiveSession>({ ttlMs: 60_000, maxEntries: 100, isLive: () => true });
      const app = await testApp(db, onTestFinished, { principals, liveSessions });
      const user = await createUser(db);
      const stale = await login(app, user.email);
      const begun = await send(app, 'POST', '/auth/mfa/totp', stale.accessToken, {});
      expect(begun.statusCode, begun.body).toBe(201);
      const pending = begun.json<Enrolment>();
      // The owner turns on a second factor from another session.
      const owner = await login(app, user.email);
      const { factor, secret } = (await send(app, 'POST', '/auth/mfa/totp', owner.accessToken, {})).json<Enrolment>();
      const verified = await send(app, 'POST', `/auth/mfa/totp/${factor.id}/verify`, owner.accessToken, {
        code: codeOf(secret),
      });
      expect(verified.statusCode, verified.body).toBe(200);
      const before = await db.selectFrom('mfa_recovery_codes').select('id').where('user_id', '=', user.id).execute();

      const response = await act({
        app,
        db,
        stale,
        userId: user.id,
        factorId: factor.id,
        pending: { id: pending.factor.id, secret: pending.secret },
      });

      expectError(response, { statusCode: 403, code: 'MFA_REQUIRED' });
      const after = await db.selectFrom('mfa_recovery_codes').select('id').where('user_id', '=', user.id).execute();
      expect(after).toEqual(before);
      const account = await db
        .selectFrom('users')
        .select(['mfa_enabled', 'password_hash'])
        .where('id', '=', user.id)
        .executeTakeFirstOrThrow();
      expect(account.mfa_enabled).toBe(true);
      expect(account.password_hash).toBe(user.password_hash);
      const factors = await db
        .selectFrom('mfa_factors')
        .select('id')
        .where('user_id', '=', user.id)
        .where('verified_at', 'is not', null)
        .execute();
      expect(factors).toEqual([{ id: factor.id }]);
    },
  );
});
