'use strict';
// A stand-in for the mini-program's `wx` object, enough for wxlogin.js and the
// request libraries people use with it (flyio, weRequest):
// - request: REAL HTTP with node's http module, and AS STRICT AS wx.request: what the
//   real one refuses fails here too (see STRICTNESS below), so that a library relying
//   on something a phone cannot do fails a test instead of failing in production;
// - login: asks the fake WeChat's /__fake/login for a code for `user`, as wx.login
//   would on that user's phone (and, like it, rotates the user's session_key);
// - storage: in memory, values copied through JSON like the real storage;
// - requestPayment: as strict as the real one (see PAYMENT below); "pays" through the
//   fake WeChat Pay's control endpoint (POST /__fake/pay/pay, src/fake_wechat/README.md),
//   and can be told to cancel or fail.

const crypto = require('node:crypto');
const http = require('node:http');

// STRICTNESS: what the real wx.request does differently from a browser or Node, each
// with its source.
//
// 1. Methods. Its `method` takes only OPTIONS, GET, HEAD, POST, PUT, DELETE, TRACE,
//    CONNECT, upper case ("需大写"; "要注意 method 的 value 必须为大写"): the wx.request
//    reference, developers.weixin.qq.com/miniprogram/dev/api/network/request/wx.request.html
//    (its "object.method 的合法值" table; the English mini-game page lists the same
//    eight). Anything else fails the call: fail({errMsg: "request:fail method is
//    invalid"}), as reported for PATCH in github.com/wendux/grace/issues/15 (and
//    wendux/fly#104, taro-axios#12, axios-miniprogram-adapter#18: no PATCH). Whether a
//    phone upper-cases "get" itself is not documented; this shim refuses lower case,
//    since the docs require upper case.
// 2. Headers. "header 中不能设置 Referer" (the same reference, `header` row), and the
//    network guide's 使用限制 (developers.weixin.qq.com/miniprogram/dev/framework/ability/
//    network.html): "网络请求的 referer header 不可设置", the Referer is always
//    https://servicewechat.com/{appid}/{version}/page-frame.html. The docs name no
//    other forbidden header. A phone drops the caller's Referer silently; this shim
//    fails the call instead (errMsg below is the shim's own), so code that would
//    depend on it cannot pass, and sends the fixed Referer a phone sends.
// 3. Data. "对于 GET 方法的数据，会将数据转换成 query string
//    (encodeURIComponent(k)=encodeURIComponent(v)&...)"; otherwise, with content-type
//    application/json (the default: "content-type 默认为 application/json") the data is
//    JSON-serialized, with application/x-www-form-urlencoded it becomes a query string;
//    a string is sent as it is (the reference's "data 参数说明").
// 4. Answers. Any HTTP status is a success with {data, statusCode, header, errMsg:
//    "request:ok"}; fail only when no answer arrived. `data` is JSON.parse'd when
//    dataType is "json" (the default) and the body parses; the header keys keep the
//    server's spelling. timeout: default and maximum 60 s (network guide, 超时时间).
const WX_METHODS = ['OPTIONS', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'CONNECT'];
const FORBIDDEN_HEADERS = ['referer'];
const REFERER = 'https://servicewechat.com/wxtest0000000001/0/page-frame.html';

// PAYMENT: what the real wx.requestPayment checks, each with its source.
//
// 1. Parameters. timeStamp, nonceStr, package, signType and paySign are all required
//    strings (the wx.requestPayment reference, developers.weixin.qq.com/miniprogram/dev/
//    api/payment/wx.requestPayment.html, 参数 table; research/wechat-pay.md §4.1: timeStamp
//    is Unix seconds AS A STRING). A missing or non-string one fails before anything is
//    shown, in the base library's usual form ("requestPayment:fail parameter error:
//    parameter.timeStamp should be String instead of Number;").
// 2. signType. "RSA" is the only type of APIv3 parameters; the API's default (MD5) and
//    HMAC-SHA256 are v2 (research/wechat-pay.md §4.1). WeChat then verifies paySign:
//    RSA-SHA256 with the merchant's key over "appId\ntimeStamp\nnonceStr\npackage\n"
//    (§4.2), appId being the mini-program's own. A wrong signature or type fails with
//    "requestPayment:fail 支付验证签名失败" (the message developers report for it).
// 3. Outcomes (the reference's 回调结果 table): success {errMsg: "requestPayment:ok"};
//    the user's cancel fail({errMsg: "requestPayment:fail cancel"}); any other failure
//    fail({errMsg: "requestPayment:fail <detail>"}). success means the user paid, not
//    that the merchant was told: the order's state comes from the server.
const PAY_FIELDS = ['timeStamp', 'nonceStr', 'package', 'signType', 'paySign'];

