/**
 * Which differences between two versions of the OpenAPI document break an existing client.
 *
 * No maintained OpenAPI diff tool runs offline from npm (oasdiff's npm package is a placeholder
 * for a Go binary it downloads), so this is a small comparison of the shapes this server's
 * TypeBox schemas produce. Two directions:
 *
 * - **Input** (parameters, request bodies): the new version must still accept everything the old
 *   one accepted. A new required property or parameter, a removed property on a closed object, a
 *   tighter bound, an added pattern or format, a removed enum value: breaking.
 * - **Output** (success responses): the new version must still promise what the old one promised.
 *   A removed route or success status, a removed or no-longer-required response field, a type that
 *   may now be something else (a new `null`): breaking. A new enum value in a response is not:
 *   clients must expect values they do not know (the error `code` enum grows with the server).
 *
 * Error responses (4xx, 5xx) are documentation of what can go wrong; removing one breaks nobody.
 */

/** A JSON Schema as OpenAPI 3.0 documents carry it (the subset the server's TypeBox schemas use). */
export interface Schema {
  readonly $ref?: string;
  readonly type?: string;
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly nullable?: boolean;
  readonly format?: string;
  readonly pattern?: string;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | Schema;
  readonly items?: Schema;
  readonly anyOf?: readonly Schema[];
  readonly oneOf?: readonly Schema[];
}

export interface Parameter {
  readonly name: string;
  readonly in: string;
  readonly required?: boolean;
  readonly schema?: Schema;
}

export interface MediaTypes {
  readonly content?: Readonly<Record<string, { readonly schema?: Schema } | undefined>>;
}

export interface Operation {
  readonly operationId?: string;
  readonly parameters?: readonly Parameter[];
  readonly requestBody?: MediaTypes & { readonly required?: boolean };
  readonly responses?: Readonly<Record<string, MediaTypes | undefined>>;
}

/** The parts of an OpenAPI 3 document the comparison reads. */
export interface ApiDocument {
  readonly info: { readonly version: string };
  readonly paths: Readonly<Record<string, Readonly<Record<string, unknown>> | undefined>>;
  readonly components?: { readonly schemas?: Readonly<Record<string, Schema | undefined>> };
}

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

/** Every operation of a document, keyed `METHOD /path`. */
export function operationsOf(document: ApiDocument): Map<string, Operation> {
  const operations = new Map<string, Operation>();
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of HTTP_METHODS) {
      const operation = item?.[method];
      if (typeof operation === 'object' && operation !== null)
        operations.set(`${method.toUpperCase()} ${path}`, operation);
    }
  }
  return operations;
}

/**
 * The changes from `base` to `next` that break a client written against `base`, one sentence
 * each, e.g. `POST /auth/register: request body: new required property "name"`.
 *
 * @example
 * ```ts
 * const problems = breakingChanges(committed, generated);
 * if (problems.length > 0 && !acknowledges(committed, generated)) process.exitCode = 1;
 * ```
 */
export function breakingChanges(base: ApiDocument, next: ApiDocument): string[] {
  const problems: string[] = [];
  const nextOperations = operationsOf(next);
  for (const [key, before] of operationsOf(base)) {
    const after = nextOperations.get(key);
    if (after === undefined) {
      problems.push(`${key}: the operation was removed`);
      continue;
    }
    const compare = new SchemaComparison(base, next, (where, message) => {
      problems.push(`${key}: ${where}: ${message}`);
    });
    compare.parameters(before.parameters ?? [], after.parameters ?? []);
    compare.requestBody(before.requestBody, after.requestBody);
    compare.responses(before.responses ?? {}, after.responses ?? {});
  }
  return problems;
}

/** Whether `next` declares itself incompatible with `base`: a higher major `info.version`. */
export function acknowledges(base: ApiDocument, next: ApiDocument): boolean {
  return majorOf(next.info.version) > majorOf(base.info.version);
}

function majorOf(version: string): number {
  const major = Number.parseInt(version, 10);
  return Number.isNaN(major) ? 0 : major;
}

type Report = (where: string, message: string) => void;
type Direction = 'input' | 'output';

const JSON_MEDIA_TYPE = 'application/json';

class SchemaComparison {
  readonly #base: ApiDocument;
  readonly #next: ApiDocument;
  readonly #report: Report;
  /** Pairs of references already being compared: recursive schemas end here. */
  readonly #visiting = new Set<string>();

  constructor(base: ApiDocument, next: ApiDocument, report: Report) {
    this.#base = base;
    this.#next = next;
    this.#report = report;
  }

