// photos.js — the photo library: a grid of thumbnails that loads more as
// the user scrolls, the selection (an ordered list of ids: the order photos
// were picked is the video's first order), and the large viewer.
//
// State lives here; the DOM is updated in place (cards are made once and
// patched), so focus and scroll position survive every change.

import * as api from './api.js';
import { $, $$, h, icon, toast, showError, confirmDialog, fmtBytes, fmtDate, plural } from './dom.js';

const PAGE = 60;
const st = {
  items: [],          // photos, newest first
  byId: new Map(),    // id -> photo
  cards: new Map(),   // id -> <li>
  cursor: null,
  done: false,
  loading: null,      // the page request in flight
  loaded: false,      // the first page came
  total: null,        // the user's photo count (from /me), if known
  gen: 0,             // bumps on reset so stale answers are dropped
};
const selection = [];
const selListeners = new Set();
let sentinelSeen = false;
let viewerIndex = -1;

const grid = () => $('#grid');

// ---------- public ----------

export function photo(id) { return st.byId.get(id); }
export function getSelection() { return selection.slice(); }
export function onSelection(fn) { selListeners.add(fn); }

export function setSelection(ids) {
  selection.length = 0;
  for (const id of ids) if (st.byId.has(id) && !selection.includes(id)) selection.push(id);
  selectionChanged();
}

export function clearSelection() { setSelection([]); }

export function setTotal(n) { st.total = Number.isFinite(n) ? n : null; updateCount(); }

export function reset() {
  st.gen++;
  st.items = [];
  st.byId.clear();
  st.cards.clear();
  st.cursor = null;
  st.done = false;
  st.loading = null;
  st.loaded = false;
  st.total = null;
  selection.length = 0;
  grid().replaceChildren();
  $('#empty-photos').hidden = true;
  $('#grid-more').hidden = true;
  if ($('#viewer').open) $('#viewer').close();
  selectionChanged();
  updateCount();
}

// Loads the first page unless it is there already.
export function ensureLoaded() {
  if (!st.loaded && !st.loading) return loadMore();
  return st.loading || Promise.resolve();
}

// A photo that was just uploaded: at the front of the grid.
export function added(p, duplicate) {
  if (st.byId.has(p.id)) {
    st.byId.set(p.id, p);
    return;
  }
  st.items.unshift(p);
  st.byId.set(p.id, p);
  const li = card(p);
  li.classList.add('new');
  grid().prepend(li);
  if (!duplicate && st.total !== null) st.total++;
  updateEmpty();
  updateCount();
}

// ---------- loading ----------

export function loadMore() {
  if (st.loading || st.done) return st.loading || Promise.resolve();
  const gen = st.gen;
  $('#grid-more').hidden = false;
  st.loading = api.listPhotos(st.cursor, PAGE).then((page) => {
    if (gen !== st.gen) return;
    const frag = document.createDocumentFragment();
    for (const p of page.items || []) {
      if (st.byId.has(p.id)) continue;
      st.items.push(p);
      st.byId.set(p.id, p);
      frag.append(card(p));
    }
    grid().append(frag);
    st.cursor = page.next_cursor || null;
    st.done = !st.cursor;
    st.loaded = true;
  }).catch((e) => {
    if (gen === st.gen) showError(e, 'Could not load your photos.');
    throw e;
  }).finally(() => {
    if (gen !== st.gen) return;
    st.loading = null;
    $('#grid-more').hidden = st.done || !st.loaded;
    updateEmpty();
    updateCount();
    // The sentinel may still be on screen (a tall window): keep going.
    if (sentinelSeen && !st.done) requestAnimationFrame(() => loadMore().catch(() => {}));
  });
  return st.loading;
}

function updateEmpty() {
  $('#empty-photos').hidden = !(st.loaded && st.items.length === 0);
  $('#photos-hint').hidden = !(st.loaded && st.items.length > 0 && selection.length === 0);
}

function updateCount() {
  const n = st.total ?? (st.done ? st.items.length : null);
  $('#photo-count').textContent = n === null ? '' : plural(n, 'photo');
}

// ---------- cards ----------

function label(p) { return p.filename || 'photo'; }

