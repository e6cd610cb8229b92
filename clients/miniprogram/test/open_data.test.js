'use strict';
// decrypt() and getPhoneNumber(). POST /v1/me/decrypt (with the combined login form)
// and POST /v1/me/phone land on other branches; until the server has them (it answers
// 404 not_found), these tests are skipped, and they run by themselves once merged.

const test = require('node:test');
const assert = require('node:assert/strict');
const { start } = require('./harness.js');
const { createWx } = require('./wx-shim.js');
const { createClient } = require('../wxlogin.js');

let h;
let hasDecrypt = false;
let hasPhone = false;

test.before(async () => {
  h = await start();
  hasDecrypt = await h.has('POST', '/v1/me/decrypt');
  hasPhone = await h.has('POST', '/v1/me/phone');
});
test.after(async () => { if (h) await h.stop(); });

const NO_DECRYPT = 'server has no POST /v1/me/decrypt yet (404)';
const NO_PHONE = 'server has no POST /v1/me/phone yet (404)';

function client(user) {
  const wx = createWx({ fakeUrl: h.fakeUrl, user });
  return { wx, c: createClient({ baseUrl: h.baseUrl, app: 'main', wx }) };
}

test('decrypt: wx.login first, then the data, in one login call', async (t) => {
  if (!hasDecrypt) return t.skip(NO_DECRYPT);
  const user = 'dec-alice';
  const { wx, c } = client(user);
  await c.login();
  let fetches = 0;
  const out = await c.decrypt(async () => {
    fetches += 1;
    return h.fake('/__fake/open_data', { user, kind: 'user_info' });
  });
  assert.equal(out.kind, 'user_info');
  assert.equal(out.data.nickName, user);
  assert.equal(out.data.watermark, undefined);
  assert.equal(fetches, 1);
  assert.equal(wx.loginCalls, 2, 'decrypt takes its own fresh code');
  assert.equal((await c.me()).nickname, user);
  assert.equal(wx.loginCalls, 2, 'and stores the session it got');
});

test('decrypt: data made with another session_key -> re-login, fetch again, retry once', async (t) => {
  if (!hasDecrypt) return t.skip(NO_DECRYPT);
  const user = 'dec-stale-bob';
  const { wx, c } = client(user);
  let fetches = 0;
  const out = await c.decrypt(async () => {
    fetches += 1;
    const data = await h.fake('/__fake/open_data', { user, kind: 'werun' });
    // The first time, something else calls wx.login right after: the key rotates.
    if (fetches === 1) await h.fake('/__fake/login', { user });
    return data;
  });
  assert.equal(out.kind, 'other');
  assert.ok(Array.isArray(out.data.stepInfoList));
  assert.equal(fetches, 2);
  assert.equal(wx.loginCalls, 2);
});

test('decrypt: stale twice -> session_key_stale (409), no loop', async (t) => {
  if (!hasDecrypt) return t.skip(NO_DECRYPT);
  const user = 'dec-stale-carol';
  const { wx, c } = client(user);
  let fetches = 0;
  await assert.rejects(c.decrypt(async () => {
    fetches += 1;
    const data = await h.fake('/__fake/open_data', { user, kind: 'share' });
    await h.fake('/__fake/login', { user });
    return data;
  }), (e) => e.code === 'session_key_stale' && e.status === 409);
  assert.equal(fetches, 2);
  assert.equal(wx.loginCalls, 2);
});

test('decrypt: concurrent requests wait for it instead of logging in under it', async (t) => {
  if (!hasDecrypt) return t.skip(NO_DECRYPT);
  const user = 'dec-busy-dave';
  const { wx, c } = client(user);
  const [out, me] = await Promise.all([
    c.decrypt(() => h.fake('/__fake/open_data', { user, kind: 'user_info' })),
    c.me(),
  ]);
  assert.equal(out.kind, 'user_info');
  assert.equal(me.nickname, user);
  assert.equal(wx.loginCalls, 1);
});

test('getPhoneNumber exchanges the button code', async (t) => {
  if (!hasPhone) return t.skip(NO_PHONE);
  const user = 'phone-erin';
  const { wx, c } = client(user);
  await c.login();
  const { code } = await h.fake('/__fake/phone_code', { user, phone: '13912345678' });
  const p = await c.getPhoneNumber({ detail: { code, errMsg: 'getPhoneNumber:ok' } });
  assert.equal(p.pure_phone_number, '13912345678');
  assert.equal(String(p.country_code), '86');
  assert.match(p.phone_number, /13912345678$/);
  assert.match((await c.me()).phone_number, /13912345678$/);
  // A used code: invalid_code, which is not a reason to log in again.
  await assert.rejects(c.getPhoneNumber(code), (e) => e.code === 'invalid_code' && e.status === 401);
  assert.equal(wx.loginCalls, 1);
});

test('getPhoneNumber with a denied button event fails without a request', async () => {
  const { wx, c } = client('phone-denied');
  await assert.rejects(c.getPhoneNumber({ detail: { errMsg: 'getPhoneNumber:fail user deny' } }),
    (e) => e.code === 'phone_denied' && e.status === 0);
  assert.equal(wx.requests.length, 0);
});
