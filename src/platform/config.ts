import { existsSync } from 'node:fs';
import path from 'node:path';
import { readAuthConfig } from './config/auth.ts';
import { readDatabaseConfig, readMigrationConfig, readPoolMode } from './config/database.ts';
import { readEmailConfig } from './config/email.ts';
import { readDocsConfig, readHttpConfig } from './config/http.ts';
import { readMaintenanceConfig } from './config/maintenance.ts';
import { readMetricsConfig } from './config/metrics.ts';
import { readNodeEnv, readProcessConfig, type ProcessConfig } from './config/process.ts';
import { readRedisConfig } from './config/redis.ts';
import { EnvReader, type Env, type SectionContext } from './config/reader.ts';
import { parseOAuthConfig, type OAuthConfig } from '../oauth/config.ts';

/**
 * Every section of the configuration and its reader (a file of src/platform/config/), read in
 * this order: a new section is one file and one line here.
 */
const SECTIONS = {
  database: readDatabaseConfig,
  migrations: readMigrationConfig,
  auth: readAuthConfig,
  http: readHttpConfig,
  metrics: readMetricsConfig,
  docs: readDocsConfig,
  redis: readRedisConfig,
  maintenance: readMaintenanceConfig,
  email: readEmailConfig,
} satisfies Record<string, (reader: EnvReader, context: SectionContext) => unknown>;

type Sections = { readonly [K in keyof typeof SECTIONS]: ReturnType<(typeof SECTIONS)[K]> };

/**
 * The whole environment of the process, read and validated once.
 *
 * Nothing else in `src/` reads `process.env`: entry points call {@link loadConfig} and pass the
 * result (or the parts of it they need) down as arguments.
 */
export interface Config extends ProcessConfig, Sections {
  /** Apply pending migrations when the server starts. */
  readonly migrateOnStart: boolean;
  /** Sign-in through other identity providers (OIDC_PROVIDERS, OIDC_<ID>_*, API_URL, OAUTH_REDIRECT_ALLOWLIST). */
  readonly oauth: OAuthConfig;
}

/**
 * Loads `<cwd>/.env` into the environment when the process runs as an npm script (`npm start`,
 * `npm run migrate`, …) and the file exists; variables already set win over the file. Processes
 * started otherwise (a test's child server, a process manager) get exactly the environment they
 * were given. Returns the file that was read, if any.
 *
 * @example
 * ```ts
 * loadEnvFile(); // '/srv/app/.env' when `npm start` found one
 * const config = loadConfig();
 * ```
 */
export function loadEnvFile(cwd: string = process.cwd()): string | undefined {
  const file = path.join(cwd, '.env');
  if (process.env.npm_lifecycle_event === undefined || !existsSync(file)) return undefined;
  process.loadEnvFile(file);
  return file;
}

/**
 * Whether NODE_ENV names production, read before (and whatever the outcome of) the full
 * validation: development-only commands refuse production first, even where a production
 * configuration would be incomplete.
 */
export function isProductionEnvironment(env: Env = process.env): boolean {
  return env.NODE_ENV === 'production';
}

/**
 * Reads and validates the environment.
 *
 * @example
 * ```ts
 * const config = loadConfig({ PORT: '8080', DATABASE_URL: 'postgres://localhost/app' });
 * config.port; // 8080
 * ```
 * @throws {ConfigError} listing every variable that is malformed or missing.
 */
export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  const reader = new EnvReader(env);
  const context: SectionContext = { env: readNodeEnv(reader), poolMode: readPoolMode(reader) };
  const sections = readSections(reader, context);
  const processConfig = readProcessConfig(reader, context.env, cwd);
  const config: Config = {
    ...processConfig,
    ...sections,
    migrateOnStart: reader.boolean('MIGRATE_ON_START', sections.database.url === undefined),
    // Read beside its feature (it needs the port and APP_URL, which other sections own).
    oauth: parseOAuthConfig(env, {
      nodeEnv: context.env,
      port: processConfig.port,
      appUrl: sections.email.appUrl,
      problem: (message) => {
        reader.problem(message);
      },
    }),
  };
  reader.assertValid();
  return config;
}

function readSections(reader: EnvReader, context: SectionContext): Sections {
  // Object.fromEntries forgets which reader gave which key; SECTIONS' own type says it.
  return Object.fromEntries(Object.entries(SECTIONS).map(([key, read]) => [key, read(reader, context)])) as Sections;
}
