// Drives presenced's own presence board (served at `/`) in headless Chromium.
//
// The board is opened at http://board.test:PORT, a name Chromium maps to the
// loopback address (--host-resolver-rules): a plain-http origin that is not
// loopback, so the page is not a secure context and hashes its PKCE
// challenge with its own SHA-256 rather than WebCrypto. The script signs in
// through presenced's sign-in page, checks the grid against presence set
// through the API, measures how soon a change made through the API by
// another client shows on the page (at most 1 s), sets the user's own
// preferred presence and status message through the page and checks them
// through the API, searches, checks the layout at 320 px, keyboard focus,
// the refresh of tokens near their expiry, polling when the live stream is
// off (its answer replaced by a 404), and sign-out; it saves screenshots at desktop and phone widths. The page
// may talk to nobody but its own origin.
//
// Environment: BOARD_URL (http://board.test:PORT), PRESENCED_URL (the same
// server as the API sees it: http://127.0.0.1:PORT), PRESENCED_TENANT,
// PRESENCED_APP / PRESENCED_APP_SECRET (a confidential app with
// Presence.ReadWrite.All: the other client), PRESENCED_USER /
// PRESENCED_USER_NAME / PRESENCED_USER_PASSWORD (who signs in),
// PRESENCED_PEOPLE / PRESENCED_PEOPLE_NAMES (every directory user's id and
// display name, comma-separated), PRESENCED_CALLER (a user whose presence
// the other client changes), BROWSER_TEST_DIR (screenshots go there),
// CHROMIUM (default /usr/bin/chromium).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { record, seen, stepper } from './page.mjs';

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const board = need('BOARD_URL');
const presenced = need('PRESENCED_URL');
const tenant = need('PRESENCED_TENANT');
const app = need('PRESENCED_APP');
const appSecret = need('PRESENCED_APP_SECRET');
const me = need('PRESENCED_USER');
const userName = need('PRESENCED_USER_NAME');
const password = need('PRESENCED_USER_PASSWORD');
const people = need('PRESENCED_PEOPLE').split(',');
const names = need('PRESENCED_PEOPLE_NAMES').split(',');
const caller = need('PRESENCED_CALLER');
const outDir = need('BROWSER_TEST_DIR');
const executable = process.env.CHROMIUM || '/usr/bin/chromium';
const boardHost = new URL(board).hostname;
const STEP_MS = 30_000;
const LIVE_LIMIT_MS = 1_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// --- The other client: a back-end service with an application token ---

let appTokenValue = null;
async function appToken() {
  if (appTokenValue) return appTokenValue;
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
  appTokenValue = JSON.parse(text).access_token;
  return appTokenValue;
}

