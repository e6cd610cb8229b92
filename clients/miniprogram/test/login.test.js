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

test('updateProfile posts to /v1/me (wx.request has no PATCH)', async () => {
  const { wx, c } = client('profile-frank');
  const u = await c.updateProfile({ nickname: 'Frank', avatar_url: 'https://example.com/f.png' });
  assert.equal(u.nickname, 'Frank');
  const sent = wx.requests.filter((r) => r.url.endsWith('/v1/me') && r.method !== 'GET');
  assert.deepEqual(sent.map((r) => r.method), ['POST']);
  assert.equal((await c.me()).avatar_url, 'https://example.com/f.png');
  assert.equal(wx.refused.length, 0);
});

// What the real wx.request refuses (see STRICTNESS in wx-shim.js) fails here too.
function wxCall(wx, opts) {
  return new Promise((resolve) => {
    wx.request(Object.assign({}, opts, {
      success: (res) => resolve({ ok: true, res }),
      fail: (res) => resolve({ ok: false, errMsg: res.errMsg }),
    }));
  });
}

test('the wx shim refuses PATCH, lower-case methods and a Referer header, sending nothing', async () => {
  const { wx, c } = client('strict-shim');
  const { token } = await c.login();
  const auth = { Authorization: 'Bearer ' + token };
  const url = h.baseUrl + '/v1/me';
  for (const method of ['PATCH', 'patch', 'get', 'PROPFIND']) {
    const r = await wxCall(wx, { url, method, header: auth, data: { nickname: 'Patched' } });
    assert.deepEqual(r, { ok: false, errMsg: 'request:fail method is invalid' }, method);
  }
  const r = await wxCall(wx, { url, header: Object.assign({ referer: 'https://evil.example/' }, auth) });
  assert.equal(r.ok, false);
  assert.match(r.errMsg, /^request:fail header referer/);
  assert.equal(wx.refused.length, 5);
  assert.equal(wx.requests.filter((q) => q.url === url).length, 0, 'nothing reached the server');
  assert.equal((await c.me()).nickname, null, 'the PATCH never happened');
  // The eight methods it has go through (an unknown route answers, it does not fail).
  for (const method of ['OPTIONS', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE']) {
    const ok = await wxCall(wx, { url: h.baseUrl + '/v1/nope', method, header: auth });
    assert.equal(ok.ok, true, method);
  }
  // GET data becomes the query string, as wx.request does.
  const g = await wxCall(wx, { url: h.baseUrl + '/v1/me', method: 'GET', header: auth, data: { a: 'x y' } });
  assert.equal(g.res.statusCode, 200);
});

test('request() with PATCH fails before wx.request: invalid_method', async () => {
  const { wx, c } = client('patch-kate');
  await assert.rejects(c.request({ url: '/v1/me', method: 'PATCH', data: { nickname: 'K' } }),
    (e) => e.code === 'invalid_method' && e.status === 0 && /PATCH/.test(e.message));
  assert.equal(wx.refused.length, 0);
});

function logins(wx) {
  return wx.requests.filter((r) => r.url.endsWith('/v1/login'));
}

test('every login carries an Idempotency-Key, a new one for each code', async () => {
  const { wx, c } = client('idem-liam');
  await c.login();
  wx.setStorageSync(KEY, { token: 'gone', expires_at: Math.floor(Date.now() / 1000) + 3600 });
  await c.me(); // 401 -> a second login with a new code
  const sent = logins(wx);
  assert.equal(sent.length, 2);
  const keys = sent.map((r) => r.header['Idempotency-Key']);
  for (const k of keys) assert.match(k, /^[0-9a-f]{32}$/);
  assert.notEqual(sent[0].data.code, sent[1].data.code);
  assert.notEqual(keys[0], keys[1]);
});

test('a lost login answer is retried once with the same code and key, without wx.login', async () => {
  const { wx, c } = client('idem-mia');
  let dropped = 0;
  wx.beforeAnswer = ({ url }) => {
    if (url.endsWith('/v1/login') && dropped === 0) {
      dropped += 1;
      return new Error('timeout');
    }
    return undefined;
  };
  const body = await c.login();
  assert.equal(dropped, 1);
  assert.equal(wx.loginCalls, 1);
  const sent = logins(wx);
  assert.equal(sent.length, 2);
  assert.equal(sent[0].data.code, sent[1].data.code);
  assert.equal(sent[0].header['Idempotency-Key'], sent[1].header['Idempotency-Key']);
  assert.equal((await c.me()).id, body.user.id);
  // Lost twice: a network_error, not a loop.
  const other = client('idem-noah');
  other.wx.beforeAnswer = ({ url }) => (url.endsWith('/v1/login') ? new Error('timeout') : undefined);
  await assert.rejects(other.c.login(), (e) => e.code === 'network_error');
  assert.equal(logins(other.wx).length, 2);
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