function typeName(v) {
  if (v === undefined) return 'Undefined';
  if (v === null) return 'Null';
  if (Array.isArray(v)) return 'Array';
  const t = typeof v;
  return t.charAt(0).toUpperCase() + t.slice(1);
}

// The parameter refusal of the real wx.requestPayment, or null.
function paymentRefusal(opts) {
  const bad = PAY_FIELDS.filter((k) => typeof opts[k] !== 'string');
  if (bad.length === 0) return null;
  return 'requestPayment:fail parameter error: ' +
    bad.map((k) => `parameter.${k} should be String instead of ${typeName(opts[k])};`).join(' ');
}

function query(data) {
  return Object.keys(data).map((k) => encodeURIComponent(k) + '=' + encodeURIComponent(data[k])).join('&');
}

function headerOf(header, name) {
  const k = Object.keys(header).find((h) => h.toLowerCase() === name);
  return k === undefined ? undefined : header[k];
}

// The refusal of the real wx.request, or null when it would send this request.
function refusal(opts) {
  const method = opts.method === undefined ? 'GET' : opts.method;
  if (typeof method !== 'string' || !WX_METHODS.includes(method)) return 'request:fail method is invalid';
  for (const k of Object.keys(opts.header || {})) {
    if (FORBIDDEN_HEADERS.includes(k.toLowerCase())) {
      return 'request:fail header ' + k + ' cannot be set (wx.request does not send it; shim refusal)';
    }
  }
  return null;
}

