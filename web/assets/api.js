// api.js — the only module that talks to pvd's API and the only one that
// sees the access token.
//
// Tokens: the access token lives in a variable of this module (not in
// storage, not on window), so a script injected into the page cannot read
// it from anywhere obvious. The refresh token never reaches JavaScript at
// all: with "X-PV-Session: cookie" pvd keeps it in an HttpOnly, Secure,
// SameSite=Strict cookie scoped to /api/v1/auth. The access token is
// renewed shortly before it expires, and once more on a 401.
//
// Refresh tokens rotate and a spent one revokes the whole chain, so two
// tabs must never refresh at the same moment with the same cookie: the
// refresh runs under a Web Lock shared by every tab of this origin, so each
// one sends the cookie the previous one was given.
//
// Every failure becomes an ApiError whose message is words a person can
// act on; the UI shows err.message as it is.

const BASE = '/api/v1';
const SESSION_HEADERS = { 'X-PV-Session': 'cookie' };

let access = null;        // the access token; never leaves this module
let expiresAt = 0;        // ms since epoch
let renewTimer = 0;
let refreshing = null;    // the refresh in flight, shared by its callers
const sessionListeners = new Set();
const channel = 'BroadcastChannel' in self ? new BroadcastChannel('pv-session') : null;

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;   // HTTP status, 0 for a network failure
    this.code = code;       // the API's snake_case code
    Object.assign(this, details);
  }
}

// Friendlier words for codes a person meets often; other codes show the
// server's own message, which the API promises is human text.
const WORDS = {
  invalid_credentials: 'That email and password do not match an account. Check them and try again.',
  email_taken: 'An account with this email already exists. Log in instead.',
  // The server says what was wrong with the file: keep that, add the way out.
  unsupported_media_type: (m) => (m ? sentence('Not a photo pv can read: ' + m)
    : 'This is not a photo pv can read. Use JPEG, PNG, WebP or HEIC.'),
  photo_in_use: 'This photo is in a video that is still being made. Wait for it to finish, or cancel it first.',
  too_large: 'This file is too large for the server.',
  payload_too_large: 'This file is too large for the server.',
  insufficient_storage: 'The server is out of space, so nothing was saved.',
  overloaded: 'The server is busy right now. Try again in a moment.',
  shutting_down: 'The server is restarting. Try again in a moment.',
  token_expired: 'Your session has ended. Please log in again.',
  invalid_token: 'Your session has ended. Please log in again.',
  unauthorized: 'Your session has ended. Please log in again.',
};

const STATUS_WORDS = {
  400: 'The server could not accept this request.',
  401: 'Your session has ended. Please log in again.',
  403: 'You are not allowed to do that.',
  404: 'That item no longer exists. It may have been deleted.',
  409: 'That conflicts with something that changed meanwhile. Reload and try again.',
  413: 'This is too large for the server.',
  415: 'This is not a supported file type.',
  429: 'Too many attempts. Wait a little and try again.',
  500: 'Something went wrong on the server. Try again; if it keeps happening, ask the administrator to check the server log.',
  502: 'The server is unreachable right now. Try again in a moment.',
  503: 'The server is not ready. Try again in a moment.',
  504: 'The server took too long to answer. Try again.',
  507: 'The server is out of space, so nothing was saved.',
};

function sentence(s) {
  s = String(s || '').trim();
  if (!s) return s;
  s = s[0].toUpperCase() + s.slice(1);
  return /[.!?]$/.test(s) ? s : s + '.';
}

// The words for an error answer: status, parsed body (or null), headers.
export function describe(status, body, retryAfter) {
  const err = body && typeof body === 'object' ? body.error : null;
  const code = (err && err.code) || 'http_' + status;
  const words = typeof WORDS[code] === 'function' ? WORDS[code](err && err.message) : WORDS[code];
  let text = words || (err && err.message ? sentence(err.message) : '') ||
    STATUS_WORDS[status] || STATUS_WORDS[Math.floor(status / 100) * 100] ||
    `The server answered with an unexpected error (HTTP ${status}).`;
  if (status === 429 && retryAfter) {
    const s = parseInt(retryAfter, 10);
    if (s > 0) text += ` Try again in ${s} second${s === 1 ? '' : 's'}.`;
  }
  return new ApiError(status, code, text, { serverMessage: err && err.message });
}

async function errorFrom(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON: words from the status */ }
  return describe(res.status, body, res.headers.get('Retry-After'));
}

function networkError() {
  return new ApiError(0, 'network', navigator.onLine === false
    ? 'You are offline. Check your connection and try again.'
    : 'Cannot reach the server. Check your connection and try again.');
}

// ---------- session ----------

export function onSession(fn) { sessionListeners.add(fn); return () => sessionListeners.delete(fn); }
function emit(state, why) { for (const fn of sessionListeners) fn(state, why); }

