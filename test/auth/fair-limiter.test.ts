import { describe, expect, it } from 'vitest';
import { FairLimiter } from '../../src/auth/passwords.ts';

/** A limiter whose tasks finish when the test says: records the order in which tasks started. */
function harness(limit: number, queueLimit: number) {
  const limiter = new FairLimiter(limit, queueLimit);
  const started: string[] = [];
  const finishers: Array<() => void> = [];
  const submit = (caller: string, name: string, device?: string) =>
    limiter.run(
      () =>
        new Promise<string>((resolve) => {
          started.push(name);
          finishers.push(() => {
            resolve(name);
          });
        }),
      device === undefined ? [caller, `account:${name}`] : [caller, `account:${name}`, `device:${device}`],
    );
  /** Finishes the oldest running task and lets the next one start. */
  const finishOne = async () => {
    finishers.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { limiter, started, submit, finishOne };
}

describe('FairLimiter: hashing capacity shared fairly between callers', () => {
  it('serves waiting callers round-robin, one task each in turn, not in arrival order', async () => {
    const { started, submit, finishOne } = harness(1, 100);
    const all = [
      submit('address:a', 'a0'),
      ...['a1', 'a2', 'a3', 'a4'].map((name) => submit('address:a', name)),
      submit('address:b', 'b1'),
      submit('address:c', 'c1'),
      submit('address:b', 'b2'),
    ];
    for (let i = 0; i < all.length; i++) await finishOne();
    await Promise.all(all);

    expect(started).toEqual(['a0', 'a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'a4']);
  });

  it('a caller with one task waits behind at most one task of each other caller, however many they queued', async () => {
    const { started, submit, finishOne } = harness(2, 1000);
    const flood = Array.from({ length: 8 }, (_, attacker) =>
      Array.from({ length: 16 }, (_, i) => submit(`address:attacker-${attacker}`, `x${attacker}-${i}`)),
    ).flat();
    const mine = submit('address:owner', 'owner');
    while (!started.includes('owner')) await finishOne();

    // Two were running, then one of each of the 8 attackers at most, then the owner.
    expect(started.indexOf('owner')).toBeLessThanOrEqual(2 + 8);
    while (started.length < flood.length + 1) await finishOne();
    for (let i = 0; i < 2; i++) await finishOne();
    await expect(mine).resolves.toBe('owner');
    await Promise.all(flood);
  });

  it('when the queue is full, a newcomer takes the place of the newest task of the caller with the most waiting; that one gets 503 OVERLOADED', async () => {
    const { limiter, started, submit, finishOne } = harness(1, 4);
    const running = submit('address:a', 'a0');
    const queued = ['a1', 'a2', 'a3'].map((name) => submit('address:a', name));
    const other = submit('address:b', 'b1');
    expect(limiter.waiting).toBe(4);
    expect(limiter.full('address:b')).toBe(false);

    const newcomer = submit('address:c', 'c1');

    await expect(queued[2]).rejects.toMatchObject({ statusCode: 503, code: 'OVERLOADED' });
    expect(limiter.waiting).toBe(4);
    // The caller with the most waiting cannot push anyone out: refused itself.
    expect(limiter.full('address:a')).toBe(true);
    await expect(submit('address:a', 'a4')).rejects.toMatchObject({ code: 'OVERLOADED' });
    for (let i = 0; i < 5; i++) await finishOne();
    await Promise.all([running, queued[0], queued[1], other, newcomer]);
    expect(started).toEqual(['a0', 'a1', 'b1', 'c1', 'a2']);
  });

  it("serves a recognised device's task before every unrecognised one, however many callers wait, and lets it take a place in a full queue", async () => {
    const { limiter, started, submit, finishOne } = harness(1, 8);
    const running = submit('address:x0', 'x0-0');
    const flood = Array.from({ length: 8 }, (_, i) => submit(`address:x${i}`, `x${i}-1`));
    expect(limiter.waiting).toBe(8);

    const owner = submit('address:owner', 'owner', 'phone');

    // Every caller had one waiting: the one served last in the round gave way.
    await expect(flood[7]).rejects.toMatchObject({ code: 'OVERLOADED' });
    await finishOne();
    expect(started).toEqual(['x0-0', 'owner']);
    for (let i = 0; i < 8; i++) await finishOne();
    await Promise.all([running, owner, ...flood.slice(0, 7)]);
  });
});
