// Drives the warrant console in single-host mode (against the local agent's socket)
// in headless Chromium, for tests/tests/console.rs `console_single_host_in_a_real_browser`.
// Input: one JSON argument (the console's URL, session ids, the kill reason, where
// screenshots go). Output: one JSON line of what the page showed and measured; the
// Rust test asserts on it (and on the kernel). Exits non-zero on any step that fails
// (a Kill button that does nothing times out here).
import http from 'node:http';
import path from 'node:path';
import { harness, until } from './harness.mjs';

const cfg = JSON.parse(process.argv[2]);
const T = 20000;
const { out, shot, launch } = harness(cfg, 'single-host-');

// Another origin on loopback (another port is another origin): the page an attacker's
// tab would be, trying a kill by a simple no-cors POST, a JSON POST and a form.
const evil = http.createServer((req, res) => {
  const kill = cfg.console + 'api/sessions/' + encodeURIComponent(cfg.live_session) + '/kill';
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end(`<!doctype html><title>evil</title>
<form id="f" method="POST" action="${kill}" target="sink"><input name="reason" value="cross-site form"></form>
<iframe name="sink"></iframe>
<script>
window.results = {};
const body = JSON.stringify({ reason: 'cross-site' });
fetch(${JSON.stringify(kill)}, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body })
  .then(() => { window.results.no_cors = 'sent (opaque answer)'; }, (e) => { window.results.no_cors = 'failed: ' + e; });
fetch(${JSON.stringify(kill)}, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
  .then((r) => { window.results.json = 'answered ' + r.status; }, (e) => { window.results.json = 'failed: ' + e; });
document.getElementById('f').submit();
window.results.form = 'submitted';
</script>`);
});
await new Promise((r) => evil.listen(0, '127.0.0.1', r));
const evilUrl = 'http://127.0.0.1:' + evil.address().port + '/';

