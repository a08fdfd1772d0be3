import { describe, expect, it } from 'vitest';
import { ServiceUnavailableError } from '../../src/platform/errors/index.ts';
import { OWASP_ARGON2ID, PasswordHasher } from '../../src/auth/passwords.ts';

/** Cheap parameters: these tests are about the checks around argon2, not its cost. */
const CHEAP = { memoryCost: 1024, timeCost: 1, parallelism: 1 };

describe('PasswordHasher.verify', () => {
  const hasher = new PasswordHasher({ params: CHEAP, concurrency: 2, queueLimit: 8 });

  it('accepts the password a hash was made from, and only that one', async () => {
    const hash = await hasher.hash('correct horse battery staple');
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=1024,p=1,t=1\$/);
    await expect(hasher.verify(hash, 'correct horse battery staple')).resolves.toBe(true);
    await expect(hasher.verify(hash, 'Correct horse battery staple')).resolves.toBe(false);
  });

  it.each([
    ['not a PHC string at all', 'plaintext-password'],
    ['a bcrypt hash', '$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234'],
    ['a PHC string with a zero cost', '$argon2id$v=19$m=0,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g'],
    ['a PHC string missing its time cost', '$argon2id$v=19$m=1024,p=1$c2FsdHNhbHQ$aGFzaGhhc2g'],
  ])('refuses %s as a stored hash (false, no exception)', async (_what, stored) => {
    await expect(hasher.verify(stored, 'anything')).resolves.toBe(false);
  });

  it.each([
    ['memory', 'm=4194304,p=1,t=2'],
    ['time', 'm=19456,p=1,t=1000'],
    ['parallelism', 'm=19456,p=64,t=2'],
  ])('refuses a stored hash with an extreme %s cost without running argon2 on it', async (_what, params) => {
    // A genuine hash whose parameter section was rewritten: argon2 would have to run at that cost to
    // reject it. Refused up front, it costs nothing (well under the seconds m=4 GiB or t=1000 take).
    const genuine = await hasher.hash('pw');
    const planted = genuine.replace('m=1024,p=1,t=1', params);
    expect(planted).not.toBe(genuine);
    const started = performance.now();
    await expect(hasher.verify(planted, 'pw')).resolves.toBe(false);
    expect(performance.now() - started).toBeLessThan(50);
  });
});

describe('PasswordHasher concurrency', () => {
  it('lets `concurrency` hashes run, queues up to `queueLimit` more, and refuses the rest with 503 OVERLOADED', async () => {
    const hasher = new PasswordHasher({ params: CHEAP, concurrency: 1, queueLimit: 1 });
    const running = hasher.hash('first');
    const queued = hasher.hash('second');
    expect(hasher.queueDepth).toBe(1);

    // Full: assertCapacity refuses up front, as the limiter itself would.
    expect(() => {
      hasher.assertCapacity();
    }).toThrow(expect.objectContaining({ statusCode: 503, code: 'OVERLOADED' }));
    const refused = hasher.hash('third');
    await expect(refused).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(refused).rejects.toMatchObject({
      statusCode: 503,
      code: 'OVERLOADED',
      message: 'Too many password operations in progress',
    });

    // The queued one still completes, and once the queue drains the hasher takes work again.
    await expect(Promise.all([running, queued])).resolves.toEqual([
      expect.stringMatching(/^\$argon2id\$/),
      expect.stringMatching(/^\$argon2id\$/),
    ]);
    expect(hasher.queueDepth).toBe(0);
    expect(() => {
      hasher.assertCapacity();
    }).not.toThrow();
    await expect(hasher.verify(await hasher.hash('again'), 'again')).resolves.toBe(true);
  });
});

describe('PasswordHasher.needsRehash', () => {
  it('flags a hash made with other parameters than the current ones', async () => {
    const current = new PasswordHasher({ params: CHEAP, concurrency: 1, queueLimit: 1 });
    const older = new PasswordHasher({ params: { ...CHEAP, memoryCost: 512 }, concurrency: 1, queueLimit: 1 });
    expect(current.needsRehash(await current.hash('pw'))).toBe(false);
    expect(current.needsRehash(await older.hash('pw'))).toBe(true);
  });
});

describe('production argon2id parameters', () => {
  // The tests hash at cheap parameters (test/helpers/app.ts) to stay fast; this keeps the ones
  // production runs with from ever drifting below OWASP's minimum unnoticed.
  it("are never below OWASP's minimum for argon2id (m=19 MiB, t=2, p=1)", async () => {
    expect(OWASP_ARGON2ID.memoryCost).toBeGreaterThanOrEqual(19 * 1024);
    expect(OWASP_ARGON2ID.timeCost).toBeGreaterThanOrEqual(2);
    expect(OWASP_ARGON2ID.parallelism).toBeGreaterThanOrEqual(1);

    // What a hasher built without parameters (as the application builds it) actually writes.
    const hash = await new PasswordHasher({ concurrency: 1, queueLimit: 1 }).hash('pw');
    const params = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$/.exec(hash.replace(/p=(\d+),t=(\d+)/, 't=$2,p=$1'));
    expect(params, hash).not.toBeNull();
    const [, memory, time] = (params ?? []).map(Number);
    expect(memory).toBeGreaterThanOrEqual(19 * 1024);
    expect(time).toBeGreaterThanOrEqual(2);
  });
});
