// videos.js — the user's videos: cards with live progress, the reason a
// render failed, cancel, play (in a dialog, seekable: the presigned link
// honours Range), download, copy link, share (share.js) and delete.
//
// Live progress comes from GET /videos/{id}/events (server-sent events,
// read with fetch because EventSource cannot send the bearer token). The
// browser allows six connections to one origin over HTTP/1.1, so at most
// two streams are open at once; other unfinished videos are polled.

import * as api from './api.js';
import { openShare } from './share.js';
import { $, h, icon, toast, showError, confirmDialog, fmtDuration, fmtBytes, fmtAgo, plural } from './dom.js';

const MAX_STREAMS = 2;
const POLL_MS = 2500;
const ACTIVE = new Set(['queued', 'running']);
const st = {
  items: [], byId: new Map(), cards: new Map(),
  cursor: null, done: false, loading: null, loaded: false, gen: 0,
};
const streams = new Map();  // id -> AbortController
let pollTimer = 0;
let ctx = null;             // {photo, isVisible, navigate}
let playing = null;         // the video in the player
let sentinelSeen = false;

const STATUS = {
  queued: { label: 'Waiting to start', icon: 'clock', cls: 'queued' },
  running: { label: 'Rendering', icon: 'film', cls: 'running' },
  ready: { label: 'Ready', icon: 'check', cls: 'ready' },
  failed: { label: 'Failed', icon: 'alert', cls: 'failed' },
  cancelled: { label: 'Cancelled', icon: 'stop', cls: 'cancelled' },
};

function titleOf(v) { return (v && v.title) || 'Untitled video'; }
function errorText(v) {
  const e = v.error;
  let t = String((e && typeof e === 'object' ? (e.message || e.code) : e) || '').trim();
  if (!t) return 'The server did not say why.';
  t = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(t) ? t : t + '.';
}

// ---------- public ----------

export function reset() {
  st.gen++;
  for (const c of streams.values()) c.abort();
  streams.clear();
  clearTimeout(pollTimer);
  pollTimer = 0;
  st.items = []; st.byId.clear(); st.cards.clear();
  st.cursor = null; st.done = false; st.loading = null; st.loaded = false;
  $('#video-list').replaceChildren();
  $('#empty-videos').hidden = true;
  $('#videos-more').hidden = true;
  if ($('#player-dialog').open) $('#player-dialog').close();
  updateCounts();
}

export function ensureLoaded() {
  if (!st.loaded && !st.loading) return loadMore();
  return st.loading || Promise.resolve();
}

// A video just created: first in the list, and watched.
export function added(v) {
  upsert(v, true);
  track();
}

// ---------- loading ----------

export function loadMore() {
  if (st.loading || st.done) return st.loading || Promise.resolve();
  const gen = st.gen;
  $('#videos-more').hidden = false;
  st.loading = api.listVideos(st.cursor, 30).then((page) => {
    if (gen !== st.gen) return;
    for (const v of page.items || []) if (!st.byId.has(v.id)) upsert(v, false);
    st.cursor = page.next_cursor || null;
    st.done = !st.cursor;
    st.loaded = true;
    track();
  }).catch((e) => {
    if (gen === st.gen) showError(e, 'Could not load your videos.');
    throw e;
  }).finally(() => {
    if (gen !== st.gen) return;
    st.loading = null;
    $('#videos-more').hidden = st.done || !st.loaded;
    updateCounts();
    if (sentinelSeen && !st.done) requestAnimationFrame(() => loadMore().catch(() => {}));
  });
  return st.loading;
}

function updateCounts() {
  $('#empty-videos').hidden = !(st.loaded && st.items.length === 0);
  $('#video-count').textContent = st.done ? plural(st.items.length, 'video') : '';
  const busy = st.items.filter((v) => ACTIVE.has(v.status)).length;
  const badge = $('#videos-badge');
  badge.hidden = busy === 0;
  badge.textContent = String(busy);
  badge.setAttribute('aria-label', `${busy} in progress`);
}

// ---------- records ----------

