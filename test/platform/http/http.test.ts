import type { App } from '../../../src/app.ts';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { expectUserShape, PASSWORD, UUID, type ErrorJson, type LoginJson, type UserJson } from '../../helpers/http.ts';

/** Starts the app on a free port of the loopback interface; it is closed when the test ends. */
async function listening(app: App): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error(`unexpected address ${String(address)}`);
  return `http://127.0.0.1:${address.port}`;
}

const json = { 'content-type': 'application/json' };

describe('over a real port', () => {
  test('registers, logs in, reads /auth/me and refreshes through real HTTP', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const base = await listening(app);

    const registered = await fetch(`${base}/auth/register`, {
      method: 'POST',
      headers: { ...json, 'x-request-id': 'port-test-1' },
      body: JSON.stringify({ email: ' Port@Example.com ', password: PASSWORD, name: ' Port ' }),
    });
    expect(registered.status).toBe(201);
    expect(registered.headers.get('x-request-id')).toBe('port-test-1');
    expect(registered.headers.get('content-type')).toMatch(/^application\/json/);
    const { user } = (await registered.json()) as { user: UserJson };
    expect(expectUserShape(user)).toMatchObject({ email: 'port@example.com', name: 'Port' });

    const loggedIn = await fetch(`${base}/auth/login`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ email: 'port@example.com', password: PASSWORD }),
    });
    expect(loggedIn.status).toBe(200);
    expect(loggedIn.headers.get('cache-control')).toContain('no-store');
    const session = (await loggedIn.json()) as LoginJson;

    const me = await fetch(`${base}/auth/me`, { headers: { authorization: `Bearer ${session.accessToken}` } });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { user: UserJson }).user.id).toBe(user.id);

    const refreshed = await fetch(`${base}/auth/refresh`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ refreshToken: session.refreshToken }),
    });
    expect(refreshed.status).toBe(200);
    expect(refreshed.headers.get('cache-control')).toContain('no-store');
  });

  test('answers errors in the one shape with the request id, and sets security headers', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const base = await listening(app);

    const missing = await fetch(`${base}/no/such/route`);
    expect(missing.status).toBe(404);
    const requestId = missing.headers.get('x-request-id');
    expect(requestId).toMatch(UUID);
    const { error } = (await missing.json()) as { error: ErrorJson };
    expect(error).toMatchObject({ type: 'NotFoundError', statusCode: 404, code: 'NOT_FOUND', requestId });
    expect(missing.headers.get('x-content-type-options')).toBe('nosniff');

    const unauthorized = await fetch(`${base}/auth/me`, { headers: { authorization: 'Bearer nope' } });
    expect(unauthorized.status).toBe(401);
    expect(((await unauthorized.json()) as { error: ErrorJson }).error).toMatchObject({
      type: 'AuthenticationError',
      code: 'INVALID_TOKEN',
    });
  });

  test('answers a 2 MiB body with 413 PayloadTooLargeError', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const base = await listening(app);

    const response = await fetch(`${base}/auth/register`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ email: 'big@example.com', password: PASSWORD, name: 'x'.repeat(2 * 1024 * 1024) }),
    });

    expect(response.status).toBe(413);
    const { error } = (await response.json()) as { error: ErrorJson };
    expect(error).toMatchObject({ type: 'PayloadTooLargeError', statusCode: 413, code: 'PAYLOAD_TOO_LARGE' });
    expect(error.requestId).toBe(response.headers.get('x-request-id'));
  });

  test('allows cross-origin requests only from the configured origins', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { CORS_ORIGINS: 'https://app.example' } });
    const base = await listening(app);
    const preflight = (origin: string) =>
      fetch(`${base}/auth/login`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });

    expect((await preflight('https://app.example')).headers.get('access-control-allow-origin')).toBe(
      'https://app.example',
    );
    expect((await preflight('https://evil.example')).headers.get('access-control-allow-origin')).toBeNull();
  });
});
