// Drives Debian's Chromium (playwright-core, never a downloaded browser) through the
// authorization server's pages as a person on a phone would: sign in, consent, the
// connected-apps page, revoke, sign out. Run by tests/e2e/test_browser.py with one JSON
// argument: { authorizeUrl, accountUrl, errorUrl, callbackPrefix, username, password,
// description, clientName, screenshot }. Prints a JSON report; exits 1 when a check failed.
import { chromium } from 'playwright-core';

const input = JSON.parse(process.argv[2]);
const PHONE = { width: 360, height: 740 };
const failures = [];
const consoleErrors = [];
const visited = [];

function check(ok, message) {
  if (!ok) failures.push(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2 });
  // Collected in the page, so violations of the page's own policy are seen whatever the
  // console says.
  await context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = await context.newPage();
  // An error page answers 4xx, which Chromium reports as a failed resource load: that is the
  // page's status, not a fault of the page.
  let expectFailedLoad = false;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (expectFailedLoad && m.text().startsWith('Failed to load resource')) return;
    consoleErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));

  // What every page must be: no CSP violation, no sideways scrolling on a phone, a label for
  // every input a person fills in, the stylesheet applied.
  async function checkPage(name) {
    const facts = await page.evaluate(() => {
      const unlabeled = [...document.querySelectorAll('input:not([type=hidden])')]
        .filter((i) => i.labels.length === 0)
        .map((i) => i.name);
      const buttons = [...document.querySelectorAll('button')]
        .filter((b) => !(b.textContent.trim() || b.getAttribute('aria-label')));
      return {
        scrollWidth: document.scrollingElement.scrollWidth,
        innerWidth: window.innerWidth,
        unlabeled,
        unnamedButtons: buttons.length,
        violations: window.__violations || [],
        styled: getComputedStyle(document.querySelector('main')).backgroundColor,
        title: document.title,
      };
    });
    visited.push({ name, ...facts });
    check(facts.scrollWidth <= facts.innerWidth,
      `${name}: scrolls sideways at ${PHONE.width}px (${facts.scrollWidth} > ${facts.innerWidth})`);
    check(facts.unlabeled.length === 0, `${name}: inputs without a label: ${facts.unlabeled}`);
    check(facts.unnamedButtons === 0, `${name}: buttons without a name`);
    check(facts.violations.length === 0, `${name}: CSP violations: ${facts.violations}`);
    check(facts.styled === 'rgb(255, 255, 255)', `${name}: the stylesheet is not applied (${facts.styled})`);
    return facts;
  }

  // Sign in with the keyboard: the first Tab reaches the username field.
  await page.goto(input.authorizeUrl);
  await checkPage('sign-in');
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.name);
  check(focused === 'username', `sign-in: the first Tab focuses ${focused}, not the username`);
  await page.keyboard.type(input.username);
  await page.getByLabel('Password').fill(input.password);
  await page.getByLabel('Password').press('Enter');
  await page.waitForSelector('button[value=approve]');

  const consent = await checkPage('consent');
  check(consent.title.includes(input.productName), `consent: the title ${consent.title} lacks the product name`);
  const described = await page.locator('ul.scopes li', { hasText: input.description }).count();
  check(described === 1, `consent: the description "${input.description}" is not shown next to its scope`);
  await page.screenshot({ path: input.screenshot, fullPage: true });
  await Promise.all([
    page.waitForURL((u) => u.href.startsWith(input.callbackPrefix)),
    page.click('button[value=approve]'),
  ]);
  const code = new URL(page.url()).searchParams.get('code');
  check(Boolean(code), 'no code after Allow');

  await page.goto(input.accountUrl);
  await checkPage('connected apps');
  check(await page.getByText(input.clientName).count() > 0, `connected apps: ${input.clientName} is not listed`);
  await page.getByRole('button', { name: `Revoke access of ${input.clientName}` }).click();
  await page.waitForSelector('text=Access revoked.');
  await checkPage('after revoke');
  check(await page.getByText(input.clientName).count() === 0, 'the revoked app is still listed');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForSelector('text=You are signed out.');
  await checkPage('signed out');

  expectFailedLoad = true;
  await page.goto(input.errorUrl);
  await checkPage('error');
  expectFailedLoad = false;
  await context.close();
} catch (e) {
  failures.push(`the walk through the pages stopped: ${e.stack || e}`);
} finally {
  await browser.close();
}
for (const e of consoleErrors) failures.push(`console error: ${e}`);
console.log(JSON.stringify({ failures, visited }, null, 2));
process.exit(failures.length ? 1 : 0);