// Merges a (possibly partial) video into the state and repaints its card.
function upsert(patch, front) {
  const old = st.byId.get(patch.id);
  const v = old ? { ...old, ...patch } : patch;
  if (patch.urls === null && old && old.urls && patch.status === 'ready') v.urls = old.urls;
  st.byId.set(v.id, v);
  if (old) {
    st.items[st.items.indexOf(old)] = v;
  } else if (front) {
    st.items.unshift(v);
  } else {
    st.items.push(v);
  }
  let li = st.cards.get(v.id);
  if (!li) {
    li = h('li', { class: 'vcard', 'data-testid': 'video', 'data-id': v.id });
    st.cards.set(v.id, li);
    if (front) $('#video-list').prepend(li); else $('#video-list').append(li);
  }
  paint(li, v, old);
  if (old && old.status !== v.status) announce(v, old.status);
  updateCounts();
  if (playing && playing.id === v.id) playing = v;
  return v;
}

function removeVideo(id) {
  const c = streams.get(id);
  if (c) { c.abort(); streams.delete(id); }
  const v = st.byId.get(id);
  st.items = st.items.filter((x) => x !== v);
  st.byId.delete(id);
  const li = st.cards.get(id);
  if (li) li.remove();
  st.cards.delete(id);
  if (playing && playing.id === id && $('#player-dialog').open) $('#player-dialog').close();
  updateCounts();
}

function announce(v, was) {
  if (!ACTIVE.has(was)) return;
  const onPage = ctx.isVisible();
  if (v.status === 'ready') {
    toast(`“${titleOf(v)}” is ready.`, { kind: 'ok', action: { label: 'Play', run: () => openPlayer(v.id) } });
  } else if (v.status === 'failed') {
    toast(`“${titleOf(v)}” could not be made. ${errorText(v)}`, {
      kind: 'error',
      action: onPage ? null : { label: 'Show', run: () => ctx.navigate('/videos') },
    });
  }
}

// ---------- cards ----------

function meta(v) {
  const o = v.options || {};
  const n = (v.photo_ids || []).length;
  const bits = [plural(n, 'photo')];
  if (o.resolution) bits.push(o.resolution);
  if (o.aspect) bits.push(o.aspect);
  if (v.status === 'ready' && v.bytes) bits.push(fmtBytes(v.bytes));
  bits.push(fmtAgo(v.created_at));
  return bits.filter(Boolean).join(' · ');
}

function expectedDuration(v) {
  if (v.duration_s) return v.duration_s;
  const o = v.options || {};
  const n = (v.photo_ids || []).length;
  if (!n || !o.seconds_per_photo) return 0;
  const ts = o.transition === 'none' ? 0 : (o.transition_seconds || 0);
  return n * o.seconds_per_photo - (n - 1) * ts;
}

function thumb(v) {
  const dur = expectedDuration(v);
  if (v.status === 'ready' && v.urls) {
    return h('button', { type: 'button', class: 'vthumb', 'data-action': 'play', 'aria-label': 'Play ' + titleOf(v) },
      v.urls.poster ? h('img', { src: v.urls.poster, alt: '', loading: 'lazy' }) : icon('film', 'icon vthumb-icon'),
      h('span', { class: 'play-badge', 'aria-hidden': 'true' }, icon('play')),
      dur ? h('span', { class: 'dur', text: fmtDuration(dur) }) : null);
  }
  // Not ready: the first photo, dimmed, stands in for the poster.
  const first = v.photo_ids && ctx.photo(v.photo_ids[0]);
  return h('div', { class: 'vthumb pending' },
    first && first.urls ? h('img', { src: first.urls.thumbnail, alt: '', class: 'dim', loading: 'lazy' }) : null,
    icon(STATUS[v.status] ? STATUS[v.status].icon : 'film', 'icon vthumb-icon overlay'),
    dur ? h('span', { class: 'dur', text: fmtDuration(dur) }) : null);
}

