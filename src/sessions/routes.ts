import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { requestContext, requirePrincipal, requireSessionId } from '../auth/plugin.ts';
import { noStore } from '../platform/http/http-edges.ts';
import type { Services } from '../services.ts';
import { AuditPage, canonicalId, errors, Id, PageQuery, SessionSchema } from '../platform/http/schemas.ts';

export interface SessionRoutesOptions {
  readonly services: Pick<Services, 'sessions' | 'audit'>;
}

/** The caller's sessions (GET, DELETE one, DELETE all others) and their own audit events. */
const sessionRoutes: FastifyPluginAsyncTypebox<SessionRoutesOptions> = async (app, opts) => {
  const { sessions, audit } = opts.services;
  app.addHook('onRequest', noStore);

  app.get(
    '/auth/sessions',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'listSessions',
        tags: ['sessions'],
        summary: "The caller's active sessions, newest first",
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object({ items: Type.Array(SessionSchema) }, { additionalProperties: false }),
          ...errors(401, 503),
        },
      },
    },
    async (request) => ({
      items: await sessions.list(requirePrincipal(request).userId, requireSessionId(request)),
    }),
  );

  app.delete(
    '/auth/sessions/:id',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'endSession',
        tags: ['sessions'],
        summary: "End one of the caller's sessions; its tokens fail at once, on every instance",
        security: [{ bearerAuth: [] }],
        params: Type.Object({ id: Id }),
        response: { 204: Type.Null(), ...errors(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      const { userId } = requirePrincipal(request);
      await sessions.endOne(userId, canonicalId(request.params.id), requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/auth/sessions',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'endOtherSessions',
        tags: ['sessions'],
        summary: 'End every session of the caller except the current one',
        security: [{ bearerAuth: [] }],
        response: { 204: Type.Null(), ...errors(401, 503) },
      },
    },
    async (request, reply) => {
      const { userId } = requirePrincipal(request);
      await sessions.endOthers(userId, requireSessionId(request), requestContext(request));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/auth/events',
    {
      preHandler: app.authenticate,
      schema: {
        operationId: 'listMyEvents',
        tags: ['sessions'],
        summary: "The caller's own audit events, newest first",
        security: [{ bearerAuth: [] }],
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: AuditPage, ...errors(400, 401, 503) },
      },
    },
    async (request) =>
      audit.page(requirePrincipal(request).userId, request.query.limit ?? 20, request.query.cursor, 'owner'),
  );
};

export default sessionRoutes;
