import type { ResourceNames } from '../names.ts';

/** The repository's query-plan cases (test/platform/db/query-plans.test.ts finds and runs them). */
export function plans(n: ResourceNames): string {
  return `import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { ${n.Singular}Repository } from './${n.kebab}.repository.ts';

// Query-plan cases of the ${n.table} table (test/platform/db/query-plans.test.ts runs them): every
// public method of the repository needs one, with the index its query must read through.

const PER_USER = 3;
const INDEX = '${n.table}_user_id_created_at_id_idx';

export const ${n.singular}Plans = queryPlans({
  repository: ${n.Singular}Repository,
  seed: {
    table: '${n.table}',
    after: ['users'],
    fill: async (db) => {
      await sql\`
        insert into ${n.table} (id, user_id, name, created_at)
        select gen_random_uuid(), u.id, 'Item ' || g, u.created_at + g * interval '1 minute'
        from users as u cross join generate_series(1, \${PER_USER}) as g\`.execute(db);
    },
  },
  sample: async (db) => {
    const { userId } = await sampleUser(db);
    const rows = await db
      .selectFrom('${n.table}')
      .select(['id', 'created_at'])
      .where('user_id', '=', userId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    const first = rows[0];
    if (first === undefined) throw new Error('the sample user has no ${n.table}');
    return { userId, id: first.id, after: { at: first.created_at, id: first.id } };
  },
  cases: [
    { name: 'create', call: (r, s) => r.create({ userId: s.userId, name: 'New' }), index: undefined },
    { name: 'findOwn', call: (r, s) => r.findOwn(s.userId, s.id), index: ['${n.table}_pkey', INDEX] },
    { name: 'listOfUser (first page)', call: (r, s) => r.listOfUser(s.userId, 21), index: INDEX },
    { name: 'listOfUser (next page)', call: (r, s) => r.listOfUser(s.userId, 21, s.after), index: INDEX },
    { name: 'update', call: (r, s) => r.update(s.userId, s.id, { name: 'Renamed' }), index: ['${n.table}_pkey', INDEX] },
    { name: 'delete', call: (r, s) => r.delete(s.userId, s.id), index: ['${n.table}_pkey', INDEX] },
  ],
});
`;
}
