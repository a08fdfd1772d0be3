import { queryPlans } from '../platform/db/query-plans.ts';
import { SigningKeyRepository } from './signing-keys.repository.ts';

// Query-plan cases of the signing_keys table (test/platform/db/query-plans.test.ts runs them).

const SIGNING_KEYS_ARE_FEW = 'signing_keys holds the active key, the next one and the retiring ones: a handful';
const NOW = new Date();

export const signingKeyPlans = queryPlans({
  repository: SigningKeyRepository,
  sample: async () => ({}),
  cases: [
    {
      name: 'listAll',
      call: (r) => r.listAll(),
      index: undefined,
      tinyTable: SIGNING_KEYS_ARE_FEW,
    },
    {
      name: 'insert',
      call: (r) =>
        r.insert({
          kid: 'a-key',
          algorithm: 'EdDSA',
          public_jwk: '{}',
          private_jwe: 'sealed',
          created_at: NOW,
          signs_from: NOW,
        }),
      index: undefined,
    },
    {
      name: 'deleteRetired',
      call: (r) => r.deleteRetired(['a-key']),
      index: undefined,
      tinyTable: SIGNING_KEYS_ARE_FEW,
    },
    { name: 'lockForCreation', call: (r) => r.lockForCreation(), index: undefined },
  ],
});
