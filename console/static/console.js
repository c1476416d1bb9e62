// Switchyard console: reads GET /admin/status every half second and GET
// /admin/console (time series, ejections, thresholds) every second, and
// drives the admin API. The admin token, when the gateway has one, is kept
// in this tab's sessionStorage and sent as a bearer header; it never goes
// into a URL. Everything from the server is written with textContent.

import { $, el, setText, barFill, other, COLORS } from './dom.js';
import { fmtNum, fmtRate, fmtRatio, fmtPercent, fmtMs, fmtNs, fmtSeconds, fmtAgo, fmtTime } from './format.js';
import { drawChart } from './charts.js';
import { renderPool } from './pools.js';
import { initActions } from './actions.js';

const TOKEN_KEY = 'switchyard.token';
const STATUS_EVERY_MS = 500; // an update shows within a second
const DATA_EVERY_MS = 1000;
const HIDDEN_EVERY_MS = 5000; // a background tab polls slowly
const STALE_AFTER_MS = 3000;
const REQUEST_TIMEOUT_MS = 8000;
const MIN_CHART_SPAN_S = 30;

let token = sessionStorage.getItem(TOKEN_KEY) || '';
let status = null; // last GET /admin/status
let data = null; // last GET /admin/console
let lastStatusAt = 0;
let lastDataAt = 0;
let lastError = '';
let authNeeded = false;
let busy = false; // an action is in flight
let polling = false;
let pollAgain = false;
let timer = 0;
let initialized = false;

// ---- the admin API ----

