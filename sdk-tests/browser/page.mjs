// What the browser tests record of a page, and how they wait on it: shared
// by run.mjs (the msal-browser app) and board.mjs (the presence board).

/** Empty lists of what a page did: requests to foreign origins, answers >= 400, console lines. */
export function seen() {
  return { foreign: [], failures: [], console: [] };
}

/** Records into `log` what `page` requests outside `origins`, answers >= 400 and console output. */
export function record(page, origins, log) {
  page.on('request', (request) => {
    const url = request.url();
    if (!origins.includes(new URL(url).origin) && !url.startsWith('data:')) log.foreign.push(url);
  });
  page.on('response', (response) => {
    if (response.status() >= 400) log.failures.push(`${response.status()} ${response.request().method()} ${response.url()}`);
  });
  page.on('console', (message) => log.console.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => log.console.push(`pageerror: ${error.stack ?? error}`));
}

/** `step(promise)`: waits for `promise`, or fails at once with what the page reports in `#error`. */
export function stepper(page, timeout) {
  const pageError = page.locator('#error:not(:empty)');
  return async (promise) => {
    const reported = pageError.waitFor({ timeout: timeout + 1_000 }).then(
      () => true,
      () => false,
    );
    const outcome = await Promise.race([
      promise.then((value) => ({ value })),
      reported.then((yes) => (yes ? { reported: true } : new Promise(() => {}))),
    ]);
    if (outcome.reported) throw new Error(`the page reported: ${await pageError.textContent()}`);
    return outcome.value;
  };
}
