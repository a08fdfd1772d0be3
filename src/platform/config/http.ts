import type { EnvReader, SectionContext } from './reader.ts';

export interface HttpConfig {
  readonly bodyLimitBytes: number;
  /** A request body must have fully arrived this long after the request began (else 408). */
  readonly bodyTimeoutMs: number;
  readonly corsOrigins: readonly string[];
  /** Passed to Fastify's `trustProxy`: false, true, a hop count or a list of addresses. */
  readonly trustProxy: boolean | number | string;
}

export function readHttpConfig(reader: EnvReader): HttpConfig {
  return {
    bodyLimitBytes: reader.integer('BODY_LIMIT_BYTES', 1024 * 1024, 1024, 100 * 1024 * 1024),
    bodyTimeoutMs: reader.integer('BODY_TIMEOUT_MS', 10_000, 100, 600_000),
    corsOrigins: reader.list('CORS_ORIGINS'),
    trustProxy: reader.trustProxy('TRUST_PROXY'),
  };
}

export interface DocsConfig {
  /** Serve /docs and /docs/json (default: everywhere except production). */
  readonly enabled: boolean;
}

export function readDocsConfig(reader: EnvReader, { env }: SectionContext): DocsConfig {
  return { enabled: reader.boolean('DOCS_ENABLED', env !== 'production') };
}
