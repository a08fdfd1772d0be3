import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { captureMigrations } from './capture.ts';
import { lintMigration, type Finding } from './rules.ts';

export type { Finding, RuleName } from './rules.ts';

export interface LintOptions {
  /** The migrations to lint; all of them when absent. The others still run, so the state is real. */
  readonly only?: readonly string[];
  /** The code whose reads of a column make dropping or renaming it unsafe; `src/` by default. */
  readonly sourceDir: string;
}

/**
 * Runs the migrations of `migrationFolder` on a scratch database of the server at `adminUrl`,
 * parses every statement they executed with PostgreSQL's own parser (libpg-query) and returns
 * the operations that would lock or rewrite an existing table, less those acknowledged with a
 * `db-lint-ignore: rule reason` comment in the migration.
 *
 * @example
 * ```ts
 * const findings = await lintMigrations(adminUrl, MIGRATIONS_DIR, { sourceDir: 'src' });
 * ```
 */
export async function lintMigrations(
  adminUrl: string,
  migrationFolder: string,
  options: LintOptions,
): Promise<Finding[]> {
  const { migrations, volatileFunctions } = await captureMigrations(adminUrl, migrationFolder);
  const sources = sourceFiles(options.sourceDir);
  const readersOf = (column: string) => readers(sources, column);
  const findings: Finding[] = [];
  for (const migration of migrations) {
    if (options.only !== undefined && !options.only.some((name) => migration.name.includes(name))) continue;
    findings.push(...(await lintMigration(migration, { volatileFunctions, readersOf })));
  }
  return findings;
}

/** One finding as the terminal shows it: migration, rule, statement, why, and the safe pattern. */
export function formatFinding(finding: Finding): string {
  return [
    `${finding.migration}: ${finding.rule}`,
    `  statement: ${finding.statement.replace(/\s+/g, ' ').trim()}`,
    `  why: ${finding.why}`,
    `  instead: ${finding.safe}`,
    `  deliberate? add \`// db-lint-ignore: ${finding.rule} <reason>\` to the migration.`,
  ].join('\n');
}

function sourceFiles(dir: string): { file: string; lines: string[] }[] {
  const files: { file: string; lines: string[] }[] = [];
  const walk = (current: string) => {
    for (const entry of readdirSync(current)) {
      const full = path.join(current, entry);
      if (statSync(full).isDirectory()) walk(full);
      else if (entry.endsWith('.ts')) files.push({ file: full, lines: readFileSync(full, 'utf8').split('\n') });
    }
  };
  walk(dir);
  return files;
}

function readers(sources: readonly { file: string; lines: string[] }[], column: string): string[] {
  const word = new RegExp(`\\b${column.replace(/[^\w]/g, '')}\\b`);
  const found: string[] = [];
  for (const { file, lines } of sources) {
    lines.forEach((line, index) => {
      if (word.test(line)) found.push(`${path.relative(process.cwd(), file)}:${index + 1}`);
    });
  }
  return found.slice(0, 5);
}
