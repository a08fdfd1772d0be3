import { sql } from 'kysely';
import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { PasskeyRepository, WebauthnChallengeRepository } from './passkeys.repository.ts';

// Query-plan cases of the passkey tables (test/platform/db/query-plans.test.ts runs them).

const NOW = new Date();

export const passkeyPlans = queryPlans({
  repository: PasskeyRepository,
  sample: sampleUser,
  cases: [
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          id: '00000000-0000-7000-8000-000000000003',
          user_id: s.userId,
          credential_id: 'a-credential',
          public_key: Buffer.from('a-key'),
          backed_up: false,
          device_type: 'singleDevice',
          name: 'laptop',
          created_at: NOW,
        }),
      index: undefined,
    },
    {
      name: 'listOfUser',
      call: (r, s) => r.listOfUser(s.userId),
      index: 'passkey_credentials_user_id_idx',
    },
    {
      name: 'findByCredentialId',
      call: (r) => r.findByCredentialId('a-credential'),
      index: 'passkey_credentials_credential_id_key',
    },
    {
      name: 'lockByCredentialId',
      call: (r) => r.lockByCredentialId('a-credential'),
      index: 'passkey_credentials_credential_id_key',
    },
    {
      name: 'recordUse',
      call: (r, s) => r.recordUse(s.userId, 1, NOW),
      index: 'passkey_credentials_pkey',
    },
    {
      name: 'rename',
      call: (r, s) => r.rename(s.userId, s.userId, 'laptop'),
      index: 'passkey_credentials_pkey',
    },
    {
      name: 'delete',
      call: (r, s) => r.delete(s.userId, s.userId),
      index: 'passkey_credentials_pkey',
    },
    {
      name: 'deleteOfUser',
      call: (r, s) => r.deleteOfUser(s.userId),
      index: 'passkey_credentials_user_id_idx',
    },
  ],
});

export const webauthnChallengePlans = queryPlans({
  repository: WebauthnChallengeRepository,
  seed: {
    table: 'webauthn_challenges',
    after: ['users'],
    // Passkey ceremonies under way: every tenth user has a live challenge or two (expired ones are
    // deleted as new ones are handed out, so few linger).
    fill: async (db) => {
      await sql`
        insert into webauthn_challenges (id, challenge, ceremony, purpose, user_id, created_at, expires_at)
        select gen_random_uuid(), md5(u.id::text || g), 'authentication', 'login', u.id,
               now() - g * interval '1 minute', now() + (5 - g) * interval '1 minute'
        from users as u cross join generate_series(0, 1) as g
        where u.email like '%0@example.com'`.execute(db);
    },
  },
  sample: sampleUser,
  cases: [
    {
      name: 'insert',
      call: (r) =>
        r.insert({
          id: '00000000-0000-7000-8000-000000000004',
          challenge: 'a-challenge',
          ceremony: 'authentication',
          purpose: 'login',
          created_at: NOW,
          expires_at: NOW,
        }),
      index: undefined,
    },
    {
      name: 'consume',
      call: (r, s) => r.consume(s.userId, NOW),
      index: 'webauthn_challenges_pkey',
    },
    {
      name: 'consumeByValue',
      call: (r) => r.consumeByValue('a-challenge', NOW),
      index: 'webauthn_challenges_challenge_key',
    },
    {
      name: 'deleteExpired',
      call: (r) => r.deleteExpired(NOW),
      index: 'webauthn_challenges_expires_at_idx',
    },
  ],
});