// A labelled button, or (short) an icon button named by aria-label and title.
function actionBtn(action, ic, text, extra = {}) {
  const cls = 'btn small' + (extra.primary ? ' primary' : '') + (extra.short ? ' icon-only' : '');
  const named = extra.short ? { 'aria-label': text, title: text } : {};
  return h('button', { type: 'button', class: cls, 'data-action': action, ...named, ...extra.attrs },
    icon(ic), extra.short ? null : h('span', { text }));
}

function actions(v) {
  const s = v.status;
  const out = [];
  if (s === 'ready') {
    out.push(actionBtn('play', 'play', 'Play', { primary: true, attrs: { 'data-testid': 'video-play' } }));
    out.push(actionBtn('download', 'download', 'Download', { short: true, attrs: { 'data-testid': 'video-download' } }));
    out.push(actionBtn('copy', 'link', 'Copy link', { short: true, attrs: { 'data-testid': 'video-copy' } }));
    out.push(actionBtn('share', 'cloud-up', 'Share', { short: true, attrs: { 'data-testid': 'video-share' } }));
  }
  if (ACTIVE.has(s)) out.push(actionBtn('cancel', 'stop', 'Cancel', { attrs: { 'data-testid': 'video-cancel' } }));
  if (s === 'failed' || s === 'cancelled') out.push(actionBtn('retry', 'film', 'Make again', { attrs: { 'data-testid': 'video-retry' } }));
  if (!ACTIVE.has(s)) out.push(actionBtn('delete', 'trash', 'Delete', { short: true, attrs: { 'data-testid': 'video-delete' } }));
  return out;
}

function paint(li, v, old) {
  li.dataset.status = v.status;
  const s = STATUS[v.status] || { label: v.status, icon: 'info', cls: '' };
  const structural = !old || old.status !== v.status || !li.firstChild ||
    (v.status === 'ready' && (!old.urls) !== (!v.urls)) || old.title !== v.title;
  if (structural) {
    const hadFocus = li.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    const pct = h('span', { class: 'vpct' });
    const bar = h('progress', { max: '1', value: '0', 'data-testid': 'video-progress', 'aria-label': 'Progress of ' + titleOf(v) });
    li.replaceChildren(
      thumb(v),
      h('div', { class: 'vbody' },
        h('h3', { class: 'vtitle', text: titleOf(v) }),
        h('p', { class: 'vmeta' }),
        h('div', { class: 'vstatus' },
          h('div', { class: 'vstatus-line' },
            h('span', { class: 'pill ' + s.cls, 'data-testid': 'video-status' }, icon(s.icon), h('span', { text: s.label })),
            pct),
          bar),
        v.status === 'failed' ? h('p', { class: 'verror', role: 'note', 'data-testid': 'video-error' }, 'Why: ' + errorText(v)) : null,
        h('div', { class: 'vactions' }, actions(v))));
    bar.hidden = !ACTIVE.has(v.status);
    if (hadFocus) {
      const again = li.querySelector(`[data-action="${hadFocus}"]`) || li.querySelector('[data-action]');
      if (again) again.focus();
    }
  }
  li.querySelector('.vmeta').textContent = meta(v);
  const bar = li.querySelector('progress');
  const p = Math.max(0, Math.min(1, Number(v.progress) || 0));
  bar.value = v.status === 'ready' ? 1 : p;
  bar.setAttribute('aria-valuetext', `${Math.round(p * 100)}%`);
  li.querySelector('.vpct').textContent = v.status === 'running' ? `${Math.round(p * 100)}%` : '';
}

// ---------- live progress ----------

function track() {
  const active = st.items.filter((v) => ACTIVE.has(v.status));
  for (const [id, c] of streams) {
    const v = st.byId.get(id);
    if (!v || !ACTIVE.has(v.status)) { c.abort(); streams.delete(id); }
  }
  for (const v of active) {
    if (streams.size >= MAX_STREAMS) break;
    if (!streams.has(v.id) && !v._noStream) openStream(v.id);
  }
  clearTimeout(pollTimer);
  pollTimer = active.some((v) => !streams.has(v.id)) ? setTimeout(poll, POLL_MS) : 0;
}

