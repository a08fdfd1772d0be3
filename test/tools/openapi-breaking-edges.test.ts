import { describe, expect, it } from 'vitest';
import {
  acknowledges,
  breakingChanges,
  type ApiDocument,
  type Operation,
  type Schema,
} from '../../tools/openapi/breaking.ts';

// The comparison's less common shapes (test/tools/openapi-breaking.test.ts has the main API): a
// request body or parameter that appears or disappears, operations without responses, enums and
// consts, nullable, references that do not resolve, recursive references, kinds inferred from
// properties or values, and versions that are not numbers.

/** A document with one operation, `POST /things`. */
function doc(operation: Operation, schemas: Record<string, Schema> = {}, version = '1.0.0'): ApiDocument {
  return { info: { version }, components: { schemas }, paths: { '/things': { post: operation } } };
}

const json = (schema: Schema) => ({ content: { 'application/json': { schema } } });
const body = (schema: Schema, required = true): Operation => ({ requestBody: { required, ...json(schema) } });
const returns = (schema: Schema): Operation => ({ responses: { '200': json(schema) } });

describe('request bodies', () => {
  it('a body that becomes required breaks; a new optional one or a removed one does not', () => {
    const schema: Schema = { type: 'object' };
    expect(breakingChanges(doc(body(schema, false)), doc(body(schema, true)))).toEqual([
      'POST /things: request body: is now required',
    ]);
    expect(breakingChanges(doc({}), doc(body(schema, false)))).toEqual([]);
    expect(breakingChanges(doc({}), doc(body(schema, true)))).toEqual([
      'POST /things: request body: is new and required',
    ]);
    // The server no longer reads a body: whatever clients send is ignored.
    expect(breakingChanges(doc(body(schema)), doc({}))).toEqual([]);
  });

  it('a body without a JSON schema on either side is not compared', () => {
    const plain: Operation = { requestBody: { required: true, content: { 'text/plain': {} } } };
    expect(breakingChanges(doc(plain), doc(body({ type: 'object', required: ['x'] })))).toEqual([]);
  });

  it('an open object that becomes closed breaks, and so does each property it no longer accepts', () => {
    const before: Schema = { type: 'object', properties: { a: { type: 'string' } } };
    const after: Schema = { type: 'object', properties: {}, additionalProperties: false };
    expect(breakingChanges(doc(body(before)), doc(body(after)))).toEqual([
      'POST /things: request body: no longer accepts other properties',
      'POST /things: request body: no longer accepts property "a"',
    ]);
  });

  it('an object schema without properties on either side (kind inferred from `properties` elsewhere)', () => {
    const before: Schema = { type: 'object' };
    const after: Schema = { properties: { a: { type: 'string' } }, required: ['a'] };
    expect(breakingChanges(doc(body(before)), doc(body(after)))).toEqual([
      'POST /things: request body: new required property "a"',
    ]);
  });
});

describe('parameters', () => {
  const limit = { name: 'limit', in: 'query', schema: { type: 'integer' } };
  it('a removed parameter breaks (unknown query parameters are refused); a new optional one does not', () => {
    expect(breakingChanges(doc({ parameters: [limit] }), doc({ parameters: [] }))).toEqual([
      'POST /things: query parameter "limit": was removed',
    ]);
    expect(breakingChanges(doc({}), doc({ parameters: [limit] }))).toEqual([]);
    expect(breakingChanges(doc({ parameters: [limit] }), doc({}))).toEqual([
      'POST /things: query parameter "limit": was removed',
    ]);
  });

  it('a parameter without a schema is compared by presence only', () => {
    const bare = { name: 'q', in: 'query' };
    expect(
      breakingChanges(
        doc({ parameters: [bare] }),
        doc({ parameters: [{ ...bare, schema: { type: 'string', minLength: 3 } }] }),
      ),
    ).toEqual([]);
  });
});

describe('enumerations and constants', () => {
  it('an input that becomes an enum accepts only the listed values: breaking', () => {
    expect(breakingChanges(doc(body({ type: 'string' })), doc(body({ type: 'string', enum: ['a'] })))).toEqual([
      'POST /things: request body: now accepts only the listed values',
    ]);
  });

  it('a const is an enum of one: another const no longer accepts the old value', () => {
    expect(breakingChanges(doc(body({ const: 'v1' })), doc(body({ const: 'v2' })))).toEqual([
      'POST /things: request body: no longer accepts "v1"',
    ]);
    expect(breakingChanges(doc(body({ const: 'v1' })), doc(body({ enum: ['v1', 'v2'] })))).toEqual([]);
  });

  it('kinds come from values when there is no type: a null const, a numeric enum, an empty enum is any', () => {
    // An input of `null` only, now a string: null is no longer accepted.
    expect(breakingChanges(doc(body({ enum: [null] })), doc(body({ type: 'string' })))).toEqual([
      'POST /things: request body: no longer accepts null',
    ]);
    expect(breakingChanges(doc(body({ enum: [1, 2] })), doc(body({ type: 'string' })))).toEqual([
      'POST /things: request body: no longer accepts number',
    ]);
    // A schema with no type and no values is `any`: an output that was `any` promised nothing a
    // string breaks; an output that becomes `any` may now be anything.
    expect(breakingChanges(doc(returns({})), doc(returns({ type: 'string' })))).toEqual([]);
    expect(breakingChanges(doc(returns({ type: 'string' })), doc(returns({})))).toEqual([
      'POST /things: response 200: may now be any',
    ]);
  });
});

