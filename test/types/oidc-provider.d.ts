// The part of oidc-provider (a certified OpenID Provider, the tests' real identity provider) the
// test helper uses; the package ships no type declarations.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface AccountClaims {
    readonly sub: string;
    readonly [claim: string]: unknown;
  }

  export interface Account {
    readonly accountId: string;
    claims(use: string, scope: string): AccountClaims | Promise<AccountClaims>;
  }

  export interface Configuration {
    readonly [option: string]: unknown;
    readonly findAccount?: (context: unknown, id: string) => Account | undefined | Promise<Account | undefined>;
  }

  /** The part of Koa's context a middleware of the provider reads and writes. */
  export interface MiddlewareContext {
    readonly path: string;
    body: unknown;
  }

  export default class Provider {
    /** Adds a Koa middleware in front of the provider's own routes. */
    use(middleware: (context: MiddlewareContext, next: () => Promise<void>) => Promise<void>): this;
    constructor(issuer: string, configuration?: Configuration);
    callback(): (request: IncomingMessage, response: ServerResponse) => void;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }
}