export function signedIn() { return access !== null; }

// Whether this browser holds a session (the refresh cookie is HttpOnly,
// so scripts cannot see it): a first visit then asks nothing it knows will
// fail, and the console stays clean.
const MARK = 'pv.session';
function hasMark() { try { return localStorage.getItem(MARK) === '1'; } catch { return true; } }
function setMark(on) {
  try { if (on) localStorage.setItem(MARK, '1'); else localStorage.removeItem(MARK); } catch { /* private mode */ }
}

function setToken(token, expiresIn) {
  clearTimeout(renewTimer);
  access = token || null;
  setMark(access !== null);
  if (!access) { expiresAt = 0; return; }
  const life = Math.max(10, Number(expiresIn) || 900) * 1000;
  expiresAt = Date.now() + life;
  // Renew at 80% of the lifetime (at most a minute early), so that a
  // request never meets an expired token while the user works.
  const lead = Math.min(60_000, life * 0.2);
  renewTimer = setTimeout(() => { refresh().catch(() => {}); }, life - lead);
}

function endSession(why) {
  const was = access !== null;
  setToken(null);
  if (was) emit('out', why);
}

async function refreshOnce() {
  let res;
  try {
    res = await fetch(BASE + '/auth/refresh', {
      method: 'POST', body: '{}', cache: 'no-store', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', ...SESSION_HEADERS },
    });
  } catch { throw networkError(); }
  if (!res.ok) {
    const e = await errorFrom(res);
    if (res.status === 401 || res.status === 400 || res.status === 403) endSession('expired');
    throw e;
  }
  const j = await res.json();
  const had = access !== null;
  setToken(j.access_token, j.expires_in);
  if (!had) emit('in');
  return true;
}

// Renews the access token from the cookie. Concurrent callers share one
// request; tabs take turns through the lock.
export function refresh() {
  if (!refreshing) {
    const run = () => refreshOnce();
    const p = navigator.locks ? navigator.locks.request('pv-refresh', run) : run();
    refreshing = p.finally(() => { refreshing = null; });
  }
  return refreshing;
}

// On page load: is there a session cookie? Resolves true or false; throws
// only when the server could not be asked.
export async function restore() {
  if (!hasMark()) return false;
  try { await refresh(); return true; } catch (e) {
    if (e.status === 401 || e.status === 400 || e.status === 403) return false;
    throw e;
  }
}

export async function signup(email, password, invite) {
  const json = invite ? { email, password, invite } : { email, password };
  return request('POST', '/auth/signup', { json, auth: false });
}

export async function login(email, password) {
  const j = await request('POST', '/auth/login', { json: { email, password }, auth: false, headers: SESSION_HEADERS });
  setToken(j.access_token, j.expires_in);
  emit('in');
  if (channel) channel.postMessage('login');
  return j;
}

export async function logout() {
  try {
    if (access) await request('POST', '/auth/logout', { json: {}, headers: SESSION_HEADERS });
  } finally {
    endSession('logout');
    if (channel) channel.postMessage('logout');
  }
}

if (channel) {
  channel.onmessage = (ev) => {
    if (ev.data === 'logout') endSession('elsewhere');
    else if (ev.data === 'login' && !access) refresh().catch(() => {});
  };
}

// Timers are slowed in background tabs: renew at once when the page comes
// back after the token is (nearly) spent.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && access && Date.now() > expiresAt - 30_000) {
    refresh().catch(() => {});
  }
});

// ---------- requests ----------

