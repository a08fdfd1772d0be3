import { hkdfSync, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from './config.ts';
import { ENCRYPTION_KEY_BYTES, parseEncryptionKey } from './secret-box.ts';

/**
 * JWT_SECRET when set. Otherwise, in production (only allowed with an asymmetric JWT_ALGORITHM),
 * one derived from ENCRYPTION_KEY, so every instance keys refresh-token successors alike; in
 * development a random secret generated once and kept under DATA_DIR, so tokens survive restarts.
 */
export async function resolveJwtSecret(config: Config, encryptionKey: Uint8Array): Promise<string> {
  if (config.auth.jwtSecret !== undefined) return config.auth.jwtSecret;
  if (config.env === 'production') {
    return Buffer.from(hkdfSync('sha256', encryptionKey, '', 'pg-fastify-backend jwt-secret', 48)).toString(
      'base64url',
    );
  }
  return generatedSecret(
    config,
    'jwt-secret',
    () => randomBytes(48).toString('base64url'),
    (text) => Buffer.byteLength(text) >= 32,
  );
}

/** ENCRYPTION_KEY when set (required in production); otherwise generated once under DATA_DIR, like the JWT secret. */
export async function resolveEncryptionKey(config: Config): Promise<Uint8Array> {
  if (config.auth.encryptionKey !== undefined) return config.auth.encryptionKey;
  const text = await generatedSecret(
    config,
    'encryption-key',
    () => randomBytes(ENCRYPTION_KEY_BYTES).toString('base64'),
    (existing) => parseEncryptionKey(existing) !== undefined,
  );
  const key = parseEncryptionKey(text);
  if (key === undefined) throw new Error('The generated encryption key does not parse');
  return key;
}

/** The secret kept in DATA_DIR/`name` (0600), made with `generate` when missing or not `usable`. */
async function generatedSecret(
  config: Config,
  name: string,
  generate: () => string,
  usable: (text: string) => boolean,
): Promise<string> {
  const file = path.join(config.dataDir, name);
  try {
    const existing = (await fs.readFile(file, 'utf8')).trim();
    if (usable(existing)) return existing;
  } catch {
    // not generated yet
  }
  const secret = generate();
  await fs.mkdir(config.dataDir, { recursive: true });
  await fs.writeFile(file, secret, { mode: 0o600 });
  return secret;
}
