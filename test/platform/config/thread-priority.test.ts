import fs from 'node:fs';
import os from 'node:os';
import { describe, expect, test } from 'vitest';
import { lowerWorkerThreadPriority } from '../../../src/platform/thread-priority.ts';

/** Nice value of every thread of process `pid`, by thread name. */
function threadPriorities(pid: number | 'self'): { name: string; nice: number }[] {
  return fs.readdirSync(`/proc/${pid}/task`).map((threadId) => ({
    name: fs.readFileSync(`/proc/${pid}/task/${threadId}/comm`, 'utf8').trim(),
    nice: os.getPriority(Number(threadId)),
  }));
}

describe.runIf(process.platform === 'linux')('lowerWorkerThreadPriority', () => {
  test('lowers every libuv worker thread, where argon2 hashes, and leaves the event loop thread alone', async () => {
    const mainBefore = os.getPriority();
    const changed = await lowerWorkerThreadPriority(7);

    const threads = threadPriorities('self');
    const workers = threads.filter((thread) => thread.name === 'libuv-worker');
    expect(workers.length).toBe(Number(process.env.UV_THREADPOOL_SIZE ?? 4));
    expect(changed).toBe(workers.length);
    expect(workers.map((thread) => thread.nice)).toEqual(workers.map(() => 7));
    expect(os.getPriority()).toBe(mainBefore);
  });

  test('changes nothing when asked for 0', async () => {
    expect(await lowerWorkerThreadPriority(0)).toBe(0);
  });
});
