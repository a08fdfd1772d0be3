import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stopProcess, waitFor } from '../../test/helpers/processes.ts';
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
 * port. Unlike the tests' starter (test/helpers/server-process.ts), which keeps the output in
 * memory, a benchmark's server writes its request log to /dev/null (or `stdoutFile`) and its stderr
 * to bench/.tmp/<name>.stderr.log for the post-mortem; an exit the bench did not ask for is
 * reported there and on stderr.
 */
export async function spawnServer(options: SpawnOptions): Promise<ServerProcess> {
  fs.mkdirSync(TMP_DIR, { recursive: true });
  const stderrFile = path.join(TMP_DIR, `${options.name}.stderr.log`);
  const stdoutFd = fs.openSync(options.stdoutFile ?? '/dev/null', 'w');
  const stderrFd = fs.openSync(stderrFile, 'w');
  const nodeArgs = options.cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`];
  const child = spawn(process.execPath, [...nodeArgs, options.script, ...(options.args ?? [])], {
    cwd: ROOT_DIR,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      ...options.env,
      HOST: '127.0.0.1',
      PORT: String(options.port),
    },
    stdio: ['ignore', stdoutFd, stderrFd],
  });
  fs.closeSync(stdoutFd);
  fs.closeSync(stderrFd);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  const baseUrl = `http://127.0.0.1:${options.port}`;
  try {
    const state = await waitFor(
      `${options.name} on ${baseUrl}`,
      async () => {
        if (!alive()) return 'exited';
        const response = await fetch(`${baseUrl}${options.readyPath ?? '/health/live'}`, {
          signal: AbortSignal.timeout(2_000),
        }).catch(() => undefined);
        return response?.status === 200 ? 'ready' : false;
      },
      60_000,
      100,
    );
    if (state === 'exited') {
      const { code, signal } = await exited;
      throw new Error(`exited (code ${code}, signal ${signal}) before it was ready`);
    }
  } catch (error) {
    await stopProcess(child, 'SIGKILL');
    const output = fs.readFileSync(stderrFile, 'utf8').split('\n').slice(-30).join('\n');
    throw new Error(`${options.name} did not become ready\n--- ${stderrFile} ---\n${output}`, { cause: error });
  }
  let stopping = false;
  void exited.then(({ code, signal }) => {
    if (stopping) return;
    const message = `${options.name} (pid ${child.pid}) exited unexpectedly: code ${code ?? '-'}, signal ${signal ?? '-'}`;
    process.stderr.write(`[bench] ${message}\n`);
    fs.appendFileSync(stderrFile, `\n[bench] ${message}\n`);
  });
  const server: ServerProcess = {
    name: options.name,
    port: options.port,
    pid: child.pid ?? 0,
    baseUrl,
    get alive() {
      return alive();
    },
    async stop(graceMs = 15_000) {
      running.delete(server);
      stopping = true;
      await stopProcess(child, 'SIGTERM', graceMs);
    },
  };
  running.add(server);
  return server;
}

/** Stops every server still running (used on the way out, also after a failure). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...running].map((server) => server.stop()));
}
