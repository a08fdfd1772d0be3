import type { EnvReader, SectionContext } from './reader.ts';

export interface MetricsConfig {
  /** When set, `GET /metrics` requires `Authorization: Bearer <token>`. */
  readonly bearerToken: string | undefined;
  /** METRICS_PUBLIC=true: no token on purpose (production refuses to start without one otherwise). */
  readonly public: boolean;
}

export function readMetricsConfig(reader: EnvReader, { env }: SectionContext): MetricsConfig {
  const bearerToken = reader.string('METRICS_TOKEN');
  const isPublic = reader.boolean('METRICS_PUBLIC', false);
  if (env === 'production' && bearerToken === undefined && !isPublic) {
    reader.problem(
      'METRICS_TOKEN is required when NODE_ENV=production (GET /metrics would be public); ' +
        'set METRICS_PUBLIC=true to serve it without a token on purpose',
    );
  }
  return { bearerToken, public: isPublic };
}
