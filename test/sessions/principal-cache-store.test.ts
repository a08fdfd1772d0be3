import { describe, expect, it } from 'vitest';
import { PrincipalCache } from '../../src/sessions/principal-cache.ts';

function cacheAt(options: { live?: () => boolean; maxEntries?: number } = {}) {
  const clock = { now: 1_000 };
  const cache = new PrincipalCache<string>({
    ttlMs: 60_000,
    maxEntries: options.maxEntries ?? 100,
    isLive: options.live ?? (() => true),
    now: () => clock.now,
  });
  return { cache, clock };
}

describe('PrincipalCache', () => {
  it('serves what was stored until its time to live runs out', () => {
    const { cache, clock } = cacheAt();
    cache.store('u1', 'row of u1', cache.generation);
    expect(cache.get('u1')).toBe('row of u1');
    clock.now += 59_999;
    expect(cache.get('u1')).toBe('row of u1');
    clock.now += 1;
    expect(cache.get('u1')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('drops an entry when its row changes, and everything on clear', () => {
    const { cache } = cacheAt();
    cache.store('u1', 'a', cache.generation);
    cache.store('u2', 'b', cache.generation);
    cache.invalidate('u1');
    expect(cache.get('u1')).toBeUndefined();
    expect(cache.get('u2')).toBe('b');
    cache.clear();
    expect(cache.get('u2')).toBeUndefined();
  });

  it('refuses a value read before an invalidation that happened while it was being read', () => {
    const { cache } = cacheAt();
    const generation = cache.generation;
    // The row is being read when a change to it (or any row) is heard: what was read may be stale.
    cache.invalidate('u1');
    cache.store('u1', 'possibly stale', generation);
    expect(cache.get('u1')).toBeUndefined();
    // A read that starts afterwards may store.
    cache.store('u1', 'fresh', cache.generation);
    expect(cache.get('u1')).toBe('fresh');
  });

  it('serves and stores nothing while changes are not being heard', () => {
    let live = true;
    const { cache } = cacheAt({ live: () => live });
    cache.store('u1', 'a', cache.generation);
    live = false;
    expect(cache.get('u1')).toBeUndefined();
    cache.store('u2', 'b', cache.generation);
    live = true;
    expect(cache.get('u2')).toBeUndefined();
  });

  it('holds at most maxEntries, evicting the oldest', () => {
    const { cache } = cacheAt({ maxEntries: 2 });
    cache.store('u1', 'a', cache.generation);
    cache.store('u2', 'b', cache.generation);
    cache.store('u3', 'c', cache.generation);
    expect(cache.size).toBe(2);
    expect(cache.get('u1')).toBeUndefined();
    expect([cache.get('u2'), cache.get('u3')]).toEqual(['b', 'c']);
  });

  it('evicts the least recently used entry: a read counts as a use', () => {
    const { cache } = cacheAt({ maxEntries: 2 });
    cache.store('u1', 'a', cache.generation);
    cache.store('u2', 'b', cache.generation);
    expect(cache.get('u1')).toBe('a');
    cache.store('u3', 'c', cache.generation);
    expect(cache.size).toBe(2);
    expect(cache.get('u2')).toBeUndefined();
    expect([cache.get('u1'), cache.get('u3')]).toEqual(['a', 'c']);
  });
});