function createWx({ fakeUrl, user, appid, notifyTo }) {
  const storage = new Map();
  let merchantKey = null; // the fake's test merchant key, to check paySign with
  const wx = {
    user,
    appid: appid || 'wxtest0000000001',
    // Where the fake delivers the payment notification (the server under test), since
    // the configured notify_url is a public https address.
    notifyTo,
    // The notification's fate (the fake's `notify` object: {mode: "never"}, ...).
    payNotify: null,
    // null: the user pays; 'cancel': the user closes the payment sheet; 'fail': the
    // payment fails (e.g. a declined card).
    payBehaviour: null,
    // Every wx.requestPayment call, as it was made.
    payments: [],
    loginCalls: 0,
    requests: [],
    // Calls the strict wx.request refused before sending anything.
    refused: [],
    // Tests may set beforeAnswer({method, url, header, res}) -> Error|undefined: an
    // Error turns a received answer into fail() (an answer lost on the way back).
    beforeAnswer: null,
    failLogin: false,
    storage,

    login(opts) {
      wx.loginCalls += 1;
      if (wx.failLogin) {
        setTimeout(() => opts.fail && opts.fail({ errMsg: 'login:fail simulated' }), 0);
        return;
      }
      doRequest('POST', fakeUrl + '/__fake/login', JSON.stringify({ user: wx.user }), { 'Content-Type': 'application/json' }, 30000, true, (err, res) => {
        if (err || res.statusCode !== 200) {
          if (opts.fail) opts.fail({ errMsg: 'login:fail ' + (err ? err.message : res.statusCode) });
        } else if (opts.success) {
          opts.success({ code: res.data.code, errMsg: 'login:ok' });
        }
        if (opts.complete) opts.complete();
      });
    },

    request(opts) {
      const refused = refusal(opts);
      if (refused) {
        wx.refused.push({ method: opts.method, url: opts.url, errMsg: refused });
        setTimeout(() => {
          if (opts.fail) opts.fail({ errMsg: refused });
          if (opts.complete) opts.complete();
        }, 0);
        return { abort() {} };
      }
      const method = opts.method || 'GET';
      const header = Object.assign({}, opts.header);
      if (headerOf(header, 'content-type') === undefined) header['content-type'] = 'application/json';
      header.Referer = REFERER;
      wx.requests.push({ method, url: opts.url, header: Object.assign({}, opts.header), data: opts.data });
      let url = opts.url;
      let body;
      const data = opts.data;
      if (method === 'GET') {
        if (data && typeof data === 'object') {
          const q = query(data);
          if (q) url += (url.includes('?') ? '&' : '?') + q;
        } else if (typeof data === 'string' && data) {
          url += (url.includes('?') ? '&' : '?') + data;
        }
      } else if (typeof data === 'string') {
        body = data;
      } else if (data !== undefined && data !== null) {
        const form = /application\/x-www-form-urlencoded/i.test(headerOf(header, 'content-type'));
        body = form ? query(data) : JSON.stringify(data);
      }
      const parseJson = opts.dataType === undefined || opts.dataType === 'json';
      const timeout = Math.min(typeof opts.timeout === 'number' ? opts.timeout : 60000, 60000);
      const hook = wx.beforeAnswer;
      doRequest(method, url, body, header, timeout, parseJson, (err, res) => {
        if (!err && hook) err = hook({ method, url, header: opts.header || {}, res });
        if (err) {
          if (opts.fail) opts.fail({ errMsg: 'request:fail ' + err.message });
        } else if (opts.success) {
          opts.success(res);
        }
        if (opts.complete) opts.complete();
      });
      return { abort() {} };
    },

    requestPayment(opts) {
      wx.payments.push(Object.assign({}, opts));
      const done = (ok, errMsg) => {
        if (ok && opts.success) opts.success({ errMsg });
        if (!ok && opts.fail) opts.fail({ errMsg });
        if (opts.complete) opts.complete({ errMsg });
      };
      const refused = paymentRefusal(opts);
      if (refused) return setTimeout(() => done(false, refused), 0);
      payKey((err, key) => {
        if (err) return done(false, 'requestPayment:fail ' + err.message);
        const signed = `${wx.appid}\n${opts.timeStamp}\n${opts.nonceStr}\n${opts.package}\n`;
        let good = false;
        try {
          good = opts.signType === 'RSA' &&
            crypto.verify('RSA-SHA256', Buffer.from(signed), key, Buffer.from(opts.paySign, 'base64'));
        } catch (e) { good = false; }
        if (!good) return done(false, 'requestPayment:fail 支付验证签名失败');
        if (wx.payBehaviour === 'cancel') return done(false, 'requestPayment:fail cancel');
        if (wx.payBehaviour === 'fail') return done(false, 'requestPayment:fail 支付失败 (simulated by the shim)');
        const prepay = /^prepay_id=(.+)$/.exec(opts.package);
        if (!prepay) return done(false, 'requestPayment:fail package is not prepay_id=...');
        const notify = Object.assign({}, wx.notifyTo ? { to: wx.notifyTo } : {}, wx.payNotify || {});
        const body = JSON.stringify({ prepay_id: prepay[1], notify });
        doRequest('POST', fakeUrl + '/__fake/pay/pay', body, { 'Content-Type': 'application/json' }, 30000, true, (e, res) => {
          if (e) return done(false, 'requestPayment:fail ' + e.message);
          if (res.statusCode !== 200) return done(false, 'requestPayment:fail ' + JSON.stringify(res.data));
          done(true, 'requestPayment:ok');
        });
      });
    },

    setStorageSync(key, value) {
      storage.set(key, JSON.stringify(value));
    },
    getStorageSync(key) {
      return storage.has(key) ? JSON.parse(storage.get(key)) : '';
    },
    removeStorageSync(key) {
      storage.delete(key);
    },
  };

  // The public half of the fake's test merchant key (GET /__fake/pay/stats), fetched once.
  function payKey(cb) {
    if (merchantKey) return cb(null, merchantKey);
    doRequest('GET', fakeUrl + '/__fake/pay/stats', undefined, {}, 30000, true, (err, res) => {
      const pem = !err && res.statusCode === 200 && res.data && res.data.config && res.data.config.merchant_key_pem;
      if (!pem) return cb(new Error('the shim cannot check paySign: the fake WeChat Pay has no test merchant key'));
      try {
        merchantKey = crypto.createPublicKey(pem);
      } catch (e) {
        return cb(e);
      }
      cb(null, merchantKey);
    });
  }
  return wx;
}

// One HTTP exchange; `body` is a string or undefined.
function doRequest(method, url, body, headers, timeout, parseJson, cb) {
  let req;
  try {
    req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let parsed = text;
        if (parseJson) {
          try { parsed = JSON.parse(text); } catch (e) { /* wx hands the string over */ }
        }
        // The server's own spelling of the header names, as wx gives them.
        const header = {};
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) header[res.rawHeaders[i]] = res.rawHeaders[i + 1];
        cb(null, { statusCode: res.statusCode, data: parsed, header, cookies: [], errMsg: 'request:ok' });
      });
    });
  } catch (e) {
    setTimeout(() => cb(e), 0);
    return;
  }
  req.on('error', (e) => cb(e));
  req.setTimeout(timeout, () => req.destroy(new Error('timeout')));
  if (body !== undefined) req.write(body);
  req.end();
}

module.exports = { createWx };
