import { Counter, Gauge, type Registry } from '@prometheus-io/client';
import type { TokenEvents } from './jwt.ts';
import type { MfaEvents } from '../mfa/service.ts';

/**
 * Access tokens signed and verified per key id, introspections by outcome, and the age of the
 * signing key (the `SigningKeyTooOld` alert reads it). Key ids are bounded: only keys that
 * signed or verified a token are labels, never the kid an attacker wrote.
 */
export class TokenMetrics {
  readonly signed: Counter<'kid'>;
  readonly verified: Counter<'kid'>;
  readonly introspections: Counter<'outcome'>;
  readonly mfaChallenges: Counter<'outcome'>;

  constructor(registry: Registry, activeKeyAgeSeconds: () => number | undefined) {
    this.signed = new Counter({
      name: 'auth_tokens_signed_total',
      help: 'Access tokens signed, by key id',
      labelNames: ['kid'] as const,
      registers: [registry],
    });
    this.verified = new Counter({
      name: 'auth_tokens_verified_total',
      help: 'Access tokens whose signature and claims verified, by key id',
      labelNames: ['kid'] as const,
      registers: [registry],
    });
    this.introspections = new Counter({
      name: 'auth_introspections_total',
      help: 'POST /auth/introspect calls by outcome (active, inactive, unauthorized)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    });
    for (const outcome of ['active', 'inactive', 'unauthorized']) this.introspections.inc({ outcome }, 0);
    this.mfaChallenges = new Counter({
      name: 'auth_mfa_challenges_total',
      help: 'Second-factor checks (sign-in, step-up, enrolment) by outcome (verified, failed, expired_challenge)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    });
    for (const outcome of ['verified', 'failed', 'expired_challenge']) this.mfaChallenges.inc({ outcome }, 0);
    const keyAge: Gauge = new Gauge({
      name: 'auth_signing_key_age_seconds',
      help: 'Seconds since the active asymmetric signing key began signing (absent with JWT_ALGORITHM=HS256)',
      registers: [registry],
      collect: () => {
        const age = activeKeyAgeSeconds();
        if (age !== undefined) keyAge.set(age);
      },
    });
  }

  get mfaEvents(): MfaEvents {
    return {
      onChallenge: (outcome) => {
        this.mfaChallenges.inc({ outcome });
      },
    };
  }

  get events(): TokenEvents {
    return {
      onSigned: (kid) => {
        this.signed.inc({ kid });
      },
      onVerified: (kid) => {
        this.verified.inc({ kid });
      },
    };
  }
}
