// wxlogin with weRequest (github.com/IvinWu/weRequest, 1.x). Two things differ from its
// defaults: the code exchange must be a POST (wxlogin's /v1/login takes no GET), and
// weRequest looks for an expired session only in 200 answers (loginTrigger) while
// wxlogin answers 401, so the stored session is cleared on a 401: the call that met it
// fails (retry it), and the next call logs in again.
function initWeRequest(weRequest, { baseURL, app }) {
  weRequest.init({
    urlPerfix: baseURL, // (sic)
    sessionName: 'wxlogin_token',
    codeToSession: {
      url: '/v1/login',
      method: 'POST',
      data: { app },
      success: (res) => res.token,
    },
    doNotCheckSession: true, // the server keeps the session_key: no wx.checkSession needed
    successData: (res) => res,
    setHeader: () => {
      const token = weRequest.getSession();
      return token ? { Authorization: 'Bearer ' + token } : {};
    },
    // The token travels in the header only. weRequest would also add it to every body
    // (wxlogin refuses unknown fields) and query string (access logs keep those).
    beforeSend: (obj) => {
      if (obj.data && typeof obj.data === 'object') delete obj.data.wxlogin_token;
      obj.url = obj.url.replace(/([?&])wxlogin_token=[^&]*&?/, '$1').replace(/[?&]$/, '');
      return obj;
    },
    errorCallback: (obj, res) => {
      if (res && res.statusCode === 401) weRequest.setSession('');
    },
  });
}

module.exports = { initWeRequest };
