import type { App } from '../../src/app.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { bearer, createUser, decodeJwt, PASSWORD } from '../helpers/http.ts';

// Issue 33 item 6: after an admin changed a user, that user's GET /auth/events showed the admin's
// address, user agent and session id. The owner now sees only their own side of such an event.

interface EventJson {
  readonly type: string;
  readonly userId: string | null;
  readonly actorId: string | null;
  readonly sessionId: string | null;
  readonly ipAddress: string | null;
  readonly userAgent: string | null;
  readonly details: Record<string, unknown>;
}

async function signIn(app: App, email: string, from: { ip: string; agent: string }): Promise<string> {
  const response = await app.inject({
    method: 'POST',
    url: '/auth/login',
    remoteAddress: from.ip,
    headers: { 'content-type': 'application/json', 'user-agent': from.agent },
    payload: JSON.stringify({ email, password: PASSWORD }),
  });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<{ accessToken: string }>().accessToken;
}

async function events(app: App, url: string, token: string): Promise<EventJson[]> {
  const response = await app.inject({ url, headers: bearer(token) });
  expect(response.statusCode, response.body).toBe(200);
  return response.json<{ items: EventJson[] }>().items;
}

const ADMIN = { ip: '198.51.100.99', agent: 'AdminConsole/7 (internal)' };
const OWNER = { ip: '203.0.113.5', agent: 'OwnerPhone/1' };

describe("an admin's action in the audit log", () => {
  test("the user's GET /auth/events leaves out the admin's address, user agent and session, and keeps actorId", async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    const user = await createUser(db);
    const adminToken = await signIn(app, admin.email, ADMIN);
    const userToken = await signIn(app, user.email, OWNER);

    const changed = await app.inject({
      method: 'PATCH',
      url: `/users/${user.id}`,
      remoteAddress: ADMIN.ip,
      headers: { ...bearer(adminToken), 'content-type': 'application/json', 'user-agent': ADMIN.agent },
      payload: JSON.stringify({ name: 'Renamed By Admin', role: 'admin' }),
    });
    expect(changed.statusCode, changed.body).toBe(200);

    const seen = await events(app, '/auth/events', userToken);
    const update = seen.find((event) => event.type === 'user.updated');
    expect(update).toMatchObject({
      userId: user.id,
      actorId: admin.id,
      ipAddress: null,
      userAgent: null,
      sessionId: null,
      details: { fields: ['name', 'role'], changes: { role: { old: 'user', new: 'admin' } } },
    });
    expect(JSON.stringify(seen)).not.toContain(ADMIN.ip);
    expect(JSON.stringify(seen)).not.toContain(ADMIN.agent);
    expect(JSON.stringify(seen)).not.toContain(String(decodeJwt(adminToken).payload.sid));
    // The user's own doings keep their own address and user agent.
    expect(seen.find((event) => event.type === 'login.succeeded')).toMatchObject({
      actorId: user.id,
      ipAddress: OWNER.ip,
      userAgent: OWNER.agent,
      sessionId: decodeJwt(userToken).payload.sid,
    });
  });

  test('an admin reading GET /users/:id/events still sees who acted from where', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const admin = await createUser(db, { role: 'admin' });
    const user = await createUser(db);
    const adminToken = await signIn(app, admin.email, ADMIN);

    const changed = await app.inject({
      method: 'PATCH',
      url: `/users/${user.id}`,
      remoteAddress: ADMIN.ip,
      headers: { ...bearer(adminToken), 'content-type': 'application/json', 'user-agent': ADMIN.agent },
      payload: JSON.stringify({ status: 'disabled' }),
    });
    expect(changed.statusCode, changed.body).toBe(200);

    const seen = await events(app, `/users/${user.id}/events`, adminToken);
    expect(seen.find((event) => event.type === 'user.updated')).toMatchObject({
      actorId: admin.id,
      ipAddress: ADMIN.ip,
      userAgent: ADMIN.agent,
      sessionId: decodeJwt(adminToken).payload.sid,
    });
  });
});