function onEvent(id, ev) {
  const d = ev.data;
  if (ev.event === 'gone') { removeVideo(id); return; }
  if (!d || typeof d !== 'object') return;
  const patch = d.video && typeof d.video === 'object' ? d.video : d;
  upsert({ ...patch, id });
}

async function openStream(id) {
  const c = new AbortController();
  streams.set(id, c);
  const gen = st.gen;
  let failed = false;
  try {
    await api.streamEvents('/videos/' + encodeURIComponent(id) + '/events', (ev) => onEvent(id, ev), c.signal);
  } catch (e) {
    failed = true;
    if (e.status === 404) { removeVideo(id); return; }
  }
  if (c.signal.aborted || gen !== st.gen) return;
  streams.delete(id);
  // The stream ended: the final record has the links (and a fresh status).
  try {
    const v = await api.getVideo(id);
    if (gen !== st.gen) return;
    const rec = st.byId.get(id);
    const ends = (rec && rec._ends || 0) + 1;
    // A stream that fails, or keeps ending early, is replaced by polling.
    if (rec && (failed || ends > 3)) rec._noStream = true;
    if (rec) rec._ends = ends;
    upsert(v);
  } catch (e) {
    if (e.status === 404) removeVideo(id);
  }
  track();
}

async function poll() {
  pollTimer = 0;
  const gen = st.gen;
  const todo = st.items.filter((v) => ACTIVE.has(v.status) && !streams.has(v.id)).slice(0, 8);
  await Promise.all(todo.map((v) => api.getVideo(v.id).then((nv) => { if (gen === st.gen) upsert(nv); },
    (e) => { if (gen === st.gen && e.status === 404) removeVideo(v.id); })));
  if (gen === st.gen) track();
}

// ---------- actions ----------

async function fresh(id) {
  const v = await api.getVideo(id);
  return upsert(v);
}

function absolute(url) { return new URL(url, location.origin).href; }

// The appliance's links carry `expires` (unix seconds); S3's (media_from_s3)
// carry X-Amz-Date (YYYYMMDDTHHMMSSZ) and X-Amz-Expires (seconds).
function expiry(url) {
  const q = new URL(url, location.origin).searchParams;
  const e = Number(q.get('expires'));
  if (e) return new Date(e * 1000);
  const d = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(q.get('X-Amz-Date') || '');
  const s = Number(q.get('X-Amz-Expires'));
  return d && s ? new Date(Date.UTC(+d[1], d[2] - 1, +d[3], +d[4], +d[5], +d[6]) + s * 1000) : null;
}

async function copyLink(id) {
  let v;
  try { v = await fresh(id); } catch (e) { showError(e, 'Could not get a link.'); return; }
  if (!v.urls) { toast('This video has no link yet.', { kind: 'warn' }); return; }
  const link = absolute(v.urls.content);
  const until = expiry(v.urls.content);
  const when = until ? ` until ${until.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })}` : '';
  try {
    await navigator.clipboard.writeText(link);
    toast(`Link copied. Anyone with it can watch this video${when}.`, { kind: 'ok' });
  } catch {
    toast(`Copying is blocked in this browser. Here is the link (valid${when}): ${link}`, { kind: 'warn', timeout: 0 });
  }
}

function shareIt(id) {
  const v = st.byId.get(id);
  if (v) openShare(v);
}

