// Drives the warrant console in headless Chromium for tests/tests/console.rs.
// Input: one JSON argument (console URLs per person, session and request ids, where
// screenshots go). Output: one JSON line of what the page showed and measured; the
// Rust test asserts on it (and on the kernel). Exits non-zero on any step that fails.
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';

const cfg = JSON.parse(process.argv[2]);
const require = createRequire(path.join(cfg.node_dir, 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');

const T = 20000;
const out = {};
out.shot_failures = [];
const shot = async (page, name) => {
  try {
    await page.screenshot({ path: path.join(cfg.shots, name + '.png'), timeout: 30000 });
  } catch (e) {
    out.shot_failures.push(name + ': ' + String(e.message).split('\n')[0]);
  }
};

// page.waitForFunction polls with eval, which the console's CSP forbids (as it
// should); page.evaluate goes through the debugger protocol, which CSP does not see.
async function until(page, fn, arg, timeout) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(fn, arg)) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + fn.toString().substring(0, 120));
    await new Promise((r) => setTimeout(r, 50));
  }
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
try {
  // ---- responder: live events, the <script> argv as text, sessions, kill ----
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on('dialog', (d) => d.accept('console test kill'));
  await page.goto(cfg.responder + '#/events');
  const needle = cfg.script_argv;
  await until(page, (n) => [...document.querySelectorAll('#event-rows td')].some((td) => td.textContent.includes(n)), needle, T);
  out.script_as_text = await page.evaluate((n) => [...document.querySelectorAll('#event-rows td')].some((td) => td.textContent.includes(n)), needle);
  out.xss_ran = await page.evaluate(() => window.__xss === 1);
  out.script_elements_in_rows = await page.evaluate(() => document.querySelectorAll('#event-rows script, #event-rows img').length);
  out.events_live = await page.evaluate(() => window.consoleStats.received);
  await shot(page, 'events');

  await page.goto(cfg.responder + '#/sessions');
  await page.waitForSelector(`tr[data-session="${cfg.kill_session}"]`, { timeout: T });
  out.sessions_row = await page.textContent(`tr[data-session="${cfg.kill_session}"]`);
  await shot(page, 'sessions');

  await page.goto(cfg.responder + '#/session/' + cfg.kill_session);
  await page.waitForSelector('#kill:not([hidden])', { timeout: T });
  const t0 = Date.now();
  await page.click('#kill');
  await page.waitForSelector('#kill-done, #kill-refused', { timeout: 60000 });
  out.kill_ms = Date.now() - t0;
  out.kill_text = await page.textContent('#kill-report');
  await shot(page, 'session-killed');

  await page.goto(cfg.responder + '#/agents');
  await page.waitForSelector('#agent-rows tr', { timeout: T });
  out.agents_text = await page.textContent('#agent-rows');
  await shot(page, 'agents');

  await page.goto(cfg.admin + '#/audit');
  await page.waitForSelector('#audit-status.ok, #audit-status.bad', { timeout: T });
  out.audit_text = await page.textContent('#audit-status');
  await shot(page, 'audit');

  // ---- events per second: a session's open loop, counted in the page ----
  if (cfg.rate_session) {
    await page.goto(cfg.responder + '#/events');
    await page.fill('input[name=session]', cfg.rate_session);
    await page.fill('input[name=since]', '10m');
    await page.click('#filters button[type=submit]');
    await until(page, () => window.consoleStats.received > 0, null, T);
    fs.writeFileSync(cfg.rate_go, '');
    await page.waitForTimeout(500);
    const a = await page.evaluate(() => ({ n: window.consoleStats.received, t: performance.now() }));
    await page.waitForTimeout(cfg.rate_seconds * 1000);
    const b = await page.evaluate(() => ({ n: window.consoleStats.received, r: window.consoleStats.rendered, t: performance.now() }));
    out.rate_events = b.n - a.n;
    out.rate_ms = b.t - a.t;
    out.rate_rendered = b.r;
    fs.writeFileSync(cfg.rate_stop, '');
    // Read once the loop stopped, for the comparison with the agent's count.
    await page.waitForTimeout(3000);
    out.rate_total_received = await page.evaluate(() => window.consoleStats.received);
    out.rate_missed = await page.evaluate(() => [...document.querySelectorAll('#event-rows tr')].filter((r) => r.dataset.kind === 'watch_missed').length);
    // Paused, so the page holds still while a loaded machine draws it.
    await page.click('#pause');
    await shot(page, 'events-rate');
  }
  await ctx.close();

  // ---- watcher: no kill button, and a forged POST is refused ----
  const wctx = await browser.newContext();
  const w = await wctx.newPage();
  await w.goto(cfg.watcher + '#/session/' + cfg.live_session);
  await w.waitForSelector('#report p, #report h3', { timeout: T });
  out.watcher_kill_visible = await w.isVisible('#kill');
  out.watcher_forged = await w.evaluate(async (id) => {
    const r = await fetch('/api/sessions/' + id + '/kill', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ reason: 'forged' }) });
    return { status: r.status, body: await r.json() };
  }, cfg.live_session);
  await shot(w, 'watcher-session');
  await wctx.close();

  // ---- approver: approve a pending request with the button ----
  const actx = await browser.newContext();
  const ap = await actx.newPage();
  await ap.goto(cfg.approver + '#/requests');
  const sel = `tr[data-request="${cfg.request}"]`;
  await ap.waitForSelector(sel + ' button.approve', { timeout: T });
  out.request_row = await ap.textContent(sel);
  // What the approver reads before the click: the pinned policy, under the row.
  const pol = `tr[data-policy-for="${cfg.request}"]`;
  out.policy_visible = await ap.isVisible(pol + ' pre.policy-text');
  out.policy_text_shown = await ap.textContent(pol + ' pre.policy-text');
  out.policy_grants_shown = await ap.evaluate((s) => [...document.querySelectorAll(s + ' ul.grants li')].map((li) => li.textContent), pol);
  out.policy_heading = await ap.textContent(pol + ' h3');
  out.policy_markup_elements = await ap.evaluate((s) => document.querySelectorAll(s + ' pre b, ' + s + ' li b').length, pol);
  await shot(ap, 'request-policy');
  await ap.click(sel + ' button.approve');
  await until(ap, (s) => { const r = document.querySelector(s); return !r || !r.querySelector('button.approve'); }, sel, T);
  await shot(ap, 'requests');
  await actx.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
