// ui.test.mjs — pv's web UI driven in Debian's chromium (headless) by
// playwright-core, against a real pvd on loopback, as a person would use
// it: sign up, upload three photos through the file input, see a duplicate
// and a rejected file explained, select and reorder photos, create a video,
// watch it reach "ready", play it (currentTime advances), delete it, log
// out. Once on a desktop viewport in the light scheme, once on a 390 px
// phone viewport in the dark scheme. Plus the static serving (cache and
// compression headers, CSP) and that no token is readable by page scripts.
//
// No test framework: prints "ok - ..." / "not ok - ..." lines and ends with
// "# ui playwright: N passed, M failed". Screenshots of every screen go to
// $UI_ARTIFACTS (build/test-logs/ui/), with pvd's log.

import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const PVD = process.env.PVD || path.join(ROOT, 'build', 'test', 'bin', 'pvd');
const ART = process.env.UI_ARTIFACTS || path.join(ROOT, 'build', 'test-logs', 'ui');
const FIXTURES = path.join(ROOT, 'tests', 'fixtures');
const RENDER_TIMEOUT = Number(process.env.UI_RENDER_TIMEOUT || 180) * 1000;
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

fs.mkdirSync(ART, { recursive: true });
let passed = 0;
let failed = 0;
const cleanups = [];

function log(...a) { process.stdout.write(a.join(' ') + '\n'); }

