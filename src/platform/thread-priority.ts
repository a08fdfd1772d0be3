import fs from 'node:fs/promises';
import os from 'node:os';

/** The name libuv (1.50 and later, Node 24) gives the threads of its worker pool. */
const WORKER_THREAD_NAME = 'libuv-worker';

/**
 * Lowers the scheduling priority of libuv's worker threads to `nice` (0–19; 0 leaves them alone).
 *
 * Password hashing (argon2) runs on those threads and can keep every core busy during a burst of
 * logins. At the same priority as the event loop, the kernel shares the cores evenly between the
 * hashes and the thread that answers every other request, health checks included, so those wait
 * behind the hashes. With the workers at a higher nice value the event loop thread is run first
 * whenever it has work, and the hashes still get every cycle it leaves idle: the login capacity
 * when nothing else runs is the same. Under a storm of logins refused for a full hash queue,
 * though, answering the refusals takes those cycles and the hashes starve; hence off by default
 * (HASH_THREAD_NICE=0). The worker pool is shared with file system calls and DNS lookups, which
 * are lowered too; this service does neither on a hot path.
 *
 * Linux only (a thread's nice value is per thread there); elsewhere, and when the threads cannot
 * be found, nothing changes. Returns how many threads were changed.
 *
 * @example
 * ```ts
 * const threads = await lowerWorkerThreadPriority(config.auth.hashThreadNice);
 * ```
 */
export async function lowerWorkerThreadPriority(nice: number): Promise<number> {
  if (nice === 0 || process.platform !== 'linux') return 0;
  // libuv starts every thread of the pool at its first use, which this read is.
  const threadIds = await fs.readdir('/proc/self/task');
  let changed = 0;
  for (const threadId of threadIds) {
    const name = await fs.readFile(`/proc/self/task/${threadId}/comm`, 'utf8').catch(() => '');
    if (name.trim() !== WORKER_THREAD_NAME) continue;
    // setpriority(PRIO_PROCESS, tid) sets one thread's nice value on Linux; raising it needs no privilege.
    os.setPriority(Number(threadId), nice);
    changed++;
  }
  return changed;
}
