import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { requirePrincipal } from '../plugins/auth.ts';
import type { Services } from '../services/index.ts';
import { errors, UserEnvelope } from './schemas.ts';

export interface UserRoutesOptions {
  readonly services: Pick<Services, 'users'>;
}

/** GET /users (admins, keyset-paginated) and GET /users/:id (admins or the user themself). */
const userRoutes: FastifyPluginAsyncTypebox<UserRoutesOptions> = async (app, opts) => {
  const { users } = opts.services;
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
            limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
            cursor: Type.Optional(
              Type.String({ minLength: 1, maxLength: 200, description: 'nextCursor of the previous page' }),
            ),
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
    async (request) => users.list(requirePrincipal(request), request.query.limit, request.query.cursor),
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
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 200: UserEnvelope, ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const principal = requirePrincipal(request);
      // A user reading themself gets the row authentication just read, not a second query.
      if (request.params.id === principal.userId && request.authenticatedUser !== null)
        return { user: request.authenticatedUser };
      return { user: await users.get(principal, request.params.id) };
    },
  );
};

export default userRoutes;
