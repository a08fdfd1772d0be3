import { describe, expect, it } from 'vitest';
import { acknowledges, breakingChanges, type ApiDocument, type Schema } from '../../tools/openapi/breaking.ts';

const User: Schema = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' },
    name: { type: 'string' },
    lastLoginAt: { anyOf: [{ type: 'string', format: 'date-time' }, { type: 'null' }] },
    role: { type: 'string', enum: ['user', 'admin'] },
  },
  required: ['id', 'name', 'lastLoginAt', 'role'],
  additionalProperties: false,
};

const RegisterBody: Schema = {
  type: 'object',
  properties: {
    email: { type: 'string', minLength: 1, maxLength: 320 },
    name: { type: 'string', minLength: 1, maxLength: 1000 },
  },
  required: ['email'],
  additionalProperties: false,
};

/** A small API: register (body → {user}), list users (limit query), read one user (recursive $ref). */
function api(
  changes: {
    version?: string;
    user?: Schema;
    body?: Schema;
    limit?: { required?: boolean; schema?: Schema };
    extraParameter?: { name: string; required: boolean };
    registerStatus?: string;
    withoutList?: boolean;
  } = {},
): ApiDocument {
  const json = (schema: Schema) => ({ content: { 'application/json': { schema } } });
  const listParameters = [
    {
      name: 'limit',
      in: 'query',
      required: changes.limit?.required ?? false,
      schema: changes.limit?.schema ?? { type: 'integer', minimum: 1, maximum: 100 },
    },
    ...(changes.extraParameter === undefined
      ? []
      : [{ ...changes.extraParameter, in: 'query', schema: { type: 'string' } }]),
  ];
  return {
    info: { version: changes.version ?? '2.0.0' },
    components: { schemas: { User: changes.user ?? User } },
    paths: {
      '/auth/register': {
        post: {
          requestBody: { required: true, ...json(changes.body ?? RegisterBody) },
          responses: {
            [changes.registerStatus ?? '201']: json({
              type: 'object',
              properties: { user: { $ref: '#/components/schemas/User' } },
              required: ['user'],
            }),
            '409': json({ type: 'object' }),
          },
        },
      },
      '/users': changes.withoutList
        ? {}
        : {
            get: {
              parameters: listParameters,
              responses: {
                '200': json({
                  type: 'object',
                  properties: { items: { type: 'array', items: { $ref: '#/components/schemas/User' } } },
                }),
              },
            },
          },
    },
  };
}

const withProperties = (
  schema: Schema,
  properties: Record<string, Schema | undefined>,
  required = schema.required,
): Schema => {
  const merged = Object.fromEntries(
    Object.entries({ ...schema.properties, ...properties }).filter(
      (entry): entry is [string, Schema] => entry[1] !== undefined,
    ),
  );
  return { ...schema, properties: merged, required: (required ?? []).filter((name) => name in merged) };
};

