import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { isProductionEnvironment, loadConfig, loadEnvFile } from '../../../src/platform/config.ts';
import { configProblems } from '../../helpers/app.ts';

// `.env` is read only under npm scripts (`npm start`, `npm run migrate`): a process manager or a
// test's child server gets exactly the environment it was given. Variables already set win.

async function projectWithEnvFile(contents: string | undefined): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'env-file-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  if (contents !== undefined) await writeFile(path.join(dir, '.env'), contents);
  return dir;
}

describe('loadEnvFile', () => {
  it('under an npm script, reads <cwd>/.env into the environment; variables already set win', async () => {
    const dir = await projectWithEnvFile('ENV_FILE_TEST_A=from-file\nENV_FILE_TEST_B=from-file\n');
    vi.stubEnv('npm_lifecycle_event', 'start');
    vi.stubEnv('ENV_FILE_TEST_B', 'already-set');
    // Not set before: loadEnvFile adds it; removed again after the test.
    onTestFinished(() => {
      delete process.env.ENV_FILE_TEST_A;
      vi.unstubAllEnvs();
    });
    expect(loadEnvFile(dir)).toBe(path.join(dir, '.env'));
    expect(process.env.ENV_FILE_TEST_A).toBe('from-file');
    expect(process.env.ENV_FILE_TEST_B).toBe('already-set');
  });

  it('outside npm scripts the file is not read, and without a file nothing is', async () => {
    const dir = await projectWithEnvFile('ENV_FILE_TEST_C=from-file\n');
    vi.stubEnv('npm_lifecycle_event', undefined);
    onTestFinished(() => {
      vi.unstubAllEnvs();
    });
    expect(loadEnvFile(dir)).toBeUndefined();
    expect(process.env.ENV_FILE_TEST_C).toBeUndefined();
    vi.stubEnv('npm_lifecycle_event', 'start');
    expect(loadEnvFile(await projectWithEnvFile(undefined))).toBeUndefined();
  });
});

describe('isProductionEnvironment', () => {
  it('is NODE_ENV=production only, whatever else the environment holds', () => {
    expect(isProductionEnvironment({ NODE_ENV: 'production' })).toBe(true);
    expect(isProductionEnvironment({ NODE_ENV: 'production', JWT_SECRET: 'short' })).toBe(true);
    expect(isProductionEnvironment({ NODE_ENV: 'development' })).toBe(false);
    expect(isProductionEnvironment({})).toBe(false);
  });
});

describe('LOG_FORMAT', () => {
  it('unset: decided by the terminal; pretty or json when set; anything else refused', () => {
    const base = { NODE_ENV: 'test', JWT_SECRET: 'x'.repeat(32) };
    expect(loadConfig(base).logFormat).toBeUndefined();
    expect(loadConfig({ ...base, LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(loadConfig({ ...base, LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(configProblems({ ...base, LOG_FORMAT: 'xml' })).toEqual([
      'LOG_FORMAT must be one of pretty, json (got "xml")',
    ]);
  });
});
