const { auth } = getApp();

function describe(err) {
  // err.code is stable (see the wxlogin API contract); requestId helps the server logs.
  return `${err.code} (${err.status})${err.requestId ? ' ' + err.requestId : ''}`;
}

Page({
  data: { user: null, error: '' },

  async onLoad() {
    await getApp().ready;
    this.refresh();
  },

  async refresh() {
    try {
      this.setData({ user: await auth.me(), error: '' });
    } catch (err) {
      this.setData({ user: null, error: describe(err) });
    }
  },

  async login() {
    try {
      await auth.login();
      this.refresh();
    } catch (err) {
      this.setData({ error: describe(err) });
    }
  },

  async saveNickname(e) {
    const nickname = (e.detail.value.nickname || '').trim();
    if (!nickname) return;
    try {
      this.setData({ user: await auth.updateProfile({ nickname }), error: '' });
    } catch (err) {
      // 422 invalid_field: empty or longer than 64 characters.
      this.setData({ error: describe(err) });
    }
  },

  async onPhone(e) {
    try {
      await auth.getPhoneNumber(e); // the event's detail.code; phone_denied if refused
      this.refresh();
    } catch (err) {
      this.setData({ error: describe(err) });
    }
  },

  async logout() {
    await auth.logout(); // storage is cleared even when offline
    this.setData({ user: null, error: '' });
  },
});
