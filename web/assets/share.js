// share.js — "Share" on a ready video: make a public link (how long it
// works, an optional password), copy it, and see the video's links with
// their views and expiry, each with Revoke. The token is in the answer to
// the one request that makes it (pvd keeps only its hash), so a link can
// be copied right after it is made, not later.
//
// The dialog is built here, once, from the same classes as the others
// (sheet, field, btn): no inline style, so the strict CSP holds.

import * as api from './api.js';
import { h, icon, toast, showError, fmtDate } from './dom.js';

const DAYS = [[1, '1 day'], [7, '7 days'], [30, '30 days']];
let dlg = null;
let video = null;   // the video being shared
let gen = 0;        // drops answers meant for a video no longer shown

const path = (id) => '/videos/' + encodeURIComponent(id) + '/shares';
const absolute = (url) => new URL(url, location.origin).href;

function build() {
  const days = h('select', { id: 'share-days', name: 'days', 'data-testid': 'share-days' },
    DAYS.map(([d, t]) => h('option', { value: String(d), selected: d === 7 }, t)));
  const pw = h('input', { id: 'share-pw', name: 'password', type: 'password', autocomplete: 'new-password',
    maxlength: '1024', placeholder: 'None', 'data-testid': 'share-password' });
  const link = h('input', { id: 'share-link', type: 'text', readonly: true, 'data-testid': 'share-link',
    'aria-label': 'The new link' });
  dlg = h('dialog', { id: 'share-dialog', class: 'sheet', 'aria-labelledby': 'share-h' },
    h('form', { class: 'sheet-form', novalidate: true },
      h('div', { class: 'sheet-head' },
        h('h2', { id: 'share-h', text: 'Share' }),
        h('button', { type: 'button', class: 'btn icon-only ghost', 'data-action': 'close', 'aria-label': 'Close' },
          icon('close'))),
      h('div', { class: 'sheet-body share-body' },
        h('p', { class: 'hint', text: 'Anyone with the link can watch and download this video, without an account, until it expires or you revoke it.' }),
        h('div', { class: 'grid-fields' },
          h('div', { class: 'field' }, h('label', { for: 'share-days', text: 'Works for' }), days),
          h('div', { class: 'field' }, h('label', { for: 'share-pw', text: 'Password (optional)' }), pw)),
        h('div', { class: 'sheet-actions' },
          h('button', { type: 'submit', class: 'btn primary', 'data-testid': 'share-create' }, icon('link'), h('span', { text: 'Make link' }))),
        h('div', { class: 'share-new', hidden: true },
          h('label', { for: 'share-link', text: 'New link (shown this once)' }),
          h('div', { class: 'share-row' }, link,
            h('button', { type: 'button', class: 'btn', 'data-action': 'copy', 'data-testid': 'share-copy' }, icon('copy'), h('span', { text: 'Copy' })))),
        h('h3', { class: 'share-list-h', text: 'Links of this video' }),
        h('ul', { class: 'share-list', 'data-testid': 'share-list' }))));
  document.body.append(dlg);
  dlg.querySelector('form').addEventListener('submit', (e) => { e.preventDefault(); create(); });
  dlg.addEventListener('click', (e) => {
    const b = e.target.closest('[data-action]');
    if (!b) return;
    if (b.dataset.action === 'close') dlg.close();
    else if (b.dataset.action === 'copy') copy();
    else if (b.dataset.action === 'revoke') revoke(b.closest('li').dataset.id);
  });
}

function row(s) {
  const bits = [s.expired ? 'Expired' : 'Works until ' + fmtDate(s.expires_at), s.views === 1 ? '1 view' : `${s.views} views`];
  if (s.has_password) bits.push('password');
  return h('li', { dataset: { id: s.id }, 'data-testid': 'share-item' },
    h('span', { class: 'share-meta', text: bits.join(' · ') }),
    h('button', { type: 'button', class: 'btn small danger', 'data-action': 'revoke', 'data-testid': 'share-revoke' },
      icon('trash'), h('span', { text: 'Revoke' })));
}

async function refresh() {
  const g = gen;
  const list = dlg.querySelector('.share-list');
  try {
    const j = await api.request('GET', path(video.id));
    if (g !== gen) return;
    const items = (j && j.items) || [];
    list.replaceChildren(...(items.length ? items.map(row) : [h('li', { class: 'muted', text: 'No links yet.' })]));
  } catch (e) {
    if (g === gen) showError(e, 'Could not list the links.');
  }
}

async function create() {
  const g = gen;
  const body = { expires_in_days: Number(dlg.querySelector('#share-days').value) };
  const pw = dlg.querySelector('#share-pw').value;
  if (pw) body.password = pw;
  const btn = dlg.querySelector('[data-testid="share-create"]');
  btn.disabled = true;
  try {
    const j = await api.request('POST', path(video.id), { json: body });
    if (g !== gen) return;
    dlg.querySelector('#share-pw').value = '';
    dlg.querySelector('#share-link').value = absolute(j.share.url);
    dlg.querySelector('.share-new').hidden = false;
    await copy();
    refresh();
  } catch (e) {
    showError(e, 'Could not make a link.');
  } finally {
    btn.disabled = false;
  }
}

async function copy() {
  const link = dlg.querySelector('#share-link').value;
  if (!link) return;
  try {
    await navigator.clipboard.writeText(link);
    toast('Share link copied.', { kind: 'ok' });
  } catch {
    dlg.querySelector('#share-link').select();
    toast('Copying is blocked in this browser: the link is selected, copy it from the box.', { kind: 'warn' });
  }
}

async function revoke(id) {
  try {
    await api.request('DELETE', path(video.id) + '/' + encodeURIComponent(id));
    toast('Link revoked: it no longer works.', { kind: 'ok' });
  } catch (e) {
    if (e.status !== 404) { showError(e, 'Could not revoke the link.'); return; }
  }
  refresh();
}

export function openShare(v) {
  if (!dlg) build();
  gen++;
  video = v;
  dlg.querySelector('#share-h').textContent = 'Share “' + ((v && v.title) || 'Untitled video') + '”';
  dlg.querySelector('#share-link').value = '';
  dlg.querySelector('.share-new').hidden = true;
  dlg.querySelector('.share-list').replaceChildren();
  dlg.showModal();
  refresh();
}
