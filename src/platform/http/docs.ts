import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import fp from 'fastify-plugin';
import { documentedSchema } from './openapi-operations.ts';

/**
 * The document's version. Bump the major version to acknowledge a breaking change: `npm run
 * api:check` refuses one (a removed route or response field, a narrowed input, a new required
 * input) otherwise. Minor and patch are free for additions.
 */
export const API_VERSION = '4.0.0';

/**
 * The `<style>` inside the Swagger logo SVG that swagger-ui-bundle.js renders in the top bar
 * (`.logo_small_svg__cls-2{fill:#fff}.logo_small_svg__cls-3{fill:#85ea2d}`): without its hash the
 * browser blocks it and logs a CSP violation. test/platform/http/docs-browser.test.ts fails if a new
 * Swagger UI version injects anything else.
 */
const SWAGGER_LOGO_STYLE_HASH = 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w=';

/**
 * The OpenAPI 3 document (`/docs/json`) generated from every route's TypeBox schemas, and
 * Swagger UI at `/docs`. Registered before the routes so it sees them all. `npm run api:client`
 * writes the same document to docs/openapi.json and the typed client from it.
 */
export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'pg-fastify-backend',
          description:
            'Users and authentication on PostgreSQL. Every error has the shape of the Error schema; ' +
            'its `code` is one of a fixed list a client can switch on. The human contract is docs/api.md.',
          version: API_VERSION,
          // package.json is private and grants no licence; see redocly.yaml for why there is no URL.
          license: { name: 'UNLICENSED' },
        },
        // Relative: the document describes whichever server serves it (Swagger UI's "Try it out" too).
        servers: [{ url: '/', description: 'The server that serves this document' }],
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              bearerFormat: 'JWT',
              description: 'The accessToken from POST /auth/login or POST /auth/refresh',
            },
            metricsToken: {
              type: 'http',
              scheme: 'bearer',
              description: 'The METRICS_TOKEN secret, when the server is configured with one',
            },
            introspectionToken: {
              type: 'http',
              scheme: 'bearer',
              description: 'One of the INTROSPECTION_TOKEN secrets (the route exists only when it is set)',
            },
          },
        },
        tags: [
          { name: 'auth', description: 'Accounts and tokens' },
          { name: 'sessions', description: "The caller's sessions and audit log" },
          { name: 'users', description: 'User directory and administration' },
          { name: 'keys', description: 'What other services verify access tokens with: public keys and introspection' },
          { name: 'health', description: 'Liveness and readiness' },
          { name: 'metrics', description: 'Prometheus scraping' },
        ],
      },
      transform: ({ schema, url, route }) => {
        const method = Array.isArray(route.method) ? String(route.method[0]) : route.method;
        return { url, schema: documentedSchema(method, url, schema) };
      },
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
      },
    });
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      staticCSP: true,
      // Same policy as helmet's for the rest of the app, without upgrade-insecure-requests (see
      // security.ts), and with the one inline style Swagger UI's bundle injects allowed by its hash.
      transformStaticCSP: (header) =>
        header
          .replace(/\s*upgrade-insecure-requests;?/, '')
          .replace(/style-src ([^;]*)/, `style-src $1 '${SWAGGER_LOGO_STYLE_HASH}'`),
    });
  },
  { name: 'docs' },
);
