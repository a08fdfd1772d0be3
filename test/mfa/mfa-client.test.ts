import { Secret, TOTP } from 'otpauth';
import { createApiClient } from '../../client/index.ts';
import { TEST_ENCRYPTION_KEY } from '../helpers/app.ts';
import { describe, expect, isolatedDatabase, test, TEST_POOL } from '../helpers/database.ts';
import { startServerProcess } from '../helpers/server-process.ts';

const PASSWORD = 'a long passphrase for the client';
/** The authenticator app's code for `stepsAhead` time steps from now (one is within the allowed drift). */
const code = (secret: string, stepsAhead = 0) =>
  TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: Date.now() + stepsAhead * 30_000 });

// A real server process through PgBouncer in transaction mode waits on the bouncer's few server
// connections behind the whole suite and missed its readiness deadline in CI; as session-ends does,
// it runs on direct connections only (embedded and PostgreSQL 15). mfa.test.ts covers the same flow
// in-process through PgBouncer.
describe.runIf(TEST_POOL.poolMode !== 'transaction')(
  'a second factor through the typed client, against the real server process',
  { timeout: 90_000 },
  () => {
    test('enrols TOTP, signs in with a code and with a recovery code, steps up, and changes the password', async ({
      onTestFinished,
    }) => {
      const { url } = await isolatedDatabase(onTestFinished);
      const server = await startServerProcess({
        env: {
          DATABASE_URL: url,
          // Through PgBouncer in transaction mode under `npm run test:pgbouncer`.
          DB_POOL_MODE: TEST_POOL.poolMode ?? 'session',
          ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
          LOG_LEVEL: 'warn',
          MAINTENANCE_INTERVAL_SECONDS: '0',
        },
        port: [3600, 3699],
      });
      onTestFinished(() => server.stop());
      const api = createApiClient({ baseUrl: server.baseUrl });

      await api.POST('/auth/register', { body: { email: 'mfa@example.com', password: PASSWORD, name: 'Mfa' } });
      const first = await api.login('mfa@example.com', PASSWORD);
      expect(first.ok && !first.value.mfaRequired).toBe(true);

      const enrol = await api.POST('/auth/mfa/totp', { body: { name: 'phone' } });
      const secret = enrol.data?.secret ?? '';
      const verified = await api.POST('/auth/mfa/totp/{id}/verify', {
        params: { path: { id: enrol.data?.factor.id ?? '' } },
        body: { code: code(secret) },
      });
      expect(verified.response.status).toBe(200);
      const recoveryCodes = verified.data?.recoveryCodes ?? [];
      expect(recoveryCodes).toHaveLength(10);
      api.setTokens({ accessToken: verified.data?.accessToken ?? '', refreshToken: verified.data?.refreshToken ?? '' });
      expect((await api.logout()).ok).toBe(true);

      // With a factor, the password alone opens no session: the client narrows on mfaRequired.
      const challenged = await api.login('mfa@example.com', PASSWORD);
      if (!challenged.ok || !challenged.value.mfaRequired) throw new Error('expected a second-factor challenge');
      expect(api.tokens).toBeUndefined();
      const signedIn = await api.completeLogin(challenged.value.mfaToken, { code: code(secret, 1) });
      expect(signedIn.ok && signedIn.value.email).toBe('mfa@example.com');
      expect((await api.GET('/auth/me')).response.status).toBe(200);
      expect((await api.logout()).ok).toBe(true);

      const again = await api.login('mfa@example.com', PASSWORD);
      if (!again.ok || !again.value.mfaRequired) throw new Error('expected a second-factor challenge');
      const wrong = await api.completeLogin(again.value.mfaToken, { code: '000000' });
      expect(!wrong.ok && wrong.error.code).toBe('INVALID_MFA_CODE');
      expect((await api.completeLogin(again.value.mfaToken, { recoveryCode: recoveryCodes[0] ?? '' })).ok).toBe(true);

      // A recovery-code session is aal2 already; step up again with another code, then a sensitive action.
      expect((await api.stepUp({ recoveryCode: recoveryCodes[1] ?? '' })).ok).toBe(true);
      const changed = await api.POST('/auth/password', {
        body: { currentPassword: PASSWORD, newPassword: 'another long passphrase for the client' },
      });
      expect(changed.response.status).toBe(204);
      const status = await api.GET('/auth/mfa');
      expect(status.data?.recoveryCodesRemaining).toBe(8);
    });
  },
);
