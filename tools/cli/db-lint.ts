import { fileURLToPath } from 'node:url';
import { formatFinding, lintMigrations } from '../migration-lint/index.ts';
import { MIGRATIONS_DIR } from '../../src/platform/db/migrator.ts';
import { commandContext, reportFailure } from '../../src/platform/cli/report.ts';
import { adminUrlOf, withTarget } from '../../src/platform/cli/target.ts';

// npm run db:lint [-- NAME…] — runs every migration on a scratch database, parses what each one
// executed and flags what would lock or rewrite an existing table. Exit code 1 on any finding.
const SOURCE_DIR = fileURLToPath(new URL('../../src', import.meta.url));

try {
  const only = process.argv.slice(2);
  const findings = await withTarget((target) =>
    lintMigrations(adminUrlOf(target), MIGRATIONS_DIR, { sourceDir: SOURCE_DIR, ...(only.length > 0 ? { only } : {}) }),
  );
  for (const finding of findings) process.stdout.write(`${formatFinding(finding)}\n\n`);
  process.stdout.write(
    findings.length === 0
      ? 'db:lint: no unsafe operation on an existing table in migrations/\n'
      : `db:lint: ${findings.length} finding(s)\n`,
  );
  process.exitCode = findings.length === 0 ? 0 : 1;
} catch (error) {
  reportFailure('db:lint', error, commandContext());
  process.exitCode = 1;
}
