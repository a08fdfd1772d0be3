/**
 * Why a connection to PostgreSQL could not be made, told to an operator in one line: which
 * server (host:port, the URL with its password masked), why, and what to check.
 */

interface Explanation {
  readonly why: string;
  readonly check: string;
}

/**
 * One line for a failure to connect to the server at `url`, or `undefined` when `error` is not
 * a connection failure (its cause chain is searched: the data layer wraps driver errors).
 *
 * @example
 * ```ts
 * describeConnectionFailure(error, 'postgres://app:secret@db:5432/app', 'DATABASE_URL');
 * // 'Cannot connect to PostgreSQL at db:5432 (DATABASE_URL=postgres://app:****@db:5432/app): connection refused …'
 * ```
 */
export function describeConnectionFailure(error: unknown, url: string, source: string): string | undefined {
  const explanation = explain(error);
  if (explanation === undefined) return undefined;
  let where: string;
  let shown: string;
  try {
    const parsed = new URL(url);
    where = `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`;
    if (parsed.password !== '') parsed.password = '****';
    shown = parsed.toString();
  } catch {
    where = 'an unparsable address';
    shown = '(not a URL)';
  }
  return `Cannot connect to PostgreSQL at ${where} (${source}=${shown}): ${explanation.why}. Check ${explanation.check}.`;
}

function explain(error: unknown, depth = 0): Explanation | undefined {
  if (depth > 5 || typeof error !== 'object' || error === null) return undefined;
  const { code, message, cause } = error as { code?: unknown; message?: unknown; cause?: unknown };
  const text = typeof message === 'string' ? message : '';
  switch (code) {
    case 'ECONNREFUSED':
      return {
        why: 'connection refused (nothing listens there)',
        check: 'that PostgreSQL runs and listens on that host and port',
      };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { why: 'the host name does not resolve', check: 'the host name in the URL and your DNS' };
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return { why: 'no answer (the host is unreachable)', check: 'the host and port, and any firewall in between' };
    case 'ECONNRESET':
      return {
        why: 'the connection was reset',
        check: 'that the port is PostgreSQL’s, and its TLS settings (sslmode)',
      };
    case '28P01':
      return { why: 'password authentication failed', check: 'the user name and password in the URL' };
    case '28000':
      return { why: `the server refused the login (${text})`, check: 'the user name, and pg_hba.conf on the server' };
    case '3D000':
      return { why: text || 'the database does not exist', check: 'the database name in the URL (create it first)' };
    case '57P03':
      return { why: 'the server is starting up or shutting down', check: 'again in a moment' };
  }
  if (/timeout expired|Connection terminated due to connection timeout/i.test(text)) {
    return { why: 'no answer within the connection timeout', check: 'the host and port, and any firewall in between' };
  }
  if (error instanceof AggregateError) {
    for (const inner of error.errors) {
      const found = explain(inner, depth + 1);
      if (found !== undefined) return found;
    }
  }
  return explain(cause, depth + 1);
}
