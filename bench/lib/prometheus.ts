/**
 * Reads the Prometheus text exposition of our own /metrics: enough to take histogram deltas
 * (query p95 over one load run) and gauges (pool utilisation, waiting callers).
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = LINE.exec(line);
    if (match === null) continue;
    const [, name = '', labelText = '', rawValue = ''] = match;
    const labels: Record<string, string> = {};
    for (const label of labelText.matchAll(LABEL)) {
      const [, key = '', value = ''] = label;
      labels[key] = value;
    }
    const value = rawValue === '+Inf' ? Infinity : rawValue === '-Inf' ? -Infinity : Number(rawValue);
    samples.push({ name, labels, value });
  }
  return samples;
}

export function gauge(samples: readonly Sample[], name: string): number | undefined {
  return samples.find((sample) => sample.name === name)?.value;
}

/** Cumulative bucket counts by upper bound, summed over every series matching `filter`. */
export type Buckets = Map<number, number>;

export function histogramBuckets(
  samples: readonly Sample[],
  name: string,
  filter: (labels: Readonly<Record<string, string>>) => boolean = () => true,
): Buckets {
  const buckets: Buckets = new Map();
  for (const sample of samples) {
    if (sample.name !== `${name}_bucket` || !filter(sample.labels)) continue;
    const le = sample.labels.le === '+Inf' ? Infinity : Number(sample.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + sample.value);
  }
  return buckets;
}

export function subtractBuckets(after: Buckets, before: Buckets): Buckets {
  const delta: Buckets = new Map();
  for (const [le, count] of after) delta.set(le, count - (before.get(le) ?? 0));
  return delta;
}

/**
 * PromQL's histogram_quantile over cumulative buckets: linear interpolation inside the bucket
 * holding the rank. Returns the bucket's lower bound's neighbour for +Inf, NaN for no observations.
 */
export function histogramQuantile(buckets: Buckets, q: number): number {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let previousBound = 0;
  let previousCount = 0;
  for (const bound of bounds) {
    const count = buckets.get(bound) ?? 0;
    if (count >= rank) {
      if (bound === Infinity) return previousBound;
      const inBucket = count - previousCount;
      return inBucket <= 0 ? bound : previousBound + ((bound - previousBound) * (rank - previousCount)) / inBucket;
    }
    previousBound = bound;
    previousCount = count;
  }
  return previousBound;
}

export function histogramCount(buckets: Buckets): number {
  return buckets.get(Infinity) ?? 0;
}
