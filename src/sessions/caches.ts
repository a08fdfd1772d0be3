import type { AuthenticatedUser } from '../auth/service.ts';
import type { Config } from '../platform/config.ts';
import { UserChangeFeed } from '../platform/db/user-changes.ts';
import { PrincipalCache } from './principal-cache.ts';
import type { LiveSession } from './service.ts';

/**
 * The principal and live-session caches and the change feed that keeps both fresh (and stops
 * them being trusted when it goes silent); none when PRINCIPAL_CACHE_SECONDS=0.
 */
export async function openCaches(
  config: Config,
  url: string,
  stack: AsyncDisposableStack,
): Promise<
  | { principals: PrincipalCache<AuthenticatedUser>; sessions: PrincipalCache<LiveSession>; feed: UserChangeFeed }
  | undefined
> {
  if (config.auth.principalCacheSeconds === 0) return undefined;
  const feed: UserChangeFeed = new UserChangeFeed(
    {
      url,
      applicationName: `${config.database.applicationName}:user-changes`,
      heartbeatTimeoutMs: config.auth.changeFeedHeartbeatTimeoutMs,
    },
    {
      onChange: (id) => {
        principals.invalidate(id);
      },
      onSessionEnded: (sid) => {
        sessions.invalidate(sid);
      },
      onReset: () => {
        principals.clear();
        sessions.clear();
      },
    },
  );
  const principals = new PrincipalCache<AuthenticatedUser>({
    ttlMs: config.auth.principalCacheSeconds * 1000,
    maxEntries: config.auth.principalCacheMaxEntries,
    isLive: () => feed.live,
  });
  const sessions = new PrincipalCache<LiveSession>({
    ttlMs: config.auth.principalCacheSeconds * 1000,
    maxEntries: config.auth.sessionCacheMaxEntries,
    isLive: () => feed.live,
  });
  // Closed even when its start fails half-way: the listening connection may already be open.
  stack.defer(() => feed.close());
  await feed.start();
  return { principals, sessions, feed };
}
