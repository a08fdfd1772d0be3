import { timingSafeEqual } from 'node:crypto';
import { Gauge, type Registry } from '@prometheus-io/client';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fastifyMetrics from 'fastify-metrics';
import fp from 'fastify-plugin';
import type { ReplicaStatus } from '../db/replicas.ts';
import { AuthenticationError } from '../errors/index.ts';
import type { AppMetrics, PoolStats } from './metrics.ts';

export interface MetricsPluginOptions {
  readonly metrics: AppMetrics;
  /** Omitted when the app runs on a borrowed transaction (tests) with no pool of its own. */
  readonly poolStats?: (() => PoolStats) | undefined;
  readonly hashQueueDepth: () => number;
  /** The read replicas as last checked; omitted without DATABASE_REPLICA_URLS. */
  readonly replicaStatus?: (() => readonly ReplicaStatus[]) | undefined;
  /** When set, scraping needs `Authorization: Bearer <token>`. */
  readonly bearerToken?: string | undefined;
}

/**
 * GET /metrics in Prometheus text format: fastify-metrics' per-route histograms (labelled by route
 * template, registered routes only, status classes), Node's default metrics, the pool gauges read
 * at scrape time, and the application's counters.
 */
export default fp<MetricsPluginOptions>(
  async (app, opts) => {
    const { registry } = opts.metrics;
    registerPoolGauges(registry, opts.poolStats);
    registerReplicaGauges(registry, opts.replicaStatus);
    new Gauge({
      name: 'auth_password_hash_queue_depth',
      help: 'Password hashes waiting for a free argon2 slot',
      registers: [registry],
      collect() {
        this.set(opts.hashQueueDepth());
      },
    });

    // fastify-metrics is CommonJS with `exports.default`; Node hands ESM importers the whole module object.
    await app.register(fastifyMetrics.default, {
      endpoint: {
        url: '/metrics',
        method: 'GET',
        logLevel: 'warn',
        schema: {
          tags: ['metrics'],
          summary: 'Prometheus metrics (text exposition format)',
          description: 'Protected by a bearer token when METRICS_TOKEN is set.',
          operationId: 'getMetrics',
          // Either no credentials (no METRICS_TOKEN configured) or the METRICS_TOKEN bearer secret.
          security: [{}, { metricsToken: [] }],
          response: {
            200: {
              description: 'Prometheus text exposition',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
            401: { $ref: 'Error#' },
          },
        },
        onRequest: async (request: FastifyRequest, _reply: FastifyReply) => {
          // The scheme is case-insensitive (RFC 9110), as on every other route.
          const presented = /^bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
          if (opts.bearerToken !== undefined && !sameSecret(presented, opts.bearerToken)) {
            throw new AuthenticationError('Metrics need a bearer token', 'INVALID_TOKEN');
          }
        },
        handler: () => undefined,
      },
      defaultMetrics: { enabled: true, register: registry },
      routeMetrics: {
        enabled: { histogram: true, summary: false },
        registeredRoutesOnly: true,
        groupStatusCodes: true,
        routeBlacklist: ['/metrics', '/docs', /^\/docs\//],
        // fastify-metrics creates its summary even when disabled; both must live in this app's registry.
        overrides: { histogram: { registers: [registry] }, summary: { registers: [registry] } },
      },
    });
  },
  { name: 'metrics' },
);

/** Constant-time comparison, so the token cannot be guessed from response timing. */
function sameSecret(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function registerReplicaGauges(registry: Registry, replicaStatus: (() => readonly ReplicaStatus[]) | undefined): void {
  if (replicaStatus === undefined) return;
  new Gauge({
    name: 'db_replica_lag_seconds',
    help: 'How far each read replica was behind the primary at its last check (absent while it cannot be measured)',
    labelNames: ['replica'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const replica of replicaStatus()) {
        if (replica.lagMs !== undefined) this.set({ replica: replica.name }, replica.lagMs / 1000);
      }
    },
  });
  new Gauge({
    name: 'db_replica_usable',
    help: 'Whether each read replica was up and within DB_REPLICA_MAX_LAG_MS at its last check (1) or skipped (0)',
    labelNames: ['replica'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const replica of replicaStatus()) this.set({ replica: replica.name }, replica.state === 'ok' ? 1 : 0);
    },
  });
}

function registerPoolGauges(registry: Registry, poolStats: (() => PoolStats) | undefined): void {
  if (poolStats === undefined) return;
  const gauge = (name: string, help: string, read: (stats: PoolStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(poolStats()));
      },
    });
  gauge('db_pool_connections', 'Connections the pool holds (busy and idle)', (s) => s.total);
  gauge('db_pool_connections_idle', 'Idle pooled connections', (s) => s.idle);
  gauge('db_pool_clients_waiting', 'Callers waiting for a pooled connection', (s) => s.waiting);
  gauge('db_pool_connections_max', 'Configured pool size', (s) => s.max);
  gauge('db_pool_utilisation_ratio', 'Busy connections / pool size', (s) =>
    s.max === 0 ? 0 : (s.total - s.idle) / s.max,
  );
}
