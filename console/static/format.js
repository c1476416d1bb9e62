// Number, size, duration and time formats of the Switchyard console.

export function fmtNum(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return Number(v).toLocaleString('en-US', { maximumFractionDigits: digits ?? 0 });
}

export function fmtRate(v) {
  if (v === null || v === undefined) return '—';
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)}/s`;
}

export function fmtRatio(v) {
  if (v === null || v === undefined) return '—';
  const p = v * 100;
  return `${p === 0 ? '0' : p < 0.1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : p.toFixed(0)}%`;
}

export function fmtPercent(p) {
  return `${fmtNum(p, 2)}%`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms === 0) return '0';
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function fmtNs(ns) {
  if (ns === null || ns === undefined) return '—';
  if (ns < 1000) return `${ns} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  return fmtMs(ns / 1e6);
}

export function fmtSeconds(s) {
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  const r = Math.round(s % 60);
  return r ? `${m} min ${r} s` : `${m} min`;
}

export function fmtBytes(b) {
  if (b === null || b === undefined) return '—';
  const gib = b / (1 << 30);
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${(b / (1 << 20)).toFixed(0)} MiB`;
}

export function fmtGiB(b) {
  return (b / (1 << 30)).toFixed(1);
}

export function fmtAgo(iso) {
  const t = Date.parse(iso);
  if (!t) return '—';
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

export function fmtTime(iso) {
  const t = Date.parse(iso);
  return t ? new Date(t).toLocaleString() : '';
}
