import pg from 'pg';
import { describe, expect, test } from 'vitest';
import {
  appOnPool,
  expectUnavailable,
  httpRequest,
  registration,
  scratchPostgres,
  uniqueId,
  type HttpResponse,
} from './support.ts';
import { waitFor } from '../helpers/processes.ts';

const HTTP_PORTS = [3300, 3309] as const;
const PG_PORTS = [54370, 54373] as const;

/** How long the app waits for a pooled connection, and so the longest a 503 may take (plus hashing). */
const CONNECTION_TIMEOUT_MS = 2_000;
/** argon2 runs before the database is touched; two at a time, so a few may queue. */
const HASHING_MARGIN_MS = 2_500;

interface Outcome {
  readonly email: string;
  /** What the client got; a request without any response fails the test. */
  readonly response: HttpResponse;
  /** Sent after the database had stopped. */
  readonly duringFault: boolean;
}

describe('the database stops while requests flow', () => {
  test(
    'answers 503 DATABASE_UNAVAILABLE fast, turns /health/ready 503, recovers once the database is back, and keeps every acknowledged registration',
    { timeout: 60_000 },
    async ({ onTestFinished }) => {
      const database = await scratchPostgres(onTestFinished, 'outage', PG_PORTS);
      const { baseUrl } = await appOnPool(onTestFinished, database.url, HTTP_PORTS, {
        DB_POOL_MAX: '4',
        DB_CONNECTION_TIMEOUT_MS: String(CONNECTION_TIMEOUT_MS),
        RATE_LIMIT_REGISTER: '100000',
      });
      const run = uniqueId();
      const outcomes: Outcome[] = [];
      let faulted = false;
      let stopSending = false;
      let sent = 0;
      const unanswered: unknown[] = [];

      // Four clients register one account after another, until told to stop (at most 400 requests).
      const client = async (worker: number) => {
        for (let i = 0; !stopSending && sent < 400; i++) {
          sent++;
          const email = `outage-${run}-${worker}-${i}@example.com`;
          // Sent once the database was down.
          const duringFault = faulted;
          try {
            const response = await httpRequest(baseUrl, '/auth/register', {
              body: registration(email),
              timeoutMs: CONNECTION_TIMEOUT_MS + HASHING_MARGIN_MS + 3_000,
            });
            outcomes.push({ email, response, duringFault });
          } catch (error) {
            unanswered.push(error);
            return;
          }
        }
      };
      const clients = Promise.all([0, 1, 2, 3].map(client));
      onTestFinished(async () => {
        stopSending = true;
        await clients;
      });

      // Let some registrations succeed, then stop the database under the flowing requests.
      await waitFor(
        'ten acknowledged registrations',
        () => (outcomes.filter((o) => o.response.status === 201).length >= 10 ? true : undefined),
        20_000,
      );
      // Requests already in flight while it stops may go either way; from here on all must fail cleanly.
      await database.stop();
      faulted = true;
      const stoppedAt = outcomes.length;
      await waitFor(
        'eight requests answered while the database is down',
        () => (outcomes.length >= stoppedAt + 8 ? true : undefined),
        20_000,
      );

      const ready = await httpRequest(baseUrl, '/health/ready', { timeoutMs: CONNECTION_TIMEOUT_MS + 3_000 });
      expectUnavailable(ready, 'DATABASE_UNAVAILABLE');
      expect(ready.json<{ error: { details: unknown } }>().error.details).toContainEqual({
        path: 'checks/database',
        message: 'unavailable',
      });

      stopSending = true;
      await clients;
      expect(unanswered).toEqual([]);

      // Every answer was a success or a clean 503, in time: no 500, no hang, no driver message.
      for (const { response } of outcomes) {
        expect([201, 503], response.text).toContain(response.status);
        if (response.status === 503) {
          expectUnavailable(response, 'DATABASE_UNAVAILABLE');
          expect(response.ms).toBeLessThan(CONNECTION_TIMEOUT_MS + HASHING_MARGIN_MS);
        }
      }
      const duringFault = outcomes.filter((o) => o.duringFault);
      expect(duringFault.length).toBeGreaterThanOrEqual(8);
      expect(duringFault.every((o) => o.response.status === 503)).toBe(true);

      // The database comes back: the same process serves again, no restart.
      await database.start();
      await waitFor('/health/ready to answer 200', async () => {
        const response = await httpRequest(baseUrl, '/health/ready', { timeoutMs: 5_000 });
        return response.status === 200 ? response : undefined;
      });
      const after = await Promise.all(
        [0, 1, 2].map((i) =>
          httpRequest(baseUrl, '/auth/register', { body: registration(`after-${run}-${i}@example.com`) }),
        ),
      );
      expect(after.map((response) => response.status)).toEqual([201, 201, 201]);

      // Nothing acknowledged was lost.
      const acknowledged = outcomes.filter((o) => o.response.status === 201).map((o) => o.email);
      expect(acknowledged.length).toBeGreaterThanOrEqual(10);
      const check = new pg.Client({ connectionString: database.url });
      await check.connect();
      try {
        const { rows } = await check.query<{ count: string }>('select count(*) from users where email = any($1)', [
          acknowledged,
        ]);
        expect(Number(rows[0]?.count)).toBe(acknowledged.length);
      } finally {
        await check.end();
      }
    },
  );
});
