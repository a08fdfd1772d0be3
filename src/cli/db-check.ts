import { runCodegen } from './codegen.ts';

// npm run db:check — fail when db-types/ is not what kysely-codegen generates from migrations/.
try {
  await runCodegen('verify');
  process.stdout.write('db:check: db-types/ matches the schema built by migrations/\n');
} catch (error) {
  const output = (error as { stdout?: string; stderr?: string }).stderr ?? '';
  process.stderr.write(
    `db:check failed: db-types/ is stale — it is not what kysely-codegen generates from migrations/.\n` +
      `Run \`npm run db:types\` and commit db-types/.\n${output}`,
  );
  process.exitCode = 1;
}
