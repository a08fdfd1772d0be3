import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort, stopProcess, waitFor } from './processes.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Instance {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** Graceful stop (SIGTERM: in-flight requests finish), SIGKILL after 10 s. Idempotent. */
  stop(): Promise<void>;
  /** What the process wrote to stdout and stderr (its last 100 lines). */
  output(): string;
}

export interface InstanceOptions {
  /** The server's whole environment besides PATH, HOST and PORT: nothing leaks from the test process. */
  readonly env: Readonly<Record<string, string>>;
  /** Ports to pick a free one from (inclusive). */
  readonly ports?: readonly [number, number];
  readonly readyTimeoutMs?: number;
}

/**
 * The API as it runs in production: `node src/server.ts`, a process of its own on a loopback
 * port, ready once GET /health/ready answers 200. A port taken between choosing and listening
 * is retried with another.
 *
 * @example
 * ```ts
 * const a = await startInstance({ env: { DATABASE_URL: url, JWT_SECRET: secret, REDIS_URL: 'redis://127.0.0.1:6379' } });
 * await fetch(`${a.url}/health/live`);
 * await a.stop();
 * ```
 */
export async function startInstance(options: InstanceOptions): Promise<Instance> {
  const [from, to] = options.ports ?? [3400, 3499];
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(from, to);
    const lines: string[] = [];
    const child = spawn(process.execPath, ['src/server.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...options.env, HOST: '127.0.0.1', PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => {
      lines.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((line) => line !== ''),
      );
      lines.splice(0, Math.max(0, lines.length - 100));
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const url = `http://127.0.0.1:${port}`;
    const instance: Instance = {
      url,
      port,
      stop: () => stopProcess(child, 'SIGTERM', 10_000),
      output: () => lines.join('\n'),
    };
    try {
      await waitFor(
        `the API on ${url}`,
        async () => {
          if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}:\n${instance.output()}`);
          const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) });
          return response.status === 200;
        },
        options.readyTimeoutMs ?? 30_000,
      );
      return instance;
    } catch (error) {
      lastError = error;
      await instance.stop();
      if (!instance.output().includes('EADDRINUSE')) break;
    }
  }
  throw lastError instanceof Error ? lastError : new Error('the API did not start', { cause: lastError });
}
