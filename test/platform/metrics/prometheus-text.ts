/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for tests: it throws
 * on anything Prometheus would refuse or that breaks the format's rules (a sample before its TYPE,
 * a family split in two, a duplicate series, a histogram whose buckets are not cumulative or whose
 * +Inf bucket differs from its _count), and returns the samples grouped by family.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** The sample's own name, e.g. `db_query_duration_seconds_bucket`. */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string | undefined;
  readonly samples: readonly Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

export class ExpositionError extends Error {
  constructor(line: number, message: string, text: string) {
    super(`line ${line}: ${message}\n  ${text}`);
    this.name = 'ExpositionError';
  }
}

interface MutableFamily {
  name: string;
  type: MetricType | undefined;
  help: string | undefined;
  samples: Sample[];
  closed: boolean;
}

/**
 * Parses a whole scrape.
 *
 * @example
 * ```ts
 * const families = parseExposition('# TYPE up gauge\nup 1\n');
 * families.get('up')?.samples[0]?.value; // 1
 * ```
 * @throws {ExpositionError} naming the offending line.
 */
export function parseExposition(text: string): Map<string, MetricFamily> {
  if (text !== '' && !text.endsWith('\n')) throw new ExpositionError(0, 'the exposition must end with a line feed', '');
  const families = new Map<string, MutableFamily>();
  const seriesSeen = new Set<string>();
  let current: MutableFamily | undefined;

  const familyFor = (name: string, lineNo: number, raw: string): MutableFamily => {
    const existing = families.get(name);
    if (existing !== undefined) {
      if (existing !== current && existing.closed)
        throw new ExpositionError(lineNo, `family ${name} appears in two separate groups`, raw);
      return existing;
    }
    const family: MutableFamily = { name, type: undefined, help: undefined, samples: [], closed: false };
    families.set(name, family);
    return family;
  };
  const switchTo = (family: MutableFamily) => {
    if (current !== undefined && current !== family) current.closed = true;
    current = family;
  };

  const lines = text.split('\n');
  lines.pop(); // the final line feed
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const match = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(raw);
      if (match === null) return; // an ordinary comment
      const [, keyword, name = '', rest = ''] = match;
      if (!METRIC_NAME.test(name)) throw new ExpositionError(lineNo, `invalid metric name "${name}"`, raw);
      const family = familyFor(name, lineNo, raw);
      switchTo(family);
      if (keyword === 'HELP') {
        if (family.help !== undefined) throw new ExpositionError(lineNo, `second HELP for ${name}`, raw);
        family.help = unescapeHelp(rest, lineNo, raw);
      } else {
        if (family.type !== undefined) throw new ExpositionError(lineNo, `second TYPE for ${name}`, raw);
        if (family.samples.length > 0) throw new ExpositionError(lineNo, `TYPE for ${name} after its samples`, raw);
        const type = TYPES.find((t) => t === rest.trim());
        if (type === undefined) throw new ExpositionError(lineNo, `unknown type "${rest}"`, raw);
        family.type = type;
      }
      return;
    }

    const sample = parseSample(raw, lineNo);
    const family = familyFor(familyNameOf(sample.name, families), lineNo, raw);
    switchTo(family);
    const seriesKey = `${sample.name}${canonicalLabels(sample.labels)}`;
    if (seriesSeen.has(seriesKey)) throw new ExpositionError(lineNo, `duplicate series ${seriesKey}`, raw);
    seriesSeen.add(seriesKey);
    checkSampleAgainstType(family, sample, lineNo, raw);
    family.samples.push(sample);
  });

  const result = new Map<string, MetricFamily>();
  for (const family of families.values()) {
    const type = family.type ?? 'untyped';
    if (type === 'histogram') checkHistogram(family);
    if (type === 'summary') checkSummary(family);
    result.set(family.name, { name: family.name, type, help: family.help, samples: family.samples });
  }
  return result;
}

/** `name{a="x",b="y"}` with labels sorted: one string per series. */
export function seriesKeyOf(sample: Sample): string {
  return `${sample.name}${canonicalLabels(sample.labels)}`;
}

function canonicalLabels(labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
}

/** A histogram's `x_bucket`, `x_sum`, `x_count` (and a summary's) belong to family `x` when it is declared. */
function familyNameOf(sampleName: string, families: ReadonlyMap<string, MutableFamily>): string {
  for (const suffix of ['_bucket', '_sum', '_count', '_created']) {
    if (!sampleName.endsWith(suffix)) continue;
    const base = sampleName.slice(0, -suffix.length);
    const type = families.get(base)?.type;
    if (type === 'histogram' || (type === 'summary' && suffix !== '_bucket')) return base;
  }
  return sampleName;
}

function checkSampleAgainstType(family: MutableFamily, sample: Sample, lineNo: number, raw: string): void {
  const type = family.type ?? 'untyped';
  const fail = (message: string) => {
    throw new ExpositionError(lineNo, message, raw);
  };
  if (type === 'counter' && !(sample.value >= 0)) fail(`counter ${sample.name} is negative or NaN`);
  if (type === 'histogram') {
    const suffix = sample.name.slice(family.name.length);
    if (!['_bucket', '_sum', '_count'].includes(suffix)) fail(`histogram ${family.name} has a sample ${sample.name}`);
    if (suffix === '_bucket' && sample.labels.le === undefined) fail('a histogram bucket without an le label');
    if (suffix !== '_bucket' && sample.labels.le !== undefined) fail('le label outside a bucket');
    if (suffix === '_count' && !(sample.value >= 0)) fail('negative histogram count');
  } else if (sample.labels.le !== undefined && type !== 'untyped' && type !== 'gauge') {
    fail(`le label on a ${type}`);
  }
  if (type === 'summary') {
    const suffix = sample.name.slice(family.name.length);
    if (!['', '_sum', '_count'].includes(suffix)) fail(`summary ${family.name} has a sample ${sample.name}`);
    if (suffix === '' && sample.labels.quantile === undefined) fail('a summary quantile without a quantile label');
  }
}

