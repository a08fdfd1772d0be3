import closeWithGrace from 'close-with-grace';
import { databaseOf, reportFailure } from './cli/report.ts';
import { ConfigError, loadConfig, loadEnvFile, type Config } from './config.ts';
import { openServer, type RunningServer } from './lifecycle.ts';

/**
 * The process entry (`npm start`): validate the environment, then {@link openServer}; on
 * SIGINT/SIGTERM (during start-up too) finish in-flight requests within the grace period, then
 * close everything that was opened, in reverse order.
 */
async function main(): Promise<void> {
  const say = (message: string) => process.stderr.write(`${message}\n`);
  let config: Config;
  try {
    const envFile = loadEnvFile();
    if (envFile !== undefined) say(`read the environment from ${envFile}`);
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }

  const startup = new AbortController();
  let running: RunningServer | undefined;
  const opening = openServer(config, {
    say,
    prettyLogs: config.logFormat === undefined ? process.stdout.isTTY : config.logFormat === 'pretty',
    signal: startup.signal,
  });
  // Installed before start-up finishes, so a signal that arrives half-way still closes what was opened.
  closeWithGrace(
    {
      delay: config.shutdownGraceMs,
      logger: { error: (message: unknown) => say(String(message)) },
      // The grace period ran out and the process exits at once: the embedded server must not be
      // left behind, so it is stopped synchronously (its in-flight queries are cut off).
      onTimeout: () => {
        running?.app.log.error(
          { graceMs: config.shutdownGraceMs },
          'requests still running after the grace period; exiting',
        );
        running?.stopDatabaseSync();
      },
    },
    async ({ signal, err }) => {
      startup.abort();
      const server = await opening.catch(() => undefined);
      if (server === undefined) return;
      if (err !== undefined) server.app.log.error({ err }, 'shutting down after an error');
      else server.app.log.info({ signal }, 'shutting down');
      await server.close();
    },
  );

  try {
    running = await opening;
  } catch (error) {
    // A signal during start-up: the handler above is closing down; nothing failed.
    if (startup.signal.aborted) return;
    reportFailure('npm start', error, { logLevel: config.logLevel, database: databaseOf(config.database.url) });
    process.exit(1);
  }
}

await main();
