/**
 * Measures a proposed change to src/ without touching src/: the code under test (src/, db-types/,
 * migrations/, package.json of this run's snapshot) is copied twice into $TMPDIR/pgfb-bench-variants/,
 * one copy gets the patch from bench/patches/ (`patch -p1`), and both run as real servers side by
 * side with the same requests, rounds interleaved; a third runs the base with DB_POOL_MAX=20.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machineInfo, PROJECT_DIR, ROOT_DIR, log, type BenchSettings } from './lib/environment.ts';
import type { Seed } from './lib/database.ts';
import { SEED_PASSWORD } from './lib/database.ts';
import { measureOn, summarise, type HttpPoint, type RunSample } from './http.ts';
import { spawnServer } from './lib/processes.ts';
import { appEnv, login, type ServerSet } from './lib/servers.ts';

export interface PatchComparison {
  readonly patch: string;
  readonly baseCommit: string;
  readonly points: readonly HttpPoint[];
}

/** A copy of the code under test (this run's snapshot), optionally patched, runnable with the project's node_modules. */
function exportVariant(name: string, patchFile?: string): string {
  // Outside the work tree: tsc and ESLint must not see a second copy of src/.
  const dir = path.join(os.tmpdir(), 'pgfb-bench-variants', name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const part of ['src', 'db-types', 'migrations', 'package.json']) {
    fs.cpSync(path.join(ROOT_DIR, part), path.join(dir, part), { recursive: true });
  }
  fs.symlinkSync(path.join(PROJECT_DIR, 'node_modules'), path.join(dir, 'node_modules'));
  if (patchFile !== undefined) execFileSync('patch', ['-p1', '--quiet', '-d', dir, '-i', patchFile]);
  return dir;
}

export async function runPatchComparison(options: {
  settings: BenchSettings;
  servers: ServerSet;
  seed: Seed;
  databaseUrl: string;
  clusterDir: string | undefined;
  patchFile: string;
  connections: number;
}): Promise<PatchComparison> {
  const { settings, servers, seed } = options;
  const machine = machineInfo();
  const baseCommit = `${machine.commit} (${machine.source})`;
  const head = exportVariant('base');
  const variants: { name: string; dir: string; env?: Record<string, string> }[] = [
    { name: 'base', dir: head },
    { name: `base + ${path.basename(options.patchFile)}`, dir: exportVariant('patched', options.patchFile) },
    // Not a patch: the setting that moves pool utilisation, measured on the same requests.
    { name: 'base, DB_POOL_MAX=20', dir: head, env: { DB_POOL_MAX: '20' } },
  ];
  for (const [i, variant] of variants.entries()) {
    const port = settings.portBase + 7 + i;
    await servers.add(variant.name, () =>
      spawnServer({
        name: `variant-${i}`,
        script: path.join(variant.dir, 'src/server.ts'),
        port,
        env: { ...appEnv({ port, databaseUrl: options.databaseUrl, settings }), ...variant.env },
      }),
    );
  }
  // A plain user reading themself: the common GET /users/:id, and GET /auth/me.
  const email = seed.emails[0] ?? '';
  const userId = seed.userIds[0] ?? '';
  const first = await servers.get(variants[0]?.name ?? '');
  if (first === undefined) throw new Error('the base variant did not start');
  const session = await login(first.baseUrl, email, SEED_PASSWORD);
  const headers = { authorization: `Bearer ${session.accessToken}` };
  const cases = [
    { scenario: 'GET /users/:id (own id, plain user)', path: `/users/${userId}` },
    { scenario: 'GET /auth/me', path: '/auth/me' },
  ];
  const samples = new Map<string, RunSample[]>();
  for (const variant of variants) {
    // Fresh processes: warm their JIT and pools first.
    await measureOn(servers, variant.name, {
      connections: options.connections,
      seconds: 3,
      requests: [{ method: 'GET', path: cases[0]?.path ?? '/' }],
      headers,
      scrape: false,
      warmupSeconds: 0,
    });
  }
  for (let round = 0; round < settings.rounds; round++) {
    for (const item of cases) {
      const order = variants.map((_, i) => variants[(i + round) % variants.length]).filter((v) => v !== undefined);
      for (const variant of order) {
        const sample = await measureOn(servers, variant.name, {
          connections: options.connections,
          seconds: Math.max(1, settings.httpSeconds - 1),
          requests: [{ method: 'GET', path: item.path }],
          headers,
          scrape: true,
          warmupSeconds: 0.5,
          clusterDir: options.clusterDir,
        });
        if (sample === undefined) continue;
        const key = `${item.scenario}|${variant.name}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
        log(
          `patch round ${round + 1}: ${item.scenario} on ${variant.name}: ${Math.round(sample.load.okPerSecond)} ok/s, p95 ${sample.load.p95.toFixed(1)} ms, ` +
            `cpu/req ${Math.round(sample.cpu?.serverUs ?? Number.NaN)}µs, non2xx ${sample.load.non2xx}`,
        );
      }
    }
  }
  for (const variant of variants) await (await servers.get(variant.name))?.stop();
  fs.rmSync(path.join(os.tmpdir(), 'pgfb-bench-variants'), { recursive: true, force: true });
  return {
    patch: path.relative(PROJECT_DIR, options.patchFile),
    baseCommit,
    points: [...samples.entries()].map(([key, runs]) => {
      const [scenario = '', target = ''] = key.split('|');
      return { scenario, target, connections: options.connections, samples: runs, summary: summarise(runs) };
    }),
  };
}
