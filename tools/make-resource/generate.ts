import { access, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as prettier from 'prettier';
import { resourceNames, type ResourceNames } from './names.ts';
import { migration } from './templates/migration.ts';
import { plans } from './templates/plans.ts';
import { repository } from './templates/repository.ts';
import { routes } from './templates/routes.ts';
import { service } from './templates/service.ts';
import { test } from './templates/test.ts';

/** A name the generator refuses, with why; the CLI prints the message and exits 1. */
export class ResourceNameError extends Error {}

/** Top-level paths the platform answers, which no feature may take. */
const RESERVED = new Set(['platform', 'docs', 'metrics', 'health', 'auth', 'client']);

/** The line in src/app.ts registering the feature: a feature is one folder and this one line. */
export function registrationLine(n: ResourceNames): string {
  return `  await app.register(import('./${n.kebab}/routes.ts'), { db: deps.db });`;
}

/**
 * Writes a migration, a feature folder (routes, service, repository, its query-plan cases) and
 * its HTTP tests for the resource `name` into the project at `root`, and registers the feature
 * in src/app.ts. Nothing is written when the name is refused.
 *
 * @returns the files written or changed, relative to `root`.
 * @throws {ResourceNameError} for a malformed name, or one a folder, table or route already has.
 * @example
 * ```ts
 * await makeResource(process.cwd(), 'projects', new Date());
 * // ['migrations/20261207160000_create_projects.ts', 'src/projects/routes.ts', …, 'src/app.ts']
 * ```
 */
export async function makeResource(root: string, name: string, now: Date): Promise<string[]> {
  const n = resourceNames(name);
  if (typeof n === 'string') throw new ResourceNameError(n);
  await refuseTaken(root, n);

  const migrationsDir = path.join(root, 'migrations');
  const files: [string, string][] = [
    [`migrations/${await migrationStamp(migrationsDir, now)}_create_${n.table}.ts`, migration(n)],
    [`src/${n.kebab}/${n.kebab}.repository.ts`, repository(n)],
    [`src/${n.kebab}/${n.kebab}.plans.ts`, plans(n)],
    [`src/${n.kebab}/service.ts`, service(n)],
    [`src/${n.kebab}/routes.ts`, routes(n)],
    [`test/${n.kebab}/${n.kebab}.test.ts`, test(n)],
  ];
  const appFile = path.join(root, 'src/app.ts');
  const app = withRegistration(await readFile(appFile, 'utf8'), n);

  const texts = await Promise.all(
    files.map(async ([file, text]) => [file, await formatted(root, file, text)] as const),
  );
  // All or nothing: a failure half-way (a full disk) takes back what was written.
  const written: string[] = [];
  try {
    for (const [file, text] of texts) {
      const target = path.join(root, file);
      const dir = path.dirname(target);
      if (!(await exists(dir))) written.push(dir);
      await mkdir(dir, { recursive: true });
      written.push(target);
      await writeFile(target, text);
    }
    await writeFile(appFile, app);
  } catch (error) {
    for (const target of written.reverse()) await rm(target, { recursive: true, force: true }).catch(() => {});
    throw error;
  }
  return [...files.map(([file]) => file), 'src/app.ts'];
}

async function refuseTaken(root: string, n: ResourceNames): Promise<void> {
  if (RESERVED.has(n.kebab)) throw new ResourceNameError(`${n.kebab} is reserved: the platform answers /${n.kebab}`);
  if (await exists(path.join(root, 'src', n.kebab))) {
    throw new ResourceNameError(`src/${n.kebab}/ already exists: pick another name, or extend that feature by hand`);
  }
  if (await exists(path.join(root, 'test', n.kebab))) {
    throw new ResourceNameError(`test/${n.kebab}/ already exists`);
  }
  const types = await readFile(path.join(root, 'db-types/index.ts'), 'utf8').catch(() => '');
  const created = new RegExp(
    `createTable\\(\\s*['"]${n.table}['"]|create table (if not exists )?"?${n.table}"?[\\s(]`,
    'i',
  );
  const migrations = await readdir(path.join(root, 'migrations'));
  for (const file of migrations) {
    if (created.test(await readFile(path.join(root, 'migrations', file), 'utf8'))) {
      throw new ResourceNameError(`the table ${n.table} already exists: migrations/${file} creates it`);
    }
  }
  if (new RegExp(`^\\s+${n.table}:`, 'm').test(types)) {
    throw new ResourceNameError(`the table ${n.table} already exists (db-types/index.ts has it)`);
  }
}

/** src/app.ts with the feature's registration as the last thing buildApp does before it returns. */
function withRegistration(app: string, n: ResourceNames): string {
  const start = app.indexOf('export async function buildApp(');
  const end = start === -1 ? -1 : app.indexOf('\n  return app;\n', start);
  if (end === -1) {
    throw new Error(
      `src/app.ts has no "return app;" in buildApp to register the feature before; add this line by hand:\n${registrationLine(n)}`,
    );
  }
  return `${app.slice(0, end)}\n${registrationLine(n)}${app.slice(end)}`;
}

/** A kysely-ctl timestamp (UTC, to the second), after every existing migration's. */
async function migrationStamp(dir: string, now: Date): Promise<string> {
  const stamps = (await readdir(dir)).map((file) => /^(\d{14})_/.exec(file)?.[1]).filter((s) => s !== undefined);
  const latest = stamps.sort().at(-1);
  const stamp = now.toISOString().replace(/\D/g, '').slice(0, 14);
  if (latest === undefined || stamp > latest) return stamp;
  const next = new Date(
    Date.UTC(
      Number(latest.slice(0, 4)),
      Number(latest.slice(4, 6)) - 1,
      Number(latest.slice(6, 8)),
      Number(latest.slice(8, 10)),
      Number(latest.slice(10, 12)),
      Number(latest.slice(12, 14)) + 1,
    ),
  );
  return next.toISOString().replace(/\D/g, '').slice(0, 14);
}

async function formatted(root: string, file: string, text: string): Promise<string> {
  const options = await prettier.resolveConfig(path.join(root, file));
  return prettier.format(text, { ...options, filepath: path.join(root, file) });
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
