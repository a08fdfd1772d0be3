import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { operationsOf, type ApiDocument } from '../../../tools/openapi/breaking.ts';
import { testApp } from '../../helpers/app.ts';
import { describe, expect, isolatedDatabase, test } from '../../helpers/database.ts';
import { createUser, PASSWORD } from '../../helpers/http.ts';

/** Debian's package (`apt-get install chromium`); .ci/run installs it, so in CI the test always runs. */
const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
const inCi = process.env.CI === 'true' || process.env.CI === '1';

/** Where the screenshot goes (git-ignored; CI keeps it as an artifact). */
const ARTIFACTS = join(import.meta.dirname, '../../../test-results');

// Nothing the browser does may reach the network beyond the server under test.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe.skipIf(!available && !inCi)('Swagger UI at /docs in headless Chromium', () => {
  test(
    'lists every route, performs "Try it out" on POST /auth/login, and loads under the production CSP without a console error',
    { timeout: 90_000 },
    async ({ onTestFinished }) => {
      const { db } = await isolatedDatabase(onTestFinished);
      await createUser(db, { email: 'swagger@example.com' });
      const app = await testApp(db, onTestFinished);
      const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
      const document = (await app.inject({ url: '/docs/json' })).json<ApiDocument>();
      const csp = (await app.inject({ url: '/docs/static/index.html' })).headers['content-security-policy'];
      expect(csp, 'the docs page is served with a Content-Security-Policy').toMatch(/script-src 'self'/);

      const profile = await mkdtemp(join(tmpdir(), 'chromium-profile-'));
      const browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: FLAGS,
      });
      onTestFinished(async () => {
        await browser.close();
        await rm(profile, { recursive: true, force: true });
      });
      const page = browser.pages()[0] ?? (await browser.newPage());
      const problems: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error' || message.type() === 'warning')
          problems.push(`console ${message.type()}: ${message.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
      // Runs in the page (a string: the test is compiled without the DOM library).
      await page.addInitScript({
        content: `document.addEventListener('securitypolicyviolation', (event) =>
          console.error('CSP violation: ' + event.violatedDirective + ' blocked ' + event.blockedURI));`,
      });

      await page.goto(`${baseUrl}/docs`);
      await page.locator('.opblock').first().waitFor();

      const listed: string[] = [];
      for (const block of await page.locator('.opblock').all()) {
        const method = (await block.locator('.opblock-summary-method').textContent()) ?? '';
        const path = (await block.locator('.opblock-summary-path').getAttribute('data-path')) ?? '';
        listed.push(`${method.toUpperCase()} ${path}`);
      }
      expect(listed.sort()).toEqual([...operationsOf(document).keys()].sort());

      const login = page.locator('#operations-auth-login');
      await login.locator('.opblock-summary').click();
      await login.locator('.try-out__btn').click();
      await login
        .locator('textarea.body-param__text')
        .fill(JSON.stringify({ email: 'swagger@example.com', password: PASSWORD }));
      await login.locator('button.execute').click();
      const status = login.locator('.live-responses-table .response .response-col_status');
      await status.first().waitFor();
      expect((await status.first().textContent())?.trim()).toBe('200');
      // The response body Swagger UI shows is the server's: the user and a token pair.
      expect(await login.locator('.live-responses-table').textContent()).toMatch(/"accessToken".*"refreshToken"/s);

      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'swagger-ui-login.png'), fullPage: true });
      expect(problems).toEqual([]);
    },
  );
});
