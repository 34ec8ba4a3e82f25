// The trading page in headless Chromium against a running `castle serve`:
// log in, place a limit order, see it in the book and in open orders,
// cancel it, then cross a resting order from a second account and see the
// trade; then sign in through single sign-on (authorization code + PKCE
// against the local OIDC stand-in, oidc-standin.mjs: the gateway verifies
// its ID token against the stand-in's JWKS) and place an order. Prints `rest-e2e: N passed, M failed` (steps after a failure are
// counted as failed, never skipped).
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const url = process.env.CASTLE_URL;
const oidc = process.env.CASTLE_OIDC;
const secrets = { 1: process.env.CASTLE_SECRET_1, 2: process.env.CASTLE_SECRET_2 };
const artifacts = process.env.REST_E2E_ARTIFACTS || 'artifacts';
mkdirSync(artifacts, { recursive: true });
const T = 60_000;

const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const dirs = [];
async function browser() {
  const dir = mkdtempSync(join(tmpdir(), 'castle-e2e-')); // a fresh profile each time
  dirs.push(dir);
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium', headless: true, args, ignoreHTTPSErrors: true,
    viewport: { width: 1600, height: 900 },
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  return { ctx, page };
}

let passed = 0, failed = 0, broken = null;
async function step(name, fn) {
  if (broken) { failed++; console.log(`FAIL - ${name} (not run: '${broken}' failed)`); return; }
  try { await fn(); passed++; console.log(`ok - ${name}`); }
  catch (e) { failed++; broken = name; console.log(`FAIL - ${name}: ${e.message.split('\n')[0]}`); }
}

async function login(page, account) {
  await page.fill('#key-id', `demo-account-${account}`);
  await page.fill('#key-secret', secrets[account]);
  await page.click('#login-btn');
  await page.waitForFunction((a) => document.querySelector('#account-label').textContent === `Account ${a}`, account, { timeout: T });
  await page.waitForSelector('#balances tr[data-asset="USDT"]', { timeout: T });
}

async function order(page, side, price, qty) {
  await page.click(side === 'BUY' ? '#side-buy' : '#side-sell');
  await page.click('#type-limit');
  await page.fill('#price', price);
  await page.fill('#qty', qty);
  await page.click('#submit');
  await page.waitForFunction(() => /^Order \d+/.test(document.querySelector('#ticket-msg').textContent), null, { timeout: T });
  return page.textContent('#ticket-msg');
}