// api calls the admin API with the token; it resolves to {status, ok,
// data, etag} for any HTTP answer and rejects on a network failure.
async function api(method, path, body, headers, withToken) {
  const h = Object.assign({ Accept: 'application/json' }, headers || {});
  const t = withToken === undefined ? token : withToken;
  if (t) h.Authorization = `Bearer ${t}`;
  const init = { method, headers: h, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const ctl = new AbortController();
  const timeout = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
  init.signal = ctl.signal;
  try {
    const res = await fetch(path, init);
    let payload = null;
    try { payload = await res.json(); } catch { payload = null; }
    return { status: res.status, ok: res.ok, data: payload, etag: res.headers.get('ETag') };
  } catch (e) {
    throw new Error(e && e.name === 'AbortError' ? 'no answer within 8 s' : 'the gateway cannot be reached');
  } finally {
    clearTimeout(timeout);
  }
}

// ---- polling ----

function schedule() {
  clearTimeout(timer);
  if (authNeeded) return;
  timer = setTimeout(poll, document.hidden ? HIDDEN_EVERY_MS : STATUS_EVERY_MS);
}

// refreshNow reads the state at once, e.g. after an action.
function refreshNow() {
  poll();
}

async function poll() {
  if (polling) { pollAgain = true; return; }
  if (authNeeded) return;
  polling = true;
  clearTimeout(timer);
  try {
    // Both reads start together; the status renders as soon as it is
    // here, the charts when the series follow.
    const wantData = Date.now() - lastDataAt >= DATA_EVERY_MS - 100;
    const dataRead = wantData ? api('GET', '/admin/console?window=300&step=2').catch(() => null) : Promise.resolve(null);
    const st = await api('GET', '/admin/status');
    if (st.status === 401) {
      needToken(token ? 'The gateway refused the token this tab had; enter the current one.' : '');
      return;
    }
    if (!st.ok) throw new Error(`GET /admin/status answered ${st.status}${errorText(st.data)}`);
    status = st.data;
    lastStatusAt = Date.now();
    lastError = '';
    render();
    const d = await dataRead;
    if (d && d.ok) {
      data = d.data;
      lastDataAt = Date.now();
      render();
    }
  } catch (e) {
    lastError = e.message;
  } finally {
    polling = false;
    renderConn();
  }
  if (pollAgain) {
    pollAgain = false;
    poll();
    return;
  }
  schedule();
}

function errorText(d) {
  return d && d.message ? `: ${d.message}` : '';
}

function renderConn() {
  const conn = $('conn');
  const stale = lastStatusAt && Date.now() - lastStatusAt > STALE_AFTER_MS;
  let cls = 'conn';
  let text;
  if (authNeeded) {
    text = 'Token needed';
  } else if (lastError && (stale || !lastStatusAt)) {
    cls += ' bad';
    text = lastStatusAt ? 'Connection lost, retrying; the page shows the last state read' : `Cannot reach the gateway: ${lastError}`;
  } else if (lastStatusAt) {
    cls += ' ok';
    text = 'Live';
  } else {
    text = 'Connecting…';
  }
  conn.className = cls;
  setText('conn-text', text);
  if (lastStatusAt) conn.title = `Last update ${new Date(lastStatusAt).toLocaleTimeString()}`;
  $('main').classList.toggle('stale', Boolean(stale));
}

// ---- rendering ----

function render() {
  if (!status) return;
  $('main').setAttribute('aria-busy', 'false');
  renderOverview(status);
  renderControls(status);
  for (const c of COLORS) renderPool(c, status, data && data.backends);
  renderCharts();
  renderVerdict(status);
  renderHistory(status.switches || []);
  renderConfig(status);
  renderFleet(status.fleet);
  renderWarnings(status.warnings || []);
  initialized = true;
}

// renderWarnings shows what the gateway says an operator must fix, such
// as an admin API open without a token or a switch not persisted.
function renderWarnings(list) {
  const b = $('banner');
  b.hidden = list.length === 0;
  b.replaceChildren(...list.map((w) => el('div', { text: w })));
}

function weights(st) {
  return (st.traffic && st.traffic.weights) || {};
}

function renderOverview(st) {
  const live = $('live-color');
  live.className = `live-color ${st.active}`;
  setText('live-color', st.active);
  setText('live-version', st.active_version || '');
  setText('generation', String(st.generation));
  const pool = st.pools[st.active] || { backends: [] };
  setText('live-ready', `${pool.ready_backends} of ${pool.backends.length}`);
  setText('live-inflight', fmtNum(pool.inflight));

  const w = weights(st);
  for (const c of COLORS) {
    const p = w[c] ?? (c === st.active ? 100 : 0);
    $(`split-${c}`).style.width = `${p}%`;
    setText(`w-${c}`, fmtPercent(p));
  }
  $('split').setAttribute('aria-label', `Traffic split: blue ${fmtPercent(w.blue ?? 0)}, green ${fmtPercent(w.green ?? 0)}`);
  const m = st.traffic && st.traffic.mirror;
  setText('mirror', m ? `${fmtPercent(m.percent)} to ${m.to}` : 'off');
  setText('sticky', (st.traffic && st.traffic.sticky_header) || 'none');
  renderDrain(st.drains || []);
}

function renderDrain(drains) {
  const box = $('drain');
  const sorted = drains.slice().sort((a, b) => Date.parse(b.started) - Date.parse(a.started));
  const running = sorted.find((d) => d.state === 'draining');
  const recent = running || sorted.find((d) => d.finished && Date.now() - Date.parse(d.finished) < 120000);
  if (!recent) {
    box.replaceChildren(el('span', { class: 'muted', text: 'No drain in progress.' }));
    return;
  }
  const who = el('span', {}, el('b', { class: `c-${recent.color}`, text: recent.color }), ` (${recent.version})`);
  if (recent.state === 'draining') {
    const done = recent.inflight_at_swap > 0 ? (recent.inflight_at_swap - recent.inflight) / recent.inflight_at_swap : 1;
    box.replaceChildren(
      el('div', {}, el('span', { class: 'big', text: fmtNum(recent.inflight) }), ' in flight on ', who),
      el('div', { class: 'bar', role: 'progressbar', 'aria-label': 'Drain progress', 'aria-valuemin': 0, 'aria-valuemax': recent.inflight_at_swap, 'aria-valuenow': recent.inflight_at_swap - recent.inflight }, barFill(done)),
      el('div', { class: 'muted small', text: `${fmtNum(recent.inflight_at_swap)} at the switch · draining for ${fmtSeconds(recent.seconds)}` }),
    );
    return;
  }
  const text = recent.state === 'timed_out'
    ? ` timed out after ${fmtSeconds(recent.seconds)} with ${fmtNum(recent.stragglers)} stragglers still running`
    : recent.state === 'cancelled' ? ' drain cancelled: it is live again' : ` drained in ${fmtSeconds(recent.seconds)}`;
  box.replaceChildren(el('div', { class: recent.state === 'timed_out' ? 'hint warn' : '' }, who, text),
    el('div', { class: 'muted small', text: `${fmtNum(recent.inflight_at_swap)} in flight at the switch · ${fmtAgo(recent.finished)}` }));
}

function renderControls(st) {
  const target = other(st.active);
  const tp = st.pools[target] || { backends: [], ready_backends: 0 };
  const disabled = busy || !status;
  const sw = $('switch-btn');
  setText('switch-btn', `Switch to ${target}`);
  sw.disabled = disabled;
  const hint = $('switch-hint');
  if (tp.ready_backends < tp.backends.length) {
    hint.className = 'hint warn';
    setText('switch-hint', `${target} has ${tp.ready_backends} of ${tp.backends.length} backends ready`);
  } else {
    hint.className = 'hint';
    setText('switch-hint', `${target} ${tp.version} is ready`);
  }

  const hist = st.switches || [];
  const last = hist[hist.length - 1];
  const rb = $('rollback-btn');
  rb.disabled = disabled || !last;
  setText('rollback-hint', last ? `back to ${last.from}` : 'no switch to roll back');

  const v = st.analysis && st.analysis.verdict;
  $('promote-btn').disabled = disabled || !st.analysis;
  setText('promote-btn', `Promote ${target}`);
  let ph = 'needs a canary or mirror first';
  if (!st.analysis) ph = 'analysis is off';
  else if (v && (v.phase === 'canary' || v.phase === 'shadow')) ph = v.pass ? 'analysis passes' : v.enough ? 'analysis fails' : 'analysis is waiting for requests';
  setText('promote-hint', ph);

  setText('canary-label', `Canary to ${target} (%)`);
  $('canary-btn').disabled = disabled;
  const share = weights(st)[target] || 0;
  setText('canary-hint', share > 0 ? `${target} gets ${fmtPercent(share)} now; 0 ends it` : 'off');

  const m = st.traffic && st.traffic.mirror;
  const mi = $('mirror-input');
  setText('mirror-label', `Mirror to ${target} (%)`);
  $('mirror-btn').disabled = disabled;
  if (m) {
    setText('mirror-btn', 'Stop mirror');
    mi.disabled = true;
    mi.value = String(m.percent);
    setText('mirror-hint', `copying ${fmtPercent(m.percent)} of requests to ${m.to}`);
  } else {
    setText('mirror-btn', 'Start mirror');
    mi.disabled = false;
    setText('mirror-hint', 'off');
  }
  for (const c of COLORS) $(`warmup-${c}`).disabled = disabled || !(st.pools[c] && st.pools[c].backends.length);
}

// ---- charts ----

function lastValue(values, requests) {
  for (let i = values.length - 1; i >= 0; i--) {
    if (requests[i] > 0 && values[i] !== null && values[i] !== undefined) return values[i];
  }
  return null;
}

function renderCharts() {
  if (!data || !data.series || !data.series.start.length) return;
  const s = data.series;
  const n = s.start.length;
  const cs = s.colors;
  const end = s.start[n - 1] + s.seconds[n - 1];
  // From the first point with traffic, at least MIN_CHART_SPAN_S.
  let first = n;
  for (let i = 0; i < n; i++) {
    if (COLORS.some((c) => cs[c] && cs[c].requests[i] > 0)) { first = i; break; }
  }
  let x0 = first < n ? s.start[first] : end - MIN_CHART_SPAN_S;
  x0 = Math.max(s.start[0], Math.min(x0, end - MIN_CHART_SPAN_S));
  setText('chart-span', `· last ${fmtSeconds(end - x0)}`);
  const markers = ((status && status.switches) || []).map((r) => ({ t: Date.parse(r.at) / 1000, label: `→ ${r.to}` }));
  const th = data.thresholds || {};
  const shadow = data.shadow || {};
  let empty = true;
  for (let i = 0; i < n && empty; i++) {
    if (s.start[i] + s.seconds[i] > x0 && COLORS.some((c) => cs[c] && cs[c].requests[i] > 0)) empty = false;
  }

  const rpsLines = [];
  for (const c of COLORS) {
    if (cs[c]) rpsLines.push({ cls: c, values: cs[c].rps });
    if (shadow[c]) rpsLines.push({ cls: `${c} shadow`, values: shadow[c].rps });
  }
  drawChart($('chart-rps'), { series: s, x0, x1: end, lines: rpsLines, fmt: (v) => fmtNum(v, v < 10 ? 1 : 0), markers, minMax: 1, empty });
  drawChart($('chart-err'), {
    series: s, x0, x1: end, markers, minMax: 0.01, empty,
    lines: COLORS.filter((c) => cs[c]).map((c) => ({ cls: c, values: cs[c].error_ratio })),
    fmt: (v) => fmtRatio(v),
    threshold: th.max_error_ratio ? { value: th.max_error_ratio, label: `max ${fmtRatio(th.max_error_ratio)}` } : null,
  });
  const latLines = [];
  for (const c of COLORS) {
    if (!cs[c]) continue;
    latLines.push({ cls: c, values: cs[c].p99_ms });
    latLines.push({ cls: `${c} dashed`, values: cs[c].p50_ms });
  }
  drawChart($('chart-lat'), {
    series: s, x0, x1: end, lines: latLines, markers, minMax: 1, empty, fmt: (v) => fmtMs(v),
    threshold: th.max_p99_ms ? { value: th.max_p99_ms, label: `max P99 ${fmtMs(th.max_p99_ms)}` } : null,
  });

  const now = (fmt, key) => COLORS.filter((c) => cs[c]).map((c) => `${c} ${fmt(lastValue(cs[c][key], cs[c].requests))}`).join(' · ');
  setText('now-rps', now(fmtRate, 'rps'));
  setText('now-err', now(fmtRatio, 'error_ratio'));
  setText('now-lat', now(fmtMs, 'p99_ms'));
  $('chart-rps').setAttribute('aria-label', `Requests per second: ${now(fmtRate, 'rps')}`);
  $('chart-err').setAttribute('aria-label', `Error ratio: ${now(fmtRatio, 'error_ratio')}`);
  $('chart-lat').setAttribute('aria-label', `P99 latency: ${now(fmtMs, 'p99_ms')}`);
}

// ---- analysis ----

function kv(dl, rows) {
  const kids = [];
  for (const [k, v, cls] of rows) {
    kids.push(el('dt', { text: k }), el('dd', { class: cls || '', text: v }));
  }
  dl.replaceChildren(...kids);
}

function windowText(w) {
  if (!w) return '—';
  const r = w.requests ? ` (${fmtRatio(w.errors / w.requests)} errors)` : '';
  return `${fmtNum(w.requests)} requests${r}, P99 ${w.requests ? fmtNs(w.p99_ns) : '—'}`;
}

function renderVerdict(st) {
  const a = st.analysis;
  const badge = $('verdict-badge');
  if (!a) {
    badge.className = 'badge';
    setText('verdict-badge', 'off');
    setText('verdict-title', 'Release analysis is not running.');
    $('verdict-reasons').replaceChildren();
    return;
  }
  const v = a.verdict || {};
  let label = 'idle';
  let cls = '';
  let title = 'Nothing to compare: start a canary or a mirror, or switch.';
  if (v.phase && v.phase !== 'idle') {
    if (!v.enough) { label = 'waiting'; cls = 'warn'; } else if (v.pass) { label = 'pass'; cls = 'ok'; } else { label = 'fail'; cls = 'bad'; }
    const what = { canary: 'Canary', shadow: 'Shadow traffic', observe: 'After the switch' }[v.phase] || v.phase;
    title = `${what}: ${v.candidate} is compared with ${v.baseline}${v.since ? `, since ${fmtAgo(v.since)}` : ''}`;
  }
  badge.className = `badge ${cls}`;
  setText('verdict-badge', label);
  setText('verdict-title', title);
  $('verdict-reasons').replaceChildren(...(v.phase && v.phase !== 'idle' ? (v.reasons || []) : []).map((r) => el('li', { text: r })));
  const rows = [];
  if (v.phase && v.phase !== 'idle') {
    rows.push([`Candidate ${v.candidate}`, windowText(v.candidate_stats)]);
    rows.push([`Baseline ${v.baseline}`, windowText(v.baseline_stats)]);
  }
  kv($('verdict-stats'), rows);
  const th = data && data.thresholds;
  if (th) {
    kv($('thresholds'), [
      ['Window', fmtSeconds(th.window_s)],
      ['Min requests', fmtNum(th.min_requests)],
      ['Max error ratio', fmtRatio(th.max_error_ratio)],
      ['Max P99 ratio', th.max_p99_ratio ? `${th.max_p99_ratio}× baseline (above ${fmtMs(th.p99_floor_ms)})` : 'off'],
      ['Max P99', th.max_p99_ms ? fmtMs(th.max_p99_ms) : 'off'],
      ['Max status diff', fmtRatio(th.max_status_diff_ratio)],
      ['After a switch', `watch ${fmtSeconds(th.observe_s)}, auto-rollback ${th.auto_rollback ? 'on' : 'off'}`],
      ['Auto-promote', th.auto_promote ? 'on' : 'off'],
    ]);
  }
  setText('last-action', a.last_action ? `Last automatic action: ${a.last_action}` : '');
}

// ---- history, config, fleet ----

function renderHistory(list) {
  const body = $('history-rows');
  if (!list.length) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'No switch yet.' })));
    return;
  }
  body.replaceChildren(...list.slice().reverse().map((r) => el('tr', {},
    el('td', { title: fmtTime(r.at), text: fmtAgo(r.at) }),
    el('td', {}, el('span', { class: `c-${r.from}`, text: r.from }), ' → ', el('b', { class: `c-${r.to}`, text: r.to }), ` ${r.version}`),
    el('td', { text: r.trigger }),
    el('td', { text: r.forced ? 'forced' : '—', class: r.forced ? 'c-warn' : '' }),
    el('td', { text: fmtNs(r.swap_ns) }),
    el('td', { text: String(r.generation) }))));
}