  parameters(before: readonly Parameter[], after: readonly Parameter[]): void {
    const key = (parameter: Parameter) => `${parameter.in} parameter "${parameter.name}"`;
    const afterByKey = new Map(after.map((parameter) => [key(parameter), parameter]));
    const beforeByKey = new Map(before.map((parameter) => [key(parameter), parameter]));
    for (const [name, old] of beforeByKey) {
      const now = afterByKey.get(name);
      // The server rejects unknown query parameters and headers it validates: a removed one is refused.
      if (now === undefined) this.#report(name, 'was removed');
      else {
        if (now.required === true && old.required !== true) this.#report(name, 'is now required');
        this.#schemas(name, 'input', old.schema, now.schema);
      }
    }
    for (const [name, now] of afterByKey)
      if (!beforeByKey.has(name) && now.required === true) this.#report(name, 'is new and required');
  }

  requestBody(before: Operation['requestBody'], after: Operation['requestBody']): void {
    if (after === undefined) return;
    if (before === undefined) {
      if (after.required === true) this.#report('request body', 'is new and required');
      return;
    }
    if (after.required === true && before.required !== true) this.#report('request body', 'is now required');
    this.#schemas(
      'request body',
      'input',
      before.content?.[JSON_MEDIA_TYPE]?.schema,
      after.content?.[JSON_MEDIA_TYPE]?.schema,
    );
  }

  responses(before: NonNullable<Operation['responses']>, after: NonNullable<Operation['responses']>): void {
    for (const [status, old] of Object.entries(before)) {
      if (!status.startsWith('2')) continue;
      const now = after[status];
      if (now === undefined) {
        this.#report(`response ${status}`, 'was removed');
        continue;
      }
      this.#schemas(
        `response ${status}`,
        'output',
        old?.content?.[JSON_MEDIA_TYPE]?.schema,
        now.content?.[JSON_MEDIA_TYPE]?.schema,
      );
    }
  }

  #schemas(where: string, direction: Direction, before: Schema | undefined, after: Schema | undefined): void {
    if (before === undefined || after === undefined) return;
    const pair = `${before.$ref ?? ''}|${after.$ref ?? ''}`;
    const recursive = before.$ref !== undefined && after.$ref !== undefined;
    if (recursive && this.#visiting.has(pair)) return;
    if (recursive) this.#visiting.add(pair);
    try {
      this.#variants(where, direction, variantsOf(resolve(this.#base, before)), variantsOf(resolve(this.#next, after)));
    } finally {
      if (recursive) this.#visiting.delete(pair);
    }
  }

  /**
   * Unions: for input every old variant must still be accepted by a new one; for output every
   * new variant must be one the old version could already produce.
   */
  #variants(where: string, direction: Direction, before: readonly Schema[], after: readonly Schema[]): void {
    const [must, may] = direction === 'input' ? [before, after] : [after, before];
    for (const required of must) {
      const kind = kindOf(required);
      const candidates = may.filter((candidate) => compatibleKinds(kindOf(candidate), kind));
      if (candidates.length === 0) {
        this.#report(where, direction === 'input' ? `no longer accepts ${kind}` : `may now be ${kind}`);
        continue;
      }
      const values = direction === 'input' ? valuesOf(required) : undefined;
      if (values !== undefined) {
        // Listed values (a union of literals, `'user' | 'admin'`) are matched one by one: each must
        // still be accepted by some new variant, whichever.
        const accepts = (candidate: Schema, value: unknown) => valuesOf(candidate)?.includes(value) ?? true;
        for (const value of values) {
          if (!candidates.some((candidate) => accepts(candidate, value)))
            this.#report(where, `no longer accepts ${JSON.stringify(value)}`);
        }
        const whole = candidates.find((candidate) => values.every((value) => accepts(candidate, value)));
        if (whole !== undefined) this.#single(where, direction, required, whole);
        continue;
      }
      const counterpart = closest(required, candidates) ?? required;
      const [old, now] = direction === 'input' ? [required, counterpart] : [counterpart, required];
      this.#single(where, direction, old, now);
    }
  }

  #single(where: string, direction: Direction, before: Schema, after: Schema): void {
    this.#enumerations(where, direction, before, after);
    if (direction === 'input') this.#bounds(where, before, after);
    if (kindOf(before) === 'object') this.#objects(where, direction, before, after);
    if (kindOf(before) === 'array') this.#schemas(`${where}[]`, direction, before.items, after.items);
  }

  #enumerations(where: string, direction: Direction, before: Schema, after: Schema): void {
    if (direction !== 'input') return;
    const allowed = valuesOf(after);
    if (allowed === undefined) return;
    const previously = valuesOf(before);
    if (previously === undefined) {
      this.#report(where, 'now accepts only the listed values');
      return;
    }
    for (const value of previously)
      if (!allowed.includes(value)) this.#report(where, `no longer accepts ${JSON.stringify(value)}`);
  }

  #bounds(where: string, before: Schema, after: Schema): void {
    const lower = ['minLength', 'minimum', 'minItems'] as const;
    const upper = ['maxLength', 'maximum', 'maxItems'] as const;
    for (const bound of lower) {
      const now = after[bound];
      const old = before[bound] ?? Number.NEGATIVE_INFINITY;
      if (now !== undefined && now > old) this.#report(where, `${bound} rose from ${String(before[bound])} to ${now}`);
    }
    for (const bound of upper) {
      const now = after[bound];
      const old = before[bound] ?? Number.POSITIVE_INFINITY;
      if (now !== undefined && now < old) this.#report(where, `${bound} fell from ${String(before[bound])} to ${now}`);
    }
    for (const constraint of ['pattern', 'format'] as const) {
      const now = after[constraint];
      if (now !== undefined && now !== before[constraint]) this.#report(where, `${constraint} is now ${now}`);
    }
  }

  #objects(where: string, direction: Direction, before: Schema, after: Schema): void {
    const oldProperties = before.properties ?? {};
    const newProperties = after.properties ?? {};
    const oldRequired = new Set(before.required ?? []);
    const newRequired = new Set(after.required ?? []);
    if (direction === 'input') {
      for (const name of newRequired)
        if (!oldRequired.has(name)) this.#report(where, `new required property "${name}"`);
      const closed = after.additionalProperties === false;
      if (closed && before.additionalProperties !== false) this.#report(where, 'no longer accepts other properties');
      for (const name of Object.keys(oldProperties))
        if (closed && !(name in newProperties)) this.#report(where, `no longer accepts property "${name}"`);
    } else {
      for (const name of Object.keys(oldProperties)) {
        if (!(name in newProperties)) this.#report(where, `property "${name}" was removed`);
        else if (oldRequired.has(name) && !newRequired.has(name))
          this.#report(where, `property "${name}" may now be absent`);
      }
    }
    for (const [name, old] of Object.entries(oldProperties))
      this.#schemas(`${where}.${name}`, direction, old, newProperties[name]);
  }
}

