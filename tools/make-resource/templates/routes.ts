import type { ResourceNames } from '../names.ts';

/** The feature's Fastify plugin: create, list own, get, update, delete, each with its schemas. */
export function routes(n: ResourceNames): string {
  const path = `/${n.kebab}`;
  return `import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import { Type } from 'typebox';
import { requirePrincipal } from '../auth/plugin.ts';
import type { DB } from '../platform/db/database.ts';
import { noStore } from '../platform/http/http-edges.ts';
import { canonicalId, errors, Id, Page, PageQuery } from '../platform/http/schemas.ts';
import { ${n.Singular}Schema, ${n.Singular}Service } from './service.ts';

export interface ${n.Singular}RoutesOptions {
  readonly db: Kysely<DB>;
}

const ${n.Singular}Envelope = Type.Object({ ${n.singular}: ${n.Singular}Schema }, { additionalProperties: false });
/** As received; the service trims it and applies the rule (1 to 100 characters). */
const Name = Type.String({ minLength: 1, maxLength: 1000 });
const Params = Type.Object({ id: Id });
const TAGS = ['${n.kebab}'];
const BEARER = [{ bearerAuth: [] }];

/** ${path}: the signed-in user's ${n.pluralWords}; another user's is a 404. */
const ${n.singular}Routes: FastifyPluginAsyncTypebox<${n.Singular}RoutesOptions> = async (app, opts) => {
  const ${n.plural} = new ${n.Singular}Service(opts.db);
  app.addHook('onRequest', noStore);

  app.post(
    '${path}',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'create${n.Singular}',
        tags: TAGS,
        summary: 'Create a ${n.words}',
        security: BEARER,
        body: Type.Object({ name: Name }, { additionalProperties: false, examples: [{ name: 'First' }] }),
        response: { 201: ${n.Singular}Envelope, ...errors(400, 401, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      const ${n.singular} = await ${n.plural}.create(requirePrincipal(request).userId, request.body);
      return reply.code(201).send({ ${n.singular} });
    },
  );

  app.get(
    '${path}',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'list${n.Plural}',
        tags: TAGS,
        summary: 'Your ${n.pluralWords}, newest first',
        security: BEARER,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: Page(${n.Singular}Schema), ...errors(400, 401, 503) },
      },
    },
    async (request) =>
      ${n.plural}.list(requirePrincipal(request).userId, request.query.limit ?? 20, request.query.cursor),
  );

  app.get(
    '${path}/:id',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'get${n.Singular}',
        tags: TAGS,
        summary: 'One of your ${n.pluralWords}',
        security: BEARER,
        params: Params,
        response: { 200: ${n.Singular}Envelope, ...errors(400, 401, 404, 503) },
      },
    },
    async (request) => ({
      ${n.singular}: await ${n.plural}.get(requirePrincipal(request).userId, canonicalId(request.params.id)),
    }),
  );

  app.patch(
    '${path}/:id',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'update${n.Singular}',
        tags: TAGS,
        summary: 'Change one of your ${n.pluralWords}',
        security: BEARER,
        params: Params,
        body: Type.Object(
          { name: Type.Optional(Name) },
          { additionalProperties: false, minProperties: 1, examples: [{ name: 'Renamed' }] },
        ),
        response: { 200: ${n.Singular}Envelope, ...errors(400, 401, 404, 413, 415, 503) },
      },
    },
    async (request) => ({
      ${n.singular}: await ${n.plural}.update(
        requirePrincipal(request).userId,
        canonicalId(request.params.id),
        request.body,
      ),
    }),
  );

  app.delete(
    '${path}/:id',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'delete${n.Singular}',
        tags: TAGS,
        summary: 'Delete one of your ${n.pluralWords}',
        security: BEARER,
        params: Params,
        response: { 204: Type.Null(), ...errors(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      await ${n.plural}.delete(requirePrincipal(request).userId, canonicalId(request.params.id));
      return reply.code(204).send(null);
    },
  );
};

export default ${n.singular}Routes;
`;
}
