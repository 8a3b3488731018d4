// Drives the presence board (app/) in headless Chromium against presenced.
//
// The page is bundled with esbuild, served from its own loopback origin, and
// opened in Debian's Chromium (playwright-core drives it; nothing downloads a
// browser). Chromium trusts presenced's development CA through a throwaway NSS
// database, as a user would import it. The page signs in against presenced's
// identity provider (MSAL.js, or the password grant), reads and sets presence
// cross-origin, and shows the Graph Toolkit's mgt-person badges; this script
// checks them against presence set through the API with an application
// token, checks that the page talked to nobody but presenced and its own
// origin, and writes a screenshot.
//
// Environment: PRESENCED_URL (https://127.0.0.1:PORT), PRESENCED_CA (PEM
// file), PRESENCED_TENANT, PRESENCED_SPA_APP (the page's client id),
// PRESENCED_APP / PRESENCED_APP_SECRET (a confidential app with
// Presence.ReadWrite.All), PRESENCED_USER / PRESENCED_USER_NAME /
// PRESENCED_USER_PASSWORD (who signs in), PRESENCED_PEOPLE (comma-separated
// ids: the signed-in user, then two others), PRESENCED_PEOPLE_NAMES (their
// display names, in the same order), APP_PORT (where the page is
// served), BROWSER_TEST_DIR (bundle and screenshot go there),
// PRESENCED_SIGN_IN (msal, the default, or password: how the page signs
// in), CHROMIUM (default /usr/bin/chromium).

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';
import { record, seen, stepper } from './page.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const presenced = need('PRESENCED_URL');
const tenant = need('PRESENCED_TENANT');
const spaApp = need('PRESENCED_SPA_APP');
const app = need('PRESENCED_APP');
const appSecret = need('PRESENCED_APP_SECRET');
const me = need('PRESENCED_USER');
const userName = need('PRESENCED_USER_NAME');
const password = need('PRESENCED_USER_PASSWORD');
const people = need('PRESENCED_PEOPLE').split(',');
const names = need('PRESENCED_PEOPLE_NAMES').split(',');
const [, caller, other] = people;
const appPort = Number(need('APP_PORT'));
const outDir = need('BROWSER_TEST_DIR');
const ca = need('PRESENCED_CA');
const executable = process.env.CHROMIUM || '/usr/bin/chromium';
const signIn = process.env.PRESENCED_SIGN_IN || 'msal';
check(['msal', 'password'].includes(signIn), `PRESENCED_SIGN_IN=${signIn}: msal or password`);
const appOrigin = `http://127.0.0.1:${appPort}`;
const STEP_MS = 30_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// --- The API, as a back-end service would call it (application token) ---

