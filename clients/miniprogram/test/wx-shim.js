'use strict';
// A stand-in for the mini-program's `wx` object, enough for wxlogin.js:
// - request: REAL HTTP with node's http module, shaped like wx.request (JSON body,
//   JSON-parsed `data` when it parses, `header`, `statusCode`, fail({errMsg}));
// - login: asks the fake WeChat's /__fake/login for a code for `user`, as wx.login
//   would on that user's phone (and, like it, rotates the user's session_key);
// - storage: in memory, values copied through JSON like the real storage.

const http = require('node:http');
const { URL } = require('node:url');

function createWx({ fakeUrl, user }) {
  const storage = new Map();
  const wx = {
    user,
    loginCalls: 0,
    requests: [],
    failLogin: false,
    storage,

    login(opts) {
      wx.loginCalls += 1;
      if (wx.failLogin) {
        setTimeout(() => opts.fail && opts.fail({ errMsg: 'login:fail simulated' }), 0);
        return;
      }
      doRequest('POST', fakeUrl + '/__fake/login', { user: wx.user }, {}, (err, res) => {
        if (err || res.statusCode !== 200) {
          if (opts.fail) opts.fail({ errMsg: 'login:fail ' + (err ? err.message : res.statusCode) });
        } else if (opts.success) {
          opts.success({ code: res.data.code, errMsg: 'login:ok' });
        }
        if (opts.complete) opts.complete();
      });
    },

    request(opts) {
      const method = (opts.method || 'GET').toUpperCase();
      wx.requests.push({ method, url: opts.url, header: Object.assign({}, opts.header) });
      let url = opts.url;
      let body;
      if (method === 'GET' && opts.data && typeof opts.data === 'object') {
        const u = new URL(url);
        for (const [k, v] of Object.entries(opts.data)) u.searchParams.set(k, String(v));
        url = u.toString();
      } else if (opts.data !== undefined) {
        body = opts.data;
      }
      doRequest(method, url, body, opts.header || {}, (err, res) => {
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

function doRequest(method, url, body, header, cb) {
  let data;
  const headers = Object.assign({}, header);
  if (body !== undefined) {
    data = typeof body === 'string' ? body : JSON.stringify(body);
    if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
  }
  let req;
  try {
    req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let parsed = text;
        try { parsed = JSON.parse(text); } catch (e) { /* wx hands the string over */ }
        cb(null, { statusCode: res.statusCode, data: parsed, header: res.headers, errMsg: 'request:ok' });
      });
    });
  } catch (e) {
    setTimeout(() => cb(e), 0);
    return;
  }
  req.on('error', (e) => cb(e));
  req.setTimeout(30000, () => req.destroy(new Error('timeout')));
  if (data !== undefined) req.write(data);
  req.end();
}

module.exports = { createWx };
