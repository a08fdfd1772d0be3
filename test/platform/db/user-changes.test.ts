import { sql } from 'kysely';
import { vi } from 'vitest';
import { withDatabaseName } from '../../../src/platform/db/database-admin.ts';
import { UserChangeFeed } from '../../../src/platform/db/user-changes.ts';
import { withTransaction } from '../../../src/platform/db/transactions.ts';
import { UserRepository } from '../../../src/users/users.repository.ts';
import { freePort } from '../../helpers/processes.ts';
import { startPgBouncer } from '../../helpers/pgbouncer.ts';
import { describe, expect, isolatedDatabase, test, UNREACHABLE_DATABASE_URL } from '../../helpers/database.ts';

// Notifications are sent only when a transaction commits, so these tests use committed data.

function recorder() {
  const events: string[] = [];
  return {
    events,
    handlers: { onChange: (id: string) => events.push(`change ${id}`), onReset: () => events.push('reset') },
  };
}

describe('UserChangeFeed', () => {
  test('hears committed updates and deletes, not rolled-back ones, and a truncate as a reset', async ({
    onTestFinished,
  }) => {
    const database = await isolatedDatabase(onTestFinished);
    const { events, handlers } = recorder();
    const feed = new UserChangeFeed({ url: database.url, applicationName: 'vitest-feed' }, handlers);
    onTestFinished(() => feed.close());
    await feed.start();
    expect(feed.live).toBe(true);
    expect(events).toEqual(['reset']);

    const users = new UserRepository(database.db);
    const ada = await users.create({ email: 'ada@example.com', name: 'Ada', passwordHash: 'hash' });
    await withTransaction(database.db, async (trx) => {
      await new UserRepository(trx).updateLastLogin(ada.id, new Date());
      throw new Error('roll back');
    }).catch(() => undefined);
    await users.updateLastLogin(ada.id, new Date());
    await users.delete(ada.id);
    await sql`truncate users cascade`.execute(database.db);

    // An insert is not announced (nobody can hold a stale copy of a new row); the rollback neither.
    await vi.waitFor(() => {
      expect(events).toEqual(['reset', `change ${ada.id}`, `change ${ada.id}`, 'reset']);
    });
  });

  // Needs Debian's pgbouncer: with the scale-out suites (SCALE_OUT=1, as .ci/run sets), not in plain `npm test`.
  test.runIf(process.env.SCALE_OUT)(
    "never goes live through PgBouncer in transaction mode, where its LISTEN hears nothing, and ignores other feeds' probes",
    async ({ onTestFinished }) => {
      const database = await isolatedDatabase(onTestFinished);
      const bouncer = await startPgBouncer({
        serverUrl: withDatabaseName(database.url, 'postgres'),
        port: await freePort(6441, 6460),
        poolMode: 'transaction',
      });
      onTestFinished(() => bouncer.stop());
      const name = new URL(database.url).pathname.slice(1);

      const { events, handlers } = recorder();
      const deaf = new UserChangeFeed(
        {
          url: bouncer.url(name),
          applicationName: 'vitest-feed',
          reconnect: { minDelayMs: 20, maxDelayMs: 50 },
          probeTimeoutMs: 300,
        },
        handlers,
      );
      onTestFinished(() => deaf.close());
      await deaf.start();
      expect(deaf.live).toBe(false);
      // A change made meanwhile is not heard either; the feed keeps retrying and stays not live.
      await new UserRepository(database.db).create({ email: 'x@example.com', name: 'X', passwordHash: 'h' });
      await sql`update users set name = 'Y'`.execute(database.db);
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(deaf.live).toBe(false);
      expect(events.every((event) => event === 'reset')).toBe(true);

      // A direct feed goes live; the deaf feed's probes, which it hears, are not changes to anyone.
      const direct = recorder();
      const listening = new UserChangeFeed({ url: database.url, applicationName: 'vitest-feed' }, direct.handlers);
      onTestFinished(() => listening.close());
      await listening.start();
      expect(listening.live).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(direct.events.every((event) => event === 'reset')).toBe(true);
    },
  );

  test('is not live while it cannot connect, keeps trying, and stops trying when closed', async () => {
    const { events, handlers } = recorder();
    const feed = new UserChangeFeed(
      { url: UNREACHABLE_DATABASE_URL, applicationName: 'vitest-feed', reconnect: { minDelayMs: 5, maxDelayMs: 20 } },
      handlers,
    );
    await feed.start();
    expect(feed.live).toBe(false);
    // Every failed attempt resets (whoever caches must not trust what they hold).
    await vi.waitFor(() => {
      expect(events.length).toBeGreaterThanOrEqual(3);
    });
    await feed.close();
    const afterClose = events.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(events.length).toBe(afterClose);
    expect(feed.live).toBe(false);
  });

  test('a commit waits for its own notification; one never heard ends the wait and the trust, not the request', async ({
    onTestFinished,
  }) => {
    const database = await isolatedDatabase(onTestFinished);
    const { events, handlers } = recorder();
    const feed = new UserChangeFeed(
      {
        url: database.url,
        applicationName: 'vitest-feed',
        heartbeatTimeoutMs: 600,
        reconnect: { minDelayMs: 50, maxDelayMs: 100 },
      },
      handlers,
    );
    onTestFinished(() => feed.close());
    expect(feed.expect()).toBeUndefined();
    await feed.start();

    // Sent with a commit: heard.
    const sent = feed.expect();
    expect(sent).toEqual(expect.any(String));
    if (sent === undefined) return;
    await sql`select pg_notify('users_changed', ${sent})`.execute(database.db);
    await feed.heard(sent);
    // Cancelled (the commit sent nothing) or unknown: nothing to wait for.
    const cancelled = feed.expect() ?? '';
    feed.cancel(cancelled);
    await feed.heard(cancelled);

    // Never sent: the wait ends at the heartbeat timeout, the caches are reset and the feed reconnects.
    const lost = feed.expect() ?? '';
    events.length = 0;
    const started = performance.now();
    await feed.heard(lost);
    expect(performance.now() - started).toBeGreaterThanOrEqual(550);
    expect(events).toContain('reset');
    await vi.waitFor(() => {
      expect(feed.live).toBe(true);
    });
  });
});
