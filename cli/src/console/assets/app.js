// warrant console: a small single-page app over the console's JSON API.
// Every string from events, sessions and requests is put in the page with
// textContent (never innerHTML): an argv may well contain "<script>".
'use strict';

const $ = (id) => document.getElementById(id);
let me = { can: {} };
let timer = null;
let source = null;
let paused = false;
let held = [];
let pending = [];

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, cls) {
  const tr = el('tr', undefined, cls);
  for (const c of cells) {
    const td = el('td');
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === undefined || c === null ? '' : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function showError(msg) {
  const e = $('error');
  e.textContent = msg || '';
  e.hidden = !msg;
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  };
  const resp = await fetch(path, opts);
  let data = {};
  try { data = await resp.json(); } catch (_) { data = { error: 'the console answered ' + resp.status }; }
  if (!resp.ok) throw new Error(data.error || ('HTTP ' + resp.status));
  return data;
}

function clock(ns) {
  if (!ns) return '';
  const d = new Date(Number(BigInt(ns) / 1000000n));
  return d.toLocaleTimeString(undefined, { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

// ---- events ----
//
// A busy session streams thousands of events a second. The page keeps up by doing
// the DOM work once per frame: messages (each a batch of events) only queue the
// events; one requestAnimationFrame callback draws the newest DRAW_MAX of what
// queued, newest on top, and the table keeps the newest MAX_ROWS (older events would
// scroll out of it within the same frame anyway; they are counted, not drawn). The
// counter says how many events arrived, how many were drawn, and the lag: how old
// the newest drawn event was when it appeared.

const MAX_ROWS = 500;
const DRAW_MAX = 250;
const MAX_HELD = 100000;
// Read by the browser test: events the page received, rows it drew, events it
// skipped drawing (they would scroll past at once), frames drawn, the lag.
window.consoleStats = { received: 0, rendered: 0, skipped: 0, frames: 0, lagMs: 0, maxLagMs: 0, missed: 0 };

function resetStats() {
  Object.assign(window.consoleStats, { received: 0, rendered: 0, skipped: 0, frames: 0, lagMs: 0, maxLagMs: 0, missed: 0 });
}

function eventRow(ev) {
  const r = row([ev.time ? ev.time.substring(11, 23) : '', ev.host || '', ev.session || ev.grant || '-',
    ev.pid || '-', ev.kind, ev.line], ev.alarm ? 'alarm' : '');
  r.dataset.kind = ev.kind || '';
  r.dataset.session = ev.session || '';
  return r;
}

function showCount() {
  const st = window.consoleStats;
  $('event-count').textContent = st.received + ' events, ' + st.rendered + ' drawn' +
    (st.skipped ? ' (' + st.skipped + ' scrolled past undrawn)' : '') +
    (st.missed ? ', ' + st.missed + ' MISSED by the stream' : '') +
    (st.frames ? ', lag ' + st.lagMs + ' ms' : '') + (paused ? ' — paused, ' + held.length + ' held' : '');
}

function drawEvents() {
  const st = window.consoleStats;
  const body = $('event-rows');
  let batch = pending;
  pending = [];
  if (batch.length > DRAW_MAX) {
    st.skipped += batch.length - DRAW_MAX;
    batch = batch.slice(batch.length - DRAW_MAX);
  }
  if (batch.length) {
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.appendChild(eventRow(batch[i]));
    const extra = body.rows.length + batch.length - MAX_ROWS;
    for (let i = 0; i < extra && body.lastChild; i++) body.removeChild(body.lastChild);
    body.insertBefore(frag, body.firstChild);
    st.rendered += batch.length;
    st.frames++;
    const newest = batch[batch.length - 1].t_ms;
    if (newest) {
      st.lagMs = Math.max(0, Date.now() - newest);
      st.maxLagMs = Math.max(st.maxLagMs, st.lagMs);
    }
  }
  showCount();
}

let drawQueued = false;
function queueDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => { drawQueued = false; drawEvents(); });
}

function take(evs) {
  const st = window.consoleStats;
  st.received += evs.length;
  for (const ev of evs) {
    if (ev.kind === 'watch_missed') st.missed += Number(ev.count || 0);
    if (paused) held.push(ev); else pending.push(ev);
  }
  if (held.length > MAX_HELD) held.splice(0, held.length - MAX_HELD);
  // A hidden tab gets no frames: keep only what a frame would draw.
  if (pending.length > 4 * DRAW_MAX) {
    st.skipped += pending.length - DRAW_MAX;
    pending.splice(0, pending.length - DRAW_MAX);
  }
  queueDraw();
}

function filterQuery() {
  const form = new FormData($('filters'));
  const q = new URLSearchParams();
  for (const [k, v] of form.entries()) if (String(v).trim()) q.set(k, String(v).trim());
  return q.toString();
}

function startEvents() {
  if (source) source.close();
  $('event-rows').textContent = '';
  pending = [];
  held = [];
  resetStats();
  showError('');
  source = new EventSource('/api/events?' + filterQuery());
  source.onmessage = (m) => {
    let evs;
    try { evs = JSON.parse(m.data); } catch (_) { return; }
    take(Array.isArray(evs) ? evs : [evs]);
  };
  source.addEventListener('error', (m) => {
    if (m.data) {
      try { showError(JSON.parse(m.data).error); } catch (_) { showError('the event stream failed'); }
      source.close();
    }
  });
  source.addEventListener('end', () => { showError('the event stream ended'); source.close(); });
}

async function checkEventsFilter() {
  // EventSource hides HTTP errors: ask once with fetch to show the message.
  const ctl = new AbortController();
  const resp = await fetch('/api/events?' + filterQuery(), { signal: ctl.signal });
  if (!resp.ok) {
    let msg = 'HTTP ' + resp.status;
    try { msg = (await resp.json()).error || msg; } catch (_) { /* keep */ }
    throw new Error(msg);
  }
  ctl.abort();
}

// ---- sessions ----

// The list reloads every 2 s (one load at a time) and the time left ticks every second.
let sessionsLoading = false;
async function loadSessions() {
  if (sessionsLoading) return;
  sessionsLoading = true;
  try {
    const all = $('sessions-all').checked;
    const data = await api('/api/sessions' + (all ? '?all=true' : ''));
    const frag = document.createDocumentFragment();
    for (const s of data.sessions) {
      const a = el('a', s.id);
      a.href = '#/session/' + encodeURIComponent(s.id);
      const live = s.state === 'live';
      const procs = live ? String(s.processes) + (s.processes_caught_up === false ? '+ (reading)' : '') : '';
      const r = row([a, s.host, s.subject, s.why, s.grant, live ? leftText(s.expires_at_unix_ms) : (s.end_reason || s.state),
        procs, (s.command || []).join(' ')]);
      r.dataset.session = s.id;
      r.cells[3].className = 'why';
      r.cells[5].className = 'left';
      r.cells[6].className = 'procs';
      if (live) r.cells[5].dataset.expires = String(s.expires_at_unix_ms);
      frag.appendChild(r);
    }
    const body = $('session-rows');
    body.textContent = '';
    body.appendChild(frag);
  } finally {
    sessionsLoading = false;
  }
}

function tickLeft() {
  for (const td of document.querySelectorAll('#session-rows td.left[data-expires]')) td.textContent = leftText(Number(td.dataset.expires));
}

function leftText(ms) {
  const s = Math.max(0, Math.floor((ms - Date.now()) / 1000));
  if (s <= 0) return 'expiring';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return (h ? h + 'h' : '') + (h || m ? m + 'm' : '') + (s % 60) + 's left';
}

// ---- one session ----

function section(title, items) {
  const frag = document.createDocumentFragment();
  frag.appendChild(el('h3', title));
  const ul = el('ul');
  for (const i of items) ul.appendChild(el('li', i));
  frag.appendChild(ul);
  return frag;
}

// The report refreshes while the session runs (in collector mode the console sums
// the session's events up from the log until the agent's own report arrives).
function drawReport(r) {
  const report = $('report');
  const live = !r.ended && !r.end_reason;
  const head = el('p', undefined, 'report-head');
  head.appendChild(el('span', 'who ' + (r.subject || '') + ', grant ' + (r.grant || '') +
    (r.reason ? ', why: ' + r.reason : '') + (r.issued_by ? ', issued by ' + r.issued_by : '') +
    (live ? ', still live' : ', ended: ' + (r.end_reason || '')) +
    (r.processes !== undefined && live ? ', ' + r.processes + ' process(es) alive on the record' : '') +
    ', ' + (r.events || 0) + ' events' + (r.caught_up === false ? ' (still reading the log)' : '')));
  const frag = document.createDocumentFragment();
  frag.appendChild(head);
  frag.appendChild(section('commands (' + (r.commands_total || 0) + ')', r.commands || []));
  frag.appendChild(section('files written (' + (r.files_written_total || 0) + ')', r.files_written || []));
  frag.appendChild(section('other file changes (' + (r.files_changed_total || 0) + ')', r.files_changed || []));
  frag.appendChild(section('remotes (' + (r.remotes || []).length + ')', (r.remotes || []).map((t) =>
    t.addr + ':' + t.port + '  ' + t.connections + ' connection(s), sent ' + t.sent + ', received ' + t.received)));
  frag.appendChild(section('violations (' + (r.violations_total || 0) + ')', r.violations || []));
  frag.appendChild(section('kills (' + (r.kills || []).length + ')', r.kills || []));
  report.textContent = '';
  report.appendChild(frag);
  report.dataset.state = live ? 'live' : 'ended';
  // An ended session has nothing left to kill.
  $('kill').hidden = !me.can.kill || !live;
  return live;
}

let reportFor = '';
async function refreshReport(id) {
  if (reportFor !== id) return false;
  try {
    const r = await api('/api/sessions/' + encodeURIComponent(id) + '/report');
    if (reportFor !== id) return false;
    const live = drawReport(r);
    if (!live && timer) { clearInterval(timer); timer = null; }
    return live;
  } catch (e) {
    if (reportFor === id && !$('report').firstChild) $('report').appendChild(el('p', 'no report: ' + e.message));
    return false;
  }
}

async function loadSession(id) {
  reportFor = id;
  $('session-title').textContent = 'session ' + id;
  $('report').textContent = '';
  $('kill-report').hidden = true;
  $('kill').hidden = !me.can.kill;
  $('kill').dataset.session = id;
  if (await refreshReport(id)) timer = setInterval(() => refreshReport(id), 2000);
}

async function killSession() {
  const id = $('kill').dataset.session;
  const reason = window.prompt('Why kill session ' + id + '? (recorded in the audit log)');
  if (reason === null || !reason.trim()) return;
  const box = $('kill-report');
  box.hidden = false;
  box.textContent = 'killing ' + id + '…';
  try {
    const r = await api('/api/sessions/' + encodeURIComponent(id) + '/kill', { reason: reason });
    box.textContent = '';
    if (!r.delivered) {
      box.appendChild(el('p', 'agent ' + r.agent_id + ' on ' + r.host + ' is unreachable: the kill is queued', 'bad'));
      return;
    }
    for (const s of r.sessions) {
      const p = el('p', 'killed session ' + s.session + ': ' + s.killed + ' process(es) in ' +
        (s.elapsed_us / 1000).toFixed(1) + ' ms' + (r.host ? ' on ' + r.host : ''), s.survivors ? 'bad' : 'ok');
      p.id = 'kill-done';
      box.appendChild(p);
      if (s.survivors) box.appendChild(el('p', s.survivors + ' process(es) SURVIVED', 'bad'));
    }
    box.appendChild(el('p', 'round trip ' + r.round_trip_ms + ' ms'));
    // The session's end and the kill reach the report once the agent has sent them.
    if (timer) { clearInterval(timer); timer = null; }
    let tries = 0;
    timer = setInterval(async () => {
      const live = await refreshReport(id);
      if ((!live || ++tries > 40) && timer) { clearInterval(timer); timer = null; }
    }, 500);
  } catch (e) {
    box.textContent = '';
    const p = el('p', 'kill refused: ' + e.message, 'bad');
    p.id = 'kill-refused';
    box.appendChild(p);
  }
}

// ---- requests, agents, audit ----

async function loadRequests() {
  const data = await api('/api/requests');
  const body = $('request-rows');
  body.textContent = '';
  for (const r of data.requests) {
    const actions = el('span');
    const state = r.state === 'approved' ? 'approved: ' + r.grant : r.state;
    const policy = r.policy + (r.policy_digest ? ' (' + r.policy_digest.substring(0, 12) + ')' : '');
    const tr = row([r.id, state, r.subject, r.requested_by, r.host, policy, r.ttl_seconds + 's',
      r.approvers.length + '/' + r.approvals_needed + ' ' + r.approver_role, r.reason, actions]);
    tr.dataset.request = r.id;
    body.appendChild(tr);
    if (r.state !== 'pending') continue;
    // A pending request shows the policy it pinned, what that grants and its text,
    // under its row; the Approve and Deny buttons come only once that is on screen.
    const more = el('tr', undefined, 'policy');
    more.dataset.policyFor = r.id;
    const td = el('td');
    td.colSpan = 10;
    more.appendChild(td);
    body.appendChild(more);
    let full;
    try {
      full = await api('/api/requests/' + encodeURIComponent(r.id));
    } catch (e) {
      td.appendChild(el('p', 'cannot show policy ' + r.policy + ' of ' + r.id + ': ' + e.message, 'bad'));
      continue;
    }
    td.appendChild(el('h3', 'policy ' + full.policy + ' ' + full.policy_digest + ': what approving ' + r.id + ' grants ' + full.subject));
    const ul = el('ul', undefined, 'grants');
    for (const g of full.policy_grants || []) ul.appendChild(el('li', g));
    td.appendChild(ul);
    td.appendChild(el('pre', full.policy_text || '', 'policy-text'));
    if (me.can.approve) {
      const ok = el('button', 'Approve');
      ok.className = 'approve';
      ok.onclick = () => act(() => api('/api/requests/' + encodeURIComponent(r.id) + '/approve', {}));
      const no = el('button', 'Deny');
      no.className = 'deny';
      no.onclick = () => {
        const why = window.prompt('Why deny ' + r.id + '?');
        if (why !== null && why.trim()) act(() => api('/api/requests/' + encodeURIComponent(r.id) + '/deny', { reason: why }));
      };
      actions.append(ok, ' ', no);
    }
  }
}

async function act(f) {
  try { await f(); showError(''); } catch (e) { showError(e.message); }
  route();
}

async function loadAgents() {
  const data = await api('/api/agents');
  const body = $('agent-rows');
  body.textContent = '';
  for (const a of data.agents) {
    const conn = a.collector !== undefined ? (a.collector ? (a.connected ? 'uplink connected to ' + a.collector : 'uplink down: ' + a.collector) : 'single-host (no uplink)')
      : (a.connected ? 'connected' : 'gone since ' + a.last_seen);
    const queue = a.spool_events !== undefined ? a.spool_events + ' spooled (' + a.spool_bytes + ' B), ' + a.spool_full_total + ' lost to a full spool'
      : a.queued_commands + ' queued command(s)';
    body.appendChild(row([a.agent_id, a.host, a.version, conn, a.acked_seq, queue], a.connected || a.collector === '' ? '' : 'alarm'));
  }
}

async function loadAudit() {
  $('audit-status').textContent = 'checking…';
  const v = await api('/api/audit');
  const s = $('audit-status');
  s.textContent = v.ok ? v.log + ': ' + v.records + ' records, chain intact (head ' + v.head + ')'
    : v.log + ': TAMPERED OR DAMAGED, ' + v.problems.length + ' problem(s)';
  s.className = v.ok ? 'ok' : 'bad';
  const ul = $('audit-problems');
  ul.textContent = '';
  for (const p of v.problems) ul.appendChild(el('li', p));
}

// ---- routing ----

async function route() {
  if (timer) { clearInterval(timer); timer = null; }
  const hash = location.hash || '#/sessions';
  const parts = hash.substring(2).split('/');
  const page = parts[0] === 'session' ? 'session' : parts[0];
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== 'page-' + page;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  if (page !== 'events' && source) { source.close(); source = null; }
  showError('');
  try {
    if (page === 'events') { if (!source) startEvents(); }
    else if (page === 'sessions') {
      await loadSessions();
      let tick = 0;
      timer = setInterval(() => {
        tickLeft();
        if (++tick % 2 === 0) loadSessions().catch((e) => showError(e.message));
      }, 1000);
    }
    else if (page === 'session') await loadSession(decodeURIComponent(parts.slice(1).join('/')));
    else if (page === 'requests') await loadRequests();
    else if (page === 'agents') await loadAgents();
    else if (page === 'audit') await loadAudit();
  } catch (e) {
    showError(e.message);
  }
}

async function start() {
  try { me = await api('/api/me'); } catch (e) { showError(e.message); }
  $('me').textContent = (me.name || '?') + (me.role ? ' (' + me.role + ')' : ' (no role)') + ' → ' + (me.target || '');
  const hide = { events: !me.can.watch, requests: !me.can.requests, audit: !me.can.audit };
  for (const a of document.querySelectorAll('nav a')) a.hidden = !!hide[a.dataset.page];
  $('filters').addEventListener('submit', async (e) => {
    e.preventDefault();
    try { await checkEventsFilter(); startEvents(); } catch (err) { showError(err.message); }
  });
  $('pause').addEventListener('click', () => {
    paused = !paused;
    $('pause').textContent = paused ? 'Resume' : 'Pause';
    if (!paused) { pending = pending.concat(held); held = []; queueDraw(); }
    showCount();
  });
  $('sessions-all').addEventListener('change', () => loadSessions().catch((e) => showError(e.message)));
  $('kill').addEventListener('click', killSession);
  window.addEventListener('hashchange', route);
  route();
}

start();
