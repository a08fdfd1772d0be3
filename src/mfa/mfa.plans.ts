import { queryPlans } from '../platform/db/query-plans.ts';
import { sampleUser } from '../users/users.plans.ts';
import { MfaChallengeRepository, MfaFactorRepository, RecoveryCodeRepository } from './mfa.repository.ts';

// Query-plan cases of the MFA tables (test/platform/db/query-plans.test.ts runs them).

const NOW = new Date();

export const mfaFactorPlans = queryPlans({
  repository: MfaFactorRepository,
  sample: sampleUser,
  cases: [
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          id: '00000000-0000-7000-8000-000000000001',
          user_id: s.userId,
          type: 'totp',
          name: 'phone',
          secret_jwe: 'sealed',
          created_at: NOW,
        }),
      index: undefined,
    },
    {
      name: 'listOfUser',
      call: (r, s) => r.listOfUser(s.userId),
      index: 'mfa_factors_user_id_idx',
    },
    {
      name: 'lockOfUser',
      call: (r, s) => r.lockOfUser(s.userId, s.userId),
      index: 'mfa_factors_pkey',
    },
    {
      name: 'recordUse',
      call: (r, s) => r.recordUse(s.userId, 1, NOW),
      index: 'mfa_factors_pkey',
    },
    {
      name: 'delete',
      call: (r, s) => r.delete(s.userId, s.userId),
      index: 'mfa_factors_pkey',
    },
    {
      name: 'deleteOfUser',
      call: (r, s) => r.deleteOfUser(s.userId, NOW),
      index: 'mfa_factors_user_id_idx',
    },
  ],
});

export const recoveryCodePlans = queryPlans({
  repository: RecoveryCodeRepository,
  sample: sampleUser,
  cases: [
    {
      name: 'replace (delete, then insert)',
      call: (r, s) => r.replace(s.userId, [], NOW, []),
      index: 'mfa_recovery_codes_user_id_code_hash_idx',
    },
    {
      name: 'use',
      call: (r, s) => r.use(s.userId, 'a-hash', NOW),
      index: 'mfa_recovery_codes_user_id_code_hash_idx',
    },
    {
      name: 'countUnused',
      call: (r, s) => r.countUnused(s.userId),
      index: 'mfa_recovery_codes_user_id_code_hash_idx',
    },
  ],
});

export const mfaChallengePlans = queryPlans({
  repository: MfaChallengeRepository,
  sample: sampleUser,
  cases: [
    {
      name: 'insert',
      call: (r, s) =>
        r.insert({
          id: '00000000-0000-7000-8000-000000000002',
          user_id: s.userId,
          token_hash: 'a-hash',
          first_factor: 'pwd',
          credential_stamp: 'a-stamp',
          created_at: NOW,
          expires_at: NOW,
        }),
      index: undefined,
    },
    {
      name: 'lockByHash',
      call: (r) => r.lockByHash('a-hash'),
      index: 'mfa_challenges_token_hash_key',
    },
    {
      name: 'userOf',
      call: (r) => r.userOf('a-hash'),
      index: 'mfa_challenges_token_hash_key',
    },
    {
      name: 'markUsed',
      call: (r, s) => r.markUsed(s.userId, NOW),
      index: 'mfa_challenges_pkey',
    },
    {
      name: 'deleteSpent',
      call: (r, s) => r.deleteSpent(s.userId, NOW),
      index: 'mfa_challenges_user_id_idx',
    },
  ],
});