async function download(id) {
  let v;
  try { v = await fresh(id); } catch (e) { showError(e, 'Could not start the download.'); return; }
  if (!v.urls) return;
  const a = h('a', { href: v.urls.content, download: fileName(v), hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

function fileName(v) {
  const base = titleOf(v).replace(/[\\/:*?"<>|\u0000-\u001f]+/g, ' ').trim().slice(0, 80) || 'video';
  return base + '.mp4';
}

async function cancelIt(id) {
  const v = st.byId.get(id);
  const ok = await confirmDialog({ title: 'Cancel this video?', text: `“${titleOf(v)}” will stop rendering. You can make it again later.`, ok: 'Stop rendering' });
  if (!ok) return;
  try {
    const r = await api.cancelVideo(id);
    if (r.removed) removeVideo(id);
    else if (r.video) upsert(r.video);
    toast('Video cancelled.', { kind: 'info' });
    track();
  } catch (e) {
    showError(e, 'The video was not cancelled.');
    fresh(id).catch(() => {});
  }
}

async function deleteIt(id) {
  const v = st.byId.get(id);
  const ok = await confirmDialog({ title: 'Delete this video?', text: `“${titleOf(v)}” will be deleted for good, and its links stop working.`, ok: 'Delete video' });
  if (!ok) return;
  try {
    await api.deleteVideo(id);
  } catch (e) {
    if (e.status !== 404) { showError(e, 'The video was not deleted.'); return; }
  }
  removeVideo(id);
  toast('Video deleted.', { kind: 'ok' });
}

async function retry(id) {
  const v = st.byId.get(id);
  if (!v) return;
  const o = v.options || {};
  const spec = { photo_ids: v.photo_ids, ...o };
  if (v.title) spec.title = v.title;
  if (o.transition === 'none') delete spec.transition_seconds;
  try {
    added(await api.createVideo(spec));
    toast('Started again as a new video.', { kind: 'info' });
  } catch (e) {
    showError(e, 'Could not start the video again.');
  }
}

// ---------- player ----------

export async function openPlayer(id) {
  let v;
  try { v = await fresh(id); } catch (e) { showError(e, 'Could not open the video.'); return; }
  if (!v.urls) { toast('This video is not ready yet.', { kind: 'info' }); return; }
  playing = v;
  const d = $('#player-dialog');
  const el = $('#player-video');
  $('#player-title').textContent = titleOf(v);
  el.poster = v.urls.poster || '';
  el.src = v.urls.content;
  const a = $('[data-action="download"]', d);
  a.href = v.urls.content;
  a.download = fileName(v);
  if (!d.open) d.showModal();
  el.focus();
  el.play().catch(() => { /* autoplay refused: the controls are there */ });
}

function playerAction(action) {
  if (!playing) return;
  const id = playing.id;
  if (action === 'close') $('#player-dialog').close();
  else if (action === 'copy') copyLink(id);
  else if (action === 'delete') deleteIt(id);
}

// ---------- wiring ----------

export function init(c) {
  ctx = c;
  $('#video-list').addEventListener('click', (e) => {
    const b = e.target.closest('[data-action]');
    const li = e.target.closest('.vcard');
    if (!b || !li) return;
    const id = li.dataset.id;
    const run = { play: openPlayer, download, copy: copyLink, share: shareIt, cancel: cancelIt, delete: deleteIt, retry }[b.dataset.action];
    if (run) run(id);
  });
  new IntersectionObserver((entries) => {
    sentinelSeen = entries.some((en) => en.isIntersecting);
    if (sentinelSeen && st.loaded) loadMore().catch(() => {});
  }, { rootMargin: '600px 0px' }).observe($('#videos-more'));

  const d = $('#player-dialog');
  d.addEventListener('click', (e) => {
    const b = e.target.closest('[data-action]');
    if (b && b.tagName !== 'A') playerAction(b.dataset.action);
  });
  d.addEventListener('close', () => {
    const el = $('#player-video');
    el.pause();
    el.removeAttribute('src');
    el.load();
    const back = playing && st.cards.get(playing.id);
    playing = null;
    const btn = back && back.querySelector('[data-action="play"]');
    if (btn) btn.focus();
  });
  $('#player-video').addEventListener('error', async () => {
    const el = $('#player-video');
    if (!playing || !el.getAttribute('src')) return;
    // An expired link is the usual cause: get a fresh one, once.
    if (!el.dataset.retried) {
      el.dataset.retried = '1';
      try { const v = await fresh(playing.id); el.src = v.urls.content; return; } catch { /* fall through */ }
    }
    toast('This video cannot be played here. Try Download instead.', { kind: 'error' });
  });
  $('#player-video').addEventListener('loadeddata', () => { delete $('#player-video').dataset.retried; });
}
