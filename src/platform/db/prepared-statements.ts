import { createHash } from 'node:crypto';

const MAX_PREPARED_PER_CONNECTION = 256;
const MAX_NAMES_CACHED = 1024;
const statementNames = new Map<string, string>();

/**
 * The named prepared statements of one connection: which SQL is sent with a name (so
 * PostgreSQL parses and plans it once per connection) and which is sent unnamed.
 *
 * @example
 * ```ts
 * const statements = new PreparedStatements(true);
 * client.query({ name: statements.nameFor(sql, values.length), text: sql, values });
 * ```
 */
export class PreparedStatements {
  readonly #enabled: boolean;
  /** Statements this connection has prepared; capped so ad-hoc SQL cannot grow it without bound. */
  readonly #prepared = new Set<string>();

  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  /** The statement name to send `text` with, or undefined to send it unnamed. */
  nameFor(text: string, parameterCount: number): string | undefined {
    // Statements without parameters are transaction control and one-offs: not worth a name.
    if (!this.#enabled || parameterCount === 0) return undefined;
    const name = statementNameOf(text);
    if (this.#prepared.has(name)) return name;
    if (this.#prepared.size >= MAX_PREPARED_PER_CONNECTION) return undefined;
    this.#prepared.add(name);
    return name;
  }
}

/** A name derived from the SQL text, so the same query gets the same name on every connection. */
function statementNameOf(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `q_${createHash('sha256').update(text).digest('base64url').slice(0, 22)}`;
    if (statementNames.size >= MAX_NAMES_CACHED) statementNames.clear();
    statementNames.set(text, name);
  }
  return name;
}

/**
 * After DDL changes a table's columns, a prepared `select *` fails with "cached plan must not
 * change result type" on that connection until it is replaced; the connection is retired.
 */
export function isStalePreparedStatement(error: unknown): boolean {
  return (error as { code?: unknown }).code === '0A000';
}
