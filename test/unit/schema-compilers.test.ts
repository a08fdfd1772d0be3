import { describe, expect, test } from 'vitest';
import { buildSerializer, buildValidator } from '../../src/schema-compilers.ts';

const route = { method: 'GET', url: '/things', httpStatus: '200' };
const thing = (properties: Record<string, object>) => ({ $id: 'Thing', type: 'object', properties });

describe('the process-wide schema compilers', () => {
  test('a response schema compiles once, whichever app asks, and serializes as Fastify would', () => {
    const schema = { type: 'object', properties: { id: { type: 'string' }, count: { type: 'integer' } } };
    const first = buildSerializer({}, {})({ ...route, schema });
    const second = buildSerializer({}, {})({ ...route, schema });
    expect(second).toBe(first);
    expect(first({ id: 'a', count: 2, secret: 'not in the schema' })).toBe('{"id":"a","count":2}');
  });

  test('the same schema under other shared schemas is compiled again, against those', () => {
    const schema = { $ref: 'Thing#' };
    const withName = buildSerializer({ Thing: thing({ name: { type: 'string' } }) }, {})({ ...route, schema });
    const withAge = buildSerializer({ Thing: thing({ age: { type: 'integer' } }) }, {})({ ...route, schema });
    expect(withAge).not.toBe(withName);
    expect(withName({ name: 'Ada', age: 36 })).toBe('{"name":"Ada"}');
    expect(withAge({ name: 'Ada', age: 36 })).toBe('{"age":36}');
  });

  test('equal schemas that are different objects each get a serializer of their own', () => {
    const make = () => ({ type: 'object', properties: { n: { type: 'number' } } });
    const a = buildSerializer({}, {})({ ...route, schema: make() });
    const b = buildSerializer({}, {})({ ...route, schema: make() });
    expect(b).not.toBe(a);
    expect(a({ n: 1 })).toBe(b({ n: 1 }));
  });

  test('bodies are validated strictly, every failure reported; query strings are coerced', () => {
    const schema = {
      type: 'object',
      properties: { name: { type: 'string' }, limit: { type: 'integer' } },
      required: ['name', 'limit'],
    };
    const validate = buildValidator({});
    const body = validate({ schema, method: 'POST', url: '/things', httpPart: 'body' });
    const bodyInput = { name: 5, limit: '3' };
    expect(body(bodyInput)).toBe(false);
    expect((body as unknown as { errors: unknown[] }).errors).toHaveLength(2);
    const query = validate({ schema, method: 'GET', url: '/things', httpPart: 'querystring' });
    const queryInput = { name: 'ada', limit: '3' };
    expect(query(queryInput)).toBe(true);
    expect(queryInput.limit).toBe(3);
  });
});
