// A minimal mini-program using wxlogin.js. Before opening this folder in WeChat
// DevTools: `cp ../wxlogin.js utils/wxlogin.js` (DevTools only sees files inside the
// project), set BASE_URL to where wxlogin is served, and add that domain to the app's
// "request legal domains" (or tick "do not verify domains" while developing).
const { createClient } = require('./utils/wxlogin.js');

const BASE_URL = 'https://login.example.com';

App({
  // One client for the whole app: pages get it with getApp().auth.
  auth: createClient({ baseUrl: BASE_URL, app: 'main' }),

  onLaunch() {
    // Silent login at launch: no button, no profile needed. The token goes to wx
    // storage; a stored one is reused, so this costs nothing on later launches.
    this.ready = this.auth.me().catch((err) => {
      console.warn('login failed', err.code, err.status, err.requestId);
      return null;
    });
  },
});