function resolve(document: ApiDocument, schema: Schema): Schema {
  let current = schema;
  for (let depth = 0; current.$ref !== undefined && depth < 32; depth++) {
    const name = /^#\/components\/schemas\/(.+)$/.exec(current.$ref)?.[1];
    const target = name === undefined ? undefined : document.components?.schemas?.[decodeURIComponent(name)];
    if (target === undefined) throw new Error(`Unresolvable $ref ${current.$ref}`);
    current = target;
  }
  return current;
}

/**
 * The union member `candidates` holds that is most like `schema`: for objects, the one sharing the
 * most property names (a login body and an MFA challenge are both objects, and a change to one
 * must be compared with its own former self, not with the other); the first one otherwise.
 */
function closest(schema: Schema, candidates: readonly Schema[]): Schema | undefined {
  const names = new Set(Object.keys(schema.properties ?? {}));
  let best = candidates[0];
  let shared = -1;
  for (const candidate of candidates) {
    const count = Object.keys(candidate.properties ?? {}).filter((name) => names.has(name)).length;
    if (count > shared) {
      best = candidate;
      shared = count;
    }
  }
  return best;
}

/** A union's members; a `nullable` schema is itself and `null`. */
function variantsOf(schema: Schema): Schema[] {
  const members = schema.anyOf ?? schema.oneOf;
  const variants = members === undefined ? [schema] : [...members];
  return schema.nullable === true ? [...variants, { type: 'null' }] : variants;
}

/** What a schema is, for matching union members: a JSON type, or `any`. */
function kindOf(schema: Schema): string {
  if (schema.type !== undefined) return schema.type;
  if (schema.properties !== undefined) return 'object';
  const values = valuesOf(schema);
  if (values?.[0] === null) return 'null';
  if (values !== undefined && values.length > 0) return typeof values[0];
  return 'any';
}

/** Whether a value of kind `required` is covered by a schema of kind `candidate`. */
function compatibleKinds(candidate: string, required: string): boolean {
  // Every integer is a number: an input that accepted integers accepts them as numbers too, and
  // an output that promised numbers still holds when it produces integers.
  return candidate === required || candidate === 'any' || (candidate === 'number' && required === 'integer');
}

function valuesOf(schema: Schema): readonly unknown[] | undefined {
  if (schema.enum !== undefined) return schema.enum;
  return 'const' in schema ? [schema.const] : undefined;
}