// ---------- a pvd of our own ----------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// GET over TLS; the path is sent as written (a URL object would resolve
// "%2e%2e" segments before they reach the server).
function get(url, headers = {}) {
  const m = /^https:\/\/([^/:]+):(\d+)(\/.*)$/.exec(url);
  return new Promise((resolve, reject) => {
    const opts = { host: m[1], port: Number(m[2]), path: m[3], headers, rejectUnauthorized: false, timeout: 10_000 };
    const req = https.get(opts, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout: ' + url)));
    req.on('error', reject);
  });
}

// POST over TLS: JSON (obj) or raw bytes (Buffer) with the given headers.
function post(url, body, headers = {}) {
  const m = /^https:\/\/([^/:]+):(\d+)(\/.*)$/.exec(url);
  const data = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  if (!Buffer.isBuffer(body)) headers = { 'Content-Type': 'application/json', ...headers };
  return new Promise((resolve, reject) => {
    const req = https.request({ host: m[1], port: Number(m[2]), path: m[3], method: 'POST', rejectUnauthorized: false,
      timeout: 20_000, headers: { ...headers, 'Content-Length': data.length } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout: ' + url)));
    req.on('error', reject);
    req.end(data);
  });
}

function plainGet(port, p) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(`GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let buf = '';
    s.setTimeout(2000, () => s.destroy(new Error('timeout')));
    s.on('data', (d) => { buf += d; });
    s.on('end', () => resolve(Number((buf.match(/^HTTP\/1\.[01] (\d+)/) || [])[1] || 0)));
    s.on('error', reject);
  });
}

async function startPvd(env = {}) {
  if (!fs.existsSync(PVD)) throw new Error(`no pvd at ${PVD} (make build/test/bin/pvd)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pvui-'));
  const httpsPort = await freePort();
  const httpPort = await freePort();
  const conf = {
    data_dir: path.join(tmp, 'data'),
    https_listen: `127.0.0.1:${httpsPort}`,
    http_listen: `127.0.0.1:${httpPort}`,
    admin_socket: path.join(tmp, 'admin.sock'),
    login_account_burst: 1000, login_account_per_minute: 1000,
    login_ip_burst: 100000, login_ip_per_minute: 100000,
    signup_ip_burst: 100000, signup_ip_per_minute: 100000,
    // Short-lived access tokens, so that the silent renewal happens while
    // the test works (the page renews at 80% of the lifetime).
    access_token_ttl: 20,
    log_level: 'info',
  };
  const confPath = path.join(tmp, 'pvd.conf');
  fs.writeFileSync(confPath, Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  const logPath = path.join(ART, env.PV_FAILPOINTS ? 'pvd-failing.log' : 'pvd.log');
  const logFd = fs.openSync(logPath, 'a');
  const proc = spawn(PVD, ['--config', confPath], { cwd: tmp, stdio: ['ignore', logFd, logFd], env: { ...process.env, ...env } });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = { code, sig }; });
  proc.on('error', (e) => { exited = { code: 'spawn: ' + e.message, sig: null }; });
  const pvd = { proc, tmp, logPath, base: `https://127.0.0.1:${httpsPort}`, httpPort, get exited() { return exited; } };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`pvd exited (${exited.code ?? exited.sig}) before it was ready; see ${logPath}`);
    try { if (await plainGet(httpPort, '/readyz') === 200) break; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error('pvd was not ready within 30 s');
    await sleep(100);
  }
  cleanups.push(() => stopPvd(pvd));
  return pvd;
}

async function stopPvd(pvd) {
  if (pvd.exited) return pvd.exited;
  pvd.proc.kill('SIGTERM');
  const deadline = Date.now() + 20_000;
  while (!pvd.exited && Date.now() < deadline) await sleep(50);
  if (!pvd.exited) { pvd.proc.kill('SIGKILL'); await sleep(200); }
  fs.rmSync(pvd.tmp, { recursive: true, force: true });
  return pvd.exited;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------- photos to upload ----------

// Three distinct pictures of different shapes, made with ffmpeg when it is
// there (the fixtures are only 80x60), else the fixtures themselves.
function makePhotos() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvui-photos-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const specs = [
    ['sunrise.jpg', 'testsrc2=size=1200x800'],
    ['bars.jpg', 'smptehdbars=size=800x1200'],
    ['fractal.jpg', 'mandelbrot=size=900x900:end_pts=1'],
  ];
  const out = [];
  for (const [name, src] of specs) {
    const f = path.join(dir, name);
    const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', src, '-frames:v', '1', '-q:v', '3', f]);
    if (r.status !== 0 || !fs.existsSync(f)) { out.length = 0; break; }
    out.push(f);
  }
  if (out.length === 3) return out;
  return ['plain.jpg', 'photo.webp', 'alpha.png'].map((n) => path.join(FIXTURES, n));
}

// ---------- the harness ----------

async function step(sc, name, fn) {
  if (sc.broken) return;
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    log(`ok - ${sc.name}: ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    sc.broken = true;
    log(`not ok - ${sc.name}: ${name}`);
    for (const line of String(e && e.stack || e).split('\n').slice(0, 8)) log('#   ' + line);
    await shot(sc, 'FAILED-' + name.replace(/[^a-z0-9]+/gi, '-')).catch(() => {});
  }
}

async function shot(sc, name) {
  sc.n = (sc.n || 0) + 1;
  const f = path.join(ART, `${sc.name}-${String(sc.n).padStart(2, '0')}-${name}.png`);
  await sc.page.screenshot({ path: f, fullPage: false, animations: 'disabled' });
  return f;
}

function check(cond, what) { if (!cond) throw new Error(what); }

// ---------- one pass through the app ----------

async function scenario(browser, pvd, photos, opts) {
  const sc = { name: opts.name, n: 0, broken: false };
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: opts.viewport,
    isMobile: !!opts.mobile,
    hasTouch: !!opts.mobile,
    colorScheme: opts.scheme,
    deviceScaleFactor: 1,
    acceptDownloads: true,
  });
  const page = await context.newPage();
  sc.page = page;
  page.setDefaultTimeout(15_000);
  const problems = [];   // page errors and CSP violations
  const consoleLog = fs.createWriteStream(path.join(ART, `${sc.name}-console.log`));
  page.on('console', (m) => {
    consoleLog.write(`[${m.type()}] ${m.text()}\n`);
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push('CSP: ' + m.text());
  });
  page.on('pageerror', (e) => { problems.push('page error: ' + e.message); consoleLog.write(`[pageerror] ${e.stack}\n`); });
  let refreshes = 0;
  const failed = [];     // failed requests, as the browser's console would show them
  page.on('response', (r) => {
    if (r.url().endsWith('/api/v1/auth/refresh') && r.status() === 200) refreshes++;
    if (r.status() >= 400) failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
  });
  page.on('requestfailed', (r) => failed.push(`failed ${r.method()} ${r.url()}: ${r.failure() && r.failure().errorText}`));
  const email = `ui-${sc.name}-${Date.now()}@example.com`;
  const password = 'correct horse battery';
  const t0 = Date.now();
  const q = (id) => page.locator(`[data-testid="${id}"]`);

  await step(sc, 'the sign-in page loads', async () => {
    const res = await page.goto(pvd.base + '/');
    check(res.status() === 200, 'GET / status ' + res.status());
    await q('email').waitFor({ state: 'visible' });
    await q('password').waitFor({ state: 'visible' });
    check(await q('login').isVisible() && await q('signup').isVisible(), 'log in and sign up buttons are visible');
    await page.waitForLoadState('networkidle');
    check(failed.length === 0, 'a first visit makes no failed request: ' + failed.join(', '));
    await shot(sc, 'sign-in');
  });

  await step(sc, 'a wrong password is explained in words', async () => {
    await q('email').fill(email);
    await q('password').fill('short');
    await q('signup').click();
    const err = page.locator('#auth-error');
    await err.waitFor({ state: 'visible' });
    check(/8 characters/.test(await err.textContent()), 'password hint: ' + await err.textContent());
    await q('password').fill('not the password');
    await q('login').click();
    await page.waitForFunction(() => /do not match|password/i.test(document.querySelector('#auth-error').textContent));
    await shot(sc, 'sign-in-error');
  });

  await step(sc, 'sign up', async () => {
    await q('password').fill(password);
    // Keyboard: the focus ring shows on the button reached with Tab.
    await q('password').focus();
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement.dataset.testid);
    check(focused === 'login', 'Tab from the password reaches Log in, got ' + focused);
    await q('signup').click();
    await q('logout').waitFor({ state: 'visible' });
    await page.locator('#empty-photos').waitFor({ state: 'visible' });
    await shot(sc, 'empty-library');
  });

  await step(sc, 'tokens are out of reach of page scripts', async () => {
    const seen = await page.evaluate(() => ({
      cookie: document.cookie,
      local: JSON.stringify(Object.assign({}, localStorage)),
      session: JSON.stringify(Object.assign({}, sessionStorage)),
      globals: Object.keys(window).filter((k) => /token|access|refresh/i.test(k)),
    }));
    check(!/pv_refresh/.test(seen.cookie), 'document.cookie shows the refresh cookie: ' + seen.cookie);
    check(!/token|eyJ/i.test(seen.local + seen.session), 'a token in web storage: ' + seen.local + seen.session);
    check(seen.globals.length === 0, 'token-like globals: ' + seen.globals);
    const cookies = await context.cookies(pvd.base + '/api/v1/auth/refresh');
    const c = cookies.find((x) => x.name === 'pv_refresh');
    check(c && c.httpOnly && c.secure && c.sameSite === 'Strict', 'pv_refresh is HttpOnly, Secure, SameSite=Strict: ' + JSON.stringify(c));
  });

  await step(sc, 'upload three photos through the file input', async () => {
    await q('upload-input').setInputFiles(photos);
    await page.locator('#uploads').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="photo"]').length === 3, null, { timeout: 60_000 });
    await page.waitForFunction(() => /3 added/.test(document.querySelector('#uploads-summary').textContent));
    const total = await page.evaluate(() => document.querySelector('#uploads-progress').value);
    check(total === 1, 'total progress is full: ' + total);
    const bars = await page.locator('#uploads-list progress').evaluateAll((els) => els.map((e) => e.value));
    check(bars.length === 3 && bars.every((v) => v === 1), 'each file has a full progress bar: ' + bars);
    await page.waitForFunction(() => Array.from(document.querySelectorAll('[data-testid="photo"] img')).every((i) => i.complete && i.naturalWidth > 0));
    await shot(sc, 'uploaded');
  });

  await step(sc, 'a duplicate and a rejected file are explained', async () => {
    const bad = path.join(FIXTURES, 'text.jpg');
    await q('upload-input').setInputFiles([photos[0], bad]);
    const dup = page.locator('[data-testid="notice"][data-kind="warn"]', { hasText: 'already in your library' });
    const rej = page.locator('[data-testid="notice"][data-kind="error"]', { hasText: 'text.jpg' });
    await dup.first().waitFor({ state: 'visible', timeout: 30_000 });
    await rej.first().waitFor({ state: 'visible', timeout: 30_000 });
    const why = await rej.first().textContent();
    check(/not added\. .{10,}/.test(why), 'the rejection gives a reason: ' + why);
    check(await page.locator('[data-testid="photo"]').count() === 3, 'still three photos');
    await page.waitForFunction(() => /1 already there/.test(document.querySelector('#uploads-summary').textContent));
    await shot(sc, 'duplicate-and-rejected');
    await page.locator('#uploads-close').click();
    for (const b of await page.locator('.toast [aria-label="Dismiss"]').all()) await b.click({ timeout: 1000 }).catch(() => {});
  });

  await step(sc, 'open a photo large, and back', async () => {
    await page.locator('[data-testid="photo"] .card-open').first().click();
    const img = page.locator('#viewer-img');
    await img.waitFor({ state: 'visible' });
    await page.waitForFunction(() => { const i = document.querySelector('#viewer-img'); return i.complete && i.naturalWidth > 100; });
    await shot(sc, 'viewer');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Escape');
    await page.locator('#viewer').waitFor({ state: 'hidden' });
  });

  await step(sc, 'the session survives a reload (cookie) and renews itself', async () => {
    await page.reload();
    await q('logout').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="photo"]').length === 3);
  });

  const ids = await page.locator('[data-testid="photo"]').evaluateAll((els) => els.map((e) => e.dataset.id)).catch(() => []);
  await step(sc, 'select three photos', async () => {
    check(ids.length === 3, 'three photo cards with data-id: ' + ids);
    if (opts.mobile) {
      for (const id of ids.slice().reverse()) await page.locator(`[data-testid="photo"][data-id="${id}"] .card-select`).click();
    } else {
      // By keyboard: arrows move between photos, x selects the focused one.
      await page.locator(`[data-testid="photo"][data-id="${ids[2]}"] .card-open`).focus();
      await page.keyboard.press('x');
      await page.keyboard.press('ArrowLeft');
      const at = await page.evaluate(() => document.activeElement.closest('[data-testid="photo"]').dataset.id);
      check(at === ids[1], 'ArrowLeft moved the focus to the previous photo');
      await page.keyboard.press('x');
      await shot(sc, 'keyboard-focus');
      await page.locator(`[data-testid="photo"][data-id="${ids[0]}"] .card-select`).click();
    }
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="photo"] [data-testid="selected"]').length === 3);
    check(/3 selected/.test(await page.locator('#sel-count').textContent()), 'the bar says 3 selected');
    await shot(sc, 'selected');
  });

  await step(sc, 'the create-video dialog shows the duration', async () => {
    await q('create-video').click();
    await page.locator('#create-dialog').waitFor({ state: 'visible' });
    await page.locator('#v-title').fill(`Holiday ${sc.name}`);
    await page.locator('#v-spp').fill('2');
    await page.locator('#v-transition').selectOption('fade');
    await page.locator('#v-tsec').selectOption('0.5');
    await page.locator('#v-res').selectOption('480p');
    await page.locator('label.chip', { hasText: opts.mobile ? '9:16' : '16:9' }).click();
    // 3 × 2 − 2 × 0.5 = 5 s
    await page.waitForFunction(() => document.querySelector('#v-duration').textContent === '0:05');
    await page.locator('#v-tsec').selectOption('1');
    await page.waitForFunction(() => document.querySelector('#v-duration').textContent === '0:04');
    await page.locator('#v-transition').selectOption('none');
    await page.waitForFunction(() => document.querySelector('#v-duration').textContent === '0:06');
    await page.locator('#v-transition').selectOption('fade');
    await page.locator('#v-tsec').selectOption('0.5');
    await shot(sc, 'create-video');
  });

  await step(sc, 'reorder the photos (keyboard, and dragging on desktop)', async () => {
    const order = () => page.locator('#order li').evaluateAll((els) => els.map((e) => e.dataset.id));
    const before = await order();
    check(before.join() === ids.slice().reverse().join(), 'the order is the order of selection');
    await page.locator('#order li').first().focus();
    await page.keyboard.press('ArrowRight');
    const afterKey = await order();
    check(afterKey[1] === before[0] && afterKey[0] === before[1], 'ArrowRight moved the first photo one place: ' + afterKey);
    if (!opts.mobile) {
      const first = page.locator('#order li').nth(0);
      const last = page.locator('#order li').nth(2);
      const a = await first.boundingBox();
      const b = await last.boundingBox();
      await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
      await page.mouse.down();
      for (let i = 1; i <= 10; i++) await page.mouse.move(a.x + a.width / 2 + ((b.x + b.width * 0.8) - (a.x + a.width / 2)) * i / 10, a.y + a.height / 2);
      await page.mouse.up();
      const afterDrag = await order();
      check(afterDrag[2] === afterKey[0], 'dragging moved the first photo to the end: ' + afterDrag);
      await shot(sc, 'reordered');
    }
    // The grid's numbers follow the new order.
    const marks = await page.locator('[data-testid="photo"]').evaluateAll((els) =>
      Object.fromEntries(els.map((e) => [e.dataset.id, (e.querySelector('[data-testid="selected"]') || {}).textContent])));
    const now = await order();
    check(now.every((id, i) => marks[id] === String(i + 1)), 'selection numbers follow the order: ' + JSON.stringify(marks));
  });

  let videoId = null;
  await step(sc, 'start the video and watch it reach ready', async () => {
    await q('video-submit').click();
    await page.locator('#create-dialog').waitFor({ state: 'hidden' });
    await page.waitForURL(/\/videos$/);
    const card = q('video').first();
    await card.waitFor({ state: 'visible' });
    videoId = await card.getAttribute('data-id');
    const status0 = await card.getAttribute('data-status');
    check(['queued', 'running', 'ready'].includes(status0), 'a new video is queued or running: ' + status0);
    if (status0 !== 'ready') {
      await q('video-progress').first().waitFor({ state: 'visible' }).catch(() => {});
      await shot(sc, 'rendering');
    }
    const seen = new Set([status0]);
    const deadline = Date.now() + RENDER_TIMEOUT;
    let last = status0;
    while (Date.now() < deadline) {
      last = await card.getAttribute('data-status');
      seen.add(last);
      if (last === 'ready' || last === 'failed' || last === 'cancelled') break;
      await sleep(100);
    }
    if (last === 'failed') throw new Error('the video failed: ' + await card.locator('[data-testid="video-error"]').textContent());
    check(last === 'ready', 'the video is ready within the time limit, last status ' + last);
    await card.locator('[data-testid="video-play"]').waitFor({ state: 'visible' });
    await page.waitForFunction(() => { const i = document.querySelector('[data-testid="video"] .vthumb img'); return !i || (i.complete && i.naturalWidth > 0); });
    await shot(sc, 'video-ready');
  });

  await step(sc, 'play the video in the page; it advances and seeks', async () => {
    await q('video').first().locator('[data-testid="video-play"]').click();
    const v = q('video-player');
    await v.waitFor({ state: 'visible' });
    await page.waitForFunction(() => { const el = document.querySelector('[data-testid="video-player"]'); return el.currentTime > 0.5; }, null, { timeout: 20_000 });
    const seekable = await v.evaluate((el) => new Promise((resolve) => {
      el.addEventListener('seeked', () => resolve(el.currentTime), { once: true });
      el.currentTime = 3;
      setTimeout(() => resolve(-1), 8000);
    }));
    check(seekable >= 2.9, 'seeking to 3 s works, at ' + seekable);
    await v.evaluate((el) => el.pause());
    await shot(sc, 'player');
    await page.keyboard.press('Escape');
    await page.locator('#player-dialog').waitFor({ state: 'hidden' });
  });

  await step(sc, 'copy the link and download', async () => {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: pvd.base });
    await q('video').first().locator('[data-testid="video-copy"]').click();
    await page.locator('[data-testid="notice"]', { hasText: 'Link copied' }).waitFor({ state: 'visible' });
    const link = await page.evaluate(() => navigator.clipboard.readText());
    check(link.startsWith(pvd.base + '/media/videos/'), 'the link is a presigned media URL: ' + link);
    const res = await get(link, { Range: 'bytes=0-99' });
    check(res.status === 206 && res.body.length === 100, 'the link serves ranges without a token: ' + res.status);
    const [dl] = await Promise.all([page.waitForEvent('download'), q('video').first().locator('[data-testid="video-download"]').click()]);
    check(/\.mp4$/.test(dl.suggestedFilename()), 'download name ends in .mp4: ' + dl.suggestedFilename());
  });

  await step(sc, 'share the video: a link that works without an account, then revoke it', async () => {
    await q('video').first().locator('[data-testid="video-share"]').click();
    const d = page.locator('#share-dialog');
    await d.waitFor({ state: 'visible' });
    await q('share-days').selectOption('1');
    await q('share-create').click();
    await page.locator('[data-testid="notice"]', { hasText: 'Share link copied' }).waitFor({ state: 'visible' });
    const link = await q('share-link').inputValue();
    check(new RegExp('^' + pvd.base + '/s/[A-Za-z0-9_-]{43}$').test(link), 'a share link: ' + link);
    check((await page.evaluate(() => navigator.clipboard.readText())) === link, 'the link is on the clipboard');
    await q('share-item').first().waitFor({ state: 'visible' });
    check(await q('share-item').count() === 1, 'the dialog lists the link');
    await shot(sc, 'share-dialog');
    // The share page in a browser with no session: same CSP, no errors, fits the width.
    const guest = await browser.newContext({ ignoreHTTPSErrors: true, viewport: opts.viewport, isMobile: !!opts.mobile,
      hasTouch: !!opts.mobile, colorScheme: opts.scheme, deviceScaleFactor: 1 });
    const gp = await guest.newPage();
    const gProblems = [];
    gp.on('console', (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) gProblems.push('CSP: ' + m.text()); });
    gp.on('pageerror', (e) => gProblems.push('page error: ' + e.message));
    try {
      const res = await gp.goto(link);
      check(res.status() === 200, 'the share page answers 200, not ' + res.status());
      await gp.locator('h1', { hasText: `Holiday ${sc.name}` }).waitFor({ state: 'visible' });
      const ok = await gp.evaluate(() => new Promise((resolve) => {
        const v = document.querySelector('video');
        if (v.readyState >= 1) resolve(v.duration > 0);
        v.addEventListener('loadedmetadata', () => resolve(v.duration > 0), { once: true });
        setTimeout(() => resolve(false), 10000);
      }));
      check(ok, 'the player loads the shared MP4');
      const layout = await gp.evaluate(() => ({
        overflow: document.scrollingElement.scrollWidth - window.innerWidth,
        video: document.querySelector('video').getBoundingClientRect().width,
        styled: getComputedStyle(document.querySelector('.share-download')).backgroundColor,
      }));
      check(layout.overflow <= 0, 'the share page fits the width (overflow ' + layout.overflow + ' px)');
      check(layout.video > 0 && layout.video <= (opts.viewport.width), 'the player fits: ' + layout.video);
      check(!/^(transparent|rgba\(0, 0, 0, 0\))$/.test(layout.styled), 'the stylesheet applies under the CSP: ' + layout.styled);
      check(await gp.locator('a.share-download').getAttribute('download'), 'a download link');
      check(await gp.locator('meta[property="og:video"]').count() === 1, 'the og:video tag');
      await gp.screenshot({ path: path.join(ART, `${sc.name}-share-page.png`), fullPage: false, animations: 'disabled' });
      check(gProblems.length === 0, 'the share page has no CSP or script problems: ' + gProblems.join('; '));
      // Revoke in the owner's dialog: the page is the 404 page.
      await q('share-revoke').first().click();
      await page.locator('[data-testid="notice"]', { hasText: 'revoked' }).waitFor({ state: 'visible' });
      const again = await gp.goto(link);
      check(again.status() === 404, 'a revoked link answers 404, not ' + again.status());
      await gp.locator('h1', { hasText: 'does not work' }).waitFor({ state: 'visible' });
    } finally {
      await guest.close();
    }
    await page.keyboard.press('Escape');
    await d.waitFor({ state: 'hidden' });
  });

  await step(sc, 'delete the video', async () => {
    await q('video').first().locator('[data-testid="video-delete"]').click();
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    await shot(sc, 'confirm-delete');
    await q('confirm-ok').click();
    await page.locator(`[data-testid="video"][data-id="${videoId}"]`).waitFor({ state: 'detached' });
    await page.locator('#empty-videos').waitFor({ state: 'visible' });
    await shot(sc, 'video-deleted');
  });

  await step(sc, 'a photo in a video being made cannot be deleted, and the page says why', async () => {
    await page.locator('.tabs a[data-route="photos"]').click();
    for (const id of ids) await page.locator(`[data-testid="photo"][data-id="${id}"] .card-select`).click();
    await q('create-video').click();
    await page.locator('#v-spp').fill('30');
    await page.locator('#v-res').selectOption('1080p');
    await q('video-submit').click();
    await q('video').first().waitFor({ state: 'visible' });
    await page.locator('.tabs a[data-route="photos"]').click();
    await page.locator(`[data-testid="photo"][data-id="${ids[0]}"] .card-open`).click();
    await q('photo-delete').click();
    await q('confirm-ok').click();
    const note = page.locator('[data-testid="notice"][data-kind="error"]', { hasText: 'still being made' });
    await note.waitFor({ state: 'visible' });
    await shot(sc, 'photo-in-use');
    await page.keyboard.press('Escape');
    check(await page.locator('[data-testid="photo"]').count() === 3, 'the photo is still there');
  });

  await step(sc, 'cancel a video while it renders', async () => {
    await page.locator('.tabs a[data-route="videos"]').click();
    const card = q('video').first();
    await card.waitFor({ state: 'visible' });
    check(['queued', 'running'].includes(await card.getAttribute('data-status')), 'the video is still being made');
    await card.locator('[data-testid="video-cancel"]').click();
    await q('confirm-ok').click();
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-testid="video"]');
      return !c || c.dataset.status === 'cancelled';
    });
    await shot(sc, 'cancelled');
  });

  await step(sc, 'the access token was renewed silently', async () => {
    // Tokens live 20 s here and the page renews them at 80% of that, on
    // its own: wait for one renewal (at most a token's lifetime and a bit).
    const base = refreshes;
    const until = Date.now() + 25_000;
    while (refreshes === base && Date.now() < until) await sleep(200);
    const r = await page.evaluate(() => fetch('/api/v1/me').then((x) => x.status));
    check(r === 401, 'a request without the token is refused (' + r + ')');
    await page.locator('.tabs a[data-route="photos"]').click();
    await page.locator('.tabs a[data-route="videos"]').click();
    check(refreshes > base, 'a silent refresh within 25 s');
    await page.waitForLoadState('networkidle');
    check(!(await page.locator('#auth').isVisible()), 'no sign-in form after the renewal');
    check(await q('logout').isVisible(), 'still signed in');
  });

  if (!opts.mobile) {
    await step(sc, 'the grid loads more photos as it scrolls', async () => {
      // 65 more photos through the API (the page shows 60 at first).
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvui-many-'));
      cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
      const r = spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=5', '-frames:v', '65', path.join(dir, 'f%03d.jpg')]);
      check(r.status === 0, 'ffmpeg made 65 frames: ' + r.stderr);
      const login = await post(pvd.base + '/api/v1/auth/login', { email, password });
      check(login.status === 200, 'API login ' + login.status);
      const files = fs.readdirSync(dir).sort();
      for (let i = 0; i < files.length; i += 4) {
        await Promise.all(files.slice(i, i + 4).map(async (f) => {
          const up = await post(pvd.base + '/api/v1/photos', fs.readFileSync(path.join(dir, f)),
            { 'Content-Type': 'image/jpeg', 'X-Filename': f, Authorization: 'Bearer ' + login.json.access_token });
          check(up.status === 201, `upload ${f}: ${up.status} ${up.text.slice(0, 200)}`);
        }));
      }
      const pages = [];
      const seen = (r) => { if (/\/api\/v1\/photos\?/.test(r.url())) pages.push(r.url()); };
      page.on('request', seen);
      await page.locator('.tabs a[data-route="photos"]').click();
      await page.reload();
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="photo"]').length >= 60);
      await page.mouse.wheel(0, 20000);
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="photo"]').length === 68, null, { timeout: 20_000 });
      page.off('request', seen);
      check(pages.length === 2 && /limit=60/.test(pages[0]) && !/cursor=/.test(pages[0]) && /cursor=/.test(pages[1]),
        'two pages, the second by cursor: ' + pages.join(' '));
      const distinct = new Set(await page.locator('[data-testid="photo"]').evaluateAll((els) => els.map((e) => e.dataset.id)));
      check(distinct.size === 68, 'no photo twice');
      check(/68 photos/.test(await page.locator('#photo-count').textContent()), 'the count says 68 photos');
      await shot(sc, 'many-photos');
    });

    await step(sc, 'delete a photo from the large view', async () => {
      const first = page.locator('[data-testid="photo"]').first();
      const id = await first.getAttribute('data-id');
      await first.locator('.card-open').click();
      await q('photo-delete').click();
      await q('confirm-ok').click();
      await page.locator(`[data-testid="photo"][data-id="${id}"]`).waitFor({ state: 'detached' });
      check(/67 photos/.test(await page.locator('#photo-count').textContent()), 'the count says 67 photos');
      // The viewer moved on to the next photo; close it.
      await page.keyboard.press('Escape');
      await page.locator('#viewer').waitFor({ state: 'hidden' });
    });
  }

  await step(sc, 'log out', async () => {
    await q('logout').click();
    await q('login').waitFor({ state: 'visible' });
    await shot(sc, 'logged-out');
    failed.length = 0;
    await page.reload();
    await q('login').waitFor({ state: 'visible' });
    await page.waitForLoadState('networkidle');
    check(!(await q('logout').isVisible()), 'a reload after logging out stays logged out');
    check(failed.length === 0, 'a visit after logging out makes no failed request: ' + failed.join(', '));
  });

  await step(sc, 'no CSP violation and no script error', async () => {
    check(problems.length === 0, problems.join('\n'));
  });

  consoleLog.end();
  await context.close();
}

function sanitizerLines(logPath) {
  const text = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '';
  return text.split('\n').filter((l) => /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer/.test(l));
}

// ---------- a render that fails ----------

// A pvd whose encoder always fails (the failure seam): the card says
// failed, and why, and offers to make it again.
async function failureScenario(browser, photos) {
  const sc = { name: 'failure', n: 0, broken: false };
  let pvd = null;
  await step(sc, 'a pvd whose renders fail starts', async () => {
    pvd = await startPvd({ PV_FAILPOINTS: 'render_encoder:1+' });
  });
  if (!pvd) return;
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1024, height: 720 }, colorScheme: 'dark' });
  const page = await context.newPage();
  sc.page = page;
  page.setDefaultTimeout(15_000);
  const q = (id) => page.locator(`[data-testid="${id}"]`);
  await step(sc, 'a failed video says why', async () => {
    await page.goto(pvd.base + '/');
    await q('email').fill(`ui-fail-${Date.now()}@example.com`);
    await q('password').fill('correct horse battery');
    await q('signup').click();
    await q('logout').waitFor({ state: 'visible' });
    await q('upload-input').setInputFiles(photos.slice(0, 2));
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="photo"]').length === 2);
    for (const c of await page.locator('[data-testid="photo"] .card-select').all()) await c.click();
    await q('create-video').click();
    await page.locator('#v-title').fill('Doomed');
    await q('video-submit').click();
    const card = q('video').first();
    await page.waitForFunction(() => { const c = document.querySelector('[data-testid="video"]'); return c && c.dataset.status === 'failed'; }, null, { timeout: 60_000 });
    const why = await card.locator('[data-testid="video-error"]').textContent();
    check(why.length > 10 && !/did not say/.test(why), 'the reason is shown: ' + why);
    await card.locator('[data-testid="video-retry"]').waitFor({ state: 'visible' });
    await page.locator('[data-testid="notice"][data-kind="error"]', { hasText: 'Doomed' }).waitFor({ state: 'visible' }).catch(() => {});
    await shot(sc, 'failed');
  });
  await context.close();
  const ex = await stopPvd(pvd);
  await step(sc, 'the failing pvd stops cleanly', async () => {
    check(ex && ex.code === 0, 'exit ' + JSON.stringify(ex));
    const bad = sanitizerLines(pvd.logPath);
    check(bad.length === 0, bad.join('\n'));
  });
}

// ---------- serving ----------

async function servingChecks(pvd) {
  const sc = { name: 'serving', page: null };
  const step2 = (name, fn) => step({ ...sc, broken: false, page: { screenshot: async () => {} } }, name, fn);
  let html = '';
  await step2('GET / is the page, not cached, with the CSP', async () => {
    const r = await get(pvd.base + '/');
    check(r.status === 200, 'status ' + r.status);
    check(/^text\/html/.test(r.headers['content-type']), 'type ' + r.headers['content-type']);
    check(r.headers['cache-control'] === 'no-cache', 'cache-control ' + r.headers['cache-control']);
    check(/script-src 'self'/.test(r.headers['content-security-policy'] || ''), 'CSP ' + r.headers['content-security-policy']);
    html = r.body.toString();
    check(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), 'no inline script');
    check(!/\sstyle=/i.test(html), 'no inline style attribute');
    check(!/https?:\/\//.test(html.replace(/xmlns="http:\/\/www\.w3\.org\/[^"]*"/g, '')), 'no external URL in the page');
    const v = await get(pvd.base + '/videos');
    check(v.status === 200 && v.body.equals(r.body), '/videos is the same page');
    const n = await get(pvd.base + '/nope');
    check(n.status === 404 && /"error"/.test(n.body.toString()), 'an unknown path is a JSON 404');
  });
  await step2('assets are hashed, immutable and gzipped', async () => {
    const assets = [...html.matchAll(/\/assets\/([A-Za-z0-9_.-]+)/g)].map((m) => m[1]);
    check(assets.length >= 5, 'the page names its assets: ' + assets);
    for (const a of new Set(assets)) {
      check(/\.[0-9a-f]{10}\.[a-z]+$/.test(a), 'hashed name ' + a);
      const r = await get(pvd.base + '/assets/' + a, { 'Accept-Encoding': 'gzip' });
      check(r.status === 200, a + ' status ' + r.status);
      check(r.headers['cache-control'] === 'public, max-age=31536000, immutable', a + ' cache-control ' + r.headers['cache-control']);
      if (/\.(js|css)$/.test(a)) {
        check(r.headers['content-encoding'] === 'gzip', a + ' is gzipped');
        check(/Accept-Encoding/i.test(r.headers.vary || ''), a + ' varies on Accept-Encoding');
        const body = zlib.gunzipSync(r.body).toString();
        check(!/https?:\/\/(?!www\.w3\.org)/.test(body), a + ' has no external URL');
        const plain = await get(pvd.base + '/assets/' + a);
        check(!plain.headers['content-encoding'] && plain.body.toString() === body, a + ' plain and gzipped agree');
      }
    }
    const t = await get(pvd.base + '/assets/' + assets.find((a) => a.endsWith('.js')));
    check(/^text\/javascript/.test(t.headers['content-type']), 'js content type ' + t.headers['content-type']);
    const etag = t.headers.etag;
    const nm = await get(pvd.base + '/assets/' + assets.find((a) => a.endsWith('.js')), { 'If-None-Match': etag });
    check(nm.status === 304, 'If-None-Match gives 304, got ' + nm.status);
    for (const bad of ['..%2fpvd.conf', '.hidden', 'nope.js', '%2e%2e']) {
      const r = await get(pvd.base + '/assets/' + bad);
      check(r.status === 404 || r.status === 400, `/assets/${bad} is 404 (or 400), got ${r.status}`);
    }
  });
}

// ---------- main ----------

async function main() {
  let pvd = null;
  let browser = null;
  try {
    pvd = await startPvd();
    passed++;
    log('ok - pvd starts and is ready');
    await servingChecks(pvd);
    const photos = makePhotos();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
    const only = process.env.UI_ONLY || '';  // e.g. UI_ONLY=phone while working on one
    if (!only || only === 'desktop') {
      await scenario(browser, pvd, photos, { name: 'desktop', viewport: { width: 1280, height: 860 }, scheme: 'light' });
    }
    if (!only || only === 'phone') {
      await scenario(browser, pvd, photos, { name: 'phone', viewport: { width: 390, height: 844 }, scheme: 'dark', mobile: true });
    }
    if (!only || only === 'failure') await failureScenario(browser, photos);
  } catch (e) {
    failed++;
    log('not ok - setup: ' + (e && e.message));
    for (const line of String(e && e.stack || e).split('\n').slice(1, 6)) log('#   ' + line);
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (pvd) {
      const ex = await stopPvd(pvd);
      const bad = sanitizerLines(pvd.logPath);
      if (ex && ex.code === 0 && bad.length === 0) { passed++; log('ok - pvd stops cleanly with no sanitizer report'); } else {
        failed++;
        log(`not ok - pvd stops cleanly with no sanitizer report (exit ${ex && (ex.code ?? ex.sig)})`);
        for (const l of bad.slice(0, 10)) log('#   ' + l);
      }
    }
    for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
  }
  log(`# screenshots and logs: ${path.relative(ROOT, ART) || ART}`);
  log(`# ui playwright: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main();
