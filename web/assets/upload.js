// upload.js — getting photos in: the file picker, dropping files anywhere
// on the page, and the upload panel with one progress bar per file and one
// for the whole batch. Three files go at a time; each answer says whether
// the photo is new, already in the library (a duplicate) or rejected, and
// the panel and a notice say so in words.

import * as api from './api.js';
import { $, h, icon, toast, fmtBytes, plural } from './dom.js';

const PARALLEL = 3;
let items = [];          // this batch: {file, loaded, state, reason, el, bar, up}
let active = 0;
let onUploaded = () => {};
let canDrop = () => false;
let hideTimer = 0;
let paintQueued = false;

const STATE_TEXT = {
  waiting: 'Waiting',
  uploading: '',
  processing: 'Processing…',
  done: 'Uploaded',
  dup: 'Already in your library',
  bad: 'Not added',
  cancelled: 'Cancelled',
};

export function enqueue(files) {
  const list = Array.from(files || []);
  if (!list.length) return;
  clearTimeout(hideTimer);
  // A new batch starts when the previous one has finished.
  if (items.length && items.every((it) => finished(it))) {
    items = [];
    $('#uploads-list').replaceChildren();
  }
  for (const file of list) {
    const it = { file, loaded: 0, state: 'waiting', reason: '' };
    it.bar = h('progress', { max: '1', value: '0', 'aria-label': 'Upload of ' + file.name, 'data-testid': 'upload-progress' });
    it.stateEl = h('span', { class: 'up-state' });
    it.reasonEl = h('p', { class: 'up-reason', hidden: true });
    it.cancel = h('button', {
      type: 'button', class: 'btn small icon-only ghost', 'aria-label': 'Cancel upload of ' + file.name,
      onclick: () => cancel(it),
    }, icon('close'));
    it.el = h('li', { class: 'up-item', 'data-testid': 'upload-item' },
      h('span', { class: 'up-name', title: file.name, text: file.name }),
      h('span', { class: 'up-side' }, it.stateEl, it.cancel),
      it.bar, it.reasonEl);
    items.push(it);
    $('#uploads-list').append(it.el);
  }
  $('#uploads').hidden = false;
  paint();
  pump();
}

function finished(it) { return it.state === 'done' || it.state === 'dup' || it.state === 'bad' || it.state === 'cancelled'; }

function cancel(it) {
  if (it.up) it.up.abort();
  else if (it.state === 'waiting') { it.state = 'cancelled'; paint(); }
}

function pump() {
  while (active < PARALLEL) {
    const it = items.find((x) => x.state === 'waiting');
    if (!it) break;
    start(it);
  }
  if (!active && items.length && items.every(finished)) batchDone();
}

async function start(it) {
  active++;
  it.state = 'uploading';
  it.up = api.uploadPhoto(it.file, (loaded, total) => {
    it.loaded = Math.min(loaded, total || it.file.size);
    if (it.loaded >= it.file.size) it.state = 'processing';
    schedulePaint();
  });
  try {
    const { photo, duplicate } = await it.up.promise;
    it.loaded = it.file.size;
    it.state = duplicate ? 'dup' : 'done';
    if (duplicate) {
      it.reason = `“${it.file.name}” is already in your library, so it was not added again.`;
      toast(it.reason, { kind: 'warn' });
    }
    onUploaded(photo, duplicate);
  } catch (e) {
    if (e.code === 'aborted') {
      it.state = 'cancelled';
    } else {
      it.state = 'bad';
      // The server's reason may start with the file's name: said once is enough.
      it.reason = e.message.replace(`: ${it.file.name}: `, ': ');
      toast(`“${it.file.name}” was not added. ${it.reason}`, { kind: 'error' });
    }
  } finally {
    it.up = null;
    active--;
    paint();
    pump();
  }
}

function schedulePaint() {
  if (paintQueued) return;
  paintQueued = true;
  requestAnimationFrame(() => { paintQueued = false; paint(); });
}

function paint() {
  let total = 0, sent = 0, done = 0, dup = 0, bad = 0;
  for (const it of items) {
    if (it.state === 'cancelled') continue;
    total += it.file.size;
    sent += finished(it) ? it.file.size : it.loaded;
    if (it.state === 'done') done++;
    if (it.state === 'dup') dup++;
    if (it.state === 'bad') bad++;
    const size = it.file.size || 1;
    it.bar.value = finished(it) ? 1 : it.loaded / size;
    it.bar.className = it.state === 'bad' ? 'bad' : (it.state === 'done' || it.state === 'dup') ? 'ok' : '';
    it.el.className = 'up-item ' + it.state;
    it.el.dataset.state = it.state;
    it.stateEl.textContent = it.state === 'uploading'
      ? `${Math.floor((it.loaded / size) * 100)}%` : STATE_TEXT[it.state];
    it.reasonEl.hidden = !it.reason;
    it.reasonEl.textContent = it.state === 'bad' ? it.reason : (it.state === 'dup' ? 'An identical photo is already there.' : '');
    it.cancel.hidden = finished(it) || it.state === 'processing';
  }
  for (const it of items) if (it.state === 'cancelled') { it.el.hidden = true; }
  const live = items.filter((it) => it.state !== 'cancelled');
  const running = live.filter((it) => !finished(it)).length;
  const bar = $('#uploads-progress');
  bar.value = total ? sent / total : (running ? 0 : 1);
  const head = $('#uploads-h');
  const sum = $('#uploads-summary');
  if (running) {
    head.textContent = `Uploading ${plural(live.length, 'photo')}`;
    sum.textContent = `${live.length - running} of ${live.length} done · ${fmtBytes(sent)} of ${fmtBytes(total)}`;
  } else {
    head.textContent = 'Uploads finished';
    const bits = [`${done} added`];
    if (dup) bits.push(`${dup} already there`);
    if (bad) bits.push(`${bad} not added`);
    sum.textContent = bits.join(' · ');
  }
}

function batchDone() {
  paint();
  const clean = items.every((it) => it.state === 'done' || it.state === 'cancelled');
  const added = items.filter((it) => it.state === 'done').length;
  // All went well: the panel said so; it steps aside after a moment.
  if (clean && added) hideTimer = setTimeout(closePanel, 4000);
}

function closePanel() {
  if (items.some((it) => !finished(it))) { $('#uploads').hidden = true; return; }
  items = [];
  $('#uploads-list').replaceChildren();
  $('#uploads').hidden = true;
}

export function reset() {
  for (const it of items) if (it.up) it.up.abort();
  items = [];
  active = 0;
  $('#uploads-list').replaceChildren();
  $('#uploads').hidden = true;
}

function hasFiles(e) { return e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files'); }

export function init(opts) {
  onUploaded = opts.onUploaded;
  canDrop = opts.canDrop;
  const input = $('#upload-input');
  input.addEventListener('change', () => { enqueue(input.files); input.value = ''; });
  $('#uploads-close').addEventListener('click', closePanel);

  // Drop anywhere: the overlay shows while files are dragged over the page.
  const overlay = $('#drop-overlay');
  let depth = 0;
  window.addEventListener('dragenter', (e) => {
    if (!hasFiles(e) || !canDrop()) return;
    e.preventDefault();
    depth++;
    overlay.hidden = false;
  });
  window.addEventListener('dragover', (e) => {
    if (!hasFiles(e) || !canDrop()) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  window.addEventListener('dragleave', (e) => {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  window.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    if (canDrop()) enqueue(e.dataTransfer.files);
  });
}