const one = await browser();
const p1 = one.page;
let two = null, three = null;
try {
  await step('page loads instruments and goes live', async () => {
    await p1.goto(url + '/', { timeout: T });
    await p1.waitForSelector('#symbol option[value="BTC-USDT"]', { state: 'attached', timeout: T });
    await p1.waitForFunction(() => document.querySelector('#ws-status').textContent === 'live', null, { timeout: T });
  });
  await step('log in as account 1 with its demo API key', () => login(p1, 1));
  await step('place a limit buy; it shows in the book and in open orders', async () => {
    const m = await order(p1, 'BUY', '59000.5', '0.25');
    if (!/new/.test(m)) throw new Error(`ticket says ${m}`);
    await p1.waitForSelector('#book-bids .lvl[data-price="59000.50"]', { timeout: T });
    await p1.waitForSelector('#open-orders tr[data-order-id] >> text=59000.50', { timeout: T });
  });
  await step('cancel it from open orders; it leaves the book', async () => {
    await p1.click('#open-orders tr[data-order-id] button.cancel');
    await p1.waitForSelector('#open-orders tr[data-order-id]', { state: 'detached', timeout: T });
    await p1.waitForSelector('#book-bids .lvl[data-price="59000.50"]', { state: 'detached', timeout: T });
  });
  await step('a resting sell from account 1 shows as the best ask', async () => {
    await order(p1, 'SELL', '60500', '0.2');
    await p1.waitForSelector('#book-asks .lvl[data-price="60500.00"]', { timeout: T });
  });
  await step('account 2 crosses it from a second browser', async () => {
    two = await browser();
    await two.page.goto(url + '/', { timeout: T });
    await two.page.waitForFunction(() => document.querySelector('#ws-status').textContent === 'live', null, { timeout: T });
    await login(two.page, 2);
    const m = await order(two.page, 'BUY', '60500', '0.2');
    if (!/filled/.test(m) || !/0\.20000/.test(m)) throw new Error(`ticket says ${m}`);
  });
  await step('account 1 sees the trade, its fill and an empty book side', async () => {
    await p1.waitForFunction(() => {
      const t = document.querySelector('#trades .t span');
      return t && t.textContent === '60500.00';
    }, null, { timeout: T });
    await p1.waitForSelector('#book-asks .lvl[data-price="60500.00"]', { state: 'detached', timeout: T });
    await p1.click('#tab-fills');
    await p1.waitForSelector('#fills tr[data-fill-id] >> text=maker', { timeout: T });
    await p1.waitForFunction(() => document.querySelector('#st-last').textContent === '60500.00', null, { timeout: T });
  });
  await step('sign in with SSO (OIDC code + PKCE, a JWT from a local JWKS) and place an order', async () => {
    if (!oidc) throw new Error('CASTLE_OIDC (the stand-in provider) is not set');
    three = await browser();
    const p = three.page;
    await p.goto(url + '/', { timeout: T });
    await p.waitForSelector('#oidc-btn:not(.hidden)', { timeout: T });
    await p.screenshot({ path: join(artifacts, 'sign-in.png'), clip: { x: 0, y: 0, width: 1600, height: 120 } });
    await p.click('#oidc-btn');
    await p.waitForURL((u) => u.toString().startsWith(oidc + '/authorize'), { timeout: T });
    await p.click('#as-trader-2');
    await p.waitForFunction(() => document.querySelector('#account-label').textContent === 'Account 2', null, { timeout: T });
    if (new URL(p.url()).search !== '') throw new Error(`the code stayed in the address bar: ${p.url()}`);
    await p.waitForSelector('#balances tr[data-asset="USDT"]', { timeout: T });
    await p.waitForFunction(() => document.querySelector('#ws-status').textContent === 'live', null, { timeout: T });
    const m = await order(p, 'BUY', '59100', '0.05');
    if (!/new/.test(m)) throw new Error(`ticket says ${m}`);
    await p.waitForSelector('#open-orders tr[data-order-id] >> text=59100.00', { timeout: T });
    // Balances change only through the user stream, so this shows the WebSocket logged in with the token too.
    const locked = (zero) => p.waitForFunction((z) => {
      const td = document.querySelectorAll('#balances tr[data-asset="USDT"] td')[2];
      return td && /^0(\.0*)?$/.test(td.textContent) === z;
    }, zero, { timeout: T });
    await locked(false);
    await p.click('#open-orders tr[data-order-id] button.cancel');
    await p.waitForSelector('#open-orders tr[data-order-id]', { state: 'detached', timeout: T });
    await locked(true);
  });
  await step('a fuller book for the screenshot', async () => {
    await p1.click('#tab-open');
    for (const [side, price, qty] of [['BUY', '60400', '0.15'], ['BUY', '60350.5', '0.4'], ['BUY', '60200', '1.2'],
      ['SELL', '60600', '0.3'], ['SELL', '60650', '0.75'], ['SELL', '60800', '1.1']]) {
      await order(p1, side, price, qty);
    }
    await p1.waitForSelector('#book-asks .lvl[data-price="60800.00"]', { timeout: T });
    await p1.screenshot({ path: join(artifacts, 'trading-page.png') });
    await p1.goto(url + '/docs', { timeout: T });
    await p1.waitForSelector('.op', { timeout: T });
    await p1.screenshot({ path: join(artifacts, 'docs-page.png') });
  });
} finally {
  if (broken) await p1.screenshot({ path: join(artifacts, 'failure.png') }).catch(() => {});
  await one.ctx.close();
  if (two) await two.ctx.close();
  if (three) await three.ctx.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
console.log(`screenshots in ${artifacts}`);
console.log(`rest-e2e-browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