/** Buckets cumulative and ending at +Inf, equal to _count, with a _sum, for every label set. */
function checkHistogram(family: MutableFamily): void {
  const groups = new Map<string, { buckets: Array<{ le: number; value: number }>; sum?: number; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = canonicalLabels(rest);
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (sample.name.endsWith('_bucket'))
      group.buckets.push({ le: parseFloatValue(le ?? '', 0, ''), value: sample.value });
    else if (sample.name.endsWith('_sum')) group.sum = sample.value;
    else group.count = sample.value;
  }
  for (const [key, group] of groups) {
    const where = `${family.name}${key}`;
    if (group.sum === undefined || group.count === undefined)
      throw new Error(`histogram ${where} lacks _sum or _count`);
    const sorted = [...group.buckets].sort((a, b) => a.le - b.le);
    const last = sorted.at(-1);
    if (last?.le !== Infinity) throw new Error(`histogram ${where} has no le="+Inf" bucket`);
    if (last.value !== group.count)
      throw new Error(`histogram ${where}: +Inf bucket ${last.value} differs from _count ${group.count}`);
    for (let i = 1; i < sorted.length; i++) {
      const [previous, next] = [sorted[i - 1], sorted[i]];
      if (previous === undefined || next === undefined) continue;
      if (previous.le === next.le) throw new Error(`histogram ${where} repeats bucket le=${next.le}`);
      if (next.value < previous.value)
        throw new Error(`histogram ${where}: bucket le=${next.le} is below le=${previous.le}`);
    }
  }
}

function checkSummary(family: MutableFamily): void {
  const names = new Set(family.samples.map((s) => s.name));
  if (family.samples.length > 0 && (!names.has(`${family.name}_sum`) || !names.has(`${family.name}_count`))) {
    throw new Error(`summary ${family.name} lacks _sum or _count`);
  }
}

function parseSample(raw: string, lineNo: number): Sample {
  const fail = (message: string): never => {
    throw new ExpositionError(lineNo, message, raw);
  };
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(raw);
  if (nameMatch === null) return fail('a sample line must start with a metric name');
  const name = nameMatch[0];
  let pos = name.length;
  const labels: Record<string, string> = {};

  if (raw[pos] === '{') {
    pos++;
    for (;;) {
      if (raw[pos] === '}') {
        pos++;
        break;
      }
      const labelMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(raw.slice(pos));
      if (labelMatch === null) return fail(`expected a label name at column ${pos + 1}`);
      const labelName = labelMatch[0];
      if (!LABEL_NAME.test(labelName) || labelName.startsWith('__'))
        fail(`reserved or invalid label name ${labelName}`);
      if (labelName in labels) fail(`label ${labelName} given twice`);
      pos += labelName.length;
      if (raw[pos] !== '=' || raw[pos + 1] !== '"') return fail(`expected ="… after label ${labelName}`);
      pos += 2;
      let value = '';
      for (;;) {
        const ch = raw[pos];
        if (ch === undefined) return fail('unterminated label value');
        if (ch === '"') {
          pos++;
          break;
        }
        if (ch === '\\') {
          const escaped = raw[pos + 1];
          if (escaped === '\\') value += '\\';
          else if (escaped === '"') value += '"';
          else if (escaped === 'n') value += '\n';
          else return fail(`invalid escape \\${escaped ?? ''} in a label value`);
          pos += 2;
          continue;
        }
        value += ch;
        pos++;
      }
      labels[labelName] = value;
      if (raw[pos] === ',') pos++;
      else if (raw[pos] !== '}') return fail(`expected , or } at column ${pos + 1}`);
    }
  }

  const rest = raw.slice(pos);
  const fields = /^ +(\S+)(?: +(-?\d+))?$/.exec(rest);
  if (fields === null) return fail('expected " value [timestamp]" after the name and labels');
  return { name, labels, value: parseFloatValue(fields[1] ?? '', lineNo, raw) };
}

/** As Go's strconv.ParseFloat reads it (the format's definition): NaN and Inf in any letter case. */
function parseFloatValue(text: string, lineNo: number, raw: string): number {
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (special !== null) {
    if (special[2]?.toLowerCase() === 'nan') return NaN;
    return special[1] === '-' ? -Infinity : Infinity;
  }
  if (!FLOAT.test(text)) throw new ExpositionError(lineNo, `invalid value "${text}"`, raw);
  return Number(text);
}

function unescapeHelp(text: string, lineNo: number, raw: string): string {
  return text.replace(/\\(.?)/g, (_match, ch: string) => {
    if (ch === '\\') return '\\';
    if (ch === 'n') return '\n';
    throw new ExpositionError(lineNo, `invalid escape \\${ch} in HELP`, raw);
  });
}
