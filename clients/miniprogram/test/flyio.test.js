'use strict';
// The README's flyio snippet (snippets/flyio.js, quoted verbatim in the README), with the
// real flyio from npm (package.json here; `npm ci`) on the strict wx shim, against the
// real wxlogin binary: first login, reuse of the stored token, server-side revocation
// and recovery, concurrent calls at start.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { start, call } = require('./harness.js');
const { createWx } = require('./wx-shim.js');
const { createApi } = require('./snippets/flyio.js');

const KEY = 'wxlogin.token';
let h;

test.before(async () => { h = await start(); });
test.after(async () => { if (h) await h.stop(); });

// flyio's wx build and the snippet use the global `wx`, as in a mini-program.
function client(user) {
  const wx = createWx({ fakeUrl: h.fakeUrl, user });
  global.wx = wx;
  return { wx, api: createApi({ baseURL: h.baseUrl, app: 'main' }) };
}

function logins(wx) {
  return wx.requests.filter((r) => r.url.endsWith('/v1/login'));
}

test('the README quotes the snippets verbatim', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  for (const name of ['flyio.js', 'werequest.js']) {
    const snippet = fs.readFileSync(path.join(__dirname, 'snippets', name), 'utf8');
    assert.ok(readme.includes(snippet.trim()), `README.md must contain test/snippets/${name} verbatim`);
  }
  // The weRequest one is not run here (weRequest is not on the npm registry): it loads.
  assert.equal(typeof require('./snippets/werequest.js').initWeRequest, 'function');
});

test('flyio: first login, then the stored token is reused', async () => {
  const { wx, api } = client('fly-alice');
  const me = await api.get('/v1/me');
  assert.equal(me.status, 200);
  assert.equal(typeof me.data.id, 'number');
  assert.equal(wx.loginCalls, 1);
  const token = wx.getStorageSync(KEY);
  assert.equal(typeof token, 'string');
  const s = await api.get('/v1/session');
  assert.equal(s.data.user.id, me.data.id);
  // A profile update goes through wx.request's methods (POST), not PATCH.
  const u = await api.post('/v1/me', { nickname: 'Alice' });
  assert.equal(u.data.nickname, 'Alice');
  assert.equal(wx.loginCalls, 1, 'the stored token was reused');
  assert.equal(logins(wx).length, 1);
  assert.equal(wx.refused.length, 0, 'nothing flyio sent was refused by the strict wx.request');
  const last = wx.requests[wx.requests.length - 1];
  assert.equal(last.header.Authorization, 'Bearer ' + token);
});

test('flyio: a session revoked on the server -> one new login and the call succeeds', async () => {
  const { wx, api } = client('fly-bob');
  const first = (await api.get('/v1/me')).data;
  const old = wx.getStorageSync(KEY);
  const r = await call('DELETE', h.baseUrl + '/v1/session', undefined, { Authorization: 'Bearer ' + old });
  assert.equal(r.status, 204);
  // Three calls meet the 401 together: one login, three answers.
  const [a, b, c] = await Promise.all([api.get('/v1/me'), api.get('/v1/session'), api.get('/v1/me')]);
  assert.equal(a.data.id, first.id);
  assert.equal(b.data.user.id, first.id);
  assert.equal(c.data.id, first.id);
  assert.equal(wx.loginCalls, 2);
  assert.notEqual(wx.getStorageSync(KEY), old);
});

test('flyio: concurrent calls at start share one login', async () => {
  const { wx, api } = client('fly-carol');
  const answers = await Promise.all([api.get('/v1/me'), api.get('/v1/session'), api.get('/v1/me'), api.get('/v1/me')]);
  assert.equal(wx.loginCalls, 1);
  assert.equal(logins(wx).length, 1);
  assert.equal(new Set(answers.map((x) => (x.data.user ? x.data.user.id : x.data.id))).size, 1);
});

test('flyio: a 401 that a new login cannot fix is reported once, not looped', async () => {
  const { wx, api } = client('fly-dave');
  await api.get('/v1/me');
  await h.fake('/__fake/behaviour', { fail: { api: 'jscode2session', errcode: 40029 } });
  try {
    wx.setStorageSync(KEY, 'not-a-token');
    await assert.rejects(api.get('/v1/me'), (e) => e.status === 401);
    assert.equal(wx.loginCalls, 2, 'one login attempt after the 401');
  } finally {
    await h.fake('/__fake/behaviour', { clear_failures: true });
  }
});
