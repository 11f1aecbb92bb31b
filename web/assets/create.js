// create.js — the "Create video" dialog: the selected photos in order
// (reorder by dragging with mouse, pen or finger, or by keyboard), the
// options the API takes, and the resulting duration, shown before starting:
//   n × seconds_per_photo − (n − 1) × transition_seconds
// (transition_seconds counts as 0 with "none").

import * as api from './api.js';
import { $, $$, h, toast, fmtDuration, plural } from './dom.js';

const OPTS_KEY = 'pv.video-options';  // the last options used (never a token)
const MAX_PHOTOS = 200;
let order = [];
let ctx = null;   // {getSelection, setSelection, photo, onCreated}

const dialog = () => $('#create-dialog');
const form = () => $('#create-form');

export function init(c) {
  ctx = c;
  const f = form();
  f.addEventListener('input', update);
  f.addEventListener('change', update);
  f.addEventListener('submit', (e) => { e.preventDefault(); submit(); });
  dialog().addEventListener('click', (e) => {
    const b = e.target.closest('[data-action="close"]');
    if (b) dialog().close();
  });
  const list = $('#order');
  list.addEventListener('keydown', orderKeys);
  list.addEventListener('pointerdown', dragStart);
}

export function open() {
  order = ctx.getSelection();
  if (!order.length) {
    toast('Select at least one photo first.', { kind: 'info' });
    return;
  }
  restoreOptions();
  showError('');
  renderOrder();
  update();
  dialog().showModal();
  $('#v-title').focus();
}

// ---------- options ----------

function values() {
  const f = form();
  const transition = f.transition.value;
  return {
    title: f.title.value.trim(),
    seconds_per_photo: Number(f.seconds_per_photo.value),
    transition,
    transition_seconds: transition === 'none' ? 0 : Number(f.transition_seconds.value),
    resolution: f.resolution.value,
    aspect: f.aspect.value,
    ken_burns: f.ken_burns.checked,
  };
}

function restoreOptions() {
  const f = form();
  f.title.value = '';
  let o = null;
  try { o = JSON.parse(localStorage.getItem(OPTS_KEY) || 'null'); } catch { /* ignore */ }
  if (!o) return;
  const set = (el, v) => { if (v !== undefined && v !== null) el.value = String(v); };
  set(f.seconds_per_photo, o.seconds_per_photo);
  set(f.transition, o.transition);
  if (o.transition !== 'none') set(f.transition_seconds, o.transition_seconds);
  set(f.resolution, o.resolution);
  for (const r of $$('input[name="aspect"]', f)) r.checked = r.value === o.aspect;
  f.ken_burns.checked = !!o.ken_burns;
}

export function durationOf(n, spp, ts) { return n * spp - Math.max(0, n - 1) * ts; }

// Checks the options; returns words for the first problem, or ''.
function problem(v) {
  if (!order.length) return 'Add at least one photo.';
  if (order.length > MAX_PHOTOS) return `A video can have at most ${MAX_PHOTOS} photos; ${order.length} are selected.`;
  if (!(v.seconds_per_photo >= 0.5 && v.seconds_per_photo <= 60)) return 'Seconds per photo must be between 0.5 and 60.';
  if (v.transition !== 'none' && order.length > 1 && v.transition_seconds >= v.seconds_per_photo)
    return 'The transition must be shorter than the time each photo is shown.';
  return '';
}

function update() {
  const v = values();
  form().transition_seconds.disabled = v.transition === 'none';
  const spp = form().seconds_per_photo;
  const bad = !(v.seconds_per_photo >= 0.5 && v.seconds_per_photo <= 60);
  spp.setAttribute('aria-invalid', String(bad));
  const out = $('#v-duration');
  if (bad) {
    out.textContent = '—';
  } else {
    const d = durationOf(order.length, v.seconds_per_photo, v.transition_seconds);
    out.textContent = fmtDuration(d);
    out.title = `${d.toFixed(2).replace(/\.?0+$/, '')} seconds`;
  }
  $('#order-count').textContent = '· ' + plural(order.length, 'photo');
  const p = problem(v);
  const live = $('#create-error');
  if (live.dataset.kind === 'check' || !live.textContent) showError(p, 'check');
}

function showError(text, kind = 'server') {
  const el = $('#create-error');
  el.textContent = text;
  el.hidden = !text;
  el.dataset.kind = text ? kind : '';
}

