import { queryPlans } from '../db/query-plans.ts';
import { PRUNE_RULES, PruneRepository } from './prune.repository.ts';

// Query-plan cases of the maintenance job's deletes (test/platform/db/query-plans.test.ts runs them).

const NOW = new Date();

/** The index each pruning rule must read through; a new rule without one fails. */
const PRUNE_INDEXES: Readonly<Record<string, string>> = {
  'refresh_tokens.expired': 'refresh_tokens_expires_at_idx',
  'refresh_tokens.revoked': 'refresh_tokens_revoked_at_idx',
  'sessions.expired': 'sessions_expires_at_idx',
  'sessions.ended': 'sessions_ended_at_idx',
  'audit_events.expired': 'audit_events_occurred_at_idx',
  'account_tokens.expired': 'account_tokens_expires_at_idx',
  'email_outbox.done': 'email_outbox_done_created_at_idx',
  'email_changes.expired': 'email_changes_expires_at_idx',
  'oauth_flows.expired': 'oauth_flows_expires_at_idx',
  'oauth_exchange_codes.expired': 'oauth_exchange_codes_expires_at_idx',
};

export const prunePlans = queryPlans({
  repository: PruneRepository,
  sample: async () => ({}),
  // One per rule, by the index of the column the rule's cutoff applies to.
  cases: PRUNE_RULES.map((rule) => ({
    name: `pruneBatch (${rule.name})`,
    call: (r: PruneRepository) =>
      r.pruneBatch(
        rule,
        rule.cutoff(NOW, {
          refreshTokenGraceSeconds: 7 * 86_400,
          auditRetentionDays: 365,
          emailOutboxRetentionDays: 30,
        }),
        1000,
      ),
    index: PRUNE_INDEXES[rule.name] ?? `an index for ${rule.name}`,
  })),
});
