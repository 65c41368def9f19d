// Drives the warrant console in headless Chromium for tests/tests/console.rs.
// Input: one JSON argument (console URLs per person, session and request ids, where
// screenshots go). Output: one JSON line of what the page showed and measured; the
// Rust test asserts on it (and on the kernel). Exits non-zero on any step that fails.
import path from 'node:path';
import fs from 'node:fs';
import { harness, until } from './harness.mjs';

const cfg = JSON.parse(process.argv[2]);
const T = 20000;
const { out, shot, launch } = harness(cfg, '');

const browser = await launch();
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

  // Sessions: who, why (the grant's reason, from the collector's log), time left, processes.
  await page.goto(cfg.responder + '#/sessions');
  const vrow = `tr[data-session="${cfg.kill_session}"]`;
  await page.waitForSelector(vrow, { timeout: T });
  await until(page, (s) => { const r = document.querySelector(s + ' td.why'); return r && r.textContent.length > 0; }, vrow, T);
  out.sessions_row = await page.textContent(vrow);
  out.sessions_why = await page.textContent(vrow + ' td.why');
  out.sessions_procs = await page.textContent(vrow + ' td.procs');
  out.sessions_left = await page.textContent(vrow + ' td.left');
  await shot(page, 'sessions');

  // A live session's report in collector mode (the console sums the log up), updating.
  await page.goto(cfg.responder + '#/session/' + cfg.noisy_session);
  const echoes = () => [...document.querySelectorAll('#report li')].filter((li) => li.textContent.startsWith('/bin/echo')).length;
  await until(page, echoes, null, T);
  out.live_report_state = await page.getAttribute('#report', 'data-state');
  out.live_report_head = await page.textContent('#report p.report-head');
  out.live_report_echoes = await page.evaluate(echoes);
  const before = out.live_report_echoes;
  await until(page, (n) => [...document.querySelectorAll('#report li')].filter((li) => li.textContent.startsWith('/bin/echo')).length > n, before, T);
  out.live_report_echoes_later = await page.evaluate(echoes);
  out.live_report_xss_ran = await page.evaluate(() => window.__xss === 1);
  await shot(page, 'session-live');

  await page.goto(cfg.responder + '#/session/' + cfg.kill_session);
  await page.waitForSelector('#kill:not([hidden])', { timeout: T });
  await page.waitForSelector('#report[data-state=live]', { timeout: T });
  out.kill_before_head = await page.textContent('#report p.report-head');
  const t0 = Date.now();
  await page.click('#kill');
  await page.waitForSelector('#kill-done, #kill-refused', { timeout: 60000 });
  out.kill_ms = Date.now() - t0;
  out.kill_text = await page.textContent('#kill-report');
  // Then the session's report shows its end and the kill (once the agent sent them).
  await page.waitForSelector('#report[data-state=ended]', { timeout: 60000 });
  out.kill_report_ms = Date.now() - t0;
  out.kill_report_head = await page.textContent('#report p.report-head');
  out.kill_report_kills = await page.evaluate(() => {
    const h = [...document.querySelectorAll('#report h3')].find((x) => x.textContent.startsWith('kills'));
    return h && h.nextElementSibling ? [...h.nextElementSibling.querySelectorAll('li')].map((li) => li.textContent) : [];
  });
  await shot(page, 'session-killed');

  await page.goto(cfg.responder + '#/agents');
  await page.waitForSelector('#agent-rows tr', { timeout: T });
  out.agents_text = await page.textContent('#agent-rows');
  await shot(page, 'agents');

  await page.goto(cfg.admin + '#/audit');
  await page.waitForSelector('#audit-status.ok, #audit-status.bad', { timeout: T });
  out.audit_text = await page.textContent('#audit-status');
  await shot(page, 'audit');

  // ---- events per second: a session's paced open bursts, counted in the page ----
  // Each step opens `rate` files a second for `step_secs` (gated by a file the
  // script makes). A step is done when the page has all its events or none came for
  // 2 s; its figure is the events the page got over the time from the gate to the
  // last of them, with the lag (how old the newest event drawn was) and the
  // events the stream reported missed.
  if (cfg.rate_session) {
    await page.goto(cfg.responder + '#/events');
    await page.fill('input[name=session]', cfg.rate_session);
    await page.fill('input[name=since]', '10m');
    await page.click('#filters button[type=submit]');
    await until(page, () => window.consoleStats.received > 0, null, T);
    await page.waitForTimeout(500);
    const stats = () => page.evaluate(() => Object.assign({ now: Date.now() }, window.consoleStats));
    out.rate_steps = [];
    for (const rate of cfg.rates) {
      await page.evaluate(() => { window.consoleStats.maxLagMs = 0; });
      const a = await stats();
      fs.writeFileSync(cfg.rate_go + '-' + rate, '');
      const want = rate * cfg.step_secs;
      let last = a;
      let b = a;
      const end = Date.now() + cfg.step_secs * 1000 + 30000;
      while (Date.now() < end) {
        await page.waitForTimeout(100);
        const c = await stats();
        if (c.received > last.received) last = c;
        b = c;
        if (c.received - a.received >= want || (c.now - last.now > 2000 && c.now - a.now > cfg.step_secs * 1000)) break;
      }
      const got = last.received - a.received;
      const secs = (last.now - a.now) / 1000;
      out.rate_steps.push({
        rate, want, got, secs, per_sec: Math.round(got / secs),
        drawn: last.rendered - a.rendered, skipped: last.skipped - a.skipped, frames: last.frames - a.frames,
        lag_ms_end: last.lagMs, max_lag_ms: b.maxLagMs, missed: last.missed - a.missed,
      });
    }
    out.rate_total_received = await page.evaluate(() => window.consoleStats.received);
    out.rate_missed = await page.evaluate(() => window.consoleStats.missed);
    out.rate_count_text = await page.textContent('#event-count');
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
