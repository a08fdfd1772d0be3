import closeWithGrace from 'close-with-grace';
import { databaseOf, reportFailure } from './platform/cli/report.ts';
import { ConfigError } from './platform/config/reader.ts';
import { loadConfig, loadEnvFile, type Config } from './platform/config.ts';
import { openServer, type RunningServer } from './lifecycle.ts';

/**
 * Ctrl-C in a terminal signals the whole foreground process group: node gets SIGINT from the
 * terminal and again from npm, which forwards it, milliseconds apart (and `npm run dev`'s watcher
 * forwards it once more). A repeat within this window is the same keypress, not "force". Someone
 * who means "now" presses again after reading "shutting down", which takes well over a second;
 * 1.5 s leaves room for a loaded machine delaying npm's forward, and costs nothing else.
 */
const REPEAT_SIGNAL_WINDOW_MS = 1_500;

/**
 * The process entry (`npm start`): validate the environment, then {@link openServer}; on
 * SIGINT/SIGTERM (during start-up too) finish in-flight requests within the grace period, then
 * close everything that was opened, in reverse order. A second signal more than
 * {@link REPEAT_SIGNAL_WINDOW_MS} after the first, or the grace period running out, exits at once,
 * after stopping the embedded PostgreSQL, with one line saying what became of it.
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
  let stopDatabaseSync: (() => string) | undefined;
  const opening = openServer(config, {
    say,
    prettyLogs: config.logFormat === undefined ? process.stdout.isTTY : config.logFormat === 'pretty',
    signal: startup.signal,
    onDatabase: (stop) => {
      stopDatabaseSync = stop;
    },
  });

  /** Exits now, the embedded PostgreSQL stopped first (blocking), with one line saying why and what became of it. */
  const forceExit = (why: string, fields: Record<string, unknown>): never => {
    const database =
      stopDatabaseSync?.() ??
      'the database was not open yet (an embedded one still starting is adopted by the next start)';
    const line = `${why}; exiting now: ${database}`;
    if (running === undefined) say(line);
    else running.app.log.error(fields, line);
    process.exit(1);
  };

  let signalled: { signal: NodeJS.Signals; at: number } | undefined;
  let closing = false;
  // Installed before start-up finishes, so a signal that arrives half-way still closes what was opened.
  const grace = closeWithGrace(
    {
      delay: config.shutdownGraceMs,
      logger: { error: (message: unknown) => say(String(message)) },
      // SIGINT and SIGTERM are handled below: close-with-grace takes any repeat as "force".
      skip: ['SIGINT', 'SIGTERM'],
      onSecondSignal: (signal) => forceExit(`${signal} while shutting down`, { signal }),
      onTimeout: () => forceExit('requests still running after the grace period', { graceMs: config.shutdownGraceMs }),
    },
    async ({ err }) => {
      closing = true;
      startup.abort();
      const server = await opening.catch(() => undefined);
      if (server === undefined) return;
      if (err !== undefined) server.app.log.error({ err }, 'shutting down after an error');
      else server.app.log.info({ signal: signalled?.signal }, 'shutting down');
      await server.close();
    },
  );
  const onSignal = (signal: NodeJS.Signals) => {
    const now = performance.now();
    if (signalled === undefined) {
      signalled = { signal, at: now };
      // Already closing after an error: this signal only starts the clock for a later "force".
      if (!closing) grace.close();
      return;
    }
    const afterMs = Math.round(now - signalled.at);
    if (afterMs <= REPEAT_SIGNAL_WINDOW_MS) return; // the same Ctrl-C, delivered again by npm
    forceExit(`second ${signal} ${afterMs} ms after the first`, { signal, afterMs });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

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