async function api(method, path, body) {
  const token = await appToken();
  const response = await fetch(`${presenced}/v1.0${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  check(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const presenceOf = (user) => api('GET', `/users/${user}/presence`);

// --- Chromium (nothing downloaded), board.test mapped to loopback ---

const home = mkdtempSync(join(tmpdir(), 'presenced-board-'));
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
    `--host-resolver-rules=MAP ${boardHost} 127.0.0.1`,
    '--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable',
  ],
  viewport: { width: 1280, height: 800 },
  colorScheme: 'light',
  timeout: STEP_MS,
});

const log = seen();
const { foreign, failures, console: console_ } = log;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const boardOrigin = new URL(board).origin;
  record(page, [boardOrigin], log);

  const step = stepper(page, STEP_MS);
  const card = (id) => page.locator(`#people .card[data-id="${id}"]`);

  // --- Sign in: the page's own SHA-256 (no WebCrypto on plain http) ---
  await page.goto(`${board}/`);
  const secure = await page.evaluate(() => window.presencedBoard.secureContext());
  check(!secure, `${board} should not be a secure context`);
  const abc = await page.evaluate(() => window.presencedBoard.sha256Hex('abc'));
  check(abc === 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', `sha256("abc") = ${abc}`);
  const long = await page.evaluate(() => window.presencedBoard.sha256Hex('a'.repeat(1000)));
  check(long === '41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3', `sha256(a×1000) = ${long}`);

  await step(page.locator('#sign-in').click());
  await step(page.waitForURL((url) => url.pathname.endsWith('/oauth2/v2.0/authorize')));
  console.log(`sign-in page: ${page.url().split('?')[0]}`);
  await page.locator('#username').fill(userName);
  await page.locator('#password').fill(password);
  await page.locator('#submit').click();
  await step(page.waitForURL((url) => url.origin === boardOrigin && url.pathname === '/'));
  await step(page.locator('#signed-in').waitFor());
  check(!page.url().includes('code='), `the code stayed in the address: ${page.url()}`);
  const stored = await page.evaluate(() => ({
    session: Object.keys(sessionStorage),
    local: Object.keys(localStorage),
  }));
  check(stored.session.includes('presenced.board.session'), `sessionStorage: ${stored.session}`);
  check(stored.local.length === 0, `localStorage holds ${stored.local}`);
  console.log(`signed in as ${await page.locator('#me-name').textContent()}`);

  // --- The grid: everyone, with presence set through the API ---
  await step(page.locator('#people .card').nth(people.length - 1).waitFor());
  check((await page.locator('#people .card').count()) === people.length, 'one card per person');
  for (const [i, id] of people.entries()) {
    const name = await card(id).locator('.name').textContent();
    check(name === names[i], `card of ${id} says ${name}, not ${names[i]}`);
    const expected = await presenceOf(id);
    const shown = await card(id).getAttribute('data-availability');
    check(shown === expected.availability, `${names[i]}: the page shows ${shown}, the API ${expected.availability}`);
  }
  const words = await card(caller).locator('.activity').textContent();
  check(words === 'In a call', `the caller's badge says ${words}`);
  check((await card(caller).locator('use').getAttribute('href')) === '#i-busy', "the caller's badge is red");
  await step(page.locator('#live').filter({ hasText: 'Live updates: on' }).waitFor());

  // --- Live: another client's change shows within 1 s ---
  await appToken();
  const started = Date.now();
  await api('POST', `/users/${caller}/presence/setPresence`, {
    sessionId: app,
    availability: 'DoNotDisturb',
    activity: 'Presenting',
    expirationDuration: 'PT1H',
  });
  await step(
    page.waitForFunction(
      (id) => document.querySelector(`#people .card[data-id="${id}"]`)?.dataset.activity === 'Presenting',
      caller,
      { polling: 20, timeout: 5_000 },
    ),
  );
  const shownAfter = Date.now() - started;
  console.log(`a change through the API showed on the board after ${shownAfter} ms`);
  check(shownAfter <= LIVE_LIMIT_MS, `the change took ${shownAfter} ms to show (limit ${LIVE_LIMIT_MS} ms)`);
  check((await card(caller).locator('.activity').textContent()) === 'Presenting', 'Presenting in words');
  check((await card(caller).locator('use').getAttribute('href')) === '#i-dnd', 'the do-not-disturb badge');
  const announced = await page.locator('#announce').textContent();
  check(announced.includes('Presenting'), `announced: ${announced}`);

  // --- The user's own controls, checked through the API ---
  await page.locator('#preferred').selectOption('Busy/Busy');
  await page.locator('#duration').selectOption('PT4H');
  await page.locator('#set-preferred').click();
  await step(page.locator('#mine-result').filter({ hasText: 'Setting your status: done.' }).waitFor());
  const mine = await presenceOf(me);
  check(mine.availability === 'Busy' && mine.activity === 'Busy', `the API sees ${JSON.stringify(mine)}`);
  await step(
    page.waitForFunction((id) => document.querySelector(`#people .card[data-id="${id}"]`)?.dataset.availability === 'Busy', me),
  );
  console.log('preferred presence set through the page: Busy / Busy');

  await page.locator('#message').fill('Reviewing the quarter; back at 3');
  await page.locator('#message-expiry').selectOption('PT4H');
  await page.locator('#set-message').click();
  await step(page.locator('#mine-result').filter({ hasText: 'Saving your message: done.' }).waitFor());
  const withMessage = await presenceOf(me);
  // (Only its owner reads the expiry: the Rust test checks it.)
  check(
    withMessage.statusMessage?.message?.content === 'Reviewing the quarter; back at 3',
    `the API sees ${JSON.stringify(withMessage.statusMessage)}`,
  );
  await step(card(me).locator('.status-message').filter({ hasText: 'Reviewing the quarter' }).waitFor());

  // An error from the API is shown in words, and nothing changes.
  await page.locator('#duration').selectOption('custom');
  await page.locator('#custom-duration').fill('soon');
  await page.locator('#set-preferred').click();
  await page.locator('#error').filter({ hasText: 'Setting your status failed' }).waitFor();
  console.log(`an API error in words: ${await page.locator('#error').textContent()}`);
  const unchanged = await presenceOf(me);
  check(unchanged.availability === 'Busy', `a refused change changed presence: ${JSON.stringify(unchanged)}`);
  await page.locator('#duration').selectOption('PT1H');
  await page.locator('#error').evaluate((e) => (e.textContent = ''));

  // --- Search by name, user name or mail ---
  const visible = () => page.locator('#people .card:visible').count();
  await page.locator('#search').fill('MEGAN');
  check((await visible()) === 1, `search "MEGAN" shows ${await visible()} cards`);
  await page.locator('#search').fill('contoso.com');
  check((await visible()) === people.length, 'search by mail domain shows everyone');
  await page.locator('#search').fill('nobody-by-this-name');
  check((await visible()) === 0, 'a search that matches nobody shows nobody');
  await page.locator('#search').fill('');

  // --- Keyboard: Tab reaches the controls, focus is visible ---
  await page.locator('body').click({ position: { x: 1, y: 1 } });
  const reached = [];
  for (let i = 0; i < 40 && !reached.includes('search'); i++) {
    await page.keyboard.press('Tab');
    reached.push(await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName));
  }
  for (const id of ['sign-out', 'preferred', 'set-preferred', 'message', 'set-message', 'search']) {
    check(reached.includes(id), `Tab never reached #${id}: ${reached.join(' ')}`);
  }
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  check(outline !== 'none', `the focused search box has no visible outline`);
  console.log(`tab order: ${reached.join(' → ')}`);

  // --- Screenshots: desktop and phone; no horizontal scroll at 320 px ---
  await page.mouse.move(0, 0);
  await page.locator('#search').blur();
  const desktop = join(outDir, 'board-desktop.png');
  await page.screenshot({ path: desktop });
  console.log(`screenshot: ${desktop}`);
  await page.setViewportSize({ width: 360, height: 740 });
  const phone = join(outDir, 'board-phone.png');
  await page.screenshot({ path: phone, fullPage: true });
  console.log(`screenshot: ${phone}`);
  for (const width of [360, 320]) {
    await page.setViewportSize({ width, height: 740 });
    const sizes = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    check(sizes[0] <= sizes[1], `at ${width} px the page scrolls sideways: ${sizes[0]} > ${sizes[1]}`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });

  // Dark when the system is.
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const light = await background();
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await background();
  check(light !== dark, `the same background in light and dark: ${light}`);
  const darkShot = join(outDir, 'board-dark.png');
  await page.screenshot({ path: darkShot });
  console.log(`screenshot: ${darkShot} (background ${dark})`);
  await page.emulateMedia({ colorScheme: 'light' });

  // --- Tokens near their expiry are refreshed (a reload finds them so) ---
  const before = await page.evaluate(() => {
    const session = JSON.parse(sessionStorage.getItem('presenced.board.session'));
    session.expiresAt = Date.now() + 20_000;
    sessionStorage.setItem('presenced.board.session', JSON.stringify(session));
    return session;
  });
  await page.reload();
  await step(page.locator('#people .card').nth(people.length - 1).waitFor());
  const renewed = await page.evaluate(() => JSON.parse(sessionStorage.getItem('presenced.board.session')));
  check(renewed.refreshToken !== before.refreshToken, 'the refresh token was not rotated');
  check(renewed.accessToken !== before.accessToken, 'no new access token');
  check(renewed.expiresAt - Date.now() > 30 * 60_000, `the new token expires at ${renewed.expiresAt}`);
  console.log('tokens refreshed before expiry; the board reloaded with them');

  // --- A server without the live stream: the board polls ---
  await page.route('**/v1.0/presences/stream?**', (route) =>
    route.fulfill({
      status: 404,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'NotFound', message: 'The live stream is off on this server.' } }),
    }),
  );
  await page.reload();
  await step(page.locator('#live').filter({ hasText: 'Refreshed every 10 s' }).waitFor());
  await api('POST', `/users/${caller}/presence/setPresence`, {
    sessionId: app,
    availability: 'Away',
    activity: 'Away',
    expirationDuration: 'PT1H',
  });
  await step(
    page.waitForFunction(
      (id) => document.querySelector(`#people .card[data-id="${id}"]`)?.dataset.availability === 'Away',
      caller,
      { polling: 100, timeout: 15_000 },
    ),
  );
  console.log('without the live stream the board polled and showed the change');
  await page.unroute('**/v1.0/presences/stream?**');
  await api('POST', `/users/${caller}/presence/setPresence`, {
    sessionId: app,
    availability: 'DoNotDisturb',
    activity: 'Presenting',
    expirationDuration: 'PT1H',
  });

  // --- Sign out: tokens gone, back at the board ---
  await page.locator('#sign-out').click();
  await step(page.waitForURL((url) => url.origin === boardOrigin && url.pathname === '/'));
  await step(page.locator('#signed-out').waitFor());
  const after = await page.evaluate(() => Object.keys(sessionStorage));
  check(!after.includes('presenced.board.session'), `sessionStorage after sign-out: ${after}`);

  check(foreign.length === 0, `requests left the board's origin:\n${foreign.join('\n')}`);
  console.log(`responses >= 400 seen by the page: ${failures.length ? failures.join('; ') : 'none'}`);
  console.log('board test passed');
} catch (error) {
  console.error(`page console:\n${console_.join('\n')}`);
  console.error(`responses >= 400:\n${failures.join('\n')}`);
  try {
    const page = context.pages()[0];
    const screenshot = join(outDir, 'board-failure.png');
    await page.screenshot({ path: screenshot, fullPage: true, timeout: 5_000 });
    console.error(`screenshot of the failure: ${screenshot}`);
  } catch {
    // the screenshot is a diagnostic only
  }
  process.exitCode = 1;
  console.error(`${error.stack ?? error}`);
} finally {
  await context.close();
  rmSync(home, { recursive: true, force: true });
}