function renderConfig(st) {
  const c = st.config;
  const rows = [['Routing generation', String(st.generation)]];
  if (!c) {
    rows.push(['Config file', 'none: the gateway was started without one (as the demo is), so reload is off']);
  } else {
    rows.push(['File', c.path || '—']);
    rows.push(['Config generation', String(c.generation ?? '—')]);
    rows.push(['Loaded', c.loaded_at ? `${fmtAgo(c.loaded_at)} (${fmtTime(c.loaded_at)})` : '—']);
    if (c.sha256) rows.push(['SHA-256', c.sha256.slice(0, 16)]);
    rows.push(['Last error', c.last_error ? `${c.last_error}${c.last_error_at ? ` (${fmtAgo(c.last_error_at)})` : ''}` : 'none', c.last_error ? 'bad' : '']);
    rows.push(['Pending switch', c.pending_switch || 'none', c.pending_switch ? 'warn' : '']);
    const rn = c.restart_needed || [];
    rows.push(['Restart needed', rn.length ? rn.join(', ') : 'no', rn.length ? 'warn' : '']);
  }
  const sf = st.state;
  if (sf) {
    rows.push(['State file', sf.path || '—']);
    rows.push(['Persisted', sf.persisted ? 'yes' : `no: ${sf.last_error || 'the last write failed'}`, sf.persisted ? '' : 'bad']);
  }
  kv($('config'), rows);
}

