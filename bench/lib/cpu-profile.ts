import fs from 'node:fs';
import path from 'node:path';
import { PROJECT_DIR, ROOT_DIR } from './environment.ts';

/** The parts of a V8 `.cpuprofile` (what `node --cpu-prof` writes) the summary reads. */
interface CpuProfile {
  /** Microseconds on the machine's monotonic clock (CLOCK_MONOTONIC on Linux, as process.hrtime). */
  readonly startTime: number;
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
    readonly children?: readonly number[];
  }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface SelfTime {
  readonly name: string;
  readonly location: string;
  readonly ms: number;
  readonly percent: number;
}

/** Microseconds on the monotonic clock every process on the machine shares (process.hrtime). */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Only samples inside this interval count: the measured load, not start-up and warm-up. */
export interface ProfileWindow {
  readonly fromUs: number;
  readonly toUs: number;
}

export interface ProfileSummary {
  readonly file: string;
  /** Whether the summary covers only the measured window (false: the whole process life). */
  readonly windowed: boolean;
  readonly totalMs: number;
  /** Share of samples where the main thread was idle (waiting on I/O). */
  readonly idlePercent: number;
  readonly topFunctions: readonly SelfTime[];
  /** Self time by owner: a package under node_modules, our src/, Node's internals, GC. */
  readonly byOwner: readonly SelfTime[];
  /**
   * The same with native code and Node's internals charged to the nearest calling package
   * (a socket write called by pino counts as pino's): who causes the time, not who runs it.
   */
  readonly byCallingOwner: readonly SelfTime[];
}

/** Self time per function and per owner (package), busiest first. */
export function summariseProfile(file: string, window?: ProfileWindow, top = 25): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  // A window that misses the profile altogether means the clocks differ: summarise everything.
  const profileEnd = profile.startTime + profile.timeDeltas.reduce((sum, delta) => sum + delta, 0);
  const windowed = window !== undefined && window.fromUs < profileEnd && window.toUs > profile.startTime;
  let at = profile.startTime;
  const byId = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const callingOwners = new Map<number, string>();
  const callingOwnerOf = (id: number): string => {
    const known = callingOwners.get(id);
    if (known !== undefined) return known;
    const frame = byId.get(id);
    let owner: string;
    if (frame === undefined) owner = '(root)';
    else if (frame.functionName.startsWith('(') && frame.url === '') owner = ownerOf(frame.url, frame.functionName);
    else if (frame.url !== '' && !frame.url.startsWith('node:')) owner = ownerOf(frame.url, frame.functionName);
    else {
      const parent = parents.get(id);
      owner = parent === undefined ? ownerOf(frame.url, frame.functionName) : callingOwnerOf(parent);
    }
    callingOwners.set(id, owner);
    return owner;
  };
  const selfByCallingOwner = new Map<string, number>();
  const selfByFunction = new Map<string, { name: string; location: string; us: number }>();
  const selfByOwner = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  profile.samples.forEach((nodeId, index) => {
    const delta = Math.max(0, profile.timeDeltas[index] ?? 0);
    at += profile.timeDeltas[index] ?? 0;
    if (windowed && (at < window.fromUs || at > window.toUs)) return;
    const frame = byId.get(nodeId);
    if (frame === undefined) return;
    totalUs += delta;
    if (frame.functionName === '(idle)') {
      idleUs += delta;
      return;
    }
    const location = frame.url === '' ? '' : `${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
    const key = `${name}@${location}`;
    const entry = selfByFunction.get(key) ?? { name, location, us: 0 };
    entry.us += delta;
    selfByFunction.set(key, entry);
    const owner = ownerOf(frame.url, frame.functionName);
    selfByOwner.set(owner, (selfByOwner.get(owner) ?? 0) + delta);
    const callingOwner = callingOwnerOf(nodeId);
    selfByCallingOwner.set(callingOwner, (selfByCallingOwner.get(callingOwner) ?? 0) + delta);
  });
  const busyUs = Math.max(1, totalUs - idleUs);
  const toSelf = (name: string, location: string, us: number): SelfTime => ({
    name,
    location,
    ms: Math.round(us / 100) / 10,
    percent: Math.round((us / busyUs) * 1000) / 10,
  });
  return {
    file: path.relative(PROJECT_DIR, file),
    windowed,
    totalMs: Math.round(totalUs / 1000),
    idlePercent: Math.round((idleUs / Math.max(1, totalUs)) * 1000) / 10,
    topFunctions: [...selfByFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((entry) => toSelf(entry.name, entry.location, entry.us)),
    byOwner: [...selfByOwner.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([owner, us]) => toSelf(owner, '', us)),
    byCallingOwner: [...selfByCallingOwner.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([owner, us]) => toSelf(owner, '', us)),
  };
}

function shortUrl(url: string): string {
  const withoutScheme = url.replace(/^file:\/\//, '');
  const modules = withoutScheme.lastIndexOf('/node_modules/');
  if (modules >= 0) return withoutScheme.slice(modules + '/node_modules/'.length);
  return withoutScheme.startsWith(ROOT_DIR) ? path.relative(ROOT_DIR, withoutScheme) : withoutScheme;
}

function ownerOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(garbage collector)') return '(garbage collector)';
    if (functionName === '(program)') return '(program: native, not attributed)';
    return '(native / V8 builtins)';
  }
  if (url.startsWith('node:')) return 'node: internals';
  const short = shortUrl(url);
  if (short !== url.replace(/^file:\/\//, '') || url.includes('/node_modules/')) {
    const parts = short.split('/');
    return parts[0]?.startsWith('@') === true ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? short);
  }
  if (short.startsWith('src/')) return `ours: ${short.split('/').slice(0, 2).join('/')}`;
  if (short.startsWith('bench/')) return 'bench harness';
  return short;
}

/** The newest .cpuprofile in `dir`. */
export function newestProfile(dir: string): string | undefined {
  if (!fs.existsSync(dir)) return undefined;
  const files = fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .map((name) => path.join(dir, name))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  return files[0];
}

export function profileMarkdown(title: string, summary: ProfileSummary): string {
  const lines = [
    `#### ${title}`,
    '',
    `Profile \`${summary.file}\`: ${summary.totalMs} ms sampled${summary.windowed ? ' during the measured load (start-up and warm-up excluded)' : ' (whole process life)'}, ` +
      `main thread idle ${summary.idlePercent}% of it. ` +
      'Percentages are of busy (non-idle) time.',
    '',
    '| self time by owner (who runs it) | ms | % busy | | native + node: internals charged to the calling package (who causes it) | ms | % busy |',
    '|---|---:|---:|---|---|---:|---:|',
    ...summary.byOwner.map((entry, i) => {
      const calling = summary.byCallingOwner[i];
      return `| ${entry.name} | ${entry.ms} | ${entry.percent} | | ${calling?.name ?? ''} | ${calling?.ms ?? ''} | ${calling?.percent ?? ''} |`;
    }),
    '',
    '| top self-time functions | where | ms | % busy |',
    '|---|---|---:|---:|',
    ...summary.topFunctions.map(
      (entry) => `| \`${entry.name}\` | ${entry.location} | ${entry.ms} | ${entry.percent} |`,
    ),
    '',
  ];
  return lines.join('\n');
}