async function submit() {
  const v = values();
  const p = problem(v);
  if (p) { showError(p, 'check'); return; }
  const spec = {
    photo_ids: order.slice(),
    seconds_per_photo: v.seconds_per_photo,
    transition: v.transition,
    resolution: v.resolution,
    aspect: v.aspect,
    ken_burns: v.ken_burns,
  };
  if (v.title) spec.title = v.title;
  if (v.transition !== 'none') spec.transition_seconds = v.transition_seconds;
  const btn = $('[data-testid="video-submit"]');
  btn.disabled = true;
  showError('');
  try {
    const video = await api.createVideo(spec);
    const { title, ...keep } = v;
    try { localStorage.setItem(OPTS_KEY, JSON.stringify(keep)); } catch { /* private mode */ }
    dialog().close();
    ctx.onCreated(video);
  } catch (e) {
    showError(e.message, 'server');
  } finally {
    btn.disabled = false;
  }
}

// ---------- order ----------

function renderOrder() {
  const list = $('#order');
  list.replaceChildren(...order.map((id, i) => {
    const p = ctx.photo(id) || { filename: 'photo', urls: {} };
    return h('li', {
      tabindex: '0', 'data-id': id, 'data-testid': 'order-item',
      'aria-label': `${i + 1} of ${order.length}: ${p.filename || 'photo'}`,
      'aria-roledescription': 'reorderable photo',
    },
    h('img', { src: p.urls.thumbnail, alt: '', draggable: 'false' }),
    h('span', { class: 'num', 'aria-hidden': 'true', text: String(i + 1) }));
  }));
}

function commit(focusId, say) {
  ctx.setSelection(order);
  renderOrder();
  update();
  if (focusId) {
    const li = $(`#order li[data-id="${CSS.escape(focusId)}"]`);
    if (li) { li.focus(); li.scrollIntoView({ block: 'nearest', inline: 'nearest' }); }
  }
  if (say) $('#order-live').textContent = say;
}

function orderKeys(e) {
  const li = e.target.closest('li');
  if (!li) return;
  const id = li.dataset.id;
  const i = order.indexOf(id);
  const to = { ArrowLeft: i - 1, ArrowUp: i - 1, ArrowRight: i + 1, ArrowDown: i + 1, Home: 0, End: order.length - 1 }[e.key];
  if (to !== undefined) {
    e.preventDefault();
    const j = Math.max(0, Math.min(order.length - 1, to));
    if (j === i) return;
    order.splice(i, 1);
    order.splice(j, 0, id);
    commit(id, `Moved to position ${j + 1} of ${order.length}.`);
  } else if (e.key === 'Delete' || e.key === 'Backspace') {
    e.preventDefault();
    order.splice(i, 1);
    const next = order[Math.min(i, order.length - 1)];
    commit(next, `Removed. ${plural(order.length, 'photo')} left.`);
  }
}

// Pointer dragging: the item follows the pointer through the list; the DOM
// order is the truth while dragging and is committed on release.
function dragStart(e) {
  const li = e.target.closest('#order li');
  if (!li || e.button > 0) return;
  const list = $('#order');
  const x0 = e.clientX, y0 = e.clientY;
  let dragging = false;
  // Capture on the list, not the item: moving the item in the DOM would
  // release a capture held by the item itself.
  list.setPointerCapture(e.pointerId);
  const move = (ev) => {
    if (!dragging) {
      if (Math.hypot(ev.clientX - x0, ev.clientY - y0) < 5) return;
      dragging = true;
      li.classList.add('dragging');
    }
    ev.preventDefault();
    const r = list.getBoundingClientRect();
    if (ev.clientX < r.left + 30) list.scrollLeft -= 12;
    else if (ev.clientX > r.right - 30) list.scrollLeft += 12;
    const over = Array.from(list.children).find((c) => {
      if (c === li) return false;
      const b = c.getBoundingClientRect();
      return ev.clientX >= b.left && ev.clientX <= b.right && ev.clientY >= b.top - 20 && ev.clientY <= b.bottom + 20;
    });
    if (!over) return;
    const b = over.getBoundingClientRect();
    const after = ev.clientX > b.left + b.width / 2;
    if (after && over.nextElementSibling !== li) over.after(li);
    else if (!after && over.previousElementSibling !== li) over.before(li);
  };
  const up = () => {
    list.removeEventListener('pointermove', move);
    list.removeEventListener('pointerup', up);
    list.removeEventListener('pointercancel', up);
    li.classList.remove('dragging');
    if (!dragging) return;
    const ids = Array.from(list.children).map((c) => c.dataset.id);
    const pos = ids.indexOf(li.dataset.id);
    const changed = ids.some((id, k) => id !== order[k]);
    order = ids;
    if (changed) commit(li.dataset.id, `Moved to position ${pos + 1} of ${order.length}.`);
  };
  list.addEventListener('pointermove', move);
  list.addEventListener('pointerup', up);
  list.addEventListener('pointercancel', up);
}

