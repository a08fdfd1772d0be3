import SwaggerParser from '@apidevtools/swagger-parser';
import { sql } from 'kysely';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, isolatedDatabase, test, unreachableDatabase } from '../../helpers/database.ts';
import { expectError } from '../../helpers/http.ts';

/** What swagger-parser accepts: a parsed document. */
type ApiDocument = Exclude<Parameters<typeof SwaggerParser.validate>[0], string>;

interface Operation {
  readonly responses?: Record<string, unknown>;
  readonly requestBody?: unknown;
  readonly parameters?: ReadonlyArray<{ readonly name: string; readonly in: string }>;
  readonly security?: unknown;
}
interface OpenApiDocument {
  readonly openapi: string;
  readonly paths: Record<string, Record<string, Operation | undefined> | undefined>;
  readonly components?: {
    readonly schemas?: Record<string, { readonly properties?: Record<string, unknown> } | undefined>;
  };
}

/** Every route of the contract, with the statuses its table row promises. */
const CONTRACT: ReadonlyArray<readonly [method: string, path: string, statuses: readonly string[]]> = [
  ['post', '/auth/register', ['201', '400', '409', '429']],
  ['post', '/auth/login', ['200', '401', '429']],
  ['post', '/auth/refresh', ['200', '401']],
  ['post', '/auth/logout', ['204', '401']],
  ['get', '/auth/me', ['200', '401']],
  ['post', '/auth/password', ['204', '400', '401']],
  ['post', '/auth/email/verify', ['200', '400', '429']],
  ['post', '/auth/password/forgot', ['202', '400', '429']],
  ['post', '/auth/password/reset', ['204', '400', '429']],
  ['get', '/users', ['200', '400', '401', '403']],
  ['get', '/users/{id}', ['200', '400', '401', '403', '404']],
  ['get', '/health/live', ['200']],
  ['get', '/health/ready', ['200', '503']],
];

describe('GET /docs/json', () => {
  test('is a valid OpenAPI 3 document', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await app.inject({ url: '/docs/json' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    const document = response.json<OpenApiDocument>();
    expect(document.openapi).toMatch(/^3\./);

    await expect(SwaggerParser.validate(structuredClone(document) as unknown as ApiDocument)).resolves.toBeDefined();
  });

  test.for(CONTRACT)('documents %s %s with its responses', async ([method, path, statuses], { db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const document = (await app.inject({ url: '/docs/json' })).json<OpenApiDocument>();

    const operation = document.paths[path]?.[method];
    expect(operation, `${method.toUpperCase()} ${path} is missing`).toBeDefined();
    expect(Object.keys(operation?.responses ?? {})).toEqual(expect.arrayContaining([...statuses]));
    if (method === 'post') expect(operation?.requestBody, 'request body schema').toBeDefined();
  });

  test('documents GET /metrics', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const document = (await app.inject({ url: '/docs/json' })).json<OpenApiDocument>();
    const operation = document.paths['/metrics']?.get;
    expect(operation, 'GET /metrics is missing from the document').toBeDefined();
    expect(Object.keys(operation?.responses ?? {})).toContain('200');
  });

  test('documents the user object without any password field, and the bearer scheme on protected routes', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const document = (await app.inject({ url: '/docs/json' })).json<OpenApiDocument>();
    const dereferenced = (await SwaggerParser.dereference(
      structuredClone(document) as unknown as ApiDocument,
    )) as unknown as OpenApiDocument;
    const meUser = (
      dereferenced.paths['/auth/me']?.get?.responses?.['200'] as {
        content?: Record<string, { schema?: { properties?: { user?: { properties?: Record<string, unknown> } } } }>;
      }
    ).content?.['application/json']?.schema?.properties?.user?.properties;
    expect(Object.keys(meUser ?? {}).sort()).toEqual([
      'createdAt',
      'email',
      'emailVerifiedAt',
      'id',
      'lastLoginAt',
      'name',
      'role',
      'status',
    ]);
    expect(JSON.stringify(document)).not.toMatch(/password_?hash/i);
    for (const [method, path] of [
      ['get', '/auth/me'],
      ['post', '/auth/password'],
      ['post', '/auth/email/verification'],
      ['get', '/users'],
      ['get', '/users/{id}'],
    ] as const) {
      expect(document.paths[path]?.[method]?.security, `${method} ${path}`).toBeDefined();
    }
  });
});

describe('GET /docs', () => {
  test('serves the Swagger UI as HTML', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    let response = await app.inject({ url: '/docs' });
    if (response.statusCode >= 300 && response.statusCode < 400) {
      response = await app.inject({
        url: new URL(String(response.headers.location), 'http://localhost/docs').pathname,
      });
    }
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/html/);
    expect(response.body).toMatch(/swagger/i);
  });
});

describe('health', () => {
  test('GET /health/live answers 200 {status: "ok"}', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    const response = await app.inject({ url: '/health/live' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
  });

  test('GET /health/ready answers 200 with its checks when the database answers and is migrated', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished);
    const response = await app.inject({ url: '/health/ready' });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toEqual({ status: 'ok', checks: { database: 'ok', migrations: 'ok' } });
  });

  test('GET /health/ready answers 503 naming the database check when the database is down, while live stays 200', async ({
    onTestFinished,
  }) => {
    const down = unreachableDatabase(onTestFinished);
    const app = await testApp(down, onTestFinished);

    const response = await app.inject({ url: '/health/ready' });

    const error = expectError(response, {
      statusCode: 503,
      type: 'ServiceUnavailableError',
      code: 'DATABASE_UNAVAILABLE',
    });
    expect(JSON.stringify(error)).toMatch(/database/);
    expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
    expect((await app.inject({ url: '/health/live' })).statusCode).toBe(200);
  });

  test('GET /health/ready answers 503 naming the migrations check when a migration is pending', async ({
    onTestFinished,
  }) => {
    const { db } = await isolatedDatabase(onTestFinished);
    const app = await testApp(db, onTestFinished);
    const latest = await sql<{ name: string }>`select name from kysely_migration order by name desc limit 1`.execute(
      db,
    );
    await sql`delete from kysely_migration where name = ${latest.rows[0]?.name ?? ''}`.execute(db);

    const response = await app.inject({ url: '/health/ready' });

    const error = expectError(response, {
      statusCode: 503,
      type: 'ServiceUnavailableError',
      code: ['DATABASE_UNAVAILABLE', 'MIGRATIONS_PENDING'],
    });
    expect(JSON.stringify(error)).toMatch(/migrations/);
  });
});

describe('GET /metrics', () => {
  test('answers 200 in the Prometheus text exposition format', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished);
    await app.inject({ url: '/health/live' });
    const response = await app.inject({ url: '/metrics' });
    expect(response.statusCode, response.body.slice(0, 300)).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain/);
    expect(response.body).toMatch(/^# HELP /m);
    expect(response.body).toMatch(/^# TYPE \w+ (counter|gauge|histogram|summary)$/m);
  });

  test('requires the bearer secret when one is configured', async ({ db, onTestFinished }) => {
    const app = await testApp(db, onTestFinished, { env: { METRICS_TOKEN: 'scrape-secret' } });
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/metrics', headers: { authorization: 'Bearer scrape-secret' } })).statusCode).toBe(
      200,
    );
  });
});
