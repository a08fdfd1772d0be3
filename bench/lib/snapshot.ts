import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT_DIR } from './environment.ts';

/**
 * The code a run measures, frozen when it starts. Other developers edit src/ in this work tree
 * while a 15-minute run goes on; servers started at different moments would otherwise run
 * different code. `worktree` (the default): src/, db-types/, migrations/ and package.json copied
 * from the work tree as it is at the start; `head` (BENCH_SOURCE=head): the same exported from HEAD
 * with git archive, so the report's commit is exactly what ran.
 * bench/ and test/helpers/ (process helpers) always come from the work tree; node_modules is linked.
 */
export interface Snapshot {
  readonly dir: string;
  readonly commit: string;
  readonly label: string;
  readonly srcDirty: boolean;
}

export function createSnapshot(source: 'head' | 'worktree'): Snapshot {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT_DIR, encoding: 'utf8' }).trim();
  const commit = git('rev-parse', '--short=12', 'HEAD');
  const srcDirty = git('status', '--porcelain', '--', 'src', 'db-types', 'migrations') !== '';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgfb-bench-snapshot-'));
  const parts = ['src', 'db-types', 'migrations', 'package.json'];
  if (source === 'head') {
    const archive = execFileSync('git', ['archive', 'HEAD', ...parts], { cwd: ROOT_DIR, maxBuffer: 256 * 1024 * 1024 });
    execFileSync('tar', ['-x', '-C', dir], { input: archive });
  } else {
    for (const part of parts) fs.cpSync(path.join(ROOT_DIR, part), path.join(dir, part), { recursive: true });
  }
  fs.cpSync(path.join(ROOT_DIR, 'bench'), path.join(dir, 'bench'), {
    recursive: true,
    filter: (file) => !/[/\\]bench[/\\](\.tmp|results)([/\\]|$)/.test(file.slice(ROOT_DIR.length)),
  });
  // bench/lib/processes.ts waits and stops with the tests' process helpers (test/helpers/processes.ts).
  fs.cpSync(path.join(ROOT_DIR, 'test/helpers'), path.join(dir, 'test/helpers'), { recursive: true });
  fs.symlinkSync(path.join(ROOT_DIR, 'node_modules'), path.join(dir, 'node_modules'));
  return { dir, commit, label: source === 'head' ? 'HEAD' : 'work tree copied at start', srcDirty };
}
