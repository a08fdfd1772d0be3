import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { hashRefreshToken, newRefreshToken } from '../../src/keys/tokens.ts';
import { SEED_PASSWORD, type Seed } from './database.ts';
import type { RequestSpec } from './load.ts';

function pick<T>(items: readonly T[]): T {
  const item = items[Math.floor(Math.random() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

/** GET /users/:id of a random seeded user (the same ids for every target). */
export function getUserById(seed: Seed): RequestSpec[] {
  return [
    {
      method: 'GET',
      setupRequest: (request) => ({ ...request, method: 'GET', path: `/users/${pick(seed.userIds)}` }),
    },
  ];
}

export function getUsersPage(): RequestSpec[] {
  return [{ method: 'GET', path: '/users?limit=20' }];
}

const JSON_HEADERS = { 'content-type': 'application/json' };

export function loginRequests(seed: Seed): RequestSpec[] {
  return [
    {
      method: 'POST',
      setupRequest: (request) => ({
        ...request,
        method: 'POST',
        path: '/auth/login',
        headers: { ...request.headers, ...JSON_HEADERS },
        body: JSON.stringify({ email: pick(seed.emails), password: SEED_PASSWORD }),
      }),
    },
  ];
}

export function registerRequests(): RequestSpec[] {
  const tag = randomBytes(4).toString('hex');
  let sequence = 0;
  return [
    {
      method: 'POST',
      setupRequest: (request) => {
        const n = sequence++;
        return {
          ...request,
          method: 'POST',
          path: '/auth/register',
          headers: { ...request.headers, ...JSON_HEADERS },
          body: JSON.stringify({
            email: `bench-reg-${tag}-${n}@example.com`,
            password: 'correct horse battery',
            name: `Reg ${n}`,
          }),
        };
      },
    },
  ];
}

/**
 * Live refresh tokens for the refresh scenario. A token works once: each request takes one from
 * the queue, each 200 puts its successor back, so every in-flight request always holds a live one.
 */
export class RefreshTokenQueue {
  readonly #tokens: string[];

  constructor(tokens: readonly string[]) {
    this.#tokens = [...tokens];
  }

  take(): string {
    // An exhausted queue sends a token of the right shape that no family has: a 401, counted.
    return this.#tokens.pop() ?? randomBytes(32).toString('base64url');
  }

  give(token: string): void {
    this.#tokens.push(token);
  }

  /** Keeps the successor from a login or refresh response body. */
  keepFrom(body: string): void {
    if (!body.includes('refreshToken')) return;
    try {
      const parsed = JSON.parse(body) as { refreshToken?: unknown };
      if (typeof parsed.refreshToken === 'string') this.give(parsed.refreshToken);
    } catch {
      // not JSON: an error page, nothing to keep
    }
  }
}

/** Inserts `count` live refresh-token families directly (what `count` logins would have created). */
export async function issueRefreshTokens(url: string, seed: Seed, count: number): Promise<string[]> {
  const tokens = Array.from({ length: count }, () => newRefreshToken());
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(
      `insert into refresh_tokens (user_id, family_id, token_hash, expires_at)
       select user_id, family_id, token_hash, now() + interval '1 day'
       from unnest($1::uuid[], $2::uuid[], $3::text[]) as t(user_id, family_id, token_hash)`,
      [tokens.map(() => pick(seed.userIds)), tokens.map(() => randomUUID()), tokens.map(hashRefreshToken)],
    );
  } finally {
    await client.end();
  }
  return tokens;
}

export function refreshRequests(queue: RefreshTokenQueue): RequestSpec[] {
  return [
    {
      method: 'POST',
      setupRequest: (request) => ({
        ...request,
        method: 'POST',
        path: '/auth/refresh',
        headers: { ...request.headers, ...JSON_HEADERS },
        body: JSON.stringify({ refreshToken: queue.take() }),
      }),
      onResponse: (status, body) => {
        if (status === 200) queue.keepFrom(body);
      },
    },
  ];
}

/** What the mixed workload sends, by share of requests. */
export const MIX = [
  { share: 0.75, what: 'GET /users/:id' },
  { share: 0.15, what: 'GET /users?limit=20' },
  { share: 0.08, what: 'GET /auth/me' },
  { share: 0.018, what: 'POST /auth/refresh' },
  { share: 0.002, what: 'POST /auth/login' },
] as const;

export function mixedRequests(seed: Seed, queue: RefreshTokenQueue): RequestSpec[] {
  return [
    {
      method: 'GET',
      setupRequest: (request) => {
        const roll = Math.random();
        const { headers } = request;
        if (roll < 0.75) return { ...request, method: 'GET', path: `/users/${pick(seed.userIds)}`, body: undefined };
        if (roll < 0.9) return { ...request, method: 'GET', path: '/users?limit=20', body: undefined };
        if (roll < 0.98) return { ...request, method: 'GET', path: '/auth/me', body: undefined };
        if (roll < 0.998) {
          return {
            ...request,
            method: 'POST',
            path: '/auth/refresh',
            headers: { ...headers, ...JSON_HEADERS },
            body: JSON.stringify({ refreshToken: queue.take() }),
          };
        }
        return {
          ...request,
          method: 'POST',
          path: '/auth/login',
          headers: { ...headers, ...JSON_HEADERS },
          body: JSON.stringify({ email: pick(seed.emails), password: SEED_PASSWORD }),
        };
      },
      onResponse: (status, body) => {
        if (status === 200) queue.keepFrom(body);
      },
    },
  ];
}
