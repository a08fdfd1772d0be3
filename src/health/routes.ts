import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { checkReadiness } from '../platform/db/health.ts';
import { ServiceUnavailableError } from '../platform/errors/index.ts';
import { errors } from '../platform/http/schemas.ts';

const Checks = Type.Object({
  database: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  migrations: Type.Union([Type.Literal('ok'), Type.Literal('pending'), Type.Literal('unknown')]),
});

/** Liveness (the process runs) and readiness (the database answers and is fully migrated). */
const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/health/live',
    {
      schema: {
        operationId: 'live',
        tags: ['health'],
        summary: 'The process is running',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/health/ready',
    {
      schema: {
        operationId: 'ready',
        tags: ['health'],
        summary: 'The database answers and no migration is pending',
        response: { 200: Type.Object({ status: Type.Literal('ok'), checks: Checks }), ...errors(503) },
      },
    },
    async () => {
      const checks = await checkReadiness(app.db);
      if (checks.database !== 'ok' || checks.migrations !== 'ok') {
        const details = (['database', 'migrations'] as const)
          .filter((name) => checks[name] !== 'ok')
          .map((name) => ({ path: `checks/${name}`, message: checks[name] }));
        throw new ServiceUnavailableError(
          `Not ready: ${details.map((d) => d.path).join(', ')}`,
          'DATABASE_UNAVAILABLE',
          {
            details,
            publicDetails: true,
          },
        );
      }
      return { status: 'ok' as const, checks };
    },
  );
};

export default healthRoutes;
