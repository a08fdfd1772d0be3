import path from 'node:path';
import type { EnvReader } from './reader.ts';

export type NodeEnv = 'development' | 'production' | 'test';

/** How the process runs: where it listens, what it logs, where it keeps its files. */
export interface ProcessConfig {
  readonly env: NodeEnv;
  readonly host: string;
  readonly port: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `pretty` (pino-pretty) or `json` lines; `undefined`: pretty when stdout is a terminal. */
  readonly logFormat: 'pretty' | 'json' | undefined;
  /** Where the embedded PostgreSQL, its password and the generated JWT secret live. */
  readonly dataDir: string;
  /** How long in-flight requests get to finish after SIGINT/SIGTERM. */
  readonly shutdownGraceMs: number;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const NODE_ENVS = ['development', 'production', 'test'] as const;
const LOG_FORMATS = ['pretty', 'json'] as const;

/** NODE_ENV, which every other section may depend on. */
export function readNodeEnv(reader: EnvReader): NodeEnv {
  return reader.oneOf('NODE_ENV', NODE_ENVS, 'development');
}

export function readProcessConfig(reader: EnvReader, env: NodeEnv, cwd: string): ProcessConfig {
  return {
    env,
    host: reader.string('HOST') ?? '127.0.0.1',
    port: reader.integer('PORT', 3000, 0, 65535),
    logLevel: reader.oneOf('LOG_LEVEL', LOG_LEVELS, env === 'test' ? 'silent' : 'info'),
    logFormat: reader.string('LOG_FORMAT') === undefined ? undefined : reader.oneOf('LOG_FORMAT', LOG_FORMATS, 'json'),
    dataDir: path.resolve(cwd, reader.string('DATA_DIR') ?? '.data'),
    shutdownGraceMs: reader.integer('SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
  };
}
