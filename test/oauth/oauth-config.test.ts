import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/platform/config.ts';
import { configProblems, TEST_ENCRYPTION_KEY as ENCRYPTION_KEY } from '../helpers/app.ts';

/** A production environment that is complete without identity providers. */
const PRODUCTION = {
  NODE_ENV: 'production',
  METRICS_TOKEN: 'scrape-secret',
  APP_URL: 'https://app.example',
  ENCRYPTION_KEY,
  WEBAUTHN_RP_ID: 'app.example',
  WEBAUTHN_ORIGINS: 'https://app.example',
};
const GOOGLE = { OIDC_PROVIDERS: 'google', OIDC_GOOGLE_CLIENT_ID: 'id', OIDC_GOOGLE_CLIENT_SECRET: 'secret' };

describe('identity provider configuration', () => {
  it('configures none by default, with API_URL on the port and APP_URL as the allowed redirect origin', () => {
    expect(loadConfig({ PORT: '8080', APP_URL: 'http://localhost:5173/app' }, '/srv/app').oauth).toEqual({
      apiUrl: 'http://localhost:8080',
      providers: [],
      redirectOrigins: ['http://localhost:5173'],
      httpTimeoutMs: 5000,
      secureCookies: false,
      allowInsecureLocalIssuers: true,
    });
  });

  it('reads each provider, with the presets, default scopes and names', () => {
    const config = loadConfig({
      ...GOOGLE,
      OIDC_PROVIDERS: 'google, corp ,microsoft',
      OIDC_CORP_ISSUER: 'https://sso.example.com/realms/staff',
      OIDC_CORP_CLIENT_ID: 'api',
      OIDC_CORP_CLIENT_SECRET: 's',
      OIDC_CORP_SCOPES: 'openid email',
      OIDC_CORP_NAME: 'Example SSO',
      OIDC_MICROSOFT_TENANT: 'contoso.onmicrosoft.com',
      OIDC_MICROSOFT_CLIENT_ID: 'ms',
      OIDC_MICROSOFT_CLIENT_SECRET: 'ms-secret',
      OAUTH_REDIRECT_ALLOWLIST: 'https://mobile.example, http://localhost:19006',
    }).oauth;
    expect(config.providers).toEqual([
      {
        id: 'google',
        name: 'GOOGLE',
        issuer: 'https://accounts.google.com',
        clientId: 'id',
        clientSecret: 'secret',
        scopes: ['openid', 'email', 'profile'],
      },
      {
        id: 'corp',
        name: 'Example SSO',
        issuer: 'https://sso.example.com/realms/staff',
        clientId: 'api',
        clientSecret: 's',
        scopes: ['openid', 'email'],
      },
      {
        id: 'microsoft',
        name: 'MICROSOFT',
        issuer: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0',
        clientId: 'ms',
        clientSecret: 'ms-secret',
        scopes: ['openid', 'email', 'profile'],
      },
    ]);
    expect(config.redirectOrigins).toEqual([
      'http://localhost:3000',
      'https://mobile.example',
      'http://localhost:19006',
    ]);
  });

  it.each([
    [
      'a provider without its client secret',
      { OIDC_PROVIDERS: 'google', OIDC_GOOGLE_CLIENT_ID: 'id' },
      'OIDC_GOOGLE_CLIENT_ID and OIDC_GOOGLE_CLIENT_SECRET are required for provider "google"',
    ],
    [
      'a provider that is no preset and has no issuer',
      { OIDC_PROVIDERS: 'corp', OIDC_CORP_CLIENT_ID: 'a', OIDC_CORP_CLIENT_SECRET: 'b' },
      'OIDC_CORP_ISSUER is required for provider "corp" (only google, microsoft and gitlab have presets)',
    ],
    [
      "Microsoft's multi-tenant issuer",
      { OIDC_PROVIDERS: 'microsoft', OIDC_MICROSOFT_CLIENT_ID: 'a', OIDC_MICROSOFT_CLIENT_SECRET: 'b' },
      "OIDC_MICROSOFT_TENANT (your directory's tenant id) or OIDC_MICROSOFT_ISSUER is required: Microsoft's multi-tenant issuer cannot be validated",
    ],
    [
      'an http issuer that is not localhost',
      { ...GOOGLE, OIDC_GOOGLE_ISSUER: 'http://accounts.example.com' },
      'OIDC_GOOGLE_ISSUER must be an https:// URL (http:// only on localhost outside production; got "http://accounts.example.com")',
    ],
    [
      'a provider id that cannot name a route',
      { OIDC_PROVIDERS: 'Google!' },
      'OIDC_PROVIDERS lists ids of lower-case letters, digits, _ and - (got "Google!")',
    ],
    [
      'an allow-list entry that is not an origin',
      { OAUTH_REDIRECT_ALLOWLIST: 'https://app.example/callback' },
      'OAUTH_REDIRECT_ALLOWLIST lists origins like https://app.example.com (got "https://app.example/callback")',
    ],
  ])('refuses to start with %s', (_case, env, problem) => {
    expect(configProblems(env)).toEqual([problem]);
  });

  it('requires API_URL in production once a provider is configured, and refuses http issuers there', () => {
    expect(configProblems(PRODUCTION)).toEqual([]);
    expect(configProblems({ ...PRODUCTION, ...GOOGLE })).toEqual([
      'API_URL is required when NODE_ENV=production and OIDC_PROVIDERS is set (provider callbacks point there)',
    ]);
    expect(configProblems({ ...PRODUCTION, ...GOOGLE, API_URL: 'https://api.example/' })).toEqual([]);
    expect(loadConfig({ ...PRODUCTION, ...GOOGLE, API_URL: 'https://api.example/' }).oauth).toMatchObject({
      apiUrl: 'https://api.example',
      secureCookies: true,
      allowInsecureLocalIssuers: false,
    });
    expect(
      configProblems({
        ...PRODUCTION,
        ...GOOGLE,
        API_URL: 'https://api.example',
        OIDC_GOOGLE_ISSUER: 'http://localhost:9000',
      }),
    ).toEqual([
      'OIDC_GOOGLE_ISSUER must be an https:// URL (http:// only on localhost outside production; got "http://localhost:9000")',
    ]);
  });
});
