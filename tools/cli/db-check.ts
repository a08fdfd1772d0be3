import { readMigrationStatus, type MigrationStatus } from '../../src/platform/db/migrator.ts';
import { compareSchemas, formatDifference, type SchemaDifference } from '../db-admin/schema-check.ts';
import { withScratchDatabase } from '../db-admin/scratch.ts';
import { runCodegen } from './codegen.ts';
import { adminUrlOf, displayUrl, withTarget } from '../../src/platform/cli/target.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';

// npm run db:check — one scratch database migrated from migrations/ is the reference for both
// checks: db-types/ must be what kysely-codegen generates from it, and the live database (once
// fully migrated) must have its schema. Exit code 1 on any finding.

interface Findings {
  readonly target: string;
  readonly status: MigrationStatus;
  /** kysely-codegen's diff when db-types/ is stale. */
  readonly typesDiff: string | undefined;
  /** Not compared while migrations are pending or unknown: drift would be expected then. */
  readonly differences: readonly SchemaDifference[] | undefined;
}

try {
  const findings = await withTarget(async (target): Promise<Findings> => {
    const status = await readMigrationStatus(target.url);
    const comparable = status.pending.length === 0 && status.applied.every((migration) => migration.known);
    return withScratchDatabase(adminUrlOf(target), async (scratchUrl) => ({
      target: displayUrl(target.url),
      status,
      typesDiff: await runCodegen(scratchUrl, 'verify'),
      differences: comparable ? await compareSchemas(scratchUrl, target.url) : undefined,
    }));
  });
  const failed = [reportTypes(findings), reportSchema(findings)].includes(false);
  process.stdout.write(failed ? 'db:check failed\n' : 'db:check passed\n');
  process.exitCode = failed ? 1 : 0;
} catch (error) {
  reportFailure('db:check', error, commandContext());
  process.exitCode = 1;
}

function reportTypes({ typesDiff }: Findings): boolean {
  if (typesDiff === undefined) return pass('db-types/ is what kysely-codegen generates from migrations/');
  return fail(
    'db-types/ is stale: it is not what kysely-codegen generates from migrations/. ' +
      'Run `npm run db:types` and commit db-types/.',
    typesDiff.split('\n'),
  );
}

function reportSchema({ target, status, differences }: Findings): boolean {
  const unknown = status.applied.filter((migration) => !migration.known).map((migration) => migration.name);
  if (unknown.length > 0) {
    return fail(
      `${target} has applied ${count(unknown, 'migration')} that migrations/ does not have (another branch?):`,
      unknown,
    );
  }
  if (status.pending.length > 0) {
    return fail(
      `${target} has ${count(status.pending, 'pending migration')}; run \`npm run migrate\` first, then db:check again:`,
      status.pending,
    );
  }
  if (differences === undefined || differences.length === 0) return pass(`${target} has the schema migrations/ builds`);
  return fail(
    `${target} has drifted from the schema migrations/ builds (${count(differences, 'difference')}). ` +
      'Keep a change with a migration, or undo it:',
    differences.map(formatDifference),
  );
}

function pass(message: string): true {
  process.stdout.write(`✓ ${message}\n`);
  return true;
}

function fail(message: string, lines: readonly string[]): false {
  process.stdout.write(`✗ ${message}\n${lines.map((line) => `    ${line}\n`).join('')}`);
  return false;
}

function count(items: readonly unknown[], noun: string): string {
  return `${items.length} ${noun}${items.length === 1 ? '' : 's'}`;
}
