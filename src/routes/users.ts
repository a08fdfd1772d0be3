import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { AuthenticationError } from '../errors/index.ts';
import type { Principal } from '../services/auth.ts';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { requestContext } from '../plugins/auth.ts';
import { AuditPage, errors, Name, PageQuery, Role, Status, UserEnvelope } from './schemas.ts';

/** Personal data: never stored by browsers or proxies. */
async function noStore(_request: FastifyRequest, reply: FastifyReply) {
  reply.header('cache-control', 'no-store');
}

function principalOf(principal: Principal | null): Principal {
  if (principal === null) throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
  return principal;
}

/** GET /users (admins, keyset-paginated) and GET /users/:id (admins or the user themself). */
const userRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', noStore);
  app.get(
    '/users',
    {
      preHandler: [app.authenticate, app.requireRole('admin')],
      schema: {
        tags: ['users'],
        summary: 'List users, newest first',
        security: [{ bearerAuth: [] }],
        querystring: Type.Object(
          {
            ...PageQuery,
            q: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 254,
                description: 'Prefix of the email or the name, case-insensitive',
              }),
            ),
            role: Type.Optional(Role),
            status: Type.Optional(Status),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            { items: Type.Array(Type.Ref('User')), nextCursor: Type.Union([Type.String(), Type.Null()]) },
            { additionalProperties: false },
          ),
          ...errors(400, 401, 403, 503),
        },
      },
    },
    async (request) => {
      const { limit, cursor, q, role, status } = request.query;
      return app.auth.listUsers(principalOf(request.principal), limit, cursor, {
        ...(q === undefined ? {} : { q }),
        ...(role === undefined ? {} : { role }),
        ...(status === undefined ? {} : { status }),
      });
    },
  );

  app.get(
    '/users/:id',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['users'],
        summary: 'One user (admins, or the user themself)',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 200: UserEnvelope, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const principal = principalOf(request.principal);
      // A user reading themself gets the row authentication just read, not a second query.
      if (request.params.id === principal.userId && request.authenticatedUser !== null)
        return { user: request.authenticatedUser };
      return { user: await app.auth.getUser(principal, request.params.id) };
    },
  );

  app.patch(
    '/users/:id',
    {
      preHandler: [app.authenticate, app.requireRole('admin')],
      schema: {
        tags: ['users'],
        summary: "Change a user's name, role or status (admins); disabling ends their sessions at once",
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        body: Type.Object(
          { name: Type.Optional(Name), role: Type.Optional(Role), status: Type.Optional(Status) },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: UserEnvelope, ...errors(400, 401, 403, 404, 409, 413, 415, 503) },
      },
    },
    async (request) => {
      const principal = principalOf(request.principal);
      const { name, role, status } = request.body;
      const patch = {
        ...(name === undefined ? {} : { name }),
        ...(role === undefined ? {} : { role }),
        ...(status === undefined ? {} : { status }),
      };
      const id = request.params.id.toLowerCase();
      return { user: await app.userAdmin.update(principal, id, patch, requestContext(request)) };
    },
  );

  app.delete(
    '/users/:id',
    {
      preHandler: [app.authenticate, app.requireRole('admin')],
      schema: {
        tags: ['users'],
        summary: 'Delete a user and their sessions (admins)',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      const id = request.params.id.toLowerCase();
      await app.userAdmin.delete(principalOf(request.principal), id, requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/users/:id/events',
    {
      preHandler: [app.authenticate, app.requireRole('admin')],
      schema: {
        tags: ['users'],
        summary: "A user's audit events, newest first (admins); an erased user's stay readable by id",
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: AuditPage, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const id = request.params.id.toLowerCase();
      const page = await app.audit.page(id, request.query.limit, request.query.cursor);
      // No user and nothing recorded about that id: an unknown user.
      if (page.items.length === 0 && request.query.cursor === undefined) {
        await app.auth.getUser(principalOf(request.principal), id);
      }
      return page;
    },
  );
};

export default userRoutes;
