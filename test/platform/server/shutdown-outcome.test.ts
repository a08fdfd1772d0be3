import { describe, expect, it } from 'vitest';
import { describeSyncStop, type SyncStopOutcome } from '../../../src/platform/db/embedded.ts';

// The one line a forced exit writes about the embedded PostgreSQL (issue 33 item 0): it must say
// which of the four things happened and what the operator does next.
describe('what a forced exit says about the embedded PostgreSQL', () => {
  it.each<[SyncStopOutcome, RegExp]>([
    [{ kind: 'stopped' }, /stopped \(fast shutdown: nothing to recover\)$/],
    [{ kind: 'shared', users: [41, 42] }, /left running for process 41, 42, which still use it$/],
    [{ kind: 'recoverable' }, /stopped at once \(immediate shutdown\): it recovers from its WAL/],
    [{ kind: 'running', reason: 'pg_ctl timed out' }, /could not be stopped \(pg_ctl timed out\): .*pg_ctl stop$/],
  ])('%o', (outcome, line) => {
    expect(describeSyncStop(outcome)).toMatch(line);
    expect(describeSyncStop(outcome)).not.toContain('\n');
  });
});