// renderFleet shows every replica and the routing generation it serves.
// Fleet mode does not exist yet; its status is expected as
// {"replicas": [{"id", "generation", "active", "state", "seen"}]}. Without
// it the section stays hidden.
function renderFleet(fleet) {
  const sec = $('fleet');
  const replicas = fleet && Array.isArray(fleet.replicas) ? fleet.replicas : [];
  sec.hidden = replicas.length === 0;
  if (!replicas.length) return;
  $('fleet-rows').replaceChildren(...replicas.map((r) => el('tr', {},
    el('td', { class: 'mono', text: String(r.id ?? r.name ?? '—') }),
    el('td', { text: String(r.generation ?? '—') }),
    el('td', { class: r.active ? `c-${r.active}` : '', text: r.active || '—' }),
    el('td', { text: r.state || (r.healthy === false ? 'unhealthy' : 'ok') }),
    el('td', { text: r.seen ? fmtAgo(r.seen) : '—' }))));
}

// ---- actions (actions.js) ----

// setBusy marks an action in flight: every action control is disabled
// until it ends, so nothing is sent twice.
function setBusy(v) {
  busy = v;
  if (status) renderControls(status);
}

initActions({
  status: () => status,
  api,
  busy: () => busy,
  setBusy,
  refreshNow,
  needToken: (msg) => needToken(msg),
});

