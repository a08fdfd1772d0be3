import { testApp } from '../../helpers/app.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { expectError, PASSWORD } from '../../helpers/http.ts';

// Issue 33 item 9: with the same property twice, JSON.parse kept the last one, while a proxy,
// a WAF or a log pipeline in front may have read the first. Such a body is now a 400.

const raw = (body: string) => ({
  method: 'POST' as const,
  headers: { 'content-type': 'application/json' },
  payload: body,
});

describe('duplicate property names in a JSON body', () => {
  test.for([
    [
      'at the top level',
      `{"email":"admin@example.com","email":"mallory@example.com","password":"${PASSWORD}"}`,
      'email',
    ],
    [
      'spelled differently with an escape',
      `{"email":"a@example.com","\\u0065mail":"b@example.com","password":"x"}`,
      'email',
    ],
    ['with whitespace before the colon', `{"password" : "x", "email":"a@example.com", "password"\n:"y"}`, 'password'],
    ['inside a nested object', `{"email":{"a":1,"b":{"c":1,"c":2}},"password":"x"}`, 'c'],
    ['inside an object in an array', `{"email":[{"a":1},{"d":1,"d":1}],"password":"x"}`, 'd'],
  ] as const)(
    'refuses a body with a name twice %s with 400 VALIDATION_FAILED naming it',
    async ([, body, name], { db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished);

      const response = await app.inject({ url: '/auth/login', ...raw(body) });

      const error = expectError(response, { statusCode: 400, code: 'VALIDATION_FAILED' });
      expect(error.message).toBe(`Body has the property "${name}" more than once`);
      expect(await db.selectFrom('audit_events').select('id').execute()).toEqual([]);
    },
  );

  test('reads the same name in sibling objects, and colons and braces inside strings, as usual', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);

    // Each object has its own names: the schema, not the duplicate check, refuses these values.
    const siblings = await app.inject({ url: '/auth/login', ...raw('{"email":{"a":1},"password":{"a":2}}') });
    expect(expectError(siblings, { statusCode: 400, code: 'VALIDATION_FAILED' }).message).not.toMatch(/more than once/);

    const tricky = JSON.stringify({ email: 'ada@example.com', password: PASSWORD, name: 'x: {"name": "y"} : \\"' });
    const registered = await app.inject({ url: '/auth/register', ...raw(tricky) });
    expect(registered.statusCode, registered.body).toBe(201);
  });
});
