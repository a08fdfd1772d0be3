import fs from 'node:fs';
import path from 'node:path';

/**
 * CPU time from /proc: on a machine shared with other developers' test suites, CPU time spent
 * per request is steadier than requests per second, and it says which process spends it.
 */

const TICKS_PER_SECOND = 100;

/** User + system CPU milliseconds of one process, or undefined when it is gone. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name, which may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** The postmaster of the cluster in `clusterDir` and all its children (backends, walwriter, …). */
export function postgresPids(clusterDir: string | undefined): number[] {
  if (clusterDir === undefined) return [];
  let postmaster: number;
  try {
    postmaster = Number(fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return [];
  }
  const pids = [postmaster];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (parentOf(pid) === postmaster) pids.push(pid);
  }
  return pids;
}

/** CPU spent by a set of processes between `start()` and `stop()`, in milliseconds. */
export class CpuMeter {
  readonly #pids: () => readonly number[];
  #before = new Map<number, number>();

  constructor(pids: () => readonly number[]) {
    this.#pids = pids;
  }

  start(): void {
    this.#before = new Map();
    for (const pid of this.#pids()) {
      const ms = processCpuMs(pid);
      if (ms !== undefined) this.#before.set(pid, ms);
    }
  }

  /**
   * Only processes alive at both ends count: a backend that came and went in between is missed.
   * NaN when no process was found at the start: a meter that found nothing must not read 0.
   */
  stop(): number {
    if (this.#before.size === 0) return Number.NaN;
    let total = 0;
    for (const [pid, before] of this.#before) {
      const after = processCpuMs(pid);
      if (after !== undefined) total += after - before;
    }
    return total;
  }
}
