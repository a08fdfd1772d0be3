/**
 * The baselines for GET /users/:id: a tiny Fastify app (no auth, no logging, no metrics, no
 * security plugins) answering from one query, in one of three flavours chosen by BASELINE:
 *
 * - `raw`: `pg` with a parameterised query text, unnamed (the limit for this stack);
 * - `drizzle`: Drizzle ORM over node-postgres, the idiomatic `select().from().where(eq())`;
 * - `ours`: our own data layer (createDatabase + UserRepository, prepared statements per
 *   DB_PREPARED_STATEMENTS), isolating its cost from the full app's auth, logging and metrics.
 *
 * All use a pool of DB_POOL_MAX (10) connections and the same response schema as the app.
 * GET /const answers without the database: the framework's own ceiling on this machine.
 */
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import Fastify from 'fastify';
import pg from 'pg';
import { createDatabase, createPool } from '../../src/platform/db/database.ts';
import { UserRepository } from '../../src/users/users.repository.ts';
import { users } from '../lib/drizzle-schema.ts';

interface UserRecord {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly role: string;
  readonly created_at: Date;
  readonly last_login_at: Date | null;
}

const mode = process.env.BASELINE ?? 'raw';
const url = process.env.DATABASE_URL ?? '';
const port = Number(process.env.PORT ?? '3204');
const poolMax = Number(process.env.DB_POOL_MAX ?? '10');
const prepared = process.env.DB_PREPARED_STATEMENTS !== 'false';
if (url === '') throw new Error('DATABASE_URL is required');

const SELECT_USER = 'select * from users where id = $1';

function finder(): { find: (id: string) => Promise<UserRecord | undefined>; close: () => Promise<void> } {
  switch (mode) {
    case 'raw': {
      const pool = new pg.Pool({ connectionString: url, max: poolMax, idleTimeoutMillis: 0 });
      return {
        find: async (id) => (await pool.query<UserRecord>(SELECT_USER, [id])).rows[0],
        close: () => pool.end(),
      };
    }
    case 'drizzle': {
      const pool = new pg.Pool({ connectionString: url, max: poolMax, idleTimeoutMillis: 0 });
      const db = drizzle({ client: pool });
      return {
        find: async (id) => (await db.select().from(users).where(eq(users.id, id)))[0],
        close: () => pool.end(),
      };
    }
    case 'ours': {
      const config = {
        url,
        poolMax,
        connectionTimeoutMs: 5000,
        idleTimeoutMs: 0,
        statementTimeoutMs: 10_000,
        applicationName: 'bench-ours',
        preparedStatements: prepared,
      };
      const db = createDatabase(config, { pool: createPool(config) });
      const repository = new UserRepository(db);
      return { find: (id) => repository.findById(id), close: () => db.destroy() };
    }
    default:
      throw new Error(`BASELINE must be raw, drizzle or ours (got "${mode}")`);
  }
}

const { find, close } = finder();
const app = Fastify({ logger: false });

const userSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    email: { type: 'string' },
    name: { type: 'string' },
    role: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    lastLoginAt: { anyOf: [{ type: 'string', format: 'date-time' }, { type: 'null' }] },
  },
} as const;

app.get('/health/live', async () => ({ status: 'ok' }));
app.get('/const', async () => ({ status: 'ok' }));
app.get<{ Params: { id: string } }>(
  '/users/:id',
  {
    schema: {
      params: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] },
      response: { 200: { type: 'object', properties: { user: userSchema } } },
    },
  },
  async (request, reply) => {
    const row = await find(request.params.id);
    if (row === undefined) return reply.code(404).send({ error: 'not found' });
    return {
      user: {
        id: row.id,
        email: row.email,
        name: row.name,
        role: row.role,
        createdAt: row.created_at,
        lastLoginAt: row.last_login_at,
      },
    };
  },
);

const shutdown = () => {
  void app
    .close()
    .then(close)
    .then(() => process.exit(0));
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);

await app.listen({ host: '127.0.0.1', port });
