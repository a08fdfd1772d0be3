import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AuthenticationError } from '../errors/index.ts';
import { requestContext } from '../plugins/auth.ts';
import { AuditPage, errors, PageQuery, SessionSchema } from './schemas.ts';

/** Personal data: never stored by browsers or proxies. */
async function noStore(_request: FastifyRequest, reply: FastifyReply) {
  reply.header('cache-control', 'no-store');
}

function caller(request: FastifyRequest): { userId: string; sid: string } {
  const principal = request.principal;
  if (principal === null || request.sessionId === null) {
    throw new AuthenticationError('Authentication required', 'INVALID_TOKEN');
  }
  return { userId: principal.userId, sid: request.sessionId };
}

/** The caller's sessions (GET, DELETE one, DELETE all others) and their own audit events. */
const sessionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', noStore);

  app.get(
    '/auth/sessions',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['sessions'],
        summary: "The caller's active sessions, newest first",
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object({ items: Type.Array(SessionSchema) }, { additionalProperties: false }),
          ...errors(401, 503),
        },
      },
    },
    async (request) => {
      const { userId, sid } = caller(request);
      return { items: await app.sessions.list(userId, sid) };
    },
  );

  app.delete(
    '/auth/sessions/:id',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['sessions'],
        summary: 'End one of the caller’s sessions; its tokens fail at once, on every instance',
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 204: Type.Null(), ...errors(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      const { userId } = caller(request);
      await app.sessions.endOne(userId, request.params.id.toLowerCase(), requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/auth/sessions',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['sessions'],
        summary: 'End every session of the caller except the current one',
        security: [{ bearerAuth: [] }],
        response: { 204: Type.Null(), ...errors(401, 503) },
      },
    },
    async (request, reply) => {
      const { userId, sid } = caller(request);
      await app.sessions.endOthers(userId, sid, requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/auth/events',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['sessions'],
        summary: "The caller's own audit events, newest first",
        security: [{ bearerAuth: [] }],
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: AuditPage, ...errors(400, 401, 503) },
      },
    },
    async (request) => {
      const { userId } = caller(request);
      return app.audit.page(userId, request.query.limit, request.query.cursor);
    },
  );
};

export default sessionRoutes;
