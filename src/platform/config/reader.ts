import type { PoolMode } from './database.ts';
import type { NodeEnv } from './process.ts';

/** The variables a configuration is read from: `process.env`, or a test's own. */
export type Env = Readonly<Record<string, string | undefined>>;

/** What every section's reader may depend on besides its own variables. */
export interface SectionContext {
  readonly env: NodeEnv;
  /** Several sections default differently behind PgBouncer in transaction mode. */
  readonly poolMode: PoolMode;
}

/** Thrown when the environment is invalid; the message names every bad variable. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`Invalid environment:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Collects every problem instead of stopping at the first, so one start names them all. */
export class EnvReader {
  readonly #env: Env;
  readonly #problems: string[] = [];

  constructor(env: Env) {
    this.#env = env;
  }

  problem(message: string): void {
    this.#problems.push(message);
  }

  assertValid(): void {
    if (this.#problems.length > 0) throw new ConfigError(this.#problems);
  }

  string(name: string): string | undefined {
    const value = this.#env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.problem(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const raw = this.string(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (['true', '1', 'yes', 'on'].includes(raw)) return true;
    if (['false', '0', 'no', 'off'].includes(raw)) return false;
    this.problem(`${name} must be true or false (got "${raw}")`);
    return fallback;
  }

  oneOf<const T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const match = allowed.find((value) => value === raw);
    if (match === undefined) {
      this.problem(`${name} must be one of ${allowed.join(', ')} (got "${raw}")`);
      return fallback;
    }
    return match;
  }

  url(name: string): string | undefined {
    const raw = this.string(name);
    return raw === undefined ? undefined : this.#checkedUrl(name, raw, ['postgres:', 'postgresql:']);
  }

  /** Comma-separated postgres:// URLs; every malformed one is a problem. */
  urlList(name: string): string[] {
    return this.list(name).flatMap((raw) => this.#checkedUrl(name, raw, ['postgres:', 'postgresql:']) ?? []);
  }

  redisUrl(name: string): string | undefined {
    const raw = this.string(name);
    return raw === undefined ? undefined : this.#checkedUrl(name, raw, ['redis:', 'rediss:']);
  }

  smtpUrl(name: string): string | undefined {
    const raw = this.string(name);
    return raw === undefined ? undefined : this.#checkedUrl(name, raw, ['smtp:', 'smtps:']);
  }

  httpUrl(name: string): string | undefined {
    const raw = this.string(name);
    return raw === undefined ? undefined : this.#checkedUrl(name, raw, ['https:', 'http:']);
  }

  #checkedUrl(name: string, raw: string, protocols: readonly string[]): string | undefined {
    const expected = `a ${protocols[0] ?? ''}// URL`;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      this.problem(`${name} must be ${expected}`);
      return undefined;
    }
    if (!protocols.includes(parsed.protocol)) {
      this.problem(`${name} must be ${expected} (got protocol "${parsed.protocol}")`);
      return undefined;
    }
    return raw;
  }

  list(name: string): string[] {
    const raw = this.string(name);
    if (raw === undefined) return [];
    return raw
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
  }

  trustProxy(name: string): boolean | number | string {
    const raw = this.string(name);
    if (raw === undefined || raw === 'false') return false;
    if (raw === 'true') return true;
    if (/^\d+$/.test(raw)) return Number(raw);
    return raw;
  }
}
