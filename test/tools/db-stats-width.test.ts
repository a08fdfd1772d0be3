import pg from 'pg';
import { collectDatabaseStats } from '../../tools/db-admin/stats.ts';
import { describe, expect, test } from '../helpers/database.ts';

describe('collectDatabaseStats queryWidth', () => {
  test('flattens a statement to one line and cuts it at queryWidth with an ellipsis; a short one is kept whole', async ({
    database,
  }) => {
    const applicationName = 'stats-width';
    const client = new pg.Client({ connectionString: database.url, application_name: applicationName });
    await client.connect();
    try {
      await client.query(`select 1 as first_column,\n       2 as second_column,\n       3 as third_column`);

      const cut = await collectDatabaseStats(database.db, { applicationName, queryWidth: 20 });
      expect(cut.application.connections.map((connection) => connection.query)).toEqual(['select 1 as first_c…']);

      const whole = await collectDatabaseStats(database.db, { applicationName, queryWidth: 200 });
      expect(whole.application.connections.map((connection) => connection.query)).toEqual([
        'select 1 as first_column, 2 as second_column, 3 as third_column',
      ]);
    } finally {
      await client.end();
    }
  });
});
