import { afterAll, beforeAll } from 'vitest';
import { describe, expect, test } from '../helpers/database.ts';
import { startOidcProvider, type TestIdentityProvider } from '../helpers/oidc-provider.ts';
import { tokenFromLink } from '../helpers/smtp.ts';
import { mailTo, startMailingApp } from '../helpers/email.ts';
import { callbackOf, oauthEnv, signInAndExchange } from './oauth-support.ts';
import { bearer, expectError, postJson, type LoginJson } from '../helpers/http.ts';

// An account created through a provider has no password; the reset flow (the real one: outbox,
// dispatcher, SMTP) gives it one, and then its identity is no longer its last way to sign in.

let idp: TestIdentityProvider;

beforeAll(async () => {
  idp = await startOidcProvider({ redirectUris: [callbackOf('idp')] });
});
afterAll(async () => {
  await idp.stop();
});

describe('an account created through a provider', () => {
  test('has no password until it sets one through the reset flow, then can unlink the provider', async ({
    onTestFinished,
  }) => {
    const { app, smtp, database } = await startMailingApp(onTestFinished, { env: oauthEnv({ idp }) });
    idp.accounts.set('grace', { email: 'grace@example.com', email_verified: true, name: 'Grace' });
    const session = (await signInAndExchange(app, 'grace')).json<LoginJson>();
    expect(session.user.email).toBe('grace@example.com');
    expectError(await postJson(app, '/auth/login', { email: 'grace@example.com', password: 'any password at all' }), {
      statusCode: 401,
      code: 'INVALID_CREDENTIALS',
    });

    expect((await postJson(app, '/auth/password/forgot', { email: 'grace@example.com' })).statusCode).toBe(202);
    const [email] = await mailTo(smtp, 'grace@example.com', 'Reset your password');
    const token = tokenFromLink(email?.text ?? '', '/reset-password');
    const newPassword = 'a passphrase of her own';
    const reset = await postJson(app, '/auth/password/reset', { token, newPassword });
    expect(reset.statusCode, reset.body).toBe(204);

    const login = await postJson(app, '/auth/login', { email: 'grace@example.com', password: newPassword });
    expect(login.statusCode, login.body).toBe(200);
    const { accessToken } = login.json<LoginJson>();
    const [identity] = await database.db.selectFrom('identities').select('id').execute();
    const unlinked = await app.inject({
      method: 'DELETE',
      url: `/auth/identities/${identity?.id}`,
      headers: bearer(accessToken),
    });
    expect(unlinked.statusCode, unlinked.body).toBe(204);
  });
});
