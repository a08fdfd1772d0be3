import type { SigningKeyRow } from './signing-keys.repository.ts';

export const ASYMMETRIC_ALGORITHMS = ['EdDSA', 'ES256'] as const;
export type AsymmetricAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

/** `next`: published, not signing yet; `active`: signs; `retiring`: published until its tokens expire; `retired`: gone from JWKS. */
export type SigningKeyState = 'next' | 'active' | 'retiring' | 'retired';

export interface SigningKeyInfo {
  readonly kid: string;
  readonly algorithm: AsymmetricAlgorithm;
  readonly state: SigningKeyState;
  readonly createdAt: Date;
  readonly signsFrom: Date;
  /** Retiring and retired keys: when the last token they signed expires (and they leave JWKS). */
  readonly publishedUntil: Date | null;
}

/** Clocks of instances and verifiers may disagree by this much. */
export const CLOCK_SKEW_MS = 60_000;

/**
 * Each key's state at `now`. Keys sign in the order of `signs_from`: the newest one whose time
 * has come signs; an older one stays published until the last token it signed (at the latest
 * when its successor took over) has expired, plus the clock skew.
 *
 * @example
 * ```ts
 * keyStates(rows, new Date(), 900_000).map((key) => key.state); // ['retiring', 'active', 'next']
 * ```
 */
export function keyStates(rows: readonly SigningKeyRow[], now: Date, ttlMs: number): SigningKeyInfo[] {
  const sorted = [...rows].sort((a, b) => a.signs_from.getTime() - b.signs_from.getTime());
  const activeIndex = sorted.findLastIndex((row) => row.signs_from.getTime() <= now.getTime());
  return sorted.map((row, index) => {
    const successor = sorted[index + 1];
    const publishedUntil =
      index < activeIndex && successor !== undefined
        ? new Date(successor.signs_from.getTime() + ttlMs + CLOCK_SKEW_MS)
        : null;
    const state: SigningKeyState =
      index > activeIndex
        ? 'next'
        : index === activeIndex
          ? 'active'
          : publishedUntil !== null && now.getTime() < publishedUntil.getTime()
            ? 'retiring'
            : 'retired';
    return {
      kid: row.kid,
      algorithm: algorithmOf(row),
      state,
      createdAt: row.created_at,
      signsFrom: row.signs_from,
      publishedUntil,
    };
  });
}

/** The keys still in the JWKS at `now`: every one but the retired. */
export function published(rows: readonly SigningKeyRow[], now: Date, ttlMs: number): SigningKeyRow[] {
  const live = new Set(
    keyStates(rows, now, ttlMs)
      .filter((key) => key.state !== 'retired')
      .map((key) => key.kid),
  );
  return rows.filter((row) => live.has(row.kid));
}

/** The key that signs at `now`: the newest whose time has come (`rows` in `signs_from` order). */
export function activeKey(rows: readonly SigningKeyRow[], now: Date): SigningKeyRow | undefined {
  return rows.findLast((row) => row.signs_from.getTime() <= now.getTime());
}

export function algorithmOf(row: SigningKeyRow): AsymmetricAlgorithm {
  const algorithm = ASYMMETRIC_ALGORITHMS.find((name) => name === row.algorithm);
  if (algorithm === undefined) throw new Error(`Signing key ${row.kid} has an unknown algorithm`);
  return algorithm;
}
