/** One identity provider, as OIDC_PROVIDERS and OIDC_<ID>_* configure it. */
export interface OidcProviderConfig {
  /** Lower-case id: in routes (`/auth/oauth/<id>/…`), in `identities.provider` and in `amr` (`oidc:<id>`). */
  readonly id: string;
  /** What a sign-in button shows (OIDC_<ID>_NAME, default the upper-cased id). */
  readonly name: string;
  /** The issuer identifier; discovery reads `<issuer>/.well-known/openid-configuration`. */
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scopes: readonly string[];
}

export interface OAuthConfig {
  /** The API's public base URL: provider callbacks are `apiUrl/auth/oauth/<id>/callback`. */
  readonly apiUrl: string;
  readonly providers: readonly OidcProviderConfig[];
  /** Origins a `redirectTo` may point at: APP_URL's and OAUTH_REDIRECT_ALLOWLIST's. */
  readonly redirectOrigins: readonly string[];
  /** Each request to a provider (discovery, token, userinfo, keys) gives up after this long. */
  readonly httpTimeoutMs: number;
  /** The browser-binding cookie is `Secure` (production). */
  readonly secureCookies: boolean;
  /** http:// issuers on localhost are accepted (development and tests only, never production). */
  readonly allowInsecureLocalIssuers: boolean;
}

/**
 * Presets: issuers of well-known providers, so OIDC_<ID>_ISSUER can be left out. Microsoft's
 * multi-tenant `common` endpoint publishes an issuer with a `{tenantid}` placeholder that no ID
 * token carries, so it cannot be validated as an issuer: its preset needs OIDC_MICROSOFT_TENANT.
 */
const PRESET_ISSUERS: Readonly<Record<string, string>> = {
  google: 'https://accounts.google.com',
  gitlab: 'https://gitlab.com',
};

const PROVIDER_ID = /^[a-z][a-z0-9_-]{0,31}$/;
const DEFAULT_SCOPES = ['openid', 'email', 'profile'];

type Env = Readonly<Record<string, string | undefined>>;

export interface OAuthConfigContext {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly port: number;
  /** APP_URL as configured (or its development default). */
  readonly appUrl: string;
  /** Reports a problem with the environment (collected with every other one). */
  readonly problem: (message: string) => void;
}

/**
 * Reads OIDC_PROVIDERS, OIDC_<ID>_*, API_URL, OAUTH_REDIRECT_ALLOWLIST and OIDC_HTTP_TIMEOUT_MS.
 *
 * @example
 * ```ts
 * const oauth = parseOAuthConfig(
 *   { OIDC_PROVIDERS: 'google', OIDC_GOOGLE_CLIENT_ID: 'id', OIDC_GOOGLE_CLIENT_SECRET: 'secret' },
 *   { nodeEnv: 'development', port: 3000, appUrl: 'http://localhost:5173', problem: console.error },
 * );
 * oauth.providers[0]?.issuer; // 'https://accounts.google.com'
 * ```
 */