async function appToken() {
  const response = await fetch(`${presenced}/${tenant}/oauth2/v2.0/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: app,
      client_secret: appSecret,
      scope: 'https://graph.microsoft.com/.default',
    }),
  });
  const text = await response.text();
  check(response.ok, `client credentials: ${response.status} ${text}`);
  return JSON.parse(text).access_token;
}

async function api(method, path, body) {
  const response = await fetch(`${presenced}/v1.0${path}`, {
    method,
    headers: {
      authorization: `Bearer ${await appToken()}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  check(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const setPresence = (user, availability, activity) =>
  api('POST', `/users/${user}/presence/setPresence`, {
    sessionId: app,
    availability,
    activity,
    expirationDuration: 'PT1H',
  });

const presenceOf = (user) => api('GET', `/users/${user}/presence`);

// --- The page: bundled, and served from its own origin ---

const appDir = join(outDir, 'app');
rmSync(appDir, { recursive: true, force: true });
mkdirSync(appDir, { recursive: true });
await esbuild.build({
  entryPoints: [join(here, 'app/app.js')],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  outfile: join(appDir, 'app.js'),
  logLevel: 'warning',
  // The Graph Toolkit declares sideEffects: false; honouring it, esbuild
  // drops the module code that defines registerMgtPersonComponent.
  ignoreAnnotations: true,
});
writeFileSync(join(appDir, 'index.html'), readFileSync(join(here, 'app/index.html')));
writeFileSync(
  join(appDir, 'config.json'),
  JSON.stringify({ presencedUrl: presenced, tenant, clientId: spaApp, people, signIn }),
);

const types = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json' };
const server = createServer((request, response) => {
  const path = new URL(request.url, appOrigin).pathname;
  const file = path === '/' ? 'index.html' : path.slice(1);
  if (!['index.html', 'app.js', 'config.json'].includes(file)) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { 'content-type': types[extname(file)], 'cache-control': 'no-store' });
  response.end(readFileSync(join(appDir, file)));
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(appPort, '127.0.0.1', resolve);
});

// --- Chromium, trusting presenced's CA (and nothing downloaded) ---

const home = mkdtempSync(join(tmpdir(), 'presenced-browser-'));
const nssdb = join(home, '.pki/nssdb');
mkdirSync(nssdb, { recursive: true });
execFileSync('certutil', ['-N', '-d', `sql:${nssdb}`, '--empty-password']);
execFileSync('certutil', ['-A', '-d', `sql:${nssdb}`, '-n', 'presenced development CA', '-t', 'C,,', '-i', ca]);

const context = await chromium.launchPersistentContext(join(home, 'profile'), {
  executablePath: executable,
  headless: true,
  env: { ...process.env, HOME: home },
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 900, height: 700 },
  timeout: STEP_MS,
});

const log = seen();
const { foreign, failures, console: console_ } = log;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  record(page, [appOrigin, presenced], log);

  const step = stepper(page, STEP_MS);

  // Presence set through the API before anyone looks.
  await setPresence(caller, 'Busy', 'InACall');
  await setPresence(other, 'DoNotDisturb', 'Presenting');

  // Sign in.
  await page.goto(`${appOrigin}/`);
  if (signIn === 'msal') {
    // MSAL redirects to presenced's sign-in page, which redirects back.
    await step(page.locator('#sign-in').click());
    await step(page.waitForURL((url) => url.href.startsWith(`${presenced}/`)));
    console.log(`sign-in page: ${page.url().split('?')[0]}`);
    await page.locator('input[type=password]').fill(password);
    await page.locator('form input:not([type=hidden]):not([type=password]):not([type=submit])').first().fill(userName);
    await page.locator('form [type=submit]').first().click();
    await step(page.waitForURL((url) => url.href.startsWith(`${appOrigin}/`)));
  } else {
    // The page posts the password grant to the token endpoint itself.
    await step(page.locator('#username').fill(userName));
    await page.locator('#password').fill(password);
    await page.locator('#password-sign-in [type=submit]').click();
  }
  await step(page.locator('#signed-in').waitFor());

  // The page set its session (setPresence) and read the user's presence,
  // cross-origin with fetch; the API agrees.
  await step(page.locator('#me-presence').filter({ hasText: 'Available / Available' }).waitFor());
  const mine = await presenceOf(me);
  check(mine.availability === 'Available' && mine.activity === 'Available', `the API sees ${JSON.stringify(mine)}`);
  console.log(`signed in as ${await page.locator('#me-name').textContent()}; presence Available / Available`);

  // mgt-person badges match presence set through the API.
  const badge = (id) => page.locator(`mgt-person[user-id="${id}"] .presence-wrapper`);
  const expectBadge = async (id, title) => {
    await step(page.locator(`mgt-person[user-id="${id}"] .presence-wrapper[title="${title}"]`).waitFor());
    // The person itself came from presenced's directory ($batch).
    const name = names[people.indexOf(id)];
    await step(page.locator(`mgt-person[user-id="${id}"]`).getByText(name, { exact: true }).waitFor());
    console.log(`badge of ${name}: ${await badge(id).getAttribute('title')}`);
  };
  await expectBadge(me, 'Available');
  await expectBadge(caller, 'In a call');
  await expectBadge(other, 'Presenting');

  // Set presence from the page (setUserPreferredPresence, cross-origin).
  await page.locator('#set-busy').click();
  await step(page.locator('#me-presence').filter({ hasText: 'Busy / Busy' }).waitFor());
  const after = await presenceOf(me);
  check(after.availability === 'Busy' && after.activity === 'Busy', `the API sees ${JSON.stringify(after)}`);

  // A change through the API shows on the next load; the page stays signed
  // in (tokens from MSAL's cache) and the badges are read again.
  await setPresence(caller, 'Available', 'Available');
  await page.reload();
  await expectBadge(me, 'Busy');
  await expectBadge(caller, 'Available');
  await expectBadge(other, 'Presenting');

  const screenshot = join(outDir, 'presence-board.png');
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);

  check(foreign.length === 0, `requests left presenced and the page's origin:\n${foreign.join('\n')}`);
  const text = await page.locator('#error').textContent();
  check(!text, `the page reported: ${text}`);
  console.log(`responses >= 400 seen by the page: ${failures.length ? failures.join('; ') : 'none'}`);
  console.log('browser test passed');
} catch (error) {
  console.error(`page console:\n${console_.join('\n')}`);
  console.error(`responses >= 400:\n${failures.join('\n')}`);
  try {
    const page = context.pages()[0];
    const screenshot = join(outDir, 'failure.png');
    await page.screenshot({ path: screenshot, fullPage: true, timeout: 5_000 });
    console.error(`screenshot of the failure: ${screenshot}`);
  } catch {
    // the screenshot is a diagnostic only
  }
  process.exitCode = 1;
  console.error(`${error.stack ?? error}`);
} finally {
  await context.close();
  server.close();
  rmSync(home, { recursive: true, force: true });
}
