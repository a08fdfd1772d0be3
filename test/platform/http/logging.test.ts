import { vi } from 'vitest';
import { LogCapture, testApp } from '../../helpers/app.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { bearer, postJson, type LoginJson, type TokenPairJson, type UserJson } from '../../helpers/http.ts';

/** Every secret a client sent or received in a flow, and pieces long enough to identify them. */
function secretsOf(values: readonly string[]): string[] {
  const secrets = new Set<string>();
  for (const value of values) {
    secrets.add(value);
    // A JWT's signature and payload are secrets on their own; so is any long slice of a token.
    for (const part of value.split('.')) if (part.length >= 16) secrets.add(part);
    if (value.length >= 32) secrets.add(value.slice(8, 32));
  }
  return [...secrets];
}

describe('logs', () => {
  test('write one completion line per request, after the response, with its id, method, url, status and duration', async ({
    db,
    onTestFinished,
  }) => {
    const logs = new LogCapture();
    const app = await testApp(db, onTestFinished, { logStream: logs, env: { LOG_LEVEL: 'info' } });
    await app.inject({ url: '/health/live', headers: { 'x-request-id': 'one-line-ok' } });
    await app.inject({ url: '/no/such/route', headers: { 'x-request-id': 'one-line-404' } });

    type Entry = {
      reqId?: string;
      msg?: string;
      req?: { method?: string; url?: string };
      res?: { statusCode?: number };
      responseTime?: number;
    };
    const entriesOf = (id: string) =>
      logs.lines
        .map((line) => JSON.parse(line) as Entry)
        .filter((entry) => entry.reqId === id && entry.msg === 'request completed');
    await vi.waitFor(() => {
      expect(entriesOf('one-line-404')).toHaveLength(1);
    });
    const [ok] = entriesOf('one-line-ok');
    expect(entriesOf('one-line-ok')).toHaveLength(1);
    // Nothing else is logged for a successful request.
    expect(logs.lines.filter((line) => line.includes('one-line-ok'))).toHaveLength(1);
    expect(ok).toMatchObject({ req: { method: 'GET', url: '/health/live' }, res: { statusCode: 200 } });
    expect(ok?.responseTime).toBeGreaterThanOrEqual(0);
    expect(entriesOf('one-line-404')[0]).toMatchObject({ req: { url: '/no/such/route' }, res: { statusCode: 404 } });
  });

  test('a full register/login/refresh/me/password/logout flow at trace level never logs a password, a hash or a token', async ({
    db,
    onTestFinished,
  }) => {
    const logs = new LogCapture();
    // Reuse interval off: the replay below takes the reuse path at once.
    const app = await testApp(db, onTestFinished, {
      logStream: logs,
      env: { LOG_LEVEL: 'trace', REFRESH_REUSE_INTERVAL_SECONDS: '0' },
    });
    const password = 'Sup3r-Secret-Passphrase!';
    const newPassword = 'An0ther-Secret-Passphrase?';
    const email = 'logged@example.com';

    const registered = await postJson(
      app,
      '/auth/register',
      { email, password, name: 'Logged' },
      { 'x-request-id': 'flow-register' },
    );
    expect(registered.statusCode, registered.body).toBe(201);
    const userId = registered.json<{ user: UserJson }>().user.id;

    const wrong = await postJson(app, '/auth/login', { email, password: `${password}-wrong` });
    expect(wrong.statusCode).toBe(401);
    // A malformed body carrying the password: parsers like to quote their input in errors.
    const malformed = await app.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { 'content-type': 'application/json' },
      payload: `{"email": "${email}", "password": "${password}" oops`,
    });
    expect(malformed.statusCode).toBe(400);
    // An invalid body carrying the password: validators like to quote the offending value.
    const invalid = await postJson(app, '/auth/login', { email, password, extra: password, name: { password } });
    expect([200, 400]).toContain(invalid.statusCode);

    const loggedIn = await postJson(app, '/auth/login', { email, password });
    expect(loggedIn.statusCode).toBe(200);
    const session = loggedIn.json<LoginJson>();
    const refreshed = await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken });
    expect(refreshed.statusCode).toBe(200);
    const pair = refreshed.json<TokenPairJson>();
    // Replaying the rotated token: the reuse path logs too.
    expect((await postJson(app, '/auth/refresh', { refreshToken: session.refreshToken })).statusCode).toBe(401);

    const relogged = await postJson(app, '/auth/login', { email, password });
    const second = relogged.json<LoginJson>();
    expect((await app.inject({ url: '/auth/me', headers: bearer(second.accessToken) })).statusCode).toBe(200);
    expect((await app.inject({ url: '/auth/me', headers: bearer(`${second.accessToken}x`) })).statusCode).toBe(401);
    const changed = await postJson(
      app,
      '/auth/password',
      { currentPassword: password, newPassword },
      bearer(second.accessToken),
    );
    expect(changed.statusCode).toBe(204);
    // The session that changed the password is the one that stays.
    expect((await postJson(app, '/auth/logout', { refreshToken: second.refreshToken })).statusCode).toBe(204);

    const hashes = await db.selectFrom('users').select('password_hash').where('id', '=', userId).execute();
    const tokenHashes = await db
      .selectFrom('refresh_tokens')
      .select('token_hash')
      .where('user_id', '=', userId)
      .execute();

    // The capture works: requests were logged, with their ids.
    expect(logs.lines.filter((line) => line.includes('"msg":"request completed"')).length).toBeGreaterThanOrEqual(12);
    expect(logs.text).toContain('flow-register');
    expect(logs.text).toContain('/auth/refresh');

    const secrets = secretsOf([
      password,
      newPassword,
      session.accessToken,
      session.refreshToken,
      pair.accessToken,
      pair.refreshToken,
      second.accessToken,
      second.refreshToken,
      ...hashes.map((row) => row.password_hash),
      ...tokenHashes.map((row) => row.token_hash),
    ]);
    for (const secret of secrets) {
      expect(logs.text.includes(secret), `the logs contain a secret: ${secret.slice(0, 12)}…`).toBe(false);
    }
    expect(logs.text).not.toMatch(/\$argon2id\$/);
    expect(logs.text).not.toMatch(/Bearer\s+ey/);
  });
});
