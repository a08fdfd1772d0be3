import { vi } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import type { App } from '../../../src/app.ts';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, test } from '../../helpers/database.ts';
import { expectError } from '../../helpers/http.ts';

// api.md, "Abuse resistance": no flood of distinct addresses or accounts can reset or evict
// another key's counters, and the memory the counters use has a stated bound
// (THROTTLE_MEMORY_MAX_KEYS), at which new callers are refused rather than old counters forgotten.

const VICTIM = '10.50.0.1';

async function forgot(app: App, from: string, email = 'victim@example.com'): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/auth/password/forgot',
    remoteAddress: from,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ email }),
  });
}

/** A distinct address per `i`: 10.(128 + i / 65536).(i / 256 % 256).(i % 256). */
function junkAddress(i: number): string {
  return `10.${128 + Math.floor(i / 65_536)}.${Math.floor(i / 256) % 256}.${i % 256}`;
}

/** `count` requests from distinct addresses, each a malformed body (400) that still counts. */
async function floodFromDistinctAddresses(app: App, count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let start = 0; start < count; start += 200) {
    const batch = Array.from({ length: Math.min(200, count - start) }, (_, k) =>
      forgot(app, junkAddress(start + k), 'not an address'),
    );
    statuses.push(...(await Promise.all(batch)).map((response) => response.statusCode));
  }
  return statuses;
}

describe('abuse counters live until their window ends', () => {
  test('5,200 requests from distinct addresses do not reset the flood cap of an address that reached it', async ({
    db,
    onTestFinished,
  }) => {
    const app = await testApp(db, onTestFinished, { env: { RATE_LIMIT_EMAIL: '3' } });
    for (let i = 0; i < 3; i++) expect((await forgot(app, VICTIM)).statusCode).toBe(202);
    expectError(await forgot(app, VICTIM), { statusCode: 429, code: 'RATE_LIMITED' });

    const statuses = await floodFromDistinctAddresses(app, 5_200);

    expect(new Set(statuses)).toEqual(new Set([400]));
    expectError(await forgot(app, VICTIM), { statusCode: 429, code: 'RATE_LIMITED' });
  });

  test(
    'at THROTTLE_MEMORY_MAX_KEYS, new callers get 503 while counted ones keep their counts; room returns as windows end',
    { timeout: 60_000 },
    async ({ db, onTestFinished }) => {
      const app = await testApp(db, onTestFinished, {
        // A window long enough for the flood on a loaded machine; the counts must outlive the flood.
        env: { RATE_LIMIT_EMAIL: '3', THROTTLE_MEMORY_MAX_KEYS: '1000', RATE_LIMIT_WINDOW_MS: '10000' },
      });
      for (let i = 0; i < 3; i++) expect((await forgot(app, VICTIM)).statusCode).toBe(202);

      const statuses = await floodFromDistinctAddresses(app, 1_100);

      // Each malformed request from a new address takes one key: the first thousand, less the
      // victim's two (its address and its account), are counted, the rest refused loudly.
      expect(statuses.filter((status) => status === 400)).toHaveLength(998);
      expect(statuses.filter((status) => status === 503)).toHaveLength(102);
      expectError(await forgot(app, junkAddress(5_000)), { statusCode: 503, code: 'RATE_LIMIT_UNAVAILABLE' });
      // The victim's counter was neither evicted nor reset.
      expectError(await forgot(app, VICTIM), { statusCode: 429, code: 'RATE_LIMITED' });

      await vi.waitFor(
        async () => {
          expect((await forgot(app, junkAddress(5_001))).statusCode).toBe(202);
        },
        { timeout: 15_000, interval: 500 },
      );
    },
  );
});
