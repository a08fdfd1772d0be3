import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/platform/config.ts';
import { ERROR_CODES } from '../../../src/platform/errors/codes.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

/** Every variable the configuration reads (src/platform/config.ts and its sections): the names given to its EnvReader. */
function variablesRead(): Set<string> {
  const sections = readdirSync(path.join(ROOT, 'src/platform/config')).map((file) => `src/platform/config/${file}`);
  return new Set([
    ...['src/platform/config.ts', ...sections]
      .flatMap((file) => [...read(file).matchAll(/reader\.\w+\(\s*'([A-Z][A-Z0-9_]*)'/g)])
      .map((match) => match[1] ?? ''),
    // The provider settings are parsed beside the feature (src/oauth/config.ts); OIDC_<ID>_* are per provider.
    ...[...read('src/oauth/config.ts').matchAll(/read\(\s*'([A-Z][A-Z0-9_]*)'/g)].map((match) => match[1] ?? ''),
  ]);
}

/** The variables the test harness reads (`npm test`'s own settings, not the server's). */
function testHarnessVariables(): Set<string> {
  const helpers = path.join(ROOT, 'test/helpers');
  const names = readdirSync(helpers)
    .filter((file) => file.endsWith('.ts'))
    .flatMap((file) => [...read(path.join('test/helpers', file)).matchAll(/process\.env\.(TEST_[A-Z0-9_]*)/g)])
    .map((match) => match[1] ?? '');
  return new Set(names);
}

/**
 * `.env.example`: each `NAME=value` line and its value. A commented-out line (`# NAME=…`) is unset
 * by default and shows an example value; an empty value means the default depends on something
 * else and is described in the comment. Neither is a default to check (both map to '').
 */
function envExample(): Map<string, string> {
  const documented = new Map<string, string>();
  for (const line of read('.env.example').split('\n')) {
    // A value with spaces is double-quoted, as dotenv files write it.
    const match = /^(#?)\s*([A-Z][A-Z0-9_]*)=(?:"([^"]*)"|(\S*))/.exec(line);
    if (match?.[2] !== undefined) documented.set(match[2], match[1] === '#' ? '' : (match[3] ?? match[4] ?? ''));
  }
  return documented;
}

/**
 * The variables docs/configuration.md names: backticked names with an underscore (`DB_POOL_MAX`,
 * `HASH_*`, `NODE_ENV=production`), less the error codes it mentions (`POOL_EXHAUSTED`).
 */
function manualNames(): string[] {
  const names = [...read('docs/configuration.md').matchAll(/`([A-Z][A-Z0-9]*_[A-Z0-9_*]*)(?:=[^`]*)?`/g)];
  return [...new Set(names.map((match) => match[1] ?? ''))].filter((name) => !(name in ERROR_CODES));
}

/** The config with `name` set to `value` equals the config without it: `value` is the default. */
function isDefault(name: string, value: string): boolean {
  const cwd = ROOT;
  try {
    return JSON.stringify(loadConfig({ [name]: value }, cwd)) === JSON.stringify(loadConfig({}, cwd));
  } catch {
    return false;
  }
}

describe('the configuration documentation', () => {
  it('.env.example lists every variable the configuration reads, and nothing else', () => {
    const documented = [...envExample().keys()].sort();
    expect(variablesRead().size).toBeGreaterThan(30);
    expect(documented).toEqual([...variablesRead()].sort());
  });

  it('.env.example gives each variable its real default', () => {
    const wrong = [...envExample()]
      .filter(([name, value]) => value !== '' && !isDefault(name, value))
      .map(([name, value]) => `${name}=${value}`);
    expect(wrong).toEqual([]);
  });

  it('docs/configuration.md names only variables that are read, and leaves their defaults to .env.example', () => {
    const known = [...variablesRead(), ...testHarnessVariables()];
    const manual = manualNames();
    expect(manual.length).toBeGreaterThan(20);
    // A name, or a group such as `DB_*`, that matches nothing read is stale.
    const matches = (name: string) =>
      name.endsWith('*') ? known.some((variable) => variable.startsWith(name.slice(0, -1))) : known.includes(name);
    expect(manual.filter((name) => !matches(name))).toEqual([]);
    // The manual points to the one list instead of repeating it as a table of defaults.
    const text = read('docs/configuration.md');
    expect(text).toContain('](../.env.example)');
    expect(text).not.toMatch(/^\|[^\n]*\bdefault\b[^\n]*\|$/im);
  });
});
