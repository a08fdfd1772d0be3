import pg from 'pg';
import { describe, expect, test } from 'vitest';
import { hashRefreshToken } from '../../src/keys/tokens.ts';
import { isolatedDatabase } from '../helpers/database.ts';
import { createUser, PASSWORD } from '../helpers/http.ts';
import { appOnPool, httpRequest, registration, uniqueId } from './support.ts';
import { expectError } from '../helpers/assertions.ts';
import { waitFor } from '../helpers/processes.ts';

// Real concurrency: racing requests over real sockets, each on its own pooled connection and
// transaction, against committed data in a database of the test's own.

const HTTP_PORTS = [3350, 3359] as const;
const RACERS = 10;

/** Fires `count` requests at the same instant (as near as one process can). */
async function race<T>(count: number, send: (i: number) => Promise<T>): Promise<T[]> {
  let go: () => void = () => {};
  const start = new Promise<void>((resolve) => (go = resolve));
  const racers = Array.from({ length: count }, async (_, i) => {
    await start;
    return send(i);
  });
  go();
  return Promise.all(racers);
}

describe('racing requests', () => {
  test('ten racing registrations of one email, spelled ten ways: exactly one 201, nine 409 UNIQUE_VIOLATION on email, one row', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { baseUrl } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      RATE_LIMIT_REGISTER: '1000',
      DB_POOL_MAX: String(RACERS),
    });
    const local = `race-${uniqueId()}`;
    const spellings = [
      `${local}@example.com`,
      `${local.toUpperCase()}@EXAMPLE.COM`,
      ` ${local}@example.com`,
      `${local}@example.com `,
      `${local}@Example.Com`,
      `\t${local}@example.com`,
      `${local}@ｅｘａｍｐｌｅ.com`,
      `${local}@example.ｃｏｍ`,
      `${local.toUpperCase()}@example.com`,
      `${local}@EXAMPLE.com`,
    ];

    const responses = await race(RACERS, (i) =>
      httpRequest(baseUrl, '/auth/register', { body: registration(spellings[i] ?? '') }),
    );

    expect(responses.map((response) => response.status).sort()).toEqual([201, ...Array<number>(RACERS - 1).fill(409)]);
    for (const response of responses.filter((r) => r.status === 409)) {
      expect(
        expectError(response, { statusCode: 409, type: 'UniqueConstraintError', code: 'UNIQUE_VIOLATION' }).field,
      ).toBe('email');
    }
    const rows = await db.selectFrom('users').select('email').where('email', 'like', `${local}%`).execute();
    expect(rows).toEqual([{ email: `${local}@example.com` }]);
  });

  test('with the reuse interval off, ten racing refreshes of one token: exactly one 200; the reuse revokes the family, so no live token is left', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { baseUrl } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      REFRESH_REUSE_INTERVAL_SECONDS: '0',
      RATE_LIMIT_REFRESH: '1000',
      DB_POOL_MAX: String(RACERS),
    });
    const user = await createUser(db);
    const login = await httpRequest(baseUrl, '/auth/login', { body: { email: user.email, password: PASSWORD } });
    expect(login.status).toBe(200);
    const { refreshToken } = login.json<{ refreshToken: string }>();
    const family = (
      await db
        .selectFrom('refresh_tokens')
        .select('family_id')
        .where('token_hash', '=', hashRefreshToken(refreshToken))
        .executeTakeFirstOrThrow()
    ).family_id;

    const responses = await race(RACERS, () => httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken } }));

    expect(responses.map((response) => response.status).sort()).toEqual([200, ...Array<number>(RACERS - 1).fill(401)]);
    for (const response of responses.filter((r) => r.status === 401)) {
      expectError(response, { statusCode: 401, type: 'AuthenticationError', code: 'INVALID_TOKEN' });
    }
    // One rotation happened (one successor stored), and every token of the family is revoked.
    const tokens = await db
      .selectFrom('refresh_tokens')
      .select(['token_hash', 'rotated_at', 'revoked_at'])
      .where('family_id', '=', family)
      .execute();
    expect(tokens).toHaveLength(2);
    expect(tokens.filter((token) => token.rotated_at !== null)).toHaveLength(1);
    expect(tokens.filter((token) => token.revoked_at === null)).toEqual([]);
    // So the winner's new token is dead too: the family was stolen, as far as the server can tell.
    const winner =
      responses.find((response) => response.status === 200)?.json<{ refreshToken: string }>().refreshToken ?? '';
    const afterwards = await httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken: winner } });
    expectError(afterwards, { statusCode: 401, code: 'INVALID_TOKEN' });
  });

  test('racing refreshes and logouts of one token: at most one rotation, and once a logout answers 204 no token of the family works', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { baseUrl } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      RATE_LIMIT_REFRESH: '1000',
      DB_POOL_MAX: String(RACERS),
    });
    const user = await createUser(db);
    for (let round = 0; round < 5; round++) {
      const login = await httpRequest(baseUrl, '/auth/login', { body: { email: user.email, password: PASSWORD } });
      const { refreshToken } = login.json<{ refreshToken: string }>();
      const family = (
        await db
          .selectFrom('refresh_tokens')
          .select('family_id')
          .where('token_hash', '=', hashRefreshToken(refreshToken))
          .executeTakeFirstOrThrow()
      ).family_id;

      const responses = await race(RACERS, (i) =>
        httpRequest(baseUrl, i % 2 === 0 ? '/auth/refresh' : '/auth/logout', { body: { refreshToken } }),
      );

      for (const response of responses) {
        expect([200, 204, 401], response.text).toContain(response.status);
        if (response.status === 401) expectError(response, { statusCode: 401, code: 'INVALID_TOKEN' });
      }
      const rotated = responses.filter((response) => response.status === 200);
      // Within the reuse interval several refreshes may answer 200, all with the one successor.
      const successors = new Set(rotated.map((response) => response.json<{ refreshToken: string }>().refreshToken));
      expect(successors.size).toBeLessThanOrEqual(1);
      const live = await db
        .selectFrom('refresh_tokens')
        .select('token_hash')
        .where('family_id', '=', family)
        .where('rotated_at', 'is', null)
        .where('revoked_at', 'is', null)
        .execute();
      expect(live.length).toBeLessThanOrEqual(1);
      if (responses.some((response) => response.status === 204)) {
        // The client was told the session is over: nothing minted in the race may outlive that.
        expect(live, `round ${round}: statuses ${responses.map((r) => r.status).join(',')}`).toEqual([]);
        for (const response of rotated) {
          const next = response.json<{ refreshToken: string }>().refreshToken;
          expect((await httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken: next } })).status).toBe(401);
        }
      }
    }
  });
  test('one refresh racing one logout of the same token: when the logout answers 204, the rotated token does not work either', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { baseUrl } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      RATE_LIMIT_REFRESH: '1000',
      RATE_LIMIT_LOGIN: '1000',
    });
    const user = await createUser(db);
    const outcomes: string[] = [];
    for (let round = 0; round < 20; round++) {
      const login = await httpRequest(baseUrl, '/auth/login', { body: { email: user.email, password: PASSWORD } });
      const { refreshToken } = login.json<{ refreshToken: string }>();

      const [refreshed, loggedOut] = await race(2, (i) =>
        httpRequest(baseUrl, i === 0 ? '/auth/refresh' : '/auth/logout', { body: { refreshToken } }),
      );
      if (refreshed === undefined || loggedOut === undefined) throw new Error('lost a racer');
      outcomes.push(`${refreshed.status}/${loggedOut.status}`);
      if (refreshed.status === 200 && loggedOut.status === 204) {
        const next = refreshed.json<{ refreshToken: string }>().refreshToken;
        const reuse = await httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken: next } });
        expect(
          reuse.status,
          `round ${round}: the session was logged out, yet its rotated token still refreshes (outcomes so far ${outcomes.join(' ')})`,
        ).toBe(401);
      }
    }
  });
  test('a refresh racing a password change made from another session: once the change answers 204, no refresh token of that session works', async ({
    onTestFinished,
  }) => {
    const { url, db } = await isolatedDatabase(onTestFinished);
    const { baseUrl, applicationName } = await appOnPool(onTestFinished, url, HTTP_PORTS, {
      RATE_LIMIT_REFRESH: '1000',
    });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    onTestFinished(async () => {
      await admin.end();
    });
    const user = await createUser(db);
    const login = await httpRequest(baseUrl, '/auth/login', { body: { email: user.email, password: PASSWORD } });
    const { refreshToken } = login.json<{ refreshToken: string }>();
    // The password is changed from a second session: v2 keeps the session that made the change.
    const changer = await httpRequest(baseUrl, '/auth/login', { body: { email: user.email, password: PASSWORD } });
    const { accessToken } = changer.json<{ accessToken: string }>();
    const waiting = async (count: number) => {
      await admin.query('select pg_stat_clear_snapshot()');
      const { rows } = await admin.query<{ n: string }>(
        "select count(*) as n from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'",
        [applicationName],
      );
      return Number(rows[0]?.n) === count ? true : undefined;
    };

    // Line both requests up on the token's row: the refresh first, then the password change's revocation.
    await admin.query('begin');
    await admin.query('select id from refresh_tokens where token_hash = $1 for update', [
      hashRefreshToken(refreshToken),
    ]);
    const refreshed = httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken } });
    await waitFor('the refresh to wait on the row', () => waiting(1));
    const changed = httpRequest(baseUrl, '/auth/password', {
      headers: { authorization: `Bearer ${accessToken}` },
      body: { currentPassword: PASSWORD, newPassword: 'a brand new passphrase' },
    });
    await waitFor('the password change to wait on the row', () => waiting(2));
    await admin.query('commit');

    const [refresh, change] = await Promise.all([refreshed, changed]);
    expect(change.status, change.text).toBe(204);
    if (refresh.status === 200) {
      const next = refresh.json<{ refreshToken: string }>().refreshToken;
      const afterwards = await httpRequest(baseUrl, '/auth/refresh', { body: { refreshToken: next } });
      expect(afterwards.status, 'a refresh token minted during the password change still works after it').toBe(401);
    }
    // Only the session that changed the password lives on.
    const live = await db
      .selectFrom('refresh_tokens')
      .select('family_id')
      .where('user_id', '=', user.id)
      .where('revoked_at', 'is', null)
      .execute();
    const changerSession = JSON.parse(Buffer.from(accessToken.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      sid: string;
    };
    expect(live.map((row) => row.family_id)).toEqual([changerSession.sid]);
  });
});
