import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { SecretBox } from '../platform/secret-box.ts';
import { algorithmOf, type AsymmetricAlgorithm } from './key-states.ts';
import type { SigningKeyRow } from './signing-keys.repository.ts';

/** A public key as `GET /.well-known/jwks.json` serves it. */
export interface PublishedJwk {
  readonly kid: string;
  readonly alg: AsymmetricAlgorithm;
  readonly use: 'sig';
  readonly kty: string;
  readonly crv: string;
  readonly x: string;
  /** ES256 keys only. */
  readonly y?: string;
}

/** A row's public key as the JWKS serves it. */
export function publicJwk(row: SigningKeyRow): PublishedJwk {
  const { kty, crv, x, y } = row.public_jwk as JWK;
  if (kty === undefined || crv === undefined || x === undefined) throw new Error(`Signing key ${row.kid} is malformed`);
  const key = { kid: row.kid, alg: algorithmOf(row), use: 'sig' as const, kty, crv, x };
  return y === undefined ? key : { ...key, y };
}

function purposeOf(kid: string): string {
  return `signing-key:${kid}`;
}

/** A new key pair: the kid is the public key's RFC 7638 thumbprint, the private half sealed. */
export async function newKey(box: SecretBox, algorithm: AsymmetricAlgorithm, createdAt: Date, signsFrom: Date) {
  const { publicKey, privateKey } = await generateKeyPair(algorithm, { extractable: true, crv: curveOf(algorithm) });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const publicJwkOnly: JWK = y === undefined ? { kty, crv, x } : { kty, crv, x, y };
  const kid = await calculateJwkThumbprint(publicJwkOnly);
  const sealed = await box.seal(new TextEncoder().encode(JSON.stringify(await exportJWK(privateKey))), purposeOf(kid));
  return {
    kid,
    algorithm,
    public_jwk: JSON.stringify(publicJwkOnly),
    private_jwe: sealed,
    created_at: createdAt,
    signs_from: signsFrom,
  };
}

function curveOf(algorithm: AsymmetricAlgorithm): string {
  return algorithm === 'EdDSA' ? 'Ed25519' : 'P-256';
}

/** Each row's CryptoKeys, imported once: the private half opened with `box` (a failure is not kept). */
export class ImportedKeys {
  readonly #box: SecretBox;
  readonly #privateKeys = new Map<string, Promise<CryptoKey>>();
  readonly #publicKeys = new Map<string, Promise<CryptoKey>>();

  constructor(box: SecretBox) {
    this.#box = box;
  }

  async privateKey(row: SigningKeyRow): Promise<CryptoKey> {
    let key = this.#privateKeys.get(row.kid);
    if (key === undefined) {
      key = (async () => {
        const sealed = await this.#box.open(row.private_jwe, purposeOf(row.kid));
        const jwk = JSON.parse(new TextDecoder().decode(sealed)) as JWK;
        return (await importJWK(jwk, row.algorithm)) as CryptoKey;
      })();
      key.catch(() => this.#privateKeys.delete(row.kid));
      this.#privateKeys.set(row.kid, key);
    }
    return key;
  }

  async publicKey(row: SigningKeyRow): Promise<CryptoKey> {
    let key = this.#publicKeys.get(row.kid);
    if (key === undefined) {
      key = importJWK(row.public_jwk as JWK, row.algorithm) as Promise<CryptoKey>;
      this.#publicKeys.set(row.kid, key);
    }
    return key;
  }
}
