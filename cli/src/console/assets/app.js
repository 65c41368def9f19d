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
// Read by the browser test: events the page received and rows it drew.
window.consoleStats = { received: 0, rendered: 0 };

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

function drawEvents() {
  const body = $('event-rows');
  const batch = pending;
  pending = [];
  const frag = document.createDocumentFragment();
  for (const ev of batch) {
    const r = row([ev.time ? ev.time.substring(11, 23) : '', ev.host || '', ev.session || ev.grant || '-',
      ev.pid || '-', ev.kind, ev.line], ev.alarm ? 'alarm' : '');
    r.dataset.kind = ev.kind || '';
    r.dataset.session = ev.session || '';
    frag.appendChild(r);
  }
  body.appendChild(frag);
  window.consoleStats.rendered += batch.length;
  while (body.rows.length > 2000) body.deleteRow(0);
  $('event-count').textContent = window.consoleStats.received + ' events' + (paused ? ' (paused, ' + held.length + ' held)' : '');
}

let drawQueued = false;
function queueDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => { drawQueued = false; drawEvents(); });
}

function startEvents() {
  if (source) source.close();
  const form = new FormData($('filters'));
  const q = new URLSearchParams();
  for (const [k, v] of form.entries()) if (String(v).trim()) q.set(k, String(v).trim());
  $('event-rows').textContent = '';
  window.consoleStats.received = 0;
  window.consoleStats.rendered = 0;
  showError('');
  source = new EventSource('/api/events?' + q.toString());
  source.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    window.consoleStats.received++;
    if (paused) { held.push(ev); if (held.length > 100000) held.shift(); } else { pending.push(ev); }
    queueDraw();
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
  const form = new FormData($('filters'));
  const q = new URLSearchParams();
  for (const [k, v] of form.entries()) if (String(v).trim()) q.set(k, String(v).trim());
  const ctl = new AbortController();
  const resp = await fetch('/api/events?' + q.toString(), { signal: ctl.signal });
  if (!resp.ok) {
    let msg = 'HTTP ' + resp.status;
    try { msg = (await resp.json()).error || msg; } catch (_) { /* keep */ }
    throw new Error(msg);
  }
  ctl.abort();
}

// ---- sessions ----

async function loadSessions() {
  const all = $('sessions-all').checked;
  const data = await api('/api/sessions' + (all ? '?all=true' : ''));
  const body = $('session-rows');
  body.textContent = '';
  for (const s of data.sessions) {
    const a = el('a', s.id);
    a.href = '#/session/' + encodeURIComponent(s.id);
    const left = s.state === 'live' ? leftText(s.expires_at_unix_ms) : (s.end_reason || s.state);
    const r = row([a, s.host, s.subject, s.why, s.grant, left, s.processes, (s.command || []).join(' ')]);
    r.dataset.session = s.id;
    body.appendChild(r);
  }
}

function leftText(ms) {
  const s = Math.max(0, Math.floor((ms - Date.now()) / 1000));
  if (s <= 0) return 'expiring';
  const m = Math.floor(s / 60);
  return (m ? m + 'm' : '') + (s % 60) + 's left';
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

async function loadSession(id) {
  $('session-title').textContent = 'session ' + id;
  const report = $('report');
  report.textContent = '';
  $('kill-report').hidden = true;
  $('kill').hidden = !me.can.kill;
  $('kill').dataset.session = id;
  try {
    const r = await api('/api/sessions/' + encodeURIComponent(id) + '/report');
    const head = el('p');
    head.appendChild(el('span', 'who ' + (r.subject || '') + ', grant ' + (r.grant || '') +
      (r.reason ? ', why: ' + r.reason : '') + (r.ended ? ', ended: ' + (r.end_reason || '') : ', still live')));
    report.appendChild(head);
    report.appendChild(section('commands (' + (r.commands_total || 0) + ')', r.commands || []));
    report.appendChild(section('files written (' + (r.files_written_total || 0) + ')', r.files_written || []));
    report.appendChild(section('other file changes (' + (r.files_changed_total || 0) + ')', r.files_changed || []));
    report.appendChild(section('remotes (' + (r.remotes || []).length + ')', (r.remotes || []).map((t) =>
      t.addr + ':' + t.port + '  ' + t.connections + ' connection(s), sent ' + t.sent + ', received ' + t.received)));
    report.appendChild(section('violations (' + (r.violations_total || 0) + ')', r.violations || []));
    report.appendChild(section('kills (' + (r.kills || []).length + ')', r.kills || []));
  } catch (e) {
    report.appendChild(el('p', 'no report: ' + e.message));
  }
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
    else if (page === 'sessions') { await loadSessions(); timer = setInterval(() => loadSessions().catch((e) => showError(e.message)), 2000); }
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
  });
  $('sessions-all').addEventListener('change', () => loadSessions().catch((e) => showError(e.message)));
  $('kill').addEventListener('click', killSession);
  window.addEventListener('hashchange', route);
  route();
}

start();
