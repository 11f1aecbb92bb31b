// main.js — starts the page: restores the session from its cookie, shows
// the sign-in form or the app, and routes between the two sections
// (/ for photos, /videos) with the History API. pvd answers those paths
// with this same page.

import * as api from './api.js';
import { $, $$, toast, showError, plural } from './dom.js';
import * as photos from './photos.js';
import * as upload from './upload.js';
import * as create from './create.js';
import * as videos from './videos.js';

const ROUTES = { '/': 'photos', '/photos': 'photos', '/videos': 'videos', '/login': 'photos' };
const TITLES = { photos: 'Photos', videos: 'Videos' };
let view = null;
let shown = null;   // 'auth' | 'app'

function currentView() { return ROUTES[location.pathname] || 'photos'; }

export function navigate(path, { replace = false, focus = true } = {}) {
  if (path !== location.pathname) history[replace ? 'replaceState' : 'pushState'](null, '', path);
  render(focus);
}

function render(focus) {
  if (!api.signedIn()) return;
  const next = currentView();
  const changed = next !== view;
  view = next;
  for (const name of Object.keys(TITLES)) $('#view-' + name).hidden = name !== view;
  for (const a of $$('.tabs a')) {
    if (a.dataset.route === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[view]} — pv`;
  if (view === 'photos') photos.ensureLoaded().catch(() => {});
  else videos.ensureLoaded().catch(() => {});
  if (changed && focus) {
    window.scrollTo(0, 0);
    $('#main').focus({ preventScroll: true });
  }
}

// ---------- sign-in ----------

function authError(text) {
  const el = $('#auth-error');
  el.textContent = text || '';
  el.hidden = !text;
}

function validEmail(s) { return /^[^\s@]+@[^\s@]+$/.test(s); }

async function onAuthSubmit(e) {
  e.preventDefault();
  const action = (e.submitter && e.submitter.value) || 'login';
  const email = $('#email').value.trim();
  const password = $('#password').value;
  const badEmail = !validEmail(email);
  const badPw = action === 'signup' ? password.length < 8 : password.length === 0;
  $('#email').setAttribute('aria-invalid', String(badEmail));
  $('#password').setAttribute('aria-invalid', String(badPw));
  if (badEmail) { authError('Enter your email address, like name@example.com.'); $('#email').focus(); return; }
  if (badPw) {
    authError(action === 'signup' ? 'Choose a password of at least 8 characters.' : 'Enter your password.');
    $('#password').focus();
    return;
  }
  authError('');
  const buttons = $$('#auth-form button');
  for (const b of buttons) b.disabled = true;
  const busy = e.submitter || buttons[0];
  const label = busy.textContent;
  busy.textContent = action === 'signup' ? 'Creating account…' : 'Logging in…';
  try {
    if (action === 'signup') await api.signup(email, password, $('#invite').value.trim());
    await api.login(email, password);
    $('#password').value = '';
    if (action === 'signup') toast('Your account is ready. Add some photos to begin.', { kind: 'ok' });
  } catch (err) {
    authError(err.message);
    if (err.code === 'invalid_credentials') $('#password').select();
    if (err.code === 'invite_required' || err.code === 'invalid_invite') {
      $('#invite-field').hidden = false; // this box takes accounts by invitation
      $('#invite').focus();
    }
  } finally {
    for (const b of buttons) b.disabled = false;
    busy.textContent = label;
  }
}

// ---------- showing one side or the other ----------

function showAuth(message) {
  shown = 'auth';
  view = null;
  photos.reset();
  videos.reset();
  upload.reset();
  for (const d of $$('dialog[open]')) d.close();
  $('#boot').hidden = true;
  $('#app').hidden = true;
  $('#auth').hidden = false;
  document.title = 'Log in — pv';
  authError(message || '');
  if (location.pathname !== '/login' && location.pathname !== '/') history.replaceState(null, '', '/');
  $('#email').focus();
}

async function showApp() {
  if (shown === 'app') return;
  shown = 'app';
  $('#boot').hidden = true;
  $('#auth').hidden = true;
  $('#app').hidden = false;
  if (location.pathname === '/login') history.replaceState(null, '', '/');
  render(false);
  // Videos load in the background too: unfinished ones are watched, so
  // their progress shows on the tab badge from any page.
  videos.ensureLoaded().catch(() => {});
  try {
    const me = await api.me();
    $('#who').textContent = me.email;
    $('#who').title = me.usage ? `${plural(me.usage.photos || 0, 'photo')}, ${plural(me.usage.videos || 0, 'video')}` : '';
    if (me.usage) photos.setTotal(me.usage.photos);
  } catch (e) {
    if (api.signedIn()) showError(e, 'Could not load your account.');
  }
}

const WHY = {
  expired: 'Your session has ended. Please log in again.',
  elsewhere: 'You logged out in another tab.',
};

async function boot() {
  api.onSession((state, why) => {
    if (state === 'in') showApp();
    else showAuth(WHY[why] || '');
  });

  $('#auth-form').addEventListener('submit', onAuthSubmit);
  $('#logout').addEventListener('click', async () => {
    try { await api.logout(); } catch (e) { /* the session is gone here either way */ }
  });
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[data-route]');
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(new URL(a.href).pathname);
  });
  window.addEventListener('popstate', () => render(true));

  photos.init({ openCreate: () => create.open() });
  upload.init({
    onUploaded: (p, dup) => photos.added(p, dup),
    canDrop: () => shown === 'app',
  });
  create.init({
    getSelection: photos.getSelection,
    setSelection: photos.setSelection,
    photo: photos.photo,
    onCreated: (v) => {
      photos.clearSelection();
      videos.added(v);
      navigate('/videos');
    },
  });
  videos.init({ photo: photos.photo, isVisible: () => view === 'videos', navigate });

  try {
    if (!(await api.restore())) showAuth('');
  } catch (e) {
    showAuth(e.message);
  }
}

boot();
