import type { FastifySchema } from 'fastify';

/**
 * What every operation of the OpenAPI document gets even when its route does not say it, applied
 * by the docs plugin's transform so routes added later are covered without remembering to:
 * an `operationId`, an explicit `security` (an empty list on public routes), and query parameters
 * with a default documented as optional.
 */

/** A Fastify route schema, with the OpenAPI keywords @fastify/swagger's types add (operationId, security, hide). */
export type RouteSchema = FastifySchema;

/**
 * A camelCase name from the method and path, for routes that do not set one:
 * `GET /users/:id/events` → `getUsersByIdEvents`. Generated clients name their functions after it.
 *
 * @example
 * ```ts
 * defaultOperationId('POST', '/auth/password/reset'); // 'postAuthPasswordReset'
 * ```
 */
export function defaultOperationId(method: string, url: string): string {
  const words = url
    .split('/')
    .filter((segment) => segment !== '')
    .flatMap((segment) => {
      const parameter = /^[:{](\w+)}?$/.exec(segment)?.[1];
      return parameter === undefined ? segment.split(/[^A-Za-z0-9]+/) : ['by', parameter];
    })
    .filter((word) => word !== '');
  return [method.toLowerCase(), ...words.map((word) => word.charAt(0).toUpperCase() + word.slice(1))].join('');
}

/** The route's schema as the document shows it; the schema Fastify validates with is untouched. */
export function documentedSchema(method: string, url: string, schema: RouteSchema): RouteSchema {
  if (schema.hide === true) return schema;
  return {
    ...schema,
    operationId: schema.operationId ?? defaultOperationId(method, url),
    // Without it an operation inherits nothing and linters (and readers) cannot tell public from forgotten.
    security: schema.security ?? [],
    ...(schema.querystring === undefined ? {} : { querystring: optionalWhenDefaulted(schema.querystring) }),
  };
}

/**
 * A query parameter with a default is optional for the client (the server fills it in), though
 * the TypeBox schema lists it as required so handlers see it typed as always present.
 */
function optionalWhenDefaulted(querystring: unknown): unknown {
  if (typeof querystring !== 'object' || querystring === null) return querystring;
  const { properties, required } = querystring as { properties?: unknown; required?: unknown };
  if (typeof properties !== 'object' || properties === null || !Array.isArray(required)) return querystring;
  const defaulted = (name: unknown) => {
    const property: unknown = typeof name === 'string' ? Reflect.get(properties, name) : undefined;
    return typeof property === 'object' && property !== null && 'default' in property;
  };
  return { ...querystring, required: required.filter((name) => !defaulted(name)) };
}
