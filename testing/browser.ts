/**
 * Debian's chromium, headless, driven by playwright-core (which never downloads a browser here):
 * for the tests and the script that look at the status page as an admin's browser does.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';

/** Where Debian's `chromium` package puts the browser (scripts/test-deps.sh installs it). */
export const CHROMIUM = process.env.MXGUARD_CHROMIUM ?? '/usr/bin/chromium';

/** Starts headless chromium: no sandbox, no GPU, no extensions. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (scripts/test-deps.sh)`);
  }
  // No sandbox: chromium refuses to start as root with one, and CI containers often lack the user
  // namespaces it needs otherwise; the browser only ever loads our own pages on loopback.
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--disable-extensions',
  ];
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 30_000 });
}

/** What went wrong in a page: console errors and warnings, uncaught exceptions, failed requests, dialogs. */
export interface PageTrouble {
  readonly console: string[];
  readonly errors: string[];
  readonly failed: string[];
  readonly dialogs: string[];
}

/**
 * A new page that records its trouble. Dialogs (an `alert()` an injected script would open) are
 * recorded and dismissed.
 */
export async function watchedPage(browser: Browser): Promise<{ page: Page; trouble: PageTrouble }> {
  const page = await browser.newPage();
  const trouble: PageTrouble = { console: [], errors: [], failed: [], dialogs: [] };
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') trouble.console.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => trouble.errors.push(e.message));
  page.on('requestfailed', (r) => trouble.failed.push(`${r.url()}: ${r.failure()?.errorText ?? '?'}`));
  page.on('dialog', (d) => {
    trouble.dialogs.push(`${d.type()}: ${d.message()}`);
    void d.dismiss();
  });
  return { page, trouble };
}