describe('breakingChanges', () => {
  it('finds nothing between a document and itself', () => {
    expect(breakingChanges(api(), api())).toEqual([]);
  });

  it('compares each object of a response union with its own former self (a login body or an MFA challenge)', () => {
    const login: Schema = {
      type: 'object',
      properties: { accessToken: { type: 'string' }, user: { $ref: '#/components/schemas/User' } },
      required: ['accessToken', 'user'],
      additionalProperties: false,
    };
    const challenge: Schema = {
      type: 'object',
      properties: { mfaRequired: { type: 'boolean' }, mfaToken: { type: 'string' } },
      required: ['mfaRequired', 'mfaToken'],
      additionalProperties: false,
    };
    const withLogin = (schema: Schema): ApiDocument => ({
      ...api(),
      paths: {
        '/auth/login': {
          post: { responses: { '200': { content: { 'application/json': { schema } } } } },
        },
      },
    });
    const union = withLogin({ anyOf: [login, challenge] });
    expect(breakingChanges(union, union)).toEqual([]);
    const withoutToken = { ...challenge, properties: { mfaRequired: { type: 'boolean' } }, required: ['mfaRequired'] };
    expect(breakingChanges(union, withLogin({ anyOf: [login, withoutToken] }))).toEqual([
      'POST /auth/login: response 200: property "mfaToken" was removed',
    ]);
  });

  it('lets a route, an optional input and a response field be added', () => {
    const next = api({
      body: withProperties(RegisterBody, { nickname: { type: 'string' } }),
      user: withProperties(User, { status: { type: 'string', enum: ['active', 'disabled'] } }, [
        ...(User.required ?? []),
        'status',
      ]),
      extraParameter: { name: 'q', required: false },
    });
    expect(breakingChanges(api(), next)).toEqual([]);
  });

  it('reports a removed operation', () => {
    expect(breakingChanges(api(), api({ withoutList: true }))).toEqual(['GET /users: the operation was removed']);
  });

  it('reports a success status that changed', () => {
    expect(breakingChanges(api(), api({ registerStatus: '200' }))).toEqual([
      'POST /auth/register: response 201: was removed',
    ]);
  });

  it('reports a response field removed, or no longer always present, through $ref and array items', () => {
    const next = api({ user: withProperties(User, { lastLoginAt: undefined }, ['id', 'role']) });
    expect(breakingChanges(api(), next)).toEqual([
      'POST /auth/register: response 201.user: property "name" may now be absent',
      'POST /auth/register: response 201.user: property "lastLoginAt" was removed',
      'GET /users: response 200.items[]: property "name" may now be absent',
      'GET /users: response 200.items[]: property "lastLoginAt" was removed',
    ]);
  });

  it('reports a response field that may now be null', () => {
    const next = api({ user: withProperties(User, { name: { anyOf: [{ type: 'string' }, { type: 'null' }] } }) });
    expect(breakingChanges(api(), next)).toContain('POST /auth/register: response 201.user.name: may now be null');
  });

  it('does not report a new enum value in a response (clients must expect unknown values)', () => {
    const next = api({ user: withProperties(User, { role: { type: 'string', enum: ['user', 'admin', 'auditor'] } }) });
    expect(breakingChanges(api(), next)).toEqual([]);
  });

  it('reports a new required input: a body property and a query parameter', () => {
    const next = api({
      body: { ...RegisterBody, required: ['email', 'name'] },
      extraParameter: { name: 'tenant', required: true },
      limit: { required: true },
    });
    expect(breakingChanges(api(), next)).toEqual([
      'POST /auth/register: request body: new required property "name"',
      'GET /users: query parameter "limit": is now required',
      'GET /users: query parameter "tenant": is new and required',
    ]);
  });

  it('reports narrowed input types: tighter bounds, a removed property on a closed object, a lost enum value, integer instead of number', () => {
    const next = api({
      body: withProperties(RegisterBody, { email: { type: 'string', minLength: 3, maxLength: 254 }, name: undefined }),
      limit: { schema: { type: 'integer', minimum: 1, maximum: 50 } },
    });
    expect(breakingChanges(api(), next)).toEqual([
      'POST /auth/register: request body: no longer accepts property "name"',
      'POST /auth/register: request body.email: minLength rose from 1 to 3',
      'POST /auth/register: request body.email: maxLength fell from 320 to 254',
      'GET /users: query parameter "limit": maximum fell from 100 to 50',
    ]);

    const roles = (values: string[]): Schema =>
      withProperties(RegisterBody, { role: { type: 'string', enum: values } });
    expect(breakingChanges(api({ body: roles(['user', 'admin']) }), api({ body: roles(['user']) }))).toEqual([
      'POST /auth/register: request body.role: no longer accepts "admin"',
    ]);
    const age = (type: string): Schema => withProperties(RegisterBody, { age: { type } });
    expect(breakingChanges(api({ body: age('number') }), api({ body: age('integer') }))).toEqual([
      'POST /auth/register: request body.age: no longer accepts number',
    ]);
    expect(breakingChanges(api({ body: age('integer') }), api({ body: age('number') }))).toEqual([]);
  });

  it('matches a union of literals value by value: each old value accepted by any new variant', () => {
    const literals = (...values: string[]): Schema => ({
      anyOf: values.map((value) => ({ type: 'string', enum: [value] })),
    });
    const role = (schema: Schema): Schema => withProperties(RegisterBody, { role: schema });
    // `'user' | 'admin'` against itself, and against one enum of both: nothing lost.
    expect(
      breakingChanges(api({ body: role(literals('user', 'admin')) }), api({ body: role(literals('user', 'admin')) })),
    ).toEqual([]);
    expect(
      breakingChanges(
        api({ body: role(literals('user', 'admin')) }),
        api({ body: role({ type: 'string', enum: ['admin', 'user'] }) }),
      ),
    ).toEqual([]);
    expect(
      breakingChanges(
        api({ body: role({ type: 'string', enum: ['user', 'admin'] }) }),
        api({ body: role(literals('admin', 'user', 'root')) }),
      ),
    ).toEqual([]);
    // A value no new variant takes is reported, once.
    expect(
      breakingChanges(api({ body: role(literals('user', 'admin')) }), api({ body: role(literals('user')) })),
    ).toEqual(['POST /auth/register: request body.role: no longer accepts "admin"']);
  });

  it('reports an input that no longer accepts null, and a new pattern', () => {
    const nullableName = withProperties(RegisterBody, { name: { anyOf: [{ type: 'string' }, { type: 'null' }] } });
    const patterned = withProperties(RegisterBody, { name: { type: 'string', pattern: '^[a-z]+$' } });
    expect(breakingChanges(api({ body: nullableName }), api({ body: patterned }))).toEqual([
      'POST /auth/register: request body.name: pattern is now ^[a-z]+$',
      'POST /auth/register: request body.name: no longer accepts null',
    ]);
  });
});

describe('acknowledges', () => {
  it('accepts a breaking change only with a higher major version', () => {
    expect(acknowledges(api({ version: '2.0.0' }), api({ version: '3.0.0' }))).toBe(true);
    expect(acknowledges(api({ version: '2.0.0' }), api({ version: '2.1.0' }))).toBe(false);
    expect(acknowledges(api({ version: '2.0.0' }), api({ version: '2.0.0' }))).toBe(false);
  });
});