const browser = await launch();
try {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  out.dialogs = [];
  page.on('dialog', (d) => {
    out.dialogs.push({ type: d.type(), message: d.message() });
    d.accept(cfg.kill_reason);
  });

  // ---- who the page acts as, and what it offers ----
  await page.goto(cfg.console + '#/events');
  await until(page, () => document.getElementById('me').textContent.includes('→'), null, T);
  out.me_text = await page.textContent('#me');
  out.nav_hidden = await page.evaluate(() => [...document.querySelectorAll('nav a')].filter((a) => a.hidden).map((a) => a.dataset.page));

  // ---- live events: the noisy session's commands arrive as they happen ----
  const needle = cfg.needle;
  const rowsWith = (n) => [...document.querySelectorAll('#event-rows tr')].filter((tr) => tr.textContent.includes(n)).length;
  await until(page, rowsWith, needle, T);
  const first = await page.evaluate(rowsWith, needle);
  // Live, not a one-off load: more of them come while the page is open. The count
  // that showed it is kept: the table holds the latest rows only, so a count read
  // again later may have dropped back as older rows left it.
  await until(page, ([n, k]) => {
    const c = [...document.querySelectorAll('#event-rows tr')].filter((tr) => tr.textContent.includes(n)).length;
    if (c > k) window.__needleRowsLater = c;
    return c > k;
  }, [needle, first], T);
  out.needle_rows_first = first;
  out.needle_rows_later = await page.evaluate(() => window.__needleRowsLater);
  out.needle_row_session = await page.evaluate((n) => {
    const tr = [...document.querySelectorAll('#event-rows tr')].find((r) => r.textContent.includes(n));
    return tr ? tr.dataset.session : '';
  }, needle);
  out.script_as_text = await page.evaluate((n) => [...document.querySelectorAll('#event-rows td')].some((td) => td.textContent.includes(n)), cfg.script_argv);
  out.xss_ran = await page.evaluate(() => window.__xss === 1);
  out.script_elements_in_rows = await page.evaluate(() => document.querySelectorAll('#event-rows script, #event-rows img').length);
  await shot(page, 'events');

  // The session filter (the agent filters by session itself).
  await page.fill('input[name=session]', cfg.noisy_session);
  await page.click('#filters button[type=submit]');
  await until(page, (n) => document.querySelectorAll('#event-rows tr').length > 0 && [...document.querySelectorAll('#event-rows tr')].some((tr) => tr.textContent.includes(n)), needle, T);
  await page.waitForTimeout(1000);
  out.filtered_sessions = await page.evaluate(() => [...new Set([...document.querySelectorAll('#event-rows tr')].map((tr) => tr.dataset.session))]);
  await shot(page, 'events-filtered');
  // Replay from a time needs a collector: the page says so.
  await page.fill('input[name=since]', '10m');
  await page.click('#filters button[type=submit]');
  await page.waitForSelector('#error:not([hidden])', { timeout: T });
  out.replay_error = await page.textContent('#error');

  // ---- sessions: who, why (the grant's reason), time left (ticking), processes ----
  await page.goto(cfg.console + '#/sessions');
  const vrow = `tr[data-session="${cfg.kill_session}"]`;
  await page.waitForSelector(vrow, { timeout: T });
  out.sessions_row = await page.textContent(vrow);
  out.sessions_who = await page.evaluate((s) => document.querySelector(s).cells[2].textContent, vrow);
  out.sessions_host = await page.evaluate((s) => document.querySelector(s).cells[1].textContent, vrow);
  out.sessions_why = await page.textContent(vrow + ' td.why');
  out.sessions_procs = await page.textContent(vrow + ' td.procs');
  out.sessions_left = await page.textContent(vrow + ' td.left');
  await page.waitForTimeout(2100);
  out.sessions_left_later = await page.textContent(vrow + ' td.left');
  out.sessions_ids = await page.evaluate(() => [...document.querySelectorAll('#session-rows tr')].map((tr) => tr.dataset.session));
  await shot(page, 'sessions');

  // ---- the session's page: its report live, then the Kill button ----
  await page.click(vrow + ' a');
  await page.waitForSelector('#kill:not([hidden])', { timeout: T });
  await page.waitForSelector('#report[data-state=live]', { timeout: T });
  out.session_url = page.url();
  out.kill_before_head = await page.textContent('#report p.report-head');
  await shot(page, 'session-live');
  const t0 = Date.now();
  await page.click('#kill');
  await page.waitForSelector('#kill-done, #kill-refused', { timeout: 30000 });
  out.kill_ms = Date.now() - t0;
  out.kill_text = await page.textContent('#kill-report');
  out.kill_ok = await page.isVisible('#kill-done');
  await page.waitForSelector('#report[data-state=ended]', { timeout: 30000 });
  out.kill_report_ms = Date.now() - t0;
  out.kill_report_head = await page.textContent('#report p.report-head');
  out.kill_report_kills = await page.evaluate(() => {
    const h = [...document.querySelectorAll('#report h3')].find((x) => x.textContent.startsWith('kills'));
    return h && h.nextElementSibling ? [...h.nextElementSibling.querySelectorAll('li')].map((li) => li.textContent) : [];
  });
  out.kill_button_after = await page.isVisible('#kill');
  await shot(page, 'session-killed');

  // ---- agents (the local agent's uplink and spool) and audit ----
  await page.goto(cfg.console + '#/agents');
  await page.waitForSelector('#agent-rows tr', { timeout: T });
  out.agents_text = await page.textContent('#agent-rows');
  await shot(page, 'agents');
  await page.goto(cfg.console + '#/audit');
  await page.waitForSelector('#audit-status.ok, #audit-status.bad', { timeout: T });
  out.audit_text = await page.textContent('#audit-status');
  await shot(page, 'audit');
  await ctx.close();

  // ---- another origin's tab tries to kill the live session ----
  const ectx = await browser.newContext();
  const e = await ectx.newPage();
  out.cross_origin_statuses = [];
  e.on('response', (r) => {
    if (r.url().includes('/kill')) out.cross_origin_statuses.push({ method: r.request().method(), status: r.status() });
  });
  await e.goto(evilUrl);
  await until(e, () => window.results && window.results.no_cors && window.results.json, null, T);
  await e.waitForTimeout(1000);
  out.cross_origin = await e.evaluate(() => window.results);
  await shot(e, 'cross-origin');
  await ectx.close();
} finally {
  await browser.close();
  evil.close();
}
console.log(JSON.stringify(out));
