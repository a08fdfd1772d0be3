import { describe, expect, test } from 'vitest';
import { buildSerializer, buildValidator } from '../../../src/platform/http/schema-compilers.ts';

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

  test('equal schemas that are different objects share one serializer (routes build their schemas per app)', () => {
    const make = () => ({ type: 'object', properties: { n: { type: 'number' } } });
    const a = buildSerializer({}, {})({ ...route, schema: make() });
    const b = buildSerializer({}, {})({ ...route, schema: make() });
    expect(b).toBe(a);
    expect(a({ n: 1, m: 2 })).toBe('{"n":1}');
    const other = buildSerializer(
      {},
      {},
    )({ ...route, schema: { type: 'object', properties: { m: { type: 'number' } } } });
    expect(other).not.toBe(a);
    expect(other({ n: 1, m: 2 })).toBe('{"m":2}');
  });

  test('equal schemas share one validator per part of the request, never one across body and query', () => {
    const make = () => ({ type: 'object', properties: { limit: { type: 'integer' } }, required: ['limit'] });
    const validate = buildValidator({});
    const body = validate({ schema: make(), method: 'POST', url: '/a', httpPart: 'body' });
    expect(buildValidator({})({ schema: make(), method: 'PUT', url: '/b', httpPart: 'body' })).toBe(body);
    const query = validate({ schema: make(), method: 'GET', url: '/a', httpPart: 'querystring' });
    expect(query).not.toBe(body);
    expect(validate({ schema: make(), method: 'GET', url: '/a/:id', httpPart: 'params' })).toBe(query);
    expect(body({ limit: '3' })).toBe(false);
    expect(query({ limit: '3' })).toBe(true);
    const shared = { Limit: { $id: 'Limit', type: 'integer' } };
    const withShared = buildValidator(shared)({ schema: make(), method: 'POST', url: '/a', httpPart: 'body' });
    expect(withShared).not.toBe(body);
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
