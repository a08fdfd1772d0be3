import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort, releasePort, stopProcess, waitFor } from './processes.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A server (by default the API, `node src/server.ts`) in a process of its own on 127.0.0.1. */
export interface ServerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly baseUrl: string;
  /** Resolves when the process has exited, with its exit code or the signal that ended it. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly alive: boolean;
  /** The last lines the process wrote to its piped stdout and stderr. */
  output(): string;
  /** SIGTERM (in-flight requests finish), SIGKILL after `graceMs`; resolves once it exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export interface ServerProcessOptions {
  /** The process's whole environment besides PATH, HOST and PORT: nothing leaks from the caller's. */
  readonly env: Readonly<Record<string, string>>;
  /** The port to listen on, or a range to pick a free one from (retried when taken meanwhile). */
  readonly port: number | readonly [number, number];
  /** Relative to the project root; `src/server.ts` by default. */
  readonly script?: string;
  readonly args?: readonly string[];
  /** The path that answers 200 once the server is ready: `/health/ready` by default. */
  readonly readyPath?: string;
  readonly readyTimeoutMs?: number;
}

const KEPT_LINES = 2_000;

/**
 * Starts the server and resolves once `readyPath` answers 200; fails with the process's output
 * when it exits first or is not ready in time. The one way tests start a server process (the
 * reliability suite's `startServer` adds only its own defaults).
 *
 * @example
 * ```ts
 * const api = await startServerProcess({ env: { DATABASE_URL: url, JWT_SECRET: secret }, port: [3400, 3499] });
 * await fetch(`${api.baseUrl}/health/live`);
 * await api.stop();
 * ```
 */
export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  let lastError: unknown;
  let lastOutput = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = typeof options.port === 'number' ? options.port : await freePort(...options.port);
    const server = spawnOnce(options, port);
    try {
      await waitFor(
        `${options.script ?? 'the API'} on ${server.baseUrl}`,
        async () => {
          if (!server.alive) {
            const { code, signal } = await server.exited;
            throw new Error(`exited (code ${code}, signal ${signal}) before it was ready`);
          }
          const response = await fetch(`${server.baseUrl}${options.readyPath ?? '/health/ready'}`, {
            signal: AbortSignal.timeout(2_000),
          });
          return response.status === 200;
        },
        options.readyTimeoutMs ?? 45_000,
        100,
      );
      return server;
    } catch (error) {
      lastError = error;
      await server.stop();
      lastOutput = server.output();
      if (typeof options.port === 'number' || !lastOutput.includes('EADDRINUSE')) break;
    }
  }
  const reason = lastError instanceof Error ? lastError.message : String(lastError);
  throw new Error(`the server did not start: ${reason}\n--- server output ---\n${lastOutput}`, { cause: lastError });
}

function spawnOnce(options: ServerProcessOptions, port: number): ServerProcess {
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(
      ...chunk
        .toString('utf8')
        .split('\n')
        .filter((line) => line !== ''),
    );
    lines.splice(0, Math.max(0, lines.length - KEPT_LINES));
  };
  const child = spawn(process.execPath, [options.script ?? 'src/server.ts', ...(options.args ?? [])], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...options.env, HOST: '127.0.0.1', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const output = () => lines.join('\n');
  return {
    child,
    pid: child.pid ?? 0,
    port,
    baseUrl,
    exited,
    get alive() {
      return child.exitCode === null && child.signalCode === null;
    },
    output,
    async stop(graceMs = 10_000) {
      await stopProcess(child, 'SIGTERM', graceMs);
      if (typeof options.port !== 'number') releasePort(port);
    },
  };
}
