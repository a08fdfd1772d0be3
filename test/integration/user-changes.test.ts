import { sql } from 'kysely';
import { vi } from 'vitest';
import { UserChangeFeed } from '../../src/db/user-changes.ts';
import { withTransaction } from '../../src/db/transactions.ts';
import { UserRepository } from '../../src/repositories/users.ts';
import { describe, expect, isolatedDatabase, test, UNREACHABLE_DATABASE_URL } from '../helpers/database.ts';

// Notifications are sent only when a transaction commits, so these tests use committed data.

function recorder() {
  const events: string[] = [];
  return { events, handlers: { onChange: (id: string) => events.push(`change ${id}`), onReset: () => events.push('reset') } };
}

describe('UserChangeFeed', () => {
  test('hears committed updates and deletes, not rolled-back ones, and a truncate as a reset', async ({ onTestFinished }) => {
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
    await sql`truncate refresh_tokens, users`.execute(database.db);

    // An insert is not announced (nobody can hold a stale copy of a new row); the rollback neither.
    await vi.waitFor(() => {
      expect(events).toEqual(['reset', `change ${ada.id}`, `change ${ada.id}`, 'reset']);
    });
  });

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
});
