'use strict';
// Login, stored tokens, single-flight, 401 recovery, logout and errors, against the
// real wxlogin binary and the fake WeChat (see harness.js).

const test = require('node:test');
const assert = require('node:assert/strict');
const { start, call } = require('./harness.js');
const { createWx } = require('./wx-shim.js');
const { createClient } = require('../wxlogin.js');

const KEY = 'wxlogin.session';
let h;

test.before(async () => { h = await start(); });
test.after(async () => { if (h) await h.stop(); });

function client(user, extra) {
  const wx = createWx({ fakeUrl: h.fakeUrl, user });
  const c = createClient(Object.assign({ baseUrl: h.baseUrl, app: 'main', wx }, extra));
  return { wx, c };
}

test('first login stores the token in wx storage and works', async () => {
  const { wx, c } = client('first-alice');
  assert.equal(c.isLoggedIn(), false);
  const body = await c.login();
  assert.equal(wx.loginCalls, 1);
  assert.equal(body.new_user, true);
  assert.equal(typeof body.token, 'string');
  assert.equal(wx.getStorageSync(KEY).token, body.token);
  const me = await c.me();
  assert.equal(me.id, body.user.id);
  assert.equal(wx.loginCalls, 1);
  const last = wx.requests[wx.requests.length - 1];
  assert.equal(last.header.Authorization, 'Bearer ' + body.token);
});

test('a stored token is reused: no second wx.login', async () => {
  const { wx, c } = client('reuse-bob');
  await c.login();
  // A new client (the mini-program restarted) on the same storage.
  const again = createClient({ baseUrl: h.baseUrl, app: 'main', wx });
  const s = await again.session();
  assert.equal(s.app, 'main');
  assert.equal(typeof s.expires_at, 'number');
  assert.equal(wx.loginCalls, 1);
  const other = createClient({ baseUrl: h.baseUrl, app: 'main', wx, storageKey: 'other.key' });
  await other.me();
  assert.equal(wx.loginCalls, 2, 'another storageKey is another session');
});

test('concurrent calls without a token share one login', async () => {
  const { wx, c } = client('storm-carol');
  const results = await Promise.all([c.me(), c.me(), c.session(), c.request({ url: '/v1/me' }), c.login(), c.me()]);
  assert.equal(wx.loginCalls, 1);
  const ids = new Set([results[0].id, results[1].id, results[2].user.id, results[3].data.id, results[4].user.id]);
  assert.equal(ids.size, 1);
  assert.equal(results[3].statusCode, 200);
  assert.ok(results[3].header);
});

test('401 after revocation behind the client\'s back: one re-login and one retry', async () => {
  const { wx, c } = client('revoked-dave');
  const first = await c.login();
  const r = await call('DELETE', h.baseUrl + '/v1/session', undefined, { Authorization: 'Bearer ' + first.token });
  assert.equal(r.status, 204);
  const me = await c.me();
  assert.equal(me.id, first.user.id);
  assert.equal(wx.loginCalls, 2);
  assert.notEqual(wx.getStorageSync(KEY).token, first.token);
});

test('401 with a corrupted stored token: re-login and retry; concurrent 401s share it', async () => {
  const { wx, c } = client('corrupt-erin');
  await c.login();
  wx.setStorageSync(KEY, { token: 'not-a-real-token', expires_at: Math.floor(Date.now() / 1000) + 3600 });
  const [a, b, s] = await Promise.all([c.me(), c.me(), c.session()]);
  assert.equal(a.id, b.id);
  assert.equal(s.user.id, a.id);
  assert.equal(wx.loginCalls, 2, 'the three 401s lead to one login');
  assert.notEqual(wx.getStorageSync(KEY).token, 'not-a-real-token');
});

test('updateProfile patches /v1/me', async () => {
  const { c } = client('profile-frank');
  const u = await c.updateProfile({ nickname: 'Frank', avatar_url: 'https://example.com/f.png' });
  assert.equal(u.nickname, 'Frank');
  assert.equal((await c.me()).avatar_url, 'https://example.com/f.png');
});

test('logout ends the session on the server and clears storage', async () => {
  const { wx, c } = client('logout-grace');
  const { token } = await c.login();
  await c.logout();
  assert.equal(wx.getStorageSync(KEY), '');
  assert.equal(c.isLoggedIn(), false);
  const r = await call('GET', h.baseUrl + '/v1/session', undefined, { Authorization: 'Bearer ' + token });
  assert.equal(r.status, 401);
  assert.equal(r.json.error.code, 'unauthorized');
});

test('logout clears storage even when the server cannot be reached', async () => {
  const { wx, c } = client('logout-offline');
  await c.login();
  const offline = createClient({ baseUrl: 'http://127.0.0.1:1', app: 'main', wx });
  await offline.logout();
  assert.equal(wx.getStorageSync(KEY), '');
});

test('errors carry code, status and requestId', async () => {
  const { wx, c } = client('errors-heidi');
  await assert.rejects(c.updateProfile({ nickname: '' }), (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.code, 'invalid_field');
    assert.equal(e.status, 422);
    assert.equal(typeof e.requestId, 'string');
    assert.ok(e.message.length > 0);
    return true;
  });
  await assert.rejects(c.updateProfile({}), { code: 'invalid_request', status: 400 });
  await assert.rejects(c.request({ url: '/v1/nope' }), { code: 'not_found', status: 404 });
  assert.equal(wx.loginCalls, 1, 'non-auth errors do not log in again');

  const unknown = client('errors-app', { app: 'nope' }).c;
  await assert.rejects(unknown.login(), { code: 'unknown_app', status: 400 });

  const offline = client('errors-net', { baseUrl: 'http://127.0.0.1:1' }).c;
  await assert.rejects(offline.me(), (e) => e.code === 'network_error' && e.status === 0);

  const denied = client('errors-wx');
  denied.wx.failLogin = true;
  await assert.rejects(denied.c.me(), (e) => e.code === 'wx_login_failed' && e.status === 0);
  // The failed login is not cached: the next call logs in.
  denied.wx.failLogin = false;
  assert.equal(typeof (await denied.c.me()).id, 'number');
});

test('a code WeChat rejects fails the login with invalid_code, no loop', async () => {
  const { wx, c } = client('badcode-ivan');
  await h.fake('/__fake/behaviour', { fail: { api: 'jscode2session', errcode: 40029 } });
  try {
    await assert.rejects(c.me(), (e) => e.code === 'invalid_code' && e.status === 401);
    assert.equal(wx.loginCalls, 1);
  } finally {
    await h.fake('/__fake/behaviour', { clear_failures: true });
  }
  await c.me();
  assert.equal(wx.loginCalls, 2);
});