// ---- token ----

const loginDlg = $('login');

function needToken(msg) {
  authNeeded = true;
  clearTimeout(timer);
  renderConn();
  const err = $('login-error');
  err.textContent = msg || '';
  err.hidden = !msg;
  if (!loginDlg.open) loginDlg.showModal();
  $('login-token').value = '';
  $('login-token').focus();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('login-token');
  const t = input.value.trim();
  if (!t) return;
  const ok = $('login-ok');
  ok.disabled = true;
  const err = $('login-error');
  try {
    const r = await api('GET', '/admin/status', undefined, undefined, t);
    if (r.status === 401) {
      err.textContent = 'The gateway refused this token. It is the content of the file admin.token_file names.';
      err.hidden = false;
      input.select();
      return;
    }
    if (!r.ok) {
      err.textContent = `GET /admin/status answered ${r.status}${errorText(r.data)}`;
      err.hidden = false;
      return;
    }
    token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
    authNeeded = false;
    input.value = '';
    loginDlg.close();
    $('token-btn').hidden = false;
    status = r.data;
    lastStatusAt = Date.now();
    render();
    refreshNow();
  } catch (e) {
    err.textContent = `Cannot check the token: ${e.message}.`;
    err.hidden = false;
  } finally {
    ok.disabled = false;
  }
});
// Without a token there is nothing to show; the dialog stays until one
// is accepted, unless the tab already has a working one.
loginDlg.addEventListener('cancel', (ev) => { if (authNeeded) ev.preventDefault(); });
$('token-btn').addEventListener('click', () => {
  setText('login-error', '');
  $('login-error').hidden = true;
  loginDlg.showModal();
  $('login-token').focus();
});

// ---- start ----

document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshNow(); });
if (window.ResizeObserver) {
  let last = 0;
  new ResizeObserver((entries) => {
    const w = Math.round(entries[0].contentRect.width);
    if (w !== last) { last = w; renderCharts(); }
  }).observe($('chart-rps'));
}
setInterval(() => { if (initialized) renderConn(); }, 1000);
if (token) $('token-btn').hidden = false;
poll();
