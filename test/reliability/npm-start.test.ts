import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { embeddedClusterDirectory } from '../../src/platform/db/embedded/location.ts';
import { startEmbeddedPostgres } from '../../src/platform/db/embedded.ts';
import { freePort, isPortFree, stopProcess, waitFor } from '../helpers/processes.ts';
import { httpRequest, postgresProcessesOf, ROOT, scratchDirectory, type OnFinished } from './support.ts';

// What a newcomer does with the README: real `npm start` / `npm run …` processes, real signals,
// a real embedded PostgreSQL under a directory of the test's own.

const SECRET = 'a-test-secret-that-is-long-enough-0123456789';

interface Started {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  output(): string;
}

/** `npm <args>` in the project, with only the environment given (plus PATH and HOME). */
function npm(
  onFinished: OnFinished,
  args: readonly string[],
  env: Record<string, string>,
  input?: string,
  cwd: string = ROOT,
): Started {
  const child = spawn('npm', ['--silent', ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stdin.end(input);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      resolve(code);
    }),
  );
  onFinished(async () => {
    for (const pid of descendantsOf(child.pid ?? 0)) kill(pid);
    await stopProcess(child, 'SIGKILL');
  });
  return { child, exited, output: () => output };
}

/** Every live process below `pid` (children, grandchildren…), found through /proc. */
function descendantsOf(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] !== 'Z') parents.set(Number(entry), Number(fields[1]));
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift();
    for (const [child, ppid] of parents) {
      if (ppid === parent) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

async function ready(baseUrl: string, started: Started): Promise<void> {
  await waitFor(
    `the server on ${baseUrl}\n${started.output()}`,
    async () => {
      if (started.child.exitCode !== null) throw new Error(`exited early:\n${started.output()}`);
      return (await httpRequest(baseUrl, '/health/ready', { timeoutMs: 2_000 })).status === 200;
    },
    60_000,
  );
}

async function serverEnv(onFinished: OnFinished, name: string, dataDir?: string) {
  const dir = dataDir ?? (await scratchDirectory(onFinished, name));
  const port = await freePort(3600, 3699);
  const pgPort = await freePort(55600, 55699);
  return {
    dataDir: dir,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    env: {
      NODE_ENV: 'development',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dir,
      EMBEDDED_PG_PORT: String(pgPort),
      JWT_SECRET: SECRET,
    },
  };
}

async function expectNothingLeft(dataDir: string, port: number, pids: readonly number[]): Promise<void> {
  await waitFor(
    'every process to be gone',
    async () => pids.every((pid) => !alive(pid)) && postgresProcessesOf(dataDir).length === 0,
    30_000,
  );
  expect(await isPortFree(port)).toBe(true);
}

describe('npm start, as the README runs it', { timeout: 180_000 }, () => {
  it('stops the server and its embedded PostgreSQL when `npm start` (the pid `$!` names) gets SIGTERM', async () => {
    const server = await serverEnv(onTestFinished, 'npm-sigterm');
    const started = npm(onTestFinished, ['start'], server.env);
    await ready(server.baseUrl, started);
    const below = descendantsOf(started.child.pid ?? 0);
    expect(postgresProcessesOf(server.dataDir).length).toBeGreaterThan(0);

    started.child.kill('SIGTERM');
    await started.exited;
    await expectNothingLeft(server.dataDir, server.port, below);
    expect(started.output()).toMatch(/"signal":"SIGTERM".*"msg":"shutting down"/);
  });

  it("runs the README's curl block as pasted, one JSON result per line, and leaves nothing running", async () => {
    const server = await serverEnv(onTestFinished, 'npm-readme');
    const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
    const block = /### Try it with curl[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block, 'the README has a "Try it with curl" block').toBeDefined();
    // The block as written, with PORT set to the test's own port (a developer's server may hold
    // 3000): a block that hard-codes 3000 would wait for ever.
    expect(block).not.toContain('localhost:3000');
    const script = block ?? '';
    const shell = spawn('bash', ['-c', script], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...server.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    shell.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    shell.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => shell.once('exit', resolve));
    expect(code, stderr).toBe(0);

    // The server logs JSON lines to the same terminal, and a log record may land right after a
    // curl's body, before its newline: the block's own results are what is not a log record.
    const results = stdout
      .replaceAll('{"level"', '\n{"level"')
      .split('\n')
      .filter((line) => line.startsWith('{') && !line.startsWith('{"level"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(results.map((result) => Object.keys(result).sort().join(','))).toEqual([
      'user', // register
      'accessToken,deviceToken,expiresIn,refreshToken,tokenType,user', // login
      'user', // me
      'items,nextCursor', // users
      'accessToken,expiresIn,refreshToken,tokenType', // refresh
      'checks,status', // ready
    ]);
    expect(results[2]).toMatchObject({ user: { email: 'admin@example.com', role: 'admin' } });
    expect(results[5]).toMatchObject({ status: 'ok' });
    // `kill $!` at the end stops the server and its PostgreSQL.
    await expectNothingLeft(server.dataDir, server.port, []);
  });

  it('survives `npm start &` and `npm run user:create` initialising a new DATA_DIR at the same moment', async () => {
    const server = await serverEnv(onTestFinished, 'npm-race');
    const started = npm(onTestFinished, ['start'], server.env);
    const creator = npm(
      onTestFinished,
      ['run', 'user:create', '--', '--email', 'admin@example.com', '--name', 'Admin', '--role', 'admin'],
      server.env,
      'an admin passphrase\n',
    );
    expect(await creator.exited, creator.output()).toBe(0);
    expect(creator.output()).toMatch(/created admin admin@example\.com/);
    await ready(server.baseUrl, started);
    const login = await httpRequest(server.baseUrl, '/auth/login', {
      body: { email: 'admin@example.com', password: 'an admin passphrase' },
    });
    expect(login.status).toBe(200);
    for (const output of [started.output(), creator.output()]) expect(output).not.toMatch(/remove|delete|lost/i);

    const below = descendantsOf(started.child.pid ?? 0);
    started.child.kill('SIGTERM');
    await expectNothingLeft(server.dataDir, server.port, below);
  });

  it('keeps the database up for a second server on the same DATA_DIR after the first stops', async () => {
    const first = await serverEnv(onTestFinished, 'npm-two');
    const second = await serverEnv(onTestFinished, 'npm-two', first.dataDir);
    const one = npm(onTestFinished, ['start'], first.env);
    await ready(first.baseUrl, one);
    const two = npm(onTestFinished, ['start'], { ...second.env, EMBEDDED_PG_PORT: first.env.EMBEDDED_PG_PORT });
    await ready(second.baseUrl, two);
    const firstPids = descendantsOf(one.child.pid ?? 0);

    one.child.kill('SIGTERM');
    await one.exited;
    await waitFor('the first server to be gone', async () => firstPids.every((pid) => !alive(pid)), 30_000);
    expect(one.output()).toMatch(/embedded PostgreSQL left running: still used by process/);
    expect((await httpRequest(second.baseUrl, '/health/ready')).status).toBe(200);
    const register = await httpRequest(second.baseUrl, '/auth/register', {
      body: { email: 'second@example.com', password: 'correct horse battery', name: 'Second' },
    });
    expect(register.status).toBe(201);

    const secondPids = descendantsOf(two.child.pid ?? 0);
    two.child.kill('SIGTERM');
    await expectNothingLeft(first.dataDir, second.port, secondPids);
  });

  it('logs losing the database once and its return once, not a stack per request', async () => {
    const server = await serverEnv(onTestFinished, 'npm-outage');
    const started = npm(onTestFinished, ['start'], server.env);
    await ready(server.baseUrl, started);
    const postgres = postgresProcessesOf(server.dataDir)[0];
    expect(postgres).toBeDefined();
    process.kill(postgres ?? 0, 'SIGINT'); // fast shutdown, as a crash or an operator would
    await waitFor('PostgreSQL to stop', async () => postgresProcessesOf(server.dataDir).length === 0, 30_000);

    const login = { email: 'nobody@example.com', password: 'correct horse battery' };
    for (let i = 0; i < 5; i++) {
      expect((await httpRequest(server.baseUrl, '/auth/login', { body: login })).status).toBe(503);
    }
    const restarted = await startEmbeddedPostgres({
      dataDir: server.dataDir,
      port: Number(server.env.EMBEDDED_PG_PORT),
    });
    onTestFinished(() => restarted.stop());
    await waitFor(
      'the server to answer again',
      async () => (await httpRequest(server.baseUrl, '/auth/login', { body: login })).status === 401,
      30_000,
    );
    const output = started.output();
    expect(output.match(/lost the database/g)).toHaveLength(1);
    expect(output.match(/the database is back/g)).toHaveLength(1);
    expect(output).not.toMatch(/"stack"/);
  });
});

describe('an unreachable DATABASE_URL', { timeout: 60_000 }, () => {
  const url = 'postgres://app:hunter2secret@127.0.0.1:1/app';
  const commands: readonly (readonly string[])[] = [
    ['start'],
    ['run', 'migrate'],
    ['run', 'migrate:status'],
    ['run', 'db:check'],
    ['run', 'user:create', '--', '--email', 'a@example.com', '--name', 'A'],
  ];

  it.each(commands.map((args) => [args.slice(0, 2).join(' '), args] as const))(
    '`npm %s` says in one line which server, why and what to check, and exits non-zero',
    async (_name, args) => {
      const started = npm(
        onTestFinished,
        args,
        { DATABASE_URL: url, JWT_SECRET: SECRET },
        'a passphrase long enough\n',
      );
      expect(await started.exited).not.toBe(0);
      const lines = started
        .output()
        .split('\n')
        .filter((line) => line.trim() !== '' && !line.startsWith('◐'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /failed: Cannot connect to PostgreSQL at 127\.0\.0\.1:1 \(DATABASE_URL=postgres:\/\/app:\*\*\*\*@127\.0\.0\.1:1\/app\): connection refused.*Check that PostgreSQL runs/,
      );
      expect(started.output()).not.toContain('hunter2secret');
    },
  );

  it('shows the stack with LOG_LEVEL=debug', async () => {
    const started = npm(onTestFinished, ['start'], { DATABASE_URL: url, JWT_SECRET: SECRET, LOG_LEVEL: 'debug' });
    expect(await started.exited).toBe(1);
    expect(started.output()).toMatch(/Cannot connect to PostgreSQL at 127\.0\.0\.1:1/);
    expect(started.output()).toMatch(/ECONNREFUSED[\s\S]*\n\s+at /);
  });
});

describe('a checkout the postgres user cannot reach (root, a 0700 parent)', { timeout: 180_000 }, () => {
  it.runIf(process.getuid?.() === 0)(
    'keeps the cluster outside the checkout, says where, and stops it with the server',
    async () => {
      const privateDir = await scratchDirectory(onTestFinished, 'private');
      await fs.chmod(privateDir, 0o700);
      const checkout = path.join(privateDir, 'clone');
      await fs.mkdir(checkout);
      for (const entry of ['package.json', 'tsconfig.json', 'kysely.config.ts', 'src', 'migrations', 'db-types']) {
        await fs.cp(path.join(ROOT, entry), path.join(checkout, entry), { recursive: true });
      }
      await fs.symlink(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'));
      const dataDir = path.join(checkout, '.data');
      const clusterDir = await embeddedClusterDirectory(dataDir);
      expect(clusterDir).toMatch(/^\/var\/lib\/pg-fastify-backend\/[0-9a-f]{16}\/postgres$/);
      onTestFinished(async () => {
        await fs.rm(path.dirname(clusterDir), { recursive: true, force: true });
      });

      const server = await serverEnv(onTestFinished, 'private', dataDir);
      const started = npm(onTestFinished, ['start'], server.env, undefined, checkout);
      await ready(server.baseUrl, started);
      expect(started.output()).toContain(`the embedded cluster lives in ${clusterDir}`);
      const below = descendantsOf(started.child.pid ?? 0);
      started.child.kill('SIGTERM');
      await waitFor('every process to be gone', async () => below.every((pid) => !alive(pid)), 30_000);
      expect(await isPortFree(server.port)).toBe(true);
      await waitFor('its PostgreSQL to stop', async () => postgresProcessesOf(dataDir).length === 0, 30_000);
    },
  );
});

describe('npm run db:url and db:reset', { timeout: 60_000 }, () => {
  it('db:url prints DATABASE_URL when it is set', async () => {
    const url = 'postgres://app:secret@db.example.com:5432/app';
    const started = npm(onTestFinished, ['run', 'db:url'], { DATABASE_URL: url });
    expect(await started.exited).toBe(0);
    expect(started.output()).toBe(`${url}\n`);
  });

  it('db:reset refuses with NODE_ENV=production, and with DATABASE_URL unless --force', async () => {
    const production = npm(onTestFinished, ['run', 'db:reset'], { NODE_ENV: 'production', JWT_SECRET: SECRET });
    expect(await production.exited).toBe(2);
    expect(production.output()).toMatch(/db:reset refused: NODE_ENV=production/);
    const external = npm(onTestFinished, ['run', 'db:reset'], { DATABASE_URL: 'postgres://app:pw@127.0.0.1:1/app' });
    expect(await external.exited).toBe(2);
    expect(external.output()).toMatch(
      /db:reset refused: DATABASE_URL is set \(postgres:\/\/app@127\.0\.0\.1:1\/app\).*--force/,
    );
    const forced = npm(onTestFinished, ['run', 'db:reset', '--', '--force'], {
      DATABASE_URL: 'postgres://app:pw@127.0.0.1:1/app',
    });
    expect(await forced.exited).toBe(1);
    expect(forced.output()).toMatch(/db:reset failed: Cannot connect to PostgreSQL at 127\.0\.0\.1:1/);
  });
});
