import { testApp } from '../../helpers/app.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { accessTokenFor, bearer, createUser } from '../../helpers/http.ts';

const EXPECTED = {
  'content-security-policy':
    "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';" +
    "img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline'",
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'SAMEORIGIN',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0',
};

describe('security headers', () => {
  test("every response carries helmet's headers, without upgrade-insecure-requests: success, error and unknown route", async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const user = await createUser(db);
    const responses = await Promise.all([
      app.inject({ url: '/health/live' }),
      app.inject({ url: '/auth/me', headers: bearer(accessTokenFor(user)) }),
      app.inject({ url: '/auth/me' }),
      app.inject({ url: '/no/such/route' }),
    ]);
    expect(responses.map((response) => response.statusCode)).toEqual([200, 200, 401, 404]);
    for (const response of responses) {
      expect(response.headers).toMatchObject(EXPECTED);
      expect(response.headers['x-powered-by']).toBeUndefined();
    }
  });
});
