// wxlogin with flyio (npm "flyio", tested with 0.6.14), unchanged: Bearer header, JSON 401s.
// One login for callers that arrive together, the token in wx storage, and on a 401
// (session expired or revoked) one new login and one retry.
const Fly = require('flyio/dist/npm/wx');

function createApi({ baseURL, app, storageKey = 'wxlogin.token' }) {
  const api = new Fly(); // your requests
  const auth = new Fly(); // POST /v1/login only: no interceptors, never locked
  api.config.baseURL = baseURL;
  auth.config.baseURL = baseURL;

  function login() {
    return new Promise((resolve, reject) => wx.login({ success: (r) => resolve(r.code), fail: reject }))
      .then((code) => auth.post('/v1/login', { code, app }))
      .then((res) => {
        wx.setStorageSync(storageKey, res.data.token);
        return res.data.token;
      });
  }

  // No token yet: lock (requests made meanwhile wait here, then find the token), log in.
  api.interceptors.request.use(function (request) {
    const token = wx.getStorageSync(storageKey);
    if (token) {
      request.headers.Authorization = 'Bearer ' + token;
      return request;
    }
    this.lock();
    return login().then(
      (t) => {
        this.unlock();
        request.headers.Authorization = 'Bearer ' + t;
        return request;
      },
      (err) => {
        this.unlock();
        return Promise.reject(err);
      }
    );
  });

  // 401: forget the token (unless another caller already replaced it) and send the
  // request once more; the request interceptor logs in when needed. Never a loop.
  api.interceptors.response.use(
    (response) => response,
    (err) => {
      const request = err.request;
      if (err.status !== 401 || !request || request.wxloginRetried) return Promise.reject(err);
      request.wxloginRetried = true;
      const used = String(request.headers.Authorization || '').replace(/^Bearer /, '');
      if (wx.getStorageSync(storageKey) === used) wx.removeStorageSync(storageKey);
      return api.request(request);
    }
  );

  return api;
}

module.exports = { createApi };
