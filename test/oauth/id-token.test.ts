import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { testApp } from '../helpers/app.ts';
import { describe, expect, test } from '../helpers/database.ts';
import { startOidcProvider, type IdTokenRewrite, type TestIdentityProvider } from '../helpers/oidc-provider.ts';
import { callbackOf, landing, oauthEnv, signInThrough } from './oauth-support.ts';

// The ID token as the provider's token endpoint hands it over, rewritten before it reaches us: each
// claim the contract names (issuer, audience, nonce, signature, expiry) is checked on its own, and
// a token signed again with the provider's own key and unchanged claims is the control that shows
// the rewriting alone breaks nothing.

let idp: TestIdentityProvider;

beforeAll(async () => {
  idp = await startOidcProvider({ redirectUris: [callbackOf('idp')] });
});
afterEach(() => {
  idp.rewriteIdTokens(undefined);
});
afterAll(async () => {
  await idp.stop();
});

const now = () => Math.floor(Date.now() / 1000);

const REFUSED: ReadonlyArray<readonly [string, IdTokenRewrite]> = [
  ['issued by another issuer', { claims: (claims) => ({ ...claims, iss: 'https://accounts.evil.example' }) }],
  ['issued to another client (audience)', { claims: (claims) => ({ ...claims, aud: 'another-app' }) }],
  [
    'issued to us and another client without naming us as its authorized party',
    { claims: (claims) => ({ ...claims, aud: [String(claims.aud), 'another-app'], azp: 'another-app' }) },
  ],
  ['expired ten minutes ago', { claims: (claims) => ({ ...claims, iat: now() - 3600, exp: now() - 600 }) }],
  ['issued an hour in the future', { claims: (claims) => ({ ...claims, iat: now() + 3600, exp: now() + 7200 }) }],
  ['without a nonce', { claims: ({ nonce: _nonce, ...claims }: JWTPayload) => claims }],
  ['signed by a key the provider does not publish', { signer: 'stranger' }],
];

describe('the ID token of a provider sign-in', () => {
  test('signed again by the provider with its claims unchanged, signs the user in (the control)', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = `sub-${randomUUID()}`;
    idp.accounts.set(sub, { email: `${sub}@example.com`, email_verified: true });
    idp.rewriteIdTokens({ signer: 'own' });
    const { fragment } = landing(await signInThrough(app, sub));
    expect([...fragment.keys()]).toEqual(['code']);
    expect(await db.selectFrom('users').select('id').where('email', '=', `${sub}@example.com`).execute()).toHaveLength(
      1,
    );
  });

  test.for(REFUSED)('%s is refused and writes nothing', async ([, rewrite], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: oauthEnv({ idp }) });
    const sub = `sub-${randomUUID()}`;
    idp.accounts.set(sub, { email: `${sub}@example.com`, email_verified: true });
    idp.rewriteIdTokens(rewrite);
    const { url, fragment } = landing(await signInThrough(app, sub));
    expect(url.search).toBe('');
    expect(Object.fromEntries(fragment)).toEqual({ error: 'INVALID_OR_EXPIRED_TOKEN' });
    expect(await db.selectFrom('users').select('id').where('email', '=', `${sub}@example.com`).execute()).toEqual([]);
    expect(await db.selectFrom('identities').select('id').where('subject', '=', sub).execute()).toEqual([]);
    expect(await db.selectFrom('oauth_exchange_codes').select('user_id').execute()).toEqual([]);
  });
});