// request(method, path, {json, body, headers, signal, auth, retry, raw})
// resolves to the parsed JSON (null for 204), or the Response when raw.
export async function request(method, path, opts = {}) {
  const { json, body, signal, auth = true, retry = true, raw = false } = opts;
  if (auth && !access && refreshing) await refreshing.catch(() => {});
  const headers = new Headers(opts.headers || {});
  let payload = body;
  if (json !== undefined) {
    headers.set('Content-Type', 'application/json');
    payload = JSON.stringify(json);
  }
  if (auth && access) headers.set('Authorization', 'Bearer ' + access);
  let res;
  try {
    res = await fetch(BASE + path, { method, headers, body: payload, signal, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw networkError();
  }
  if (res.status === 401 && auth && retry) {
    try { await refresh(); } catch (e) {
      if (e.status === 0) throw e;
      throw new ApiError(401, 'session_ended', 'Your session has ended. Please log in again.');
    }
    return request(method, path, { ...opts, retry: false });
  }
  if (!res.ok) throw await errorFrom(res);
  if (raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  try { return text ? JSON.parse(text) : null; } catch {
    throw new ApiError(res.status, 'bad_response', 'The server sent an answer this page cannot read. Reload the page and try again.');
  }
}

export const me = () => request('GET', '/me');

export function listPhotos(cursor, limit = 60) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (cursor) q.set('cursor', cursor);
  return request('GET', '/photos?' + q);
}
export const getPhoto = (id) => request('GET', '/photos/' + encodeURIComponent(id)).then((j) => j.photo);
export const deletePhoto = (id) => request('DELETE', '/photos/' + encodeURIComponent(id));

export function listVideos(cursor, limit = 30) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (cursor) q.set('cursor', cursor);
  return request('GET', '/videos?' + q);
}
export const getVideo = (id) => request('GET', '/videos/' + encodeURIComponent(id)).then((j) => j.video);
export const createVideo = (spec) => request('POST', '/videos', { json: spec }).then((j) => j.video);
export const deleteVideo = (id) => request('DELETE', '/videos/' + encodeURIComponent(id));

// Stops a queued or running video and keeps its record (status
// "cancelled"): POST .../cancel, pv's extension of the contract. A server
// without it (405) gets DELETE, which cancels and removes.
export async function cancelVideo(id) {
  try {
    const j = await request('POST', '/videos/' + encodeURIComponent(id) + '/cancel', { json: {} });
    return { video: j && j.video, removed: false };
  } catch (e) {
    if (e.status !== 405) throw e;
  }
  await deleteVideo(id);
  return { video: null, removed: true };
}

// ---------- uploads (XMLHttpRequest: fetch has no upload progress) ----------

const TYPES = { jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', heic: 'image/heic', heif: 'image/heic' };

export function contentTypeOf(file) {
  if (file.type && file.type !== 'application/octet-stream') return file.type === 'image/heif' ? 'image/heic' : file.type;
  const ext = (file.name.split('.').pop() || '').toLowerCase();
  return TYPES[ext] || 'application/octet-stream';
}

// X-Filename carries UTF-8 bytes; a header value is a byte string, so
// each byte goes as one char.
function headerBytes(s) {
  const b = new TextEncoder().encode(s.replace(/[\u0000-\u001f\u007f]/g, ''));
  let out = '';
  for (const x of b) out += String.fromCharCode(x);
  return out;
}

// Uploads one file. Returns {promise, abort}; the promise resolves to
// {photo, duplicate} and progress(loaded, total) is called as bytes go.
export function uploadPhoto(file, progress) {
  let xhr = null;
  let aborted = false;
  const send = (retry) => new Promise((resolve, reject) => {
    xhr = new XMLHttpRequest();
    xhr.open('POST', BASE + '/photos');
    xhr.setRequestHeader('Content-Type', contentTypeOf(file));
    xhr.setRequestHeader('X-Filename', headerBytes(file.name));
    if (access) xhr.setRequestHeader('Authorization', 'Bearer ' + access);
    xhr.upload.onprogress = (e) => progress && progress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onerror = () => reject(networkError());
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'Upload cancelled.'));
    xhr.onload = async () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* words from the status */ }
      if (xhr.status === 401 && retry && !aborted) {
        try { await refresh(); } catch {
          reject(new ApiError(401, 'session_ended', 'Your session has ended. Please log in again.'));
          return;
        }
        send(false).then(resolve, reject);
        return;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body && body.photo) {
        resolve({ photo: body.photo, duplicate: !!body.duplicate || xhr.status === 200 });
        return;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        reject(new ApiError(xhr.status, 'bad_response', 'The server sent an answer this page cannot read.'));
        return;
      }
      reject(describe(xhr.status, body, xhr.getResponseHeader('Retry-After')));
    };
    xhr.send(file);
  });
  const promise = (async () => {
    if (!access && refreshing) await refreshing.catch(() => {});
    return send(true);
  })();
  return { promise, abort() { aborted = true; if (xhr) xhr.abort(); } };
}

// ---------- server-sent events over fetch ----------
// EventSource cannot send an Authorization header, so the stream is read
// with fetch and parsed here. onEvent({event, data}) is called per event
// (data parsed as JSON when it is JSON). Resolves when the stream ends.

export async function streamEvents(path, onEvent, signal) {
  const res = await request('GET', path, { raw: true, signal, headers: { Accept: 'text/event-stream' } });
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let event = '';
  let data = [];
  const dispatch = () => {
    if (data.length) {
      const text = data.join('\n');
      let parsed = text;
      try { parsed = JSON.parse(text); } catch { /* plain text data */ }
      onEvent({ event: event || 'message', data: parsed });
    }
    event = '';
    data = [];
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') { dispatch(); continue; }
      if (line[0] === ':') continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let val = c < 0 ? '' : line.slice(c + 1);
      if (val[0] === ' ') val = val.slice(1);
      if (field === 'event') event = val;
      else if (field === 'data') data.push(val);
    }
  }
  dispatch();
}
