/*
 * wxlogin.js: the mini-program side of wxlogin (https://.../wxlogin).
 * One CommonJS file, no dependencies, no build step. Copy it into your mini-program
 * (e.g. as `utils/wxlogin.js`) and `require` it. Syntax kept to ES2018 (async/await,
 * no optional chaining, no `??`), which every current base library accepts.
 *
 *   const { createClient } = require('./utils/wxlogin.js');
 *   const auth = createClient({ baseUrl: 'https://login.example.com', app: 'main' });
 *   const user = await auth.me();               // logs in first if needed
 *
 * What it gets right (each one is a bug found in the snippets people copy today):
 *
 * - The session token lives in wx storage (`wx.setStorageSync`), never in globals, so
 *   it survives restarts of the mini-program; it is the server's own opaque token, and
 *   WeChat's session_key never reaches the client.
 * - ONE login in flight: callers that need a login while one is running share it
 *   (no login storms, no codes or session_keys rotated under each other).
 * - A 401 (`unauthorized` / `session_expired`) leads to exactly one new login and one
 *   retry; if another caller already logged in meanwhile, its token is reused instead.
 *   Never a loop.
 * - Errors are `Error`s with `.code` (the server's `error.code`, or `network_error`,
 *   `wx_login_failed`, `phone_denied`, `invalid_method`, and for pay() `pay_cancelled`,
 *   `pay_failed`, `pay_pending`, `pay_closed`), `.status` (HTTP status, 0 when
 *   there was none) and `.requestId` (the server's X-Request-Id, for the logs) when present.
 * - Only the methods `wx.request` can send (no PATCH: profile updates use POST /v1/me).
 * - Every login carries an `Idempotency-Key`, fresh for each code. If the answer to a
 *   login is lost (network error), the same code is sent once more with the same key:
 *   the server answers that retry from its replay window, and only to the caller that
 *   holds the key, so a lost answer costs no second wx.login.
 *
 * decrypt(getData): how open data is decrypted, and why.
 *
 *   WeChat encrypts open data (wx.getWeRunData, wx.getShareInfo, ...) with the user's
 *   CURRENT session_key, and every wx.login may replace that key. Decrypting with a key
 *   from an earlier or later login fails "every second time" (peers.md P1). So the
 *   order must be: wx.login FIRST (the code), THEN fetch the data, then send both
 *   together. decrypt() does exactly that:
 *
 *     1. waits for any login in flight and holds back new ones while it runs;
 *     2. wx.login -> code;
 *     3. calls your getData() -> {encryptedData, iv, rawData?, signature?};
 *     4. POST /v1/login {code, app, encrypted_data, iv, raw_data?, signature?}: the
 *        server decrypts with the session_key that THIS code yields, so the pair always
 *        matches; the reply carries a new token (stored) and `decrypted`.
 *
 *   We chose the combined call over "POST /v1/me/decrypt with the stored key" because
 *   it cannot be stale by construction, and it costs one round trip instead of two.
 *   Two safety nets remain: a server that answers the login without `decrypted` (one
 *   that predates the combined form) is asked again at POST /v1/me/decrypt with the
 *   fresh token; and if either answers 409 `session_key_stale` (something else called
 *   wx.login between steps 2 and 3, e.g. another plugin), decrypt() logs in once more,
 *   calls getData() again and retries once.
 *
 *   getData must FETCH the data when called (e.g. `() => wxp(wx.getWeRunData)`). Data
 *   captured earlier (a button event) was encrypted with an older key; for the phone
 *   number use the getPhoneNumber button's `code` with getPhoneNumber(code) instead,
 *   which needs no session_key at all.
 *
 * pay({ product }) or pay({ outTradeNo }): WeChat Pay, and why it works this way.
 *
 *   A price never comes from here: the server creates the order of a configured product
 *   (POST /v1/pay/orders) or hands fresh parameters for an order your own service made
 *   (POST /v1/pay/orders/{no}/payment). Those parameters (signed by the server) go to
 *   wx.requestPayment as they are. Its success callback is NOT proof of payment (WeChat
 *   Pay: "订单状态以查单结果为准"), so pay() then asks GET /v1/pay/orders/{no}?sync=true,
 *   which makes the server ask WeChat Pay itself, until the order is `paid`: a few tries
 *   with a growing pause (PAY_POLLS). It resolves with the paid Order. Rejections: the
 *   user's cancel is `pay_cancelled`, any other wx.requestPayment failure `pay_failed`,
 *   paid but not yet confirmed after the polls `pay_pending`, an order that closed
 *   meanwhile `pay_closed`; each carries `.order` (what the server last said) when known,
 *   so the app can show it or call pay({ outTradeNo }) again later.
 */
