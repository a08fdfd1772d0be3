import { parse } from 'libpg-query';
import type { CapturedMigration } from './capture.ts';

export type RuleName =
  | 'create-index-not-concurrently'
  | 'add-column-volatile-default'
  | 'set-not-null'
  | 'column-type-change'
  | 'add-constraint-validated'
  | 'drop-column-still-read'
  | 'rename-column-still-read';

export interface Finding {
  readonly migration: string;
  readonly rule: RuleName;
  readonly statement: string;
  readonly why: string;
  readonly safe: string;
}

export interface LintContext {
  /** Functions PostgreSQL marks volatile (`provolatile = 'v'`): a default calling one rewrites the table. */
  readonly volatileFunctions: ReadonlySet<string>;
  /** Where the application's code mentions `column` (file:line), empty when nothing does. */
  readonly readersOf: (column: string) => readonly string[];
}

const WHY: Record<RuleName, { why: string; safe: string }> = {
  'create-index-not-concurrently': {
    why: 'CREATE INDEX on an existing table holds a SHARE lock for the whole build: every write to the table waits.',
    safe: 'CREATE INDEX CONCURRENTLY IF NOT EXISTS … in a migration with `export const transaction = false`.',
  },
  'add-column-volatile-default': {
    why: 'A volatile default (random(), gen_random_uuid(), clock_timestamp() …) rewrites every row under an ACCESS EXCLUSIVE lock.',
    safe: 'Add the column without a default (or with a constant one), backfill in batches, then SET DEFAULT for new rows.',
  },
  'set-not-null': {
    why: 'SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock to check it.',
    safe: 'ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT in a later migration; then SET NOT NULL (PostgreSQL skips the scan) and drop the check.',
  },
  'column-type-change': {
    why: 'Changing a column type rewrites the table (and its indexes) under an ACCESS EXCLUSIVE lock, unless the types are binary-coercible.',
    safe: 'Add a new column, write both, backfill in batches, switch reads, then drop the old one; acknowledge a binary-coercible change (varchar(n) → text, widening varchar).',
  },
  'add-constraint-validated': {
    why: 'Adding a CHECK or FOREIGN KEY constraint checks every row while holding a lock that blocks writes.',
    safe: 'ADD CONSTRAINT … NOT VALID (instant), then ALTER TABLE … VALIDATE CONSTRAINT in a later migration (takes a weaker lock).',
  },
  'drop-column-still-read': {
    why: 'The code being deployed still reads this column: queries fail from the moment the migration commits.',
    safe: 'Stop reading the column and deploy that first (regenerate db-types/); drop it in a later release.',
  },
  'rename-column-still-read': {
    why: 'Instances still running the current code read the old name: their queries fail once the rename commits.',
    safe: 'Add the new column, write both, backfill, switch reads, then drop the old column in a later release.',
  },
};

/** `-- db-lint-ignore: rule-name reason` (or `// db-lint-ignore: …`) anywhere in the migration file. */
function acknowledged(source: string): Set<string> {
  const rules = new Set<string>();
  for (const match of source.matchAll(/(?:--|\/\/|\*)\s*db-lint-ignore:\s*([a-z-]+)\s+\S/g)) {
    if (match[1] !== undefined) rules.add(match[1]);
  }
  return rules;
}

type Node = Record<string, unknown>;

function child(node: unknown, key: string): Node | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  const value = (node as Node)[key];
  return typeof value === 'object' && value !== null ? (value as Node) : undefined;
}

function list(node: unknown, key: string): unknown[] {
  if (typeof node !== 'object' || node === null) return [];
  const value = (node as Node)[key];
  return Array.isArray(value) ? value : [];
}

function text(node: unknown, key: string): string | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  const value = (node as Node)[key];
  return typeof value === 'string' ? value : undefined;
}