function card(p) {
  const img = h('img', { src: p.urls && p.urls.thumbnail, alt: '', loading: 'lazy', decoding: 'async', draggable: 'false', class: 'loading' });
  img.addEventListener('load', () => img.classList.remove('loading'));
  img.addEventListener('error', () => thumbFailed(p.id, img));
  const li = h('li', { class: 'card', 'data-testid': 'photo', 'data-id': p.id },
    h('button', { type: 'button', class: 'card-open', 'aria-label': 'Open ' + label(p), title: label(p) }, img),
    h('button', { type: 'button', class: 'card-select', 'aria-pressed': 'false', 'aria-label': 'Select ' + label(p) }, icon('check')));
  st.cards.set(p.id, li);
  paintSelected(li, p.id);
  return li;
}

// Presigned links expire (an hour by default): fetch a fresh one, once.
async function thumbFailed(id, img) {
  if (img.dataset.retried) { img.classList.remove('loading'); img.alt = 'Thumbnail not available'; return; }
  img.dataset.retried = '1';
  try {
    const p = await api.getPhoto(id);
    st.byId.set(id, p);
    const i = st.items.findIndex((x) => x.id === id);
    if (i >= 0) st.items[i] = p;
    img.src = p.urls.thumbnail;
  } catch { /* the card stays blank; errors surface on use */ }
}

function paintSelected(li, id) {
  const n = selection.indexOf(id);
  const on = n >= 0;
  li.classList.toggle('selected', on);
  const btn = li.querySelector('.card-select');
  btn.setAttribute('aria-pressed', String(on));
  btn.setAttribute('aria-label', (on ? 'Deselect ' : 'Select ') + label(st.byId.get(id) || {}));
  let mark = li.querySelector('.card-mark');
  if (on) {
    if (!mark) {
      mark = h('span', { class: 'card-mark', 'data-testid': 'selected', 'aria-hidden': 'true' });
      li.append(mark);
    }
    mark.textContent = String(n + 1);
  } else if (mark) {
    mark.remove();
  }
}

export function toggle(id) {
  const i = selection.indexOf(id);
  if (i >= 0) selection.splice(i, 1);
  else selection.push(id);
  selectionChanged();
}

function selectionChanged() {
  for (const [id, li] of st.cards) paintSelected(li, id);
  const n = selection.length;
  $('#selbar').hidden = n === 0;
  $('#sel-count').textContent = `${n} selected`;
  document.body.classList.toggle('has-selection', n > 0);
  grid().classList.toggle('selecting', n > 0);
  updateEmpty();
  if ($('#viewer').open) paintViewer();
  for (const fn of selListeners) fn(selection.slice());
}

function remove(id) {
  st.items = st.items.filter((p) => p.id !== id);
  st.byId.delete(id);
  const li = st.cards.get(id);
  if (li) li.remove();
  st.cards.delete(id);
  const i = selection.indexOf(id);
  if (i >= 0) { selection.splice(i, 1); selectionChanged(); }
  if (st.total !== null) st.total = Math.max(0, st.total - 1);
  updateEmpty();
  updateCount();
}

// ---------- deleting ----------

async function deletePhoto(id) {
  const p = st.byId.get(id);
  const ok = await confirmDialog({
    title: 'Delete this photo?',
    text: `“${label(p || {})}” will be removed from your library. Videos already made keep it.`,
    ok: 'Delete photo',
  });
  if (!ok) return false;
  try {
    await api.deletePhoto(id);
  } catch (e) {
    if (e.status !== 404) { showError(e, 'The photo was not deleted.'); return false; }
  }
  remove(id);
  toast('Photo deleted.', { kind: 'ok' });
  return true;
}

// ---------- viewer ----------

function openViewer(id) {
  viewerIndex = st.items.findIndex((p) => p.id === id);
  if (viewerIndex < 0) return;
  paintViewer();
  $('#viewer').showModal();
}

