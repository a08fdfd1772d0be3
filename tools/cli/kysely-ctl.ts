import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KYSELY_CTL = path.join(ROOT, 'node_modules', '.bin', 'kysely');

/**
 * Runs a kysely-ctl command with this terminal, under this process's Node (its bin's shebang
 * would take whatever `node` is on PATH). Resolves to the exit code.
 *
 * @example
 * ```ts
 * process.exitCode = await runKyselyCtl(['migrate:down']);
 * ```
 */
export async function runKyselyCtl(args: readonly string[]): Promise<number> {
  const child = spawn(process.execPath, [KYSELY_CTL, '--no-outdated-check', ...args], { cwd: ROOT, stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      resolve(code ?? (signal === null ? 1 : 128));
    });
  });
}
