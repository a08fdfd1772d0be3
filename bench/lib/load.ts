import autocannon from 'autocannon';
import {
  gauge,
  histogramBuckets,
  histogramCount,
  histogramQuantile,
  parsePrometheus,
  subtractBuckets,
  type Sample,
} from './prometheus.ts';
import { mean, Samples } from './stats.ts';

export type RequestSpec = autocannon.Request;

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  /** The request sequence each connection loops over (autocannon's `requests`). */
  readonly requests: readonly RequestSpec[];
  readonly headers?: Readonly<Record<string, string>>;
  /** Cap on the total request rate (probes); unlimited by default. */
  readonly overallRate?: number;
}

export interface LoadResult {
  readonly connections: number;
  readonly seconds: number;
  /** Completed 2xx responses per second. */
  readonly okPerSecond: number;
  /** All completed responses per second. */
  readonly requestsPerSecond: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly total: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly statusCounts: Readonly<Record<string, number>>;
}

/**
 * One bounded autocannon run. Latency percentiles come from every response time (autocannon's
 * own summary has p97.5 and p99, not p95), measured by autocannon from request write to response end.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const latencies = new Samples();
  const statusCounts: Record<string, number> = {};
  let ok = 0;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.seconds,
        pipelining: 1,
        timeout: 10,
        requests: [...options.requests],
        ...(options.headers === undefined ? {} : { headers: { ...options.headers } }),
        ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate }),
      },
      (error: unknown, finished: autocannon.Result) => {
        if (error !== null && error !== undefined)
          reject(error instanceof Error ? error : new Error('autocannon failed', { cause: error }));
        else resolve(finished);
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      latencies.push(responseTime);
      const key = String(statusCode);
      statusCounts[key] = (statusCounts[key] ?? 0) + 1;
      if (statusCode >= 200 && statusCode < 300) ok++;
    });
  });
  const [p50 = Number.NaN, p95 = Number.NaN, p99 = Number.NaN, max = Number.NaN] = latencies.quantiles([
    0.5, 0.95, 0.99, 1,
  ]);
  const seconds = result.duration > 0 ? result.duration : options.seconds;
  return {
    connections: options.connections,
    seconds,
    okPerSecond: ok / seconds,
    requestsPerSecond: latencies.length / seconds,
    p50,
    p95,
    p99,
    max,
    total: latencies.length,
    non2xx: result.non2xx,
    errors: result.errors,
    statusCounts,
  };
}

export interface ServerSideStats {
  /** p95 of db_query_duration_seconds over the run, all operations, in ms (bucket-interpolated). */
  readonly queryP95Ms: number;
  readonly queryP50Ms: number;
  readonly queries: number;
  /** Mean and max of (busy connections / pool size) over the scrapes during the run. */
  readonly poolUtilisationMean: number;
  readonly poolUtilisationMax: number;
  /** Callers waiting for a pooled connection: mean and max over the scrapes. */
  readonly poolWaitingMean: number;
  readonly poolWaitingMax: number;
  /** The app's own event-loop delay (monitorEventLoopDelay, reset at every scrape): worst interval p99 and max, ms. */
  readonly eventLoopLagP99Ms: number;
  readonly eventLoopLagMaxMs: number;
  readonly scrapes: number;
}

/**
 * Scrapes our own /metrics during a run: the query histogram before and after (its delta gives
 * the run's query p95) and the pool gauges every `intervalMs`.
 */
export class MetricsSampler {
  readonly #url: string;
  readonly #intervalMs: number;
  #before: Sample[] = [];
  #utilisation: number[] = [];
  #waiting: number[] = [];
  #lagP99: number[] = [];
  #lagMax: number[] = [];
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> = Promise.resolve();

  constructor(baseUrl: string, intervalMs = 250) {
    this.#url = `${baseUrl}/metrics`;
    this.#intervalMs = intervalMs;
  }

  async start(): Promise<void> {
    this.#before = await this.#scrape();
    this.#utilisation = [];
    this.#waiting = [];
    this.#lagP99 = [];
    this.#lagMax = [];
    this.#timer = setInterval(() => {
      this.#inFlight = this.#sample();
    }, this.#intervalMs);
  }

  async stop(): Promise<ServerSideStats> {
    clearInterval(this.#timer);
    await this.#inFlight;
    const after = await this.#scrape();
    const delta = subtractBuckets(
      histogramBuckets(after, 'db_query_duration_seconds'),
      histogramBuckets(this.#before, 'db_query_duration_seconds'),
    );
    const max = (values: number[]) => (values.length === 0 ? Number.NaN : Math.max(...values));
    return {
      queryP95Ms: histogramQuantile(delta, 0.95) * 1000,
      queryP50Ms: histogramQuantile(delta, 0.5) * 1000,
      queries: histogramCount(delta),
      poolUtilisationMean: mean(this.#utilisation),
      poolUtilisationMax: max(this.#utilisation),
      poolWaitingMean: mean(this.#waiting),
      poolWaitingMax: max(this.#waiting),
      eventLoopLagP99Ms: max(this.#lagP99) * 1000,
      eventLoopLagMaxMs: max(this.#lagMax) * 1000,
      scrapes: this.#utilisation.length,
    };
  }

  async #sample(): Promise<void> {
    try {
      const samples = await this.#scrape();
      const utilisation = gauge(samples, 'db_pool_utilisation_ratio');
      const waiting = gauge(samples, 'db_pool_clients_waiting');
      if (utilisation !== undefined) this.#utilisation.push(utilisation);
      if (waiting !== undefined) this.#waiting.push(waiting);
      const lagP99 = gauge(samples, 'nodejs_eventloop_lag_p99_seconds');
      const lagMax = gauge(samples, 'nodejs_eventloop_lag_max_seconds');
      if (lagP99 !== undefined && lagP99 > 0) this.#lagP99.push(lagP99);
      if (lagMax !== undefined && lagMax > 0) this.#lagMax.push(lagMax);
    } catch {
      // A scrape that times out under overload is a missing sample, not a failed run.
    }
  }

  async #scrape(): Promise<Sample[]> {
    const response = await fetch(this.#url, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`${this.#url} answered ${response.status}`);
    return parsePrometheus(await response.text());
  }
}