function paintViewer() {
  const d = $('#viewer');
  const p = st.items[viewerIndex];
  if (!p) { d.close(); return; }
  const img = $('#viewer-img');
  // Browsers other than Safari cannot show HEIC: show the JPEG thumbnail.
  const heic = /hei[cf]/i.test(p.content_type || '');
  const src = heic ? p.urls.thumbnail : p.urls.content;
  if (img.getAttribute('src') !== src) {
    img.onerror = () => { if (img.getAttribute('src') !== p.urls.thumbnail) img.src = p.urls.thumbnail; };
    img.src = src;
  }
  img.alt = label(p);
  $('#viewer-title').textContent = label(p);
  const bits = [];
  if (p.width && p.height) bits.push(`${p.width} × ${p.height}`);
  if (p.bytes) bits.push(fmtBytes(p.bytes));
  if (p.taken_at) bits.push('taken ' + fmtDate(p.taken_at));
  else if (p.created_at) bits.push('added ' + fmtDate(p.created_at));
  $('#viewer-info').textContent = bits.join(' · ');
  const sel = selection.includes(p.id);
  const sb = $('[data-action="select"]', d);
  sb.setAttribute('aria-pressed', String(sel));
  sb.querySelector('span').textContent = sel ? 'Selected' : 'Select';
  $('[data-action="prev"]', d).disabled = viewerIndex === 0;
  $('[data-action="next"]', d).disabled = viewerIndex >= st.items.length - 1 && st.done;
}

async function viewerStep(delta) {
  let i = viewerIndex + delta;
  if (i >= st.items.length && !st.done) {
    try { await loadMore(); } catch { return; }
  }
  if (i < 0 || i >= st.items.length) return;
  viewerIndex = i;
  paintViewer();
}

async function viewerAction(action) {
  const p = st.items[viewerIndex];
  if (action === 'close') $('#viewer').close();
  else if (action === 'prev') viewerStep(-1);
  else if (action === 'next') viewerStep(1);
  else if (action === 'select' && p) toggle(p.id);
  else if (action === 'delete' && p) {
    const at = viewerIndex;
    if (await deletePhoto(p.id)) {
      if (!st.items.length) { $('#viewer').close(); return; }
      viewerIndex = Math.min(at, st.items.length - 1);
      paintViewer();
    }
  }
}

// ---------- wiring ----------

function focusCard(li) { if (li) li.querySelector('.card-open').focus(); }

// Arrow keys move between photos in the grid (Tab still walks every control).
function gridKeys(e) {
  const btn = e.target.closest('.card-open, .card-select');
  if (!btn) return;
  const li = btn.closest('.card');
  const cards = $$('.card', grid());
  const i = cards.indexOf(li);
  const first = cards[0];
  let cols = 1;
  while (cols < cards.length && cards[cols].offsetTop === first.offsetTop) cols++;
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols, Home: -i, End: cards.length - 1 - i };
  if (e.key in moves && !e.altKey && !e.ctrlKey && !e.metaKey) {
    e.preventDefault();
    focusCard(cards[Math.max(0, Math.min(cards.length - 1, i + moves[e.key]))]);
  } else if ((e.key === 'x' || e.key === 'X') && btn.classList.contains('card-open')) {
    e.preventDefault();
    toggle(li.dataset.id);
  }
}

export function init({ openCreate }) {
  grid().addEventListener('click', (e) => {
    const li = e.target.closest('.card');
    if (!li) return;
    const id = li.dataset.id;
    if (e.target.closest('.card-select')) { toggle(id); return; }
    if (e.target.closest('.card-open')) {
      // While something is selected a tap adds to the selection, as in
      // the photo apps people know; shift-click does it any time.
      if (selection.length > 0 || e.shiftKey) toggle(id);
      else openViewer(id);
    }
  });
  grid().addEventListener('keydown', gridKeys);

  new IntersectionObserver((entries) => {
    sentinelSeen = entries.some((en) => en.isIntersecting);
    if (sentinelSeen && st.loaded) loadMore().catch(() => {});
  }, { rootMargin: '800px 0px' }).observe($('#grid-more'));

  $('#sel-clear').addEventListener('click', clearSelection);
  $('#create-video').addEventListener('click', () => openCreate());
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && selection.length && !document.querySelector('dialog[open]')) clearSelection();
  });

  const d = $('#viewer');
  d.addEventListener('click', (e) => {
    const b = e.target.closest('[data-action]');
    if (b) viewerAction(b.dataset.action);
  });
  d.addEventListener('keydown', (e) => {
    if (e.target.closest('button') && (e.key === 'Enter' || e.key === ' ')) return;
    const map = { ArrowLeft: 'prev', ArrowRight: 'next', Delete: 'delete' };
    if (map[e.key]) { e.preventDefault(); viewerAction(map[e.key]); }
  });
  d.addEventListener('close', () => {
    const p = st.items[viewerIndex];
    $('#viewer-img').removeAttribute('src');
    if (p) focusCard(st.cards.get(p.id));
  });
}
