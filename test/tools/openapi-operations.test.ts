import { describe, expect, it } from 'vitest';
import { defaultOperationId, documentedSchema } from '../../src/platform/http/openapi-operations.ts';

// What every documented operation gets when its route does not say it (src/platform/http/docs.ts's
// transform): generated clients name their functions after the operationId, and a query
// parameter the server defaults must not be required of the client.

describe('defaultOperationId', () => {
  it.for([
    ['POST', '/auth/password/reset', 'postAuthPasswordReset'],
    ['GET', '/users/:id/events', 'getUsersByIdEvents'],
    ['DELETE', '/users/{id}', 'deleteUsersById'],
    ['GET', '/health/live', 'getHealthLive'],
    ['GET', '/', 'get'],
    // Separators inside a segment split words; empty words vanish.
    ['PUT', '/account-emails/re_send//x', 'putAccountEmailsReSendX'],
  ] as const)('%s %s → %s', ([method, url, id]) => {
    expect(defaultOperationId(method, url)).toBe(id);
  });
});

describe('documentedSchema', () => {
  it('fills in an operationId and an explicit empty security list, keeping what the route says', () => {
    expect(documentedSchema('GET', '/users/:id', {})).toEqual({ operationId: 'getUsersById', security: [] });
    const own = { operationId: 'listUsers', security: [{ bearerAuth: [] }] };
    expect(documentedSchema('GET', '/users', own)).toEqual(own);
  });

  it('leaves a hidden route untouched', () => {
    const hidden = { hide: true };
    expect(documentedSchema('GET', '/metrics', hidden)).toBe(hidden);
  });

  it('a query parameter with a default is optional for the client; the others stay required', () => {
    const querystring = {
      type: 'object',
      properties: { limit: { type: 'integer', default: 20 }, q: { type: 'string' } },
      required: ['limit', 'q', 'undeclared'],
    };
    const documented = documentedSchema('GET', '/users', { querystring });
    expect(documented.querystring).toEqual({ ...querystring, required: ['q', 'undeclared'] });
    // The schema Fastify validates with is not changed.
    expect(querystring.required).toEqual(['limit', 'q', 'undeclared']);
  });

  it('query schemas it cannot read are passed through as they are', () => {
    for (const querystring of [
      { type: 'object', properties: { a: { type: 'string' } } },
      { type: 'object', required: ['a'] },
      { type: 'object', properties: { a: 'not a schema' }, required: ['a', 7] },
    ]) {
      const documented = documentedSchema('GET', '/x', { querystring });
      expect(documented.querystring).toEqual(querystring);
    }
    expect(documentedSchema('GET', '/x', { querystring: null }).querystring).toBeNull();
  });
});
