// dom.js — small helpers shared by the views: building elements, icons,
// notices (toasts), a confirm dialog and formatting. No framework: the
// views keep their own state and update the elements they made.

const SPRITE = new URL('./icons.svg', import.meta.url).pathname;
const SVG_NS = 'http://www.w3.org/2000/svg';

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// h('button', {class: 'btn', onclick: fn, 'aria-label': 'x'}, child, ...)
// Text children are text nodes: nothing is ever parsed as HTML.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function icon(name, cls = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  const use = document.createElementNS(SVG_NS, 'use');
  use.setAttribute('href', SPRITE + '#' + name);
  svg.append(use);
  return svg;
}

// ---------- notices ----------
const KIND_ICON = { info: 'info', ok: 'check', warn: 'alert', error: 'alert' };

// toast(text, {kind: 'info'|'ok'|'warn'|'error', timeout, action: {label, run}})
export function toast(text, opts = {}) {
  const kind = opts.kind || 'info';
  const box = $('#toasts');
  const close = () => {
    clearTimeout(timer);
    el.remove();
    if (!box.children.length && box.hidePopover && box.matches(':popover-open')) box.hidePopover();
  };
  const el = h('div', { class: 'toast ' + kind, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'notice', 'data-kind': kind },
    icon(KIND_ICON[kind] || 'info'),
    h('p', { class: 'toast-text', text }),
    opts.action ? h('button', { type: 'button', class: 'btn small', text: opts.action.label, onclick: () => { close(); opts.action.run(); } }) : null,
    h('button', { type: 'button', class: 'btn small icon-only ghost', 'aria-label': 'Dismiss', onclick: close }, icon('close')));
  box.append(el);
  while (box.children.length > 3) box.firstElementChild.remove();
  raise(box);
  const timeout = opts.timeout ?? (kind === 'error' ? 12000 : kind === 'warn' ? 8000 : 5000);
  const timer = timeout > 0 ? setTimeout(close, timeout) : 0;
  return close;
}

// Showing the popover again puts it above a dialog opened since.
function raise(box) {
  if (!box.showPopover) return;
  if (box.matches(':popover-open')) box.hidePopover();
  box.showPopover();
}

export function showError(err, prefix) {
  const msg = (err && err.message) || 'Something went wrong.';
  toast(prefix ? `${prefix} ${msg}` : msg, { kind: 'error' });
}

// ---------- confirm ----------
export function confirmDialog({ title, text, ok = 'Delete' }) {
  const d = $('#confirm-dialog');
  $('#confirm-title', d).textContent = title;
  $('#confirm-text', d).textContent = text || '';
  $('[value="ok"]', d).textContent = ok;
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.showModal();
    $('[value="cancel"]', d).focus();
  });
}

// ---------- formatting ----------
export function fmtBytes(n) {
  n = Number(n) || 0;
  if (n < 1024) return n + ' B';
  const u = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return (n >= 10 ? n.toFixed(0) : n.toFixed(1)) + ' ' + u[i];
}

export function fmtDuration(sec) {
  sec = Math.max(0, Math.round(Number(sec) || 0));
  const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
  const ss = String(s).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
export function fmtDate(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !isNaN(d) ? dateFmt.format(d) : '';
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
export function fmtAgo(iso) {
  const d = iso ? new Date(iso) : null;
  if (!d || isNaN(d)) return '';
  const s = (d.getTime() - Date.now()) / 1000;
  const a = Math.abs(s);
  if (a < 45) return 'just now';
  if (a < 3600) return rtf.format(Math.round(s / 60), 'minute');
  if (a < 86400) return rtf.format(Math.round(s / 3600), 'hour');
  if (a < 86400 * 7) return rtf.format(Math.round(s / 86400), 'day');
  return fmtDate(iso);
}

export function plural(n, one, many = one + 's') { return `${n} ${n === 1 ? one : many}`; }
