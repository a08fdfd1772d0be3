import type { EnvReader, SectionContext } from './reader.ts';

/** The WebAuthn relying party passkeys are registered with. */
export interface WebAuthnConfig {
  readonly rpId: string;
  readonly rpName: string;
  readonly origins: readonly string[];
}

/**
 * PASSKEYS_ENABLED (default true), WEBAUTHN_RP_ID, WEBAUTHN_RP_NAME, WEBAUTHN_ORIGINS; `undefined`
 * when passkeys are disabled.
 */
export function readWebAuthnConfig(reader: EnvReader, { env }: SectionContext): WebAuthnConfig | undefined {
  // Production names its relying party rather than guessing it from APP_URL (a wrong RP ID
  // silently orphans every passkey registered under it).
  const enabled = reader.boolean('PASSKEYS_ENABLED', true);
  const rpId = reader.string('WEBAUTHN_RP_ID');
  const origins = reader.list('WEBAUTHN_ORIGINS');
  if (enabled && env === 'production' && (rpId === undefined || origins.length === 0)) {
    reader.problem(
      'WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS are required when NODE_ENV=production (or set PASSKEYS_ENABLED=false)',
    );
  }
  for (const origin of origins) {
    if (!/^https?:\/\/[^/]+$/.test(origin))
      reader.problem(`WEBAUTHN_ORIGINS lists origins like https://app.example.com (got "${origin}")`);
  }
  if (!enabled) return undefined;
  return {
    rpId: rpId ?? 'localhost',
    rpName: reader.string('WEBAUTHN_RP_NAME') ?? 'pg-fastify-backend',
    origins: origins.length > 0 ? origins : [originOf(reader.string('APP_URL') ?? 'http://localhost:3000')],
  };
}

/** The origin of a URL, or `http://localhost:3000` for one that does not parse (APP_URL's own check reports it). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'http://localhost:3000';
  }
}
