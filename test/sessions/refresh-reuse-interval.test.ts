import type { App } from '../../src/app.ts';
import { AppMetrics } from '../../src/platform/metrics/metrics.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import { createUser, expectUnauthorized, PASSWORD, type LoginJson, type TokenPairJson } from '../helpers/http.ts';

// Issue 33 item 8: a just-rotated refresh token replayed within REFRESH_REUSE_INTERVAL_SECONDS
// got the successor, from any client, and nothing recorded it. Now the replay is in the audit log
// and the metrics, and only the session's own client (its user agent) gets the successor.

const PHONE = 'ExampleApp/3.1 (iPhone)';
const THIEF = 'curl/8.5.0';

function post(app: App, url: string, payload: unknown, userAgent: string) {
  return app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json', 'user-agent': userAgent },
    payload: JSON.stringify(payload),
  });
}

async function signedIn(app: App, email: string): Promise<LoginJson> {
  const response = await post(app, '/auth/login', { email, password: PASSWORD }, PHONE);
  expect(response.statusCode, response.body).toBe(200);
  return response.json<LoginJson>();
}

async function replays(metrics: AppMetrics): Promise<Record<string, number>> {
  const { values } = await metrics.reuseIntervalReplays.get();
  return Object.fromEntries(values.map((value) => [String(value.labels.client), value.value]));
}

describe('a rotated refresh token presented again within the reuse interval', () => {
  test("from the session's own user agent: the same successor, one refresh.reuse_interval event however often, and counted", async ({
    db,
    onTestFinished,
  }) => {
    const metrics = new AppMetrics();
    const app = await testApp(db, onTestFinished, { metrics });
    const user = await createUser(db);
    const session = await signedIn(app, user.email);
    const rotated = await post(app, '/auth/refresh', { refreshToken: session.refreshToken }, PHONE);
    const successor = rotated.json<TokenPairJson>().refreshToken;

    for (let i = 0; i < 5; i++) {
      const replayed = await post(app, '/auth/refresh', { refreshToken: session.refreshToken }, PHONE);
      expect(replayed.statusCode, replayed.body).toBe(200);
      expect(replayed.json<TokenPairJson>().refreshToken).toBe(successor);
    }

    const events = await db
      .selectFrom('audit_events')
      .select(['type', 'user_id', 'user_agent', 'details'])
      .where('type', '=', 'refresh.reuse_interval')
      .execute();
    expect(events).toEqual([
      {
        type: 'refresh.reuse_interval',
        user_id: user.id,
        user_agent: PHONE,
        details: { sessionId: expect.any(String), rotatedAt: expect.any(String) },
      },
    ]);
    expect(await replays(metrics)).toEqual({ same: 5, other: 0 });
  });

  test('from another user agent: treated as reuse, 401, the session ends, and recorded as such', async ({
    db,
    onTestFinished,
  }) => {
    const metrics = new AppMetrics();
    const app = await testApp(db, onTestFinished, { metrics });
    const user = await createUser(db);
    const session = await signedIn(app, user.email);
    const rotated = await post(app, '/auth/refresh', { refreshToken: session.refreshToken }, PHONE);
    const successor = rotated.json<TokenPairJson>().refreshToken;

    expectUnauthorized(await post(app, '/auth/refresh', { refreshToken: session.refreshToken }, THIEF));

    // The owner's successor is dead too: the family was revoked, as for any reuse.
    expectUnauthorized(await post(app, '/auth/refresh', { refreshToken: successor }, PHONE));
    const reused = await db
      .selectFrom('audit_events')
      .select(['user_agent', 'details'])
      .where('type', '=', 'refresh.reused')
      .execute();
    expect(reused).toEqual([
      {
        user_agent: THIEF,
        details: { sessionId: expect.any(String), withinReuseInterval: true, reason: 'other_client' },
      },
    ]);
    expect(await replays(metrics)).toEqual({ same: 0, other: 1 });
  });

  test('racing tabs of one browser all get the one successor', async ({ onTestFinished }) => {
    // Committed transactions on a pool, so the refreshes really race (the user's row lock orders them).
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const session = await signedIn(app, user.email);

    const answers = await Promise.all(
      Array.from({ length: 6 }, () => post(app, '/auth/refresh', { refreshToken: session.refreshToken }, PHONE)),
    );

    expect(answers.map((answer) => answer.statusCode)).toEqual(Array.from({ length: 6 }, () => 200));
    expect(new Set(answers.map((answer) => answer.json<TokenPairJson>().refreshToken)).size).toBe(1);
  });
});
