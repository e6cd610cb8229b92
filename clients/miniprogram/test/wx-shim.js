'use strict';
// A stand-in for the mini-program's `wx` object, enough for wxlogin.js and the
// request libraries people use with it (flyio, weRequest):
// - request: REAL HTTP with node's http module, and AS STRICT AS wx.request: what the
//   real one refuses fails here too (see STRICTNESS below), so that a library relying
//   on something a phone cannot do fails a test instead of failing in production;
// - login: asks the fake WeChat's /__fake/login for a code for `user`, as wx.login
//   would on that user's phone (and, like it, rotates the user's session_key);
// - storage: in memory, values copied through JSON like the real storage.

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

function createWx({ fakeUrl, user }) {
  const storage = new Map();
  const wx = {
    user,
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
