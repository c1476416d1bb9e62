// DOM helpers of the Switchyard console. Everything from the server goes
// in with textContent or setAttribute, never as markup.

export const COLORS = ['blue', 'green'];
const SVG_NS = 'http://www.w3.org/2000/svg';

export const $ = (id) => document.getElementById(id);

// other is the color that is not c.
export function other(c) { return c === 'blue' ? 'green' : 'blue'; }

// el builds an element; attrs.text sets textContent, attrs.class the
// class, other keys become attributes. Children are nodes or strings.
export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k);
  }
  return e;
}

// svg builds an SVG element with attributes and optional text.
export function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// setText sets an element's text only when it changed, so a screen
// reader or a text selection is not disturbed by every refresh.
export function setText(id, text) {
  const e = $(id);
  if (e.textContent !== text) e.textContent = text;
}

// barFill is the filled part of a bar, frac from 0 to 1.
export function barFill(frac) {
  const i = el('i');
  i.style.width = `${Math.max(0, Math.min(1, frac)) * 100}%`;
  return i;
}