/** Every function name called anywhere inside `node`. */
function calledFunctions(node: unknown, into: string[] = []): string[] {
  if (Array.isArray(node)) {
    for (const item of node) calledFunctions(item, into);
    return into;
  }
  if (typeof node !== 'object' || node === null) return into;
  const call = child(node, 'FuncCall');
  if (call !== undefined) {
    const name = list(call, 'funcname').at(-1);
    const sval = text(child(name, 'String'), 'sval');
    if (sval !== undefined) into.push(sval);
  }
  for (const value of Object.values(node)) calledFunctions(value, into);
  return into;
}

/**
 * The unsafe operations in what `migration` executed, less the ones its file acknowledges.
 * "Existing table": one that existed before this migration ran.
 *
 * @example
 * ```ts
 * const findings = await lintMigration(captured, { volatileFunctions, readersOf });
 * ```
 */
export async function lintMigration(migration: CapturedMigration, context: LintContext): Promise<Finding[]> {
  const findings: Finding[] = [];
  const ignored = acknowledged(migration.source);
  const flag = (rule: RuleName, statement: string, detail = '') => {
    if (ignored.has(rule)) return;
    findings.push({ migration: migration.name, rule, statement, why: WHY[rule].why + detail, safe: WHY[rule].safe });
  };
  for (const statement of migration.statements) {
    const tree = await parse(statement);
    for (const { stmt } of list(tree, 'stmts') as { stmt: Node }[]) {
      const index = child(stmt, 'IndexStmt');
      if (index !== undefined) {
        const table = text(child(index, 'relation'), 'relname');
        if (table !== undefined && migration.existingTables.has(table) && index.concurrent !== true) {
          flag('create-index-not-concurrently', statement);
        }
      }
      const rename = child(stmt, 'RenameStmt');
      if (rename !== undefined && text(rename, 'renameType') === 'OBJECT_COLUMN') {
        const table = text(child(rename, 'relation'), 'relname');
        const column = text(rename, 'subname');
        if (table !== undefined && column !== undefined && migration.existingTables.has(table)) {
          const readers = context.readersOf(column);
          if (readers.length > 0) flag('rename-column-still-read', statement, ` Read by ${readers.join(', ')}.`);
        }
      }
      const alter = child(stmt, 'AlterTableStmt');
      const table = text(child(alter, 'relation'), 'relname');
      if (alter === undefined || table === undefined || !migration.existingTables.has(table)) continue;
      for (const item of list(alter, 'cmds')) {
        const command = child(item, 'AlterTableCmd');
        const subtype = text(command, 'subtype');
        const column = text(command, 'name');
        const definition = child(command, 'def');
        if (subtype === 'AT_AddColumn') {
          for (const constraint of list(child(definition, 'ColumnDef'), 'constraints')) {
            const def = child(constraint, 'Constraint');
            if (text(def, 'contype') !== 'CONSTR_DEFAULT') continue;
            const volatile = calledFunctions(child(def, 'raw_expr')).filter((fn) => context.volatileFunctions.has(fn));
            if (volatile.length > 0)
              flag('add-column-volatile-default', statement, ` Volatile: ${volatile.join(', ')}().`);
          }
        } else if (subtype === 'AT_SetNotNull' && column !== undefined) {
          if (!migration.notNullChecks.has(`${table}.${column}`)) flag('set-not-null', statement);
        } else if (subtype === 'AT_AlterColumnType') {
          flag('column-type-change', statement);
        } else if (subtype === 'AT_AddConstraint') {
          const constraint = child(definition, 'Constraint');
          const kind = text(constraint, 'contype');
          if ((kind === 'CONSTR_FOREIGN' || kind === 'CONSTR_CHECK') && constraint?.skip_validation !== true) {
            flag('add-constraint-validated', statement);
          }
        } else if (subtype === 'AT_DropColumn' && column !== undefined) {
          const readers = context.readersOf(column);
          if (readers.length > 0) flag('drop-column-still-read', statement, ` Read by ${readers.join(', ')}.`);
        }
      }
    }
  }
  return findings;
}
