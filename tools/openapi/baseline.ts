import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { ApiDocument } from './breaking.ts';
import { DOCUMENT_PATH } from './generate.ts';

/** The committed document a new one is compared with, and where it came from. */
export interface Baseline {
  readonly ref: string;
  readonly document: ApiDocument;
}

/**
 * The document breaking changes are measured against. `--base REF` names a commit (CI on a pull
 * request passes the target branch). Without it: HEAD's document when the working copy changed it,
 * otherwise HEAD's first parent's, so a commit (or a merge into main) is checked against what came
 * before it. Undefined when that commit has no document (the first one) or git is unavailable.
 */
export async function baselineDocument(cwd: string, base: string | undefined): Promise<Baseline | undefined> {
  const working = await readFile(`${cwd}/${DOCUMENT_PATH}`, 'utf8').catch(() => undefined);
  const ref = base ?? (working !== undefined && working === committed(cwd, 'HEAD') ? 'HEAD^1' : 'HEAD');
  const text = committed(cwd, ref);
  return text === undefined ? undefined : { ref, document: JSON.parse(text) as ApiDocument };
}

function committed(cwd: string, ref: string): string | undefined {
  try {
    return execFileSync('git', ['show', `${ref}:${DOCUMENT_PATH}`], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch {
    return undefined;
  }
}
