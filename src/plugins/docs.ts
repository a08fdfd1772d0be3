import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import fp from 'fastify-plugin';

/**
 * The OpenAPI 3 document (`/docs/json`) generated from every route's TypeBox schemas, and
 * Swagger UI at `/docs`. Registered before the routes so it sees them all.
 */
export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'pg-fastify-backend',
          description: 'Users and authentication on PostgreSQL. Every error has the shape of the Error schema.',
          version: '1.0.0',
        },
        components: {
          securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
        },
        tags: [
          { name: 'auth', description: 'Accounts and tokens' },
          { name: 'users', description: 'User directory' },
          { name: 'health', description: 'Liveness and readiness' },
        ],
      },
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
      },
    });
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      staticCSP: true,
      // Same policy as helmet's for the rest of the app, without upgrade-insecure-requests (see security.ts).
      transformStaticCSP: (header) => header.replace(/\s*upgrade-insecure-requests;?/, ''),
    });
  },
  { name: 'docs' },
);