describe('nullable and unions', () => {
  it('an output that becomes nullable may now be null: breaking', () => {
    expect(breakingChanges(doc(returns({ type: 'string' })), doc(returns({ type: 'string', nullable: true })))).toEqual(
      ['POST /things: response 200: may now be null'],
    );
    // …and an input that becomes nullable accepts more: fine.
    expect(breakingChanges(doc(body({ type: 'string' })), doc(body({ type: 'string', nullable: true })))).toEqual([]);
  });

  it('oneOf is a union as anyOf is; an integer is accepted where a number is', () => {
    const before: Schema = { oneOf: [{ type: 'integer' }, { type: 'boolean' }] };
    expect(breakingChanges(doc(body(before)), doc(body({ oneOf: [{ type: 'number' }] })))).toEqual([
      'POST /things: request body: no longer accepts boolean',
    ]);
  });
});

describe('responses and references', () => {
  it('an operation that had no responses documented has nothing to break; removed success statuses do', () => {
    expect(breakingChanges(doc({}), doc(returns({ type: 'string' })))).toEqual([]);
    expect(breakingChanges(doc(returns({ type: 'string' })), doc({}))).toEqual([
      'POST /things: response 200: was removed',
    ]);
  });

  it('a recursive schema (a tree of nodes) is compared once per pair of references and still finds changes', () => {
    const node = (extra: Record<string, Schema>): Schema => ({
      type: 'object',
      properties: { children: { type: 'array', items: { $ref: '#/components/schemas/Node' } }, ...extra },
      required: ['children', ...Object.keys(extra)],
    });
    const ref: Schema = { $ref: '#/components/schemas/Node' };
    const base = doc(returns(ref), { Node: node({ name: { type: 'string' } }) });
    expect(breakingChanges(base, base)).toEqual([]);
    expect(breakingChanges(base, doc(returns(ref), { Node: node({}) }))).toEqual([
      'POST /things: response 200: property "name" was removed',
    ]);
  });

  it('a reference that does not resolve is an error, naming it, not a silent pass', () => {
    const base = doc(returns({ type: 'string' }));
    expect(() => breakingChanges(base, doc(returns({ $ref: '#/components/schemas/Missing' })))).toThrow(
      'Unresolvable $ref #/components/schemas/Missing',
    );
    expect(() => breakingChanges(base, doc(returns({ $ref: 'other.json#/Thing' })))).toThrow(
      'Unresolvable $ref other.json#/Thing',
    );
    // A document without components resolves nothing either.
    const bare: ApiDocument = {
      info: { version: '1' },
      paths: { '/things': { post: returns({ $ref: '#/components/schemas/A' }) } },
    };
    expect(() => breakingChanges(base, bare)).toThrow('Unresolvable $ref #/components/schemas/A');
  });

  it('percent-encoded reference names are decoded', () => {
    const schemas = { 'A B': { type: 'string' } };
    const ref: Schema = { $ref: '#/components/schemas/A%20B' };
    expect(breakingChanges(doc(returns({ type: 'string' })), doc(returns(ref), schemas))).toEqual([]);
  });

  it('path items without operations (only parameters or other keys) are skipped', () => {
    const next: ApiDocument = { info: { version: '1' }, paths: { '/things': { parameters: [] }, '/gone': undefined } };
    expect(breakingChanges({ info: { version: '1' }, paths: { '/things': { parameters: [] } } }, next)).toEqual([]);
  });
});

describe('acknowledges', () => {
  it('a version that is not a number counts as major 0', () => {
    expect(acknowledges(doc({}, {}, 'draft'), doc({}, {}, '1.0.0'))).toBe(true);
    expect(acknowledges(doc({}, {}, '1.0.0'), doc({}, {}, 'draft'))).toBe(false);
  });
});

describe('unions of objects in a response', () => {
  const session: Schema = {
    type: 'object',
    required: ['user', 'accessToken'],
    properties: { user: { type: 'object' }, accessToken: { type: 'string' } },
    additionalProperties: false,
  };
  const challenge: Schema = {
    type: 'object',
    required: ['mfaRequired', 'mfaToken'],
    properties: { mfaRequired: { type: 'boolean' }, mfaToken: { type: 'string' } },
    additionalProperties: false,
  };

  it('compares each member with its own former self: the same union is no change, a property added to one member is none either', () => {
    const union = (first: Schema): Schema => ({ anyOf: [first, challenge] });
    expect(breakingChanges(doc(returns(union(session))), doc(returns(union(session))))).toEqual([]);
    const withDevice: Schema = {
      ...session,
      required: [...(session.required ?? []), 'deviceToken'],
      properties: { ...session.properties, deviceToken: { type: 'string' } },
    };
    expect(breakingChanges(doc(returns(union(session))), doc(returns(union(withDevice))))).toEqual([]);
  });

  it('a response that may now be another object still breaks clients that expected the one', () => {
    expect(breakingChanges(doc(returns(session)), doc(returns({ anyOf: [session, challenge] })))).toEqual([
      'POST /things: response 200: property "user" was removed',
      'POST /things: response 200: property "accessToken" was removed',
    ]);
  });
});
