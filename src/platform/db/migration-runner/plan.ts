import type { Migration, MigrationInfo } from 'kysely/migration';

/** A migration file's exports. `transaction = false` runs it on its own, outside any transaction. */
export interface ProjectMigration extends Migration {
  readonly transaction?: boolean;
}

/** One migration to run, up or down. */
export interface Step {
  readonly name: string;
  readonly migration: ProjectMigration;
  readonly direction: 'Up' | 'Down';
}

/** The migrations there are and the names of those applied, in the order they were. */
export interface MigrationState {
  readonly migrations: readonly MigrationInfo[];
  readonly executed: readonly string[];
}

/** Which steps a run takes, or why it cannot run. */
export type Plan = (state: MigrationState) => readonly Step[] | Error;

/** The first `count` pending migrations, to run up. */
export function pendingSteps(migrations: readonly MigrationInfo[], count: number): Step[] {
  return migrations
    .filter((migration) => migration.executedAt === undefined)
    .slice(0, count)
    .map(({ name, migration }) => ({ name, migration, direction: 'Up' }));
}

/** The last `count` applied migrations, newest first, to undo. */
export function downSteps(state: MigrationState, count: number): Step[] {
  return state.executed
    .toReversed()
    .slice(0, count)
    .flatMap((name) => {
      const info = state.migrations.find((migration) => migration.name === name);
      return info === undefined ? [] : [{ name, migration: info.migration, direction: 'Down' as const }];
    });
}

/** Applied migrations, in the order they were applied (Kysely's order: by time, then by name). */
export function executedInOrder(migrations: readonly MigrationInfo[]): string[] {
  return migrations
    .flatMap((migration) => (migration.executedAt === undefined ? [] : [migration]))
    .sort(
      (a, b) =>
        (a.executedAt?.getTime() ?? 0) - (b.executedAt?.getTime() ?? 0) ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    )
    .map((migration) => migration.name);
}

/** Consecutive transactional steps share a group (one transaction); a non-transactional one is alone. */
export function groupByTransactionMode(steps: readonly Step[]): { transactional: boolean; steps: Step[] }[] {
  const groups: { transactional: boolean; steps: Step[] }[] = [];
  for (const step of steps) {
    const transactional = step.migration.transaction !== false;
    const last = groups.at(-1);
    if (transactional && last?.transactional === true) last.steps.push(step);
    else groups.push({ transactional, steps: [step] });
  }
  return groups;
}

/** True when the migration's up() holds nothing but comments and whitespace. */
export function isEmptyFunction(migration: ProjectMigration): boolean {
  const source = Function.prototype.toString.call(Reflect.get(migration, 'up'));
  const open = source.indexOf('{');
  const close = source.lastIndexOf('}');
  if (open === -1 || close <= open) return false;
  const body = source
    .slice(open + 1, close)
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
  return body.trim() === '';
}
