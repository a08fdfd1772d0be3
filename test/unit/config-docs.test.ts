import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/platform/config.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

/** Every variable the configuration reads (src/platform/config.ts and its sections): the names given to its EnvReader. */
function variablesRead(): Set<string> {
  const sections = readdirSync(path.join(ROOT, 'src/platform/config')).map((file) => `src/platform/config/${file}`);
  return new Set(
    ['src/platform/config.ts', ...sections]
      .flatMap((file) => [...read(file).matchAll(/reader\.\w+\(\s*'([A-Z][A-Z0-9_]*)'/g)])
      .map((match) => match[1] ?? ''),
  );
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
 * The README's configuration table: each backticked name of the first column, with the default of
 * the same position in the second (`—` or a described default: no single value to check).
 */
function readmeTable(): Map<string, string | undefined> {
  const section = read('README.md').split('\n## Configuration')[1]?.split('\n## ')[0] ?? '';
  const documented = new Map<string, string | undefined>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    const names = [...(cells[1] ?? '').matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((match) => match[1] ?? '');
    if (names.length === 0) continue;
    const defaults = (cells[2] ?? '').split(/,\s*/);
    names.forEach((name, i) => {
      const value = defaults.length === names.length ? /^`([^`]*)`$/.exec(defaults[i] ?? '')?.[1] : undefined;
      documented.set(name, value);
    });
  }
  return documented;
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

  it('the README table documents only variables that are read, with their real defaults', () => {
    const readNames = variablesRead();
    const harness = testHarnessVariables();
    const table = readmeTable();
    expect(table.size).toBeGreaterThan(10);
    expect([...table.keys()].filter((name) => !readNames.has(name) && !harness.has(name))).toEqual([]);
    // The server's defaults are checked against loadConfig; the harness's are not the server's.
    const wrong = [...table]
      .filter((entry): entry is [string, string] => entry[1] !== undefined && !harness.has(entry[0]))
      .filter(([name, value]) => !isDefault(name, value))
      .map(([name, value]) => `${name}: ${value}`);
    expect(wrong).toEqual([]);
  });
});
