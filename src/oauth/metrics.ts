import { Counter, type Registry } from '@prometheus-io/client';

/** How a provider sign-in ended, for metrics. */
export type SignInOutcome = 'signed_in' | 'signed_up' | 'linked' | 'refused' | 'invalid' | 'unavailable';

export interface OAuthEvents {
  onCallback?(provider: string, outcome: SignInOutcome): void;
}

/**
 * `auth_oauth_callbacks_total{provider, outcome}`: how provider sign-ins end (signed_in,
 * signed_up, linked, refused, invalid, unavailable), on the application's registry.
 *
 * @example
 * ```ts
 * const events = oauthMetrics(metrics.registry);
 * ```
 */
export function oauthMetrics(registry: Registry): OAuthEvents {
  const callbacks = new Counter({
    name: 'auth_oauth_callbacks_total',
    help: 'Provider sign-in callbacks by provider and outcome (signed_in, signed_up, linked, refused, invalid, unavailable)',
    labelNames: ['provider', 'outcome'] as const,
    registers: [registry],
  });
  return {
    onCallback: (provider, outcome) => {
      callbacks.inc({ provider, outcome });
    },
  };
}