'use strict';

var DEFAULT_STORAGE_KEY = 'wxlogin.session';

// What wx.request accepts (its docs: OPTIONS, GET, HEAD, POST, PUT, DELETE, TRACE,
// CONNECT, upper case); anything else fails there with "request:fail method is invalid".
var WX_METHODS = ['OPTIONS', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'CONNECT'];

// 128 random bits as hex for an Idempotency-Key: from crypto.getRandomValues where the
// runtime has it, else Math.random (the key only has to be unguessable to others, who
// never see this client's state).
function randomKey() {
  var bytes = new Array(16);
  var i;
  var c = typeof crypto !== 'undefined' && crypto && typeof crypto.getRandomValues === 'function' ? crypto : null;
  if (c) {
    var buf = new Uint8Array(16);
    c.getRandomValues(buf);
    for (i = 0; i < 16; i++) bytes[i] = buf[i];
  } else {
    for (i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  var hex = '';
  for (i = 0; i < 16; i++) hex += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
  return hex;
}

function WxLoginError(code, message, status, requestId) {
  var err = new Error(message || code);
  err.name = 'WxLoginError';
  err.code = code;
  err.status = status || 0;
  if (requestId) err.requestId = requestId;
  return err;
}

function headerValue(header, name) {
  if (!header) return undefined;
  var lower = name.toLowerCase();
  for (var k in header) {
    if (Object.prototype.hasOwnProperty.call(header, k) && k.toLowerCase() === lower) return header[k];
  }
  return undefined;
}

function parseBody(data) {
  if (typeof data === 'string' && data.length) {
    try { return JSON.parse(data); } catch (e) { return data; }
  }
  return data;
}

// The error a non-2xx answer stands for.
function httpError(res) {
  var body = parseBody(res.data);
  var e = body && typeof body === 'object' && body.error ? body.error : null;
  var requestId = headerValue(res.header, 'X-Request-Id');
  var code = e && e.code ? e.code : 'http_' + res.statusCode;
  var message = e && e.message ? e.message : 'HTTP ' + res.statusCode;
  var err = WxLoginError(code, message, res.statusCode, requestId);
  if (e && typeof e.wechat_errcode === 'number') err.wechatErrcode = e.wechat_errcode;
  if (e && typeof e.wechatpay_code === 'string') err.wechatpayCode = e.wechatpay_code;
  return err;
}

// After wx.requestPayment succeeds: how many times the order is asked for, and the pause
// before each ask after the first (the server asks WeChat Pay at most every 2 s per order,
// so the later pauses are that long).
var PAY_POLLS = 6;
var PAY_PAUSES_MS = [500, 1000, 2000, 2000, 2000];

function sleep(ms) {
  return new Promise(function (resolve) { setTimeout(resolve, ms); });
}

function withOrder(err, order) {
  if (order) err.order = order;
  return err;
}

function isAuthFailure(res) {
  if (res.statusCode !== 401) return false;
  var body = parseBody(res.data);
  var code = body && body.error && body.error.code;
  // A 401 without a readable code is treated as an auth failure too (a proxy's answer).
  return !code || code === 'unauthorized' || code === 'session_expired';
}

function isStale(err) {
  return err && err.code === 'session_key_stale';
}

function settle(p) {
  return p ? p.then(function () {}, function () {}) : Promise.resolve();
}

function createClient(options) {
  options = options || {};
  /* global wx */
  var wxApi = options.wx || (typeof wx !== 'undefined' ? wx : null);
  if (!wxApi) throw new Error('wxlogin: no `wx` object (pass options.wx)');
  if (!options.baseUrl) throw new Error('wxlogin: options.baseUrl is required');
  var baseUrl = String(options.baseUrl).replace(/\/+$/, '');
  var app = options.app;
  var storageKey = options.storageKey || DEFAULT_STORAGE_KEY;
  var timeout = options.timeout || 15000;

  var loginFlight = null; // the one login in flight
  var gate = null; // decrypt() running: new logins wait for it

  // ---- storage ----
  function stored() {
    var s;
    try { s = wxApi.getStorageSync(storageKey); } catch (e) { s = null; }
    if (!s || typeof s !== 'object' || typeof s.token !== 'string' || !s.token) return null;
    // Expired by the server's own clock estimate: a login is due anyway.
    if (typeof s.expires_at === 'number' && s.expires_at * 1000 <= Date.now()) return null;
    return s;
  }
  function storedToken() {
    var s = stored();
    return s ? s.token : null;
  }
  function store(body) {
    wxApi.setStorageSync(storageKey, {
      token: body.token,
      expires_at: Math.floor(Date.now() / 1000) + (body.expires_in || 0),
      user_id: body.user ? body.user.id : null
    });
  }
  function clear() {
    try { wxApi.removeStorageSync(storageKey); } catch (e) { /* nothing stored */ }
  }

  // ---- wx wrappers ----
  function wxLogin() {
    return new Promise(function (resolve, reject) {
      wxApi.login({
        success: function (r) {
          if (r && r.code) resolve(r.code);
          else reject(WxLoginError('wx_login_failed', 'wx.login gave no code' + (r && r.errMsg ? ': ' + r.errMsg : ''), 0));
        },
        fail: function (r) {
          reject(WxLoginError('wx_login_failed', 'wx.login failed' + (r && r.errMsg ? ': ' + r.errMsg : ''), 0));
        }
      });
    });
  }

  // One HTTP exchange; resolves {statusCode, data, header} whatever the status.
  function send(method, url, data, token, extraHeader) {
    var header = {};
    var k;
    if (extraHeader) for (k in extraHeader) header[k] = extraHeader[k];
    if (data !== undefined && method !== 'GET' && !headerValue(header, 'Content-Type')) header['Content-Type'] = 'application/json';
    if (token) header.Authorization = 'Bearer ' + token;
    var full = /^https?:\/\//.test(url) ? url : baseUrl + (url.charAt(0) === '/' ? '' : '/') + url;
    return new Promise(function (resolve, reject) {
      wxApi.request({
        url: full,
        method: method,
        data: data,
        header: header,
        timeout: timeout,
        dataType: 'json',
        success: function (res) {
          resolve({ statusCode: res.statusCode, data: parseBody(res.data), header: res.header || {} });
        },
        fail: function (r) {
          reject(WxLoginError('network_error', 'request failed' + (r && r.errMsg ? ': ' + r.errMsg : ''), 0));
        }
      });
    });
  }

  function ok(res) {
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    throw httpError(res);
  }

  // ---- login ----
  // POST /v1/login for one code. A network error (the answer may be lost after the
  // server used the code) is retried once with the same code and the same key.
  async function postLogin(code, extra) {
    var body = { code: code };
    if (app) body.app = app;
    if (extra) for (var k in extra) if (extra[k] !== undefined && extra[k] !== null) body[k] = extra[k];
    var idem = { 'Idempotency-Key': randomKey() };
    var res;
    try {
      res = await send('POST', '/v1/login', body, null, idem);
    } catch (err) {
      if (err.code !== 'network_error') throw err;
      res = await send('POST', '/v1/login', body, null, idem);
    }
    res = ok(res);
    if (!res.data || typeof res.data.token !== 'string') {
      throw WxLoginError('invalid_response', 'login answer without a token', res.statusCode, headerValue(res.header, 'X-Request-Id'));
    }
    store(res.data);
    return res.data;
  }

  async function doLogin() {
    await settle(gate);
    var code = await wxLogin();
    return postLogin(code);
  }

  // wx.login + POST /v1/login; concurrent callers share one.
  function login() {
    if (!loginFlight) {
      var flight = doLogin();
      loginFlight = flight;
      var done = function () { if (loginFlight === flight) loginFlight = null; };
      flight.then(done, done);
    }
    return loginFlight;
  }

  // The token to use: decrypt() running -> wait for it; a login in flight -> share
  // its outcome (its error too: no second login behind a failed one); else storage.
  async function ensureToken() {
    if (gate) await gate;
    if (loginFlight) return (await loginFlight).token;
    var t = storedToken();
    if (t) return t;
    return (await login()).token;
  }

  // request({url, method?, data?, header?}): authenticated, one re-login on 401.
  async function request(opts) {
    opts = opts || {};
    var method = (opts.method || 'GET').toUpperCase();
    var url = opts.url || opts.path;
    if (!url) throw new Error('wxlogin: request needs a url');
    if (WX_METHODS.indexOf(method) < 0) {
      throw WxLoginError('invalid_method', 'wx.request cannot send ' + method + ' (it sends ' + WX_METHODS.join(', ') + ')', 0);
    }
    var token = await ensureToken();
    var res = await send(method, url, opts.data, token, opts.header);
    if (isAuthFailure(res)) {
      var now = storedToken();
      if (now && now !== token) {
        token = now; // someone else already logged in meanwhile
      } else {
        if (now === token) clear();
        token = (await login()).token;
      }
      res = await send(method, url, opts.data, token, opts.header);
    }
    return ok(res);
  }

  // ---- open data ----
  function toBody(d) {
    if (!d || typeof d !== 'object') throw new Error('wxlogin: getData() must give {encryptedData, iv, ...}');
    var get = function (camel, snake) { return d[camel] !== undefined ? d[camel] : d[snake]; };
    return {
      encrypted_data: get('encryptedData', 'encrypted_data'),
      iv: d.iv,
      raw_data: get('rawData', 'raw_data'),
      signature: d.signature
    };
  }

  async function decryptOnce(getData) {
    var code = await wxLogin();
    var data = toBody(await getData());
    var body = await postLogin(code, data);
    if (body.decrypted) return body.decrypted;
    // A server without the combined form: the token just stored carries this code's key.
    var extra = {};
    for (var k in data) if (data[k] !== undefined && data[k] !== null) extra[k] = data[k];
    return ok(await send('POST', '/v1/me/decrypt', extra, body.token)).data;
  }

  // decrypt(getData) -> {kind, data}; see the header comment.
  function decrypt(getData) {
    if (typeof getData !== 'function') return Promise.reject(new Error('wxlogin: decrypt takes a function that fetches the data'));
    var before = Promise.all([settle(loginFlight), settle(gate)]);
    var run = (async function () {
      await before;
      try {
        return await decryptOnce(getData);
      } catch (err) {
        if (!isStale(err)) throw err;
        return decryptOnce(getData); // once: a fresh code, fresh data
      }
    })();
    var mine = run.then(function () {}, function () {});
    gate = mine;
    mine.then(function () { if (gate === mine) gate = null; });
    return run;
  }

  // getPhoneNumber(code | button event) -> {phone_number, pure_phone_number, country_code}
  async function getPhoneNumber(codeOrEvent) {
    var code = codeOrEvent;
    if (codeOrEvent && typeof codeOrEvent === 'object') {
      var detail = codeOrEvent.detail || codeOrEvent;
      code = detail.code;
      if (!code) throw WxLoginError('phone_denied', 'no phone code' + (detail.errMsg ? ': ' + detail.errMsg : ''), 0);
    }
    if (typeof code !== 'string' || !code) throw WxLoginError('phone_denied', 'no phone code', 0);
    return (await request({ url: '/v1/me/phone', method: 'POST', data: { code: code } })).data;
  }

  // ---- WeChat Pay ----
  // wx.requestPayment with the server's parameters as they are (signType 'RSA' included).
  function requestPayment(payment, order) {
    return new Promise(function (resolve, reject) {
      if (!payment || typeof payment !== 'object' || typeof payment.paySign !== 'string') {
        reject(withOrder(WxLoginError('invalid_response', 'the server gave no payment parameters', 0), order));
        return;
      }
      if (typeof wxApi.requestPayment !== 'function') {
        reject(withOrder(WxLoginError('pay_failed', 'this wx object has no requestPayment', 0), order));
        return;
      }
      wxApi.requestPayment({
        timeStamp: payment.timeStamp,
        nonceStr: payment.nonceStr,
        package: payment.package,
        signType: payment.signType || 'RSA',
        paySign: payment.paySign,
        success: function () { resolve(); },
        fail: function (r) {
          var msg = r && r.errMsg ? r.errMsg : 'requestPayment:fail';
          // "requestPayment:fail cancel"; WeChat 6.5.2 and older said "requestPayment:cancel".
          var cancelled = /^requestPayment:(fail )?cancel/.test(msg);
          reject(withOrder(WxLoginError(cancelled ? 'pay_cancelled' : 'pay_failed', msg, 0), order));
        }
      });
    });
  }

  // Asks the server (which asks WeChat Pay) until the order is paid, a bounded number of times.
  async function waitPaid(outTradeNo, order) {
    var path = '/v1/pay/orders/' + encodeURIComponent(outTradeNo) + '?sync=true';
    var last = order;
    for (var i = 0; i < PAY_POLLS; i++) {
      if (i > 0) await sleep(PAY_PAUSES_MS[Math.min(i - 1, PAY_PAUSES_MS.length - 1)]);
      var res;
      try {
        res = await request({ url: path });
      } catch (err) {
        if (err.code !== 'network_error') throw withOrder(err, last);
        continue; // the payment went through; a lost answer is worth another ask
      }
      last = res.data;
      if (last && (last.state === 'paid' || last.state === 'refunded')) return last;
      if (last && last.state === 'closed') {
        throw withOrder(WxLoginError('pay_closed', 'the order was closed before WeChat Pay reported a payment', 0), last);
      }
    }
    throw withOrder(WxLoginError('pay_pending', 'WeChat Pay has not confirmed the payment yet; ask again later with pay({ outTradeNo }) or GET /v1/pay/orders/{no}', 0), last);
  }

  // pay({product}) | pay({outTradeNo}) -> the paid Order; see the header comment.
  async function pay(opts) {
    opts = opts || {};
    var order;
    var payment;
    if (typeof opts.product === 'string' && opts.product && opts.outTradeNo === undefined) {
      var created = (await request({ url: '/v1/pay/orders', method: 'POST', data: { product: opts.product } })).data;
      order = created && created.order;
      payment = created && created.payment;
    } else if (typeof opts.outTradeNo === 'string' && opts.outTradeNo && opts.product === undefined) {
      var path = '/v1/pay/orders/' + encodeURIComponent(opts.outTradeNo) + '/payment';
      payment = ((await request({ url: path, method: 'POST' })).data || {}).payment;
      order = { out_trade_no: opts.outTradeNo };
    } else {
      throw new Error('wxlogin: pay takes { product } or { outTradeNo } (one of them)');
    }
    if (!order || typeof order.out_trade_no !== 'string') {
      throw WxLoginError('invalid_response', 'the server gave no order', 0);
    }
    await requestPayment(payment, order);
    return waitPaid(order.out_trade_no, order);
  }

  async function me() {
    return (await request({ url: '/v1/me' })).data;
  }

  // POST /v1/me: a partial update. wx.request cannot send PATCH; the server takes PUT
  // and POST alike, and POST is chosen because PUT promises to replace the whole
  // resource, which this update does not do.
  async function updateProfile(fields) {
    return (await request({ url: '/v1/me', method: 'POST', data: fields })).data;
  }

  async function session() {
    return (await request({ url: '/v1/session' })).data;
  }

  // DELETE /v1/session, then forget the token whatever the server said.
  async function logout() {
    var token = storedToken();
    try {
      if (token) await send('DELETE', '/v1/session', undefined, token);
    } catch (e) {
      /* offline: the token is dropped here anyway and expires on the server */
    } finally {
      clear();
    }
  }

  return {
    login: login,
    request: request,
    decrypt: decrypt,
    getPhoneNumber: getPhoneNumber,
    me: me,
    updateProfile: updateProfile,
    session: session,
    logout: logout,
    pay: pay,
    token: storedToken,
    isLoggedIn: function () { return storedToken() !== null; }
  };
}

module.exports = { createClient: createClient, WxLoginError: WxLoginError };