export function parseOAuthConfig(env: Env, context: OAuthConfigContext): OAuthConfig {
  const { nodeEnv, problem } = context;
  const read = (name: string) => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const ids = (read('OIDC_PROVIDERS') ?? '')
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id !== '');
  const providers: OidcProviderConfig[] = [];
  for (const id of new Set(ids)) {
    if (!PROVIDER_ID.test(id)) {
      problem(`OIDC_PROVIDERS lists ids of lower-case letters, digits, _ and - (got "${id}")`);
      continue;
    }
    const prefix = `OIDC_${id.toUpperCase().replaceAll('-', '_')}_`;
    const issuer = read(`${prefix}ISSUER`) ?? presetIssuer(id, read(`${prefix}TENANT`));
    const clientId = read(`${prefix}CLIENT_ID`);
    const clientSecret = read(`${prefix}CLIENT_SECRET`);
    if (issuer === undefined) {
      problem(
        id === 'microsoft'
          ? `${prefix}TENANT (your directory's tenant id) or ${prefix}ISSUER is required: Microsoft's multi-tenant issuer cannot be validated`
          : `${prefix}ISSUER is required for provider "${id}" (only google, microsoft and gitlab have presets)`,
      );
    } else {
      checkIssuer(`${prefix}ISSUER`, issuer, nodeEnv, problem);
    }
    if (clientId === undefined || clientSecret === undefined) {
      problem(`${prefix}CLIENT_ID and ${prefix}CLIENT_SECRET are required for provider "${id}"`);
    }
    const scopes = (read(`${prefix}SCOPES`) ?? DEFAULT_SCOPES.join(' ')).split(/[\s,]+/).filter((s) => s !== '');
    if (!scopes.includes('openid')) problem(`${prefix}SCOPES must include openid`);
    providers.push({
      id,
      name: read(`${prefix}NAME`) ?? id.toUpperCase(),
      issuer: issuer ?? '',
      clientId: clientId ?? '',
      clientSecret: clientSecret ?? '',
      scopes,
    });
  }

  const apiUrlText = read('API_URL');
  if (apiUrlText === undefined && nodeEnv === 'production' && providers.length > 0) {
    problem('API_URL is required when NODE_ENV=production and OIDC_PROVIDERS is set (provider callbacks point there)');
  }
  const apiUrl = originAndPath('API_URL', apiUrlText ?? `http://localhost:${context.port}`, problem);

  const redirectOrigins = [originOf(context.appUrl)];
  for (const entry of (read('OAUTH_REDIRECT_ALLOWLIST') ?? '').split(',')) {
    const item = entry.trim();
    if (item === '') continue;
    const origin = originOf(item);
    if (origin === undefined || origin !== item.replace(/\/+$/, '')) {
      problem(`OAUTH_REDIRECT_ALLOWLIST lists origins like https://app.example.com (got "${item}")`);
    } else {
      redirectOrigins.push(origin);
    }
  }

  const timeoutText = read('OIDC_HTTP_TIMEOUT_MS');
  let httpTimeoutMs = 5000;
  if (timeoutText !== undefined) {
    const value = Number(timeoutText);
    if (!/^\d+$/.test(timeoutText) || value < 100 || value > 60_000) {
      problem(`OIDC_HTTP_TIMEOUT_MS must be an integer from 100 to 60000 (got "${timeoutText}")`);
    } else {
      httpTimeoutMs = value;
    }
  }

  return {
    apiUrl,
    providers,
    redirectOrigins: [...new Set(redirectOrigins.filter((origin) => origin !== undefined))],
    httpTimeoutMs,
    secureCookies: nodeEnv === 'production',
    allowInsecureLocalIssuers: nodeEnv !== 'production',
  };
}

function presetIssuer(id: string, tenant: string | undefined): string | undefined {
  if (id === 'microsoft') {
    return tenant === undefined ? undefined : `https://login.microsoftonline.com/${encodeURIComponent(tenant)}/v2.0`;
  }
  return PRESET_ISSUERS[id];
}

/** Issuers are https://, except http://localhost (or 127.0.0.1) outside production. */
function checkIssuer(
  name: string,
  issuer: string,
  nodeEnv: OAuthConfigContext['nodeEnv'],
  problem: (message: string) => void,
): void {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    problem(`${name} must be an https:// URL (got "${issuer}")`);
    return;
  }
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:' && isLocalHost(url.hostname) && nodeEnv !== 'production') return;
  problem(`${name} must be an https:// URL (http:// only on localhost outside production; got "${issuer}")`);
}

export function isLocalHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]';
}

/** The URL without a trailing slash, or a problem when it is not an http(s) URL. */
function originAndPath(name: string, raw: string, problem: (message: string) => void): string {
  try {
    const url = new URL(raw);
    if (url.protocol === 'https:' || url.protocol === 'http:') return raw.replace(/\/+$/, '');
  } catch {
    // Reported below.
  }
  problem(`${name} must be an http(s):// URL (got "${raw}")`);
  return raw;
}

function originOf(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.origin : undefined;
  } catch {
    return undefined;
  }
}
