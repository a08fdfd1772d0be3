import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { requestContext, requirePrincipal } from '../auth/plugin.ts';
import type { Services } from '../services.ts';
import { noStore } from '../platform/http/http-edges.ts';
import {
  AuditPage,
  canonicalId,
  Email,
  errors,
  Id,
  Name,
  Page,
  PageQuery,
  Role,
  Status,
  UserEnvelope,
} from '../platform/http/schemas.ts';

export interface UserRoutesOptions {
  readonly services: Pick<Services, 'users' | 'userAdmin' | 'audit'>;
}

/**
 * GET /users (admins, keyset-paginated, filtered), GET /users/:id (admins or the user themself),
 * and the admins' PATCH /users/:id, DELETE /users/:id and GET /users/:id/events.
 */
const userRoutes: FastifyPluginAsyncTypebox<UserRoutesOptions> = async (app, opts) => {
  const { users, userAdmin, audit } = opts.services;
  app.addHook('onRequest', noStore);
  app.get(
    '/users',
    {
      preHandler: [app.authenticate, app.requireRole('admin')],
      schema: {
        operationId: 'listUsers',
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
                description: 'The start of the email or of the name, case-insensitive',
              }),
            ),
            role: Type.Optional(Role),
            status: Type.Optional(Status),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Page(Type.Ref('User')),
          ...errors(400, 401, 403, 503),
        },
      },
    },
    async (request) => {
      const { limit, cursor, q, role, status } = request.query;
      return users.list(requirePrincipal(request), limit ?? 20, cursor, {
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
        operationId: 'getUser',
        tags: ['users'],
        summary: 'One user (admins, or the user themself)',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Id }),
        response: { 200: UserEnvelope, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      const id = canonicalId(request.params.id);
      // A user reading themself gets the row authentication just read, not a second query.
      if (id === principal.userId && request.authenticatedUser !== null) return { user: request.authenticatedUser };
      return { user: await users.get(principal, id) };
    },
  );

  app.patch(
    '/users/:id',
    {
      preHandler: [app.authenticate, app.requireRole('admin'), app.requireStepUp],
      schema: {
        operationId: 'updateUser',
        tags: ['users'],
        summary: "Change a user's name, role, status or email (admins); disabling ends their sessions at once",
        description:
          'An `email` change is the support path for a user who lost their old mailbox: the address moves at once, ' +
          'unverified, with a verification link to it; every session of the user ends, links in the old mailbox ' +
          'stop working, the old address gets a notice, and the audit log records `email.changed` by the admin.',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Id }),
        body: Type.Object(
          {
            name: Type.Optional(Name),
            role: Type.Optional(Role),
            status: Type.Optional(Status),
            email: Type.Optional(Email),
          },
          { additionalProperties: false, minProperties: 1, examples: [{ status: 'disabled' }] },
        ),
        response: { 200: UserEnvelope, ...errors(400, 401, 403, 404, 409, 413, 415, 503) },
      },
    },
    async (request) => {
      const { name, role, status, email } = request.body;
      const patch = {
        ...(name === undefined ? {} : { name }),
        ...(role === undefined ? {} : { role }),
        ...(status === undefined ? {} : { status }),
        ...(email === undefined ? {} : { email }),
      };
      const id = canonicalId(request.params.id);
      return { user: await userAdmin.update(requirePrincipal(request), id, patch, requestContext(request)) };
    },
  );

  app.delete(
    '/users/:id',
    {
      preHandler: [app.authenticate, app.requireRole('admin'), app.requireStepUp],
      schema: {
        operationId: 'deleteUser',
        tags: ['users'],
        summary: 'Delete a user with their sessions, tokens and pending emails (admins)',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Id }),
        response: { 204: Type.Null(), ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      await userAdmin.delete(requirePrincipal(request), canonicalId(request.params.id), requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/users/:id/events',
    {
      preHandler: [app.authenticate, app.requireRole('admin')],
      schema: {
        operationId: 'listUserEvents',
        tags: ['users'],
        summary: "A user's audit events, newest first (admins); an erased user's stay readable by id",
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Id }),
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: AuditPage, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      const id = canonicalId(request.params.id);
      const page = await audit.page(id, request.query.limit ?? 20, request.query.cursor, 'admin');
      // No user and nothing recorded about that id: an unknown user (404 from the directory).
      if (page.items.length === 0 && request.query.cursor === undefined) await users.get(principal, id);
      return page;
    },
  );
};

export default userRoutes;
