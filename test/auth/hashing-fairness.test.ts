import type { LightMyRequestResponse } from 'fastify';
import type { App } from '../../src/app.ts';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { testApp } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../helpers/database.ts';
import { waitFor } from '../helpers/processes.ts';
import { createUser, expectError, PASSWORD } from '../helpers/http.ts';

// api.md, "Abuse resistance": password hashing is shared fairly between callers, and its refusals
// count against the caller that caused them. The hasher here is real argon2id at a cost high
// enough (about a second a hash on this machine) that one hash holds its only slot while the
// test's requests arrive; the users' own hashes are cheap, so their logins verify quickly.

const SLOW = { memoryCost: 65_536, timeCost: 8, parallelism: 1 };

async function login(app: App, email: string, password: string, from: string): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/auth/login',
    remoteAddress: from,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ email, password }),
  });
}

describe('hashing shared fairly between client addresses', () => {
  test('refusals for a full hasher count against the address that sent them: past its flood cap it gets 429', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const hasher = new PasswordHasher({ params: SLOW, concurrency: 1, queueLimit: 0 });
    const app = await testApp(db, onTestFinished, { hasher, env: { RATE_LIMIT_LOGIN: '3' } });
    const user = await createUser(db);

    const holding = hasher.hash('holds the only slot');
    const refused = [];
    for (let i = 0; i < 3; i++) refused.push(await login(app, user.email, 'a wrong guess', '10.60.0.1'));
    const fourth = await login(app, user.email, 'a wrong guess', '10.60.0.1');
    await holding;

    for (const response of refused) expectError(response, { statusCode: 503, code: 'OVERLOADED' });
    expectError(fourth, { statusCode: 429, code: 'RATE_LIMITED' });
  });

  test('when the queue is full, a newcomer from another address takes the place of the newest task of the address with the most waiting', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const hasher = new PasswordHasher({ params: SLOW, concurrency: 1, queueLimit: 2 });
    const app = await testApp(db, onTestFinished, { hasher });
    const victim = await createUser(db);
    const owner = await createUser(db);

    const holding = hasher.hash('holds the only slot');
    const flood = [1, 2].map(() => login(app, victim.email, 'a wrong guess', '10.61.0.1'));
    await waitFor('two queued guesses', () => hasher.queueDepth === 2, 5_000, 5);
    const mine = login(app, owner.email, PASSWORD, '10.62.0.1');
    const [first, second] = await Promise.all(flood);
    await holding;

    expect((await mine).statusCode).toBe(200);
    expect(first?.statusCode).toBe(401);
    expectError(second as LightMyRequestResponse, { statusCode: 503, code: 'OVERLOADED' });
  });
});
