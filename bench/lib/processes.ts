import fs from 'node:fs';
import path from 'node:path';
import { startServerProcess, type ServerProcess as Started } from '../../test/helpers/server-process.ts';
import { TMP_DIR } from './environment.ts';

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
 * Starts `node <script>` with Node 24 (this process's binary) through the tests' one server
 * starter ({@link startServerProcess}) and waits until it answers on its port. Its stderr goes to
 * bench/.tmp/<name>.stderr.log for the post-mortem of a failed start; an exit the bench did not ask
 * for is reported there and on stderr.
 */
export async function spawnServer(options: SpawnOptions): Promise<ServerProcess> {
  fs.mkdirSync(TMP_DIR, { recursive: true });
  const stderrFile = path.join(TMP_DIR, `${options.name}.stderr.log`);
  const started: Started = await startServerProcess({
    script: options.script,
    args: options.args ?? [],
    nodeArgs: options.cpuProfileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`],
    port: options.port,
    env: { HOME: process.env.HOME ?? '', ...options.env },
    readyPath: options.readyPath ?? '/health/live',
    readyTimeoutMs: 60_000,
    stdoutFile: options.stdoutFile ?? '/dev/null',
    stderrFile,
  }).catch((error: unknown) => {
    throw new Error(`${options.name} did not become ready`, { cause: error });
  });
  let stopping = false;
  void started.exited.then(({ code, signal }) => {
    if (stopping) return;
    const message = `${options.name} (pid ${started.pid}) exited unexpectedly: code ${code ?? '-'}, signal ${signal ?? '-'}`;
    process.stderr.write(`[bench] ${message}\n`);
    fs.appendFileSync(stderrFile, `\n[bench] ${message}\n`);
  });
  const server: ServerProcess = {
    name: options.name,
    port: started.port,
    pid: started.pid,
    baseUrl: started.baseUrl,
    get alive() {
      return started.alive;
    },
    async stop(graceMs = 15_000) {
      running.delete(server);
      stopping = true;
      await started.stop(graceMs);
    },
  };
  running.add(server);
  return server;
}

/** Stops every server still running (used on the way out, also after a failure). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...running].map((server) => server.stop()));
}
