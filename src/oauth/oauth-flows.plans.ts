import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { ExchangeCodeRepository, OAuthFlowRepository } from './oauth-flows.repository.ts';

// Query-plan cases of the provider sign-in flows and exchange codes (test/platform/db/query-plans.test.ts).

const NOW = new Date();

export const oauthFlowPlans = queryPlans({
  repository: OAuthFlowRepository,
  seed: {
    table: 'oauth_flows',
    after: ['users'],
    // Provider sign-ins under way (10 minutes each) for every tenth user; few expired ones linger,
    // since each new flow deletes a batch of them.
    fill: async (db) => {
      await sql`
        insert into oauth_flows (id, state_hash, browser_hash, provider, purpose, nonce, code_verifier, redirect_to,
                                 created_at, expires_at)
        select gen_random_uuid(), md5('state' || u.id::text || g), md5('browser' || u.id::text), 'google', 'sign_in',
               md5('nonce' || g), md5('verifier' || g), 'https://app.example.com/', now() - g * interval '1 minute',
               now() + (8 - g) * interval '1 minute'
        from users as u cross join generate_series(0, 7) as g
        where u.email like '%0@example.com'`.execute(db);
    },
  },
  sample: sampleUser,
  cases: [
    {
      name: 'insert',
      call: (r) =>
        r.insert({
          id: '00000000-0000-7000-8000-000000000012',
          state_hash: 'a-state',
          provider: 'google',
          purpose: 'sign_in',
          nonce: 'a-nonce',
          code_verifier: 'a-verifier',
          redirect_to: 'https://app.example.com/',
          created_at: NOW,
          expires_at: NOW,
        }),
      index: undefined,
    },
    {
      name: 'bindBrowser',
      call: (r) => r.bindBrowser('a-state', 'a-browser', { now: NOW, startedAfter: NOW }),
      index: 'oauth_flows_state_hash_key',
    },
    { name: 'consume', call: (r) => r.consume('a-state', NOW), index: 'oauth_flows_state_hash_key' },
    { name: 'deleteExpired', call: (r) => r.deleteExpired(NOW, 100), index: 'oauth_flows_expires_at_idx' },
  ],
});

export const exchangeCodePlans = queryPlans({
  repository: ExchangeCodeRepository,
  seed: {
    table: 'oauth_exchange_codes',
    after: ['users'],
    // Codes live 60 seconds between a callback and its exchange.
    fill: async (db) => {
      await sql`
        insert into oauth_exchange_codes (id, code_hash, user_id, provider, created_at, expires_at)
        select gen_random_uuid(), md5('code' || u.id::text || g), u.id, 'google', now() - g * interval '10 seconds',
               now() + (8 - g) * interval '10 seconds'
        from users as u cross join generate_series(0, 7) as g
        where u.email like '%0@example.com'`.execute(db);
    },
  },
  sample: sampleUser,
  cases: [
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          id: '00000000-0000-7000-8000-000000000013',
          code_hash: 'a-code',
          user_id: s.userId,
          provider: 'google',
          created_at: NOW,
          expires_at: NOW,
        }),
      index: undefined,
    },
    { name: 'consume', call: (r) => r.consume('a-code', NOW), index: 'oauth_exchange_codes_code_hash_key' },
    {
      name: 'deleteExpired',
      call: (r) => r.deleteExpired(NOW, 100),
      index: 'oauth_exchange_codes_expires_at_idx',
    },
  ],
});
