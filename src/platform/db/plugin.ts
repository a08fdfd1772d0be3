import type { Kysely } from 'kysely';
import fp from 'fastify-plugin';
import type { DB } from './database.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The root database, or in tests the per-test transaction. */
    db: Kysely<DB>;
  }
}

export interface DatabasePluginOptions {
  readonly db: Kysely<DB>;
}

/**
 * Decorates the app with the database it was given. It closes nothing: whoever created the
 * database (server.ts, a test) owns it and destroys it after `app.close()`.
 */
export default fp<DatabasePluginOptions>(
  async (app, opts) => {
    app.decorate('db', opts.db);
  },
  { name: 'database' },
);
