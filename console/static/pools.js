// The two pools of the Switchyard console, side by side: each backend's
// health, warmup, load, GPU signals and last error.

import { $, el, setText, barFill } from './dom.js';
import { fmtNum, fmtPercent, fmtRatio, fmtMs, fmtSeconds, fmtBytes, fmtGiB } from './format.js';

function backendState(b) {
  const hs = b.health;
  const ejected = b.ejected_until && Date.parse(b.ejected_until) > Date.now();
  if (!hs) return b.ready ? ['ready', 'ok'] : ['not ready', 'warn'];
  if (!hs.probed) return ['not probed yet', ''];
  if (!hs.healthy) return ['down', 'bad'];
  if (hs.warming) return [`warming ${hs.warm_passed || 0}/${hs.warm_needed || '?'}`, 'warn'];
  if (!hs.warm) return hs.warmup_error ? ['warmup failed', 'bad'] : ['not warm', 'warn'];
  if (ejected) return ['ejected', 'bad'];
  return b.ready ? ['ready', 'ok'] : ['not ready', 'warn'];
}

function meter(label, frac, valueText, cls) {
  return el('div', { class: 'meter' },
    el('span', { text: label }),
    el('div', { class: `bar ${cls || ''}`, role: 'meter', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(frac * 100) }, barFill(frac)),
    el('span', { class: 'val', text: valueText }));
}

function loadClass(frac) {
  return frac >= 0.9 ? 'bad' : frac >= 0.75 ? 'warn' : '';
}

function renderBackend(b, extra) {
  const hs = b.health || {};
  const rep = hs.report || {};
  const [label, cls] = backendState(b);
  const li = el('li', { class: `backend ${cls === 'bad' ? 'down' : ''}`, 'data-addr': b.addr, 'data-state': label.split(' ')[0] });
  li.append(el('div', { class: 'backend-head' },
    el('span', { class: 'addr', text: b.addr }),
    rep.device ? el('span', { class: 'muted small', text: rep.device }) : null,
    el('span', { class: `badge state ${cls}`, text: label })));

  if (hs.warming && hs.warm_needed) {
    li.append(el('div', { class: 'meters' }, meter('Warmup', (hs.warm_passed || 0) / hs.warm_needed, `${hs.warm_passed || 0} of ${hs.warm_needed}`, 'warn')));
  }
  const stat = (name, value) => el('div', {}, name, el('b', { text: value }));
  li.append(el('div', { class: 'stats' },
    stat('In flight', fmtNum(b.inflight)),
    stat('Requests', fmtNum(b.requests)),
    stat('Queue', rep.queue_depth !== undefined ? fmtNum(rep.queue_depth) : '—'),
    stat('Ejections', extra ? fmtNum(extra.ejections) : '—'),
    stat('Restarts', fmtNum(hs.restarts || 0)),
    stat('Connections', fmtNum(b.open_conns))));

  const meters = [];
  if (rep.gpu_memory_used_bytes !== undefined && rep.gpu_memory_total_bytes) {
    const f = rep.gpu_memory_used_bytes / rep.gpu_memory_total_bytes;
    meters.push(meter('GPU memory', f, `${fmtGiB(rep.gpu_memory_used_bytes)} / ${fmtBytes(rep.gpu_memory_total_bytes)}`, loadClass(f)));
  }
  if (rep.gpu_utilization !== undefined) {
    const f = rep.gpu_utilization > 1 ? rep.gpu_utilization / 100 : rep.gpu_utilization;
    meters.push(meter('GPU util', f, fmtRatio(f), loadClass(f)));
  }
  if (rep.kv_cache_usage !== undefined) {
    meters.push(meter('KV cache', rep.kv_cache_usage, fmtRatio(rep.kv_cache_usage), loadClass(rep.kv_cache_usage)));
  }
  if (meters.length) li.append(el('div', { class: 'meters' }, ...meters));
  else if (hs.probed) li.append(el('div', { class: 'note', text: 'No GPU signals reported.' }));

  if (hs.last_error) li.append(el('div', { class: 'err', text: hs.last_error }));
  if (hs.warmup_error) li.append(el('div', { class: 'err', text: `warmup: ${hs.warmup_error}` }));
  if (b.ejected_until && Date.parse(b.ejected_until) > Date.now()) {
    li.append(el('div', { class: 'err', text: `ejected by passive health until ${new Date(b.ejected_until).toLocaleTimeString()}` }));
  }
  const notes = [];
  if (hs.cold_latency_seconds) notes.push(`first warmup ${fmtMs(hs.cold_latency_seconds * 1000)}`);
  if (hs.warm_latency_seconds) notes.push(`warm ${fmtMs(hs.warm_latency_seconds * 1000)}`);
  if (hs.warmup_seconds) notes.push(`warmup took ${fmtSeconds(hs.warmup_seconds)}`);
  if (hs.gpu_shared_with && hs.gpu_shared_with.length) notes.push(`GPU shared with ${hs.gpu_shared_with.join(', ')}`);
  if (notes.length) li.append(el('div', { class: 'note', text: notes.join(' · ') }));
  return li;
}

// renderPool shows pool c of the status st; extras are the data
// endpoint's per-backend additions (ejections), by address.
export function renderPool(c, st, extras) {
  const p = st.pools[c];
  const card = $(`pool-${c}`);
  if (!p) return;
  card.classList.toggle('live', p.active);
  setText(`pool-${c}-version`, p.version);
  const badge = $(`pool-${c}-badge`);
  const share = ((st.traffic && st.traffic.weights) || {})[c] || 0;
  if (p.active) {
    badge.className = 'badge live';
    setText(`pool-${c}-badge`, 'Live');
  } else if (share > 0) {
    badge.className = 'badge warn';
    setText(`pool-${c}-badge`, `Canary ${fmtPercent(share)}`);
  } else {
    badge.className = 'badge';
    setText(`pool-${c}-badge`, 'Standby');
  }
  const fact = (name, value) => el('span', {}, `${name} `, el('b', { text: value }));
  $(`pool-${c}-facts`).replaceChildren(
    fact('Ready', `${p.ready_backends} of ${p.backends.length}`),
    fact('In flight', fmtNum(p.inflight)),
    fact('Share', fmtPercent(share)),
    p.max_concurrency ? fact('Max concurrency', fmtNum(p.max_concurrency)) : '');
  const items = p.backends.map((b) => renderBackend(b, (extras || {})[b.addr]));
  if (!items.length) items.push(el('li', { class: 'muted', text: 'No backends configured.' }));
  $(`pool-${c}-backends`).replaceChildren(...items);
}
