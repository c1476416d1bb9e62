// Time-series charts of the Switchyard console: inline SVG drawn in the
// element's own pixel size, both colors on one chart.

import { svg } from './dom.js';

// niceMax rounds v up to 1, 2, 2.5 or 5 times a power of ten: the top of
// an axis.
function niceMax(v) {
  if (!(v > 0)) return 0;
  const exp = 10 ** Math.floor(Math.log10(v));
  const f = v / exp;
  const n = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return n * exp;
}

// drawChart draws lines of values over the series' points on an SVG in
// its own pixel size. o: {series, x0, x1, lines: [{cls, values}], fmt,
// threshold: {value, label}, markers: [{t, label}], minMax, empty}.
export function drawChart(node, o) {
  const W = Math.max(200, Math.round(node.clientWidth || node.getBoundingClientRect().width || 300));
  const H = Math.max(100, Math.round(node.clientHeight || 150));
  const m = { l: 46, r: 10, t: 10, b: 20 };
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;
  const s = o.series;
  const mid = (i) => s.start[i] + s.seconds[i] / 2;
  let peak = 0;
  for (const line of o.lines) {
    line.values.forEach((v, i) => {
      if (v !== null && v !== undefined && mid(i) >= o.x0 && v > peak) peak = v;
    });
  }
  if (o.threshold && o.threshold.value > 0) peak = Math.max(peak, o.threshold.value * 1.15);
  const top = niceMax(peak) || o.minMax || 1;
  const X = (t) => m.l + ((t - o.x0) / (o.x1 - o.x0)) * iw;
  const Y = (v) => m.t + ih - (Math.min(v, top) / top) * ih;
  node.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const kids = [];
  for (const f of [0, 0.5, 1]) {
    const y = Y(top * f);
    kids.push(svg('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: y, y2: y }));
    kids.push(svg('text', { class: 'axis', x: m.l - 6, y: y + 3.5, 'text-anchor': 'end' }, o.fmt(top * f)));
  }
  const span = o.x1 - o.x0;
  for (const f of [0, 0.5, 1]) {
    const t = o.x0 + span * f;
    const ago = Math.round(o.x1 - t);
    const label = ago === 0 ? 'now' : `−${ago >= 120 ? `${Math.round(ago / 60)}m` : `${ago}s`}`;
    kids.push(svg('text', { class: 'axis', x: X(t), y: H - 5, 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle' }, label));
  }
  for (const mk of o.markers || []) {
    if (mk.t < o.x0 || mk.t > o.x1) continue;
    const x = X(mk.t);
    kids.push(svg('line', { class: 'marker', x1: x, x2: x, y1: m.t, y2: m.t + ih }));
    kids.push(svg('text', { class: 'marker-label', x: x + 3, y: m.t + 9 }, mk.label));
  }
  if (o.threshold && o.threshold.value > 0) {
    const y = Y(o.threshold.value);
    kids.push(svg('line', { class: 'threshold', x1: m.l, x2: W - m.r, y1: y, y2: y }));
    kids.push(svg('text', { class: 'threshold-label', x: W - m.r, y: y - 4, 'text-anchor': 'end' }, o.threshold.label));
  }
  for (const line of o.lines) {
    let d = '';
    let pen = false;
    line.values.forEach((v, i) => {
      const t = mid(i);
      if (v === null || v === undefined || t < o.x0) { pen = false; return; }
      const x = X(t).toFixed(1);
      const y = Y(v).toFixed(1);
      d += pen ? `L${x} ${y}` : `M${x} ${y}l0.01 0`;
      pen = true;
    });
    if (d) kids.push(svg('path', { class: `line ${line.cls}`, d }));
  }
  if (o.empty) kids.push(svg('text', { class: 'empty', x: m.l + iw / 2, y: m.t + ih / 2, 'text-anchor': 'middle' }, 'No requests in this window'));
  node.replaceChildren(...kids);
}
