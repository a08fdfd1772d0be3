import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sleep } from './stats.ts';
import { ROOT_DIR, TMP_DIR } from './environment.ts';

/** A server under test, in a process of its own, listening on 127.0.0.1. */
export interface ServerProcess {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  readonly baseUrl: string;
  readonly alive: boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<ServerProcess>();

export interface SpawnOptions {
  readonly name: string;
  readonly script: string;
  readonly args?: readonly string[];
  readonly port: number;
  readonly env: Readonly<Record<string, string>>;
  /** Write a V8 CPU profile (--cpu-prof) to this directory when the process exits. */
  readonly cpuProfileDir?: string;
  /** Where stdout goes (the app's request log at info): /dev/null by default. */
  readonly stdoutFile?: string;
  /** Path answering 200 once the server is ready. */
  readonly readyPath?: string;
}

/**
 * Starts `node <script>` with Node 24 (this process's binary) and waits until it answers on its
 * port. Its stderr goes to bench/.tmp/<name>.stderr.log for the post-mortem of a failed start.
 */
export async function spawnServer(options: SpawnOptions): Promise<ServerProcess> {
  fs.mkdirSync(TMP_DIR, { recursive: true });
  const stderrPath = path.join(TMP_DIR, `${options.name}.stderr.log`);
  const stdout = fs.openSync(options.stdoutFile ?? '/dev/null', 'w');
  const stderr = fs.openSync(stderrPath, 'w');
  const nodeArgs = options.cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`];
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, options.script, ...(options.args ?? [])], {
    cwd: ROOT_DIR,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
    stdio: ['ignore', stdout, stderr],
  });
  fs.closeSync(stdout);
  fs.closeSync(stderr);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${options.name}: spawn failed`);
  const state = { exited: false, stopping: false };
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      state.exited = true;
      if (!state.stopping) {
        const message = `${options.name} (pid ${pid}) exited unexpectedly: code ${code ?? '-'}, signal ${signal ?? '-'}`;
        process.stderr.write(`[bench] ${message}\n`);
        fs.appendFileSync(stderrPath, `\n[bench] ${message}\n`);
      }
      resolve();
    }),
  );

  const baseUrl = `http://127.0.0.1:${options.port}`;
  const server: ServerProcess = {
    name: options.name,
    port: options.port,
    pid,
    baseUrl,
    get alive() {
      return !state.exited;
    },
    async stop(graceMs = 15_000) {
      running.delete(server);
      state.stopping = true;
      if (state.exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(server);

  const deadline = Date.now() + 60_000;
  const readyUrl = `${baseUrl}${options.readyPath ?? '/health/live'}`;
  while (Date.now() < deadline) {
    if (state.exited) break;
    try {
      const response = await fetch(readyUrl, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return server;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  await server.stop();
  const tail = fs.readFileSync(stderrPath, 'utf8').split('\n').slice(-20).join('\n');
  throw new Error(`${options.name} did not become ready on ${readyUrl}:\n${tail}`);
}

/** Stops every server still running (used on the way out, also after a failure). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...running].map((server) => server.stop()));
}
