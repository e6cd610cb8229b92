'use strict';
// pay(): order, wx.requestPayment on the strict shim (which pays through the fake WeChat
// Pay), then ?sync=true until paid; cancel, failure, pending, and no amount ever sent.
// Until the server's pay endpoints are merged (POST /v1/pay/orders answers 404
// not_found), the tests that need them are skipped, and they run by themselves once merged.

const test = require('node:test');
const assert = require('node:assert/strict');
const { start, PRODUCT } = require('./harness.js');
const { createWx } = require('./wx-shim.js');
const { createClient } = require('../wxlogin.js');

const NO_PAY = 'the server has no /v1/pay/orders yet (the pay endpoints are not merged)';
let h;
let hasPay = false;

test.before(async () => {
  h = await start();
  hasPay = await h.has('POST', '/v1/pay/orders');
});
test.after(async () => { if (h) await h.stop(); });

function client(user) {
  const wx = createWx({ fakeUrl: h.fakeUrl, user, notifyTo: h.notifyUrl });
  const c = createClient({ baseUrl: h.baseUrl, app: 'main', wx });
  return { wx, c };
}

// Every request the client made to the pay endpoints.
function payRequests(wx) {
  return wx.requests.filter((r) => r.url.includes('/v1/pay/'));
}

async function rejection(p) {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

async function deliveries(outTradeNo) {
  const r = await h.call('GET', h.fakeUrl + '/__fake/pay/deliveries?out_trade_no=' + encodeURIComponent(outTradeNo));
  assert.equal(r.status, 200, r.text);
  return r.json.deliveries;
}

test('pay({product}) pays end to end; the server never receives an amount', async (t) => {
  if (!hasPay) return t.skip(NO_PAY);
  const { wx, c } = client('pay-ann');
  const order = await c.pay({ product: PRODUCT.id });
  assert.equal(order.state, 'paid');
  assert.equal(order.product, PRODUCT.id);
  assert.equal(order.amount, PRODUCT.amount);
  assert.equal(typeof order.transaction_id, 'string');

  assert.equal(wx.payments.length, 1);
  const p = wx.payments[0];
  assert.equal(p.signType, 'RSA');
  assert.match(p.package, /^prepay_id=wx/);
  assert.equal(typeof p.timeStamp, 'string');

  const sent = payRequests(wx);
  assert.deepEqual(sent[0], Object.assign({}, sent[0], { method: 'POST', data: { product: PRODUCT.id } }));
  for (const r of sent) {
    assert.ok(!/amount/.test(JSON.stringify(r.data || {}) + r.url), `no amount from the client: ${JSON.stringify(r)}`);
  }
  assert.ok(sent.slice(1).every((r) => r.method === 'GET' && r.url.endsWith('?sync=true')), JSON.stringify(sent));

  // WeChat Pay's notification reached the server and was accepted.
  let got = [];
  for (let i = 0; i < 50 && !got.some((d) => d.status === 204); i++) {
    got = await deliveries(order.out_trade_no);
    if (!got.some((d) => d.status === 204)) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(got.some((d) => d.status === 204), JSON.stringify(got));
});

test('a notification never delivered: ?sync=true finds the payment', async (t) => {
  if (!hasPay) return t.skip(NO_PAY);
  const { wx, c } = client('pay-ben');
  wx.payNotify = { mode: 'never' };
  const order = await c.pay({ product: PRODUCT.id });
  assert.equal(order.state, 'paid');
  assert.deepEqual(await deliveries(order.out_trade_no), []);
});

test('the user cancels: pay_cancelled with the order; pay({outTradeNo}) pays it later', async (t) => {
  if (!hasPay) return t.skip(NO_PAY);
  const { wx, c } = client('pay-cat');
  wx.payBehaviour = 'cancel';
  const err = await rejection(c.pay({ product: PRODUCT.id }));
  assert.equal(err.code, 'pay_cancelled');
  assert.equal(err.message, 'requestPayment:fail cancel');
  assert.equal(err.order.state, 'created');
  const no = err.order.out_trade_no;
  assert.equal(payRequests(wx).length, 1, 'no polling after a cancel');

  wx.payBehaviour = null;
  const order = await c.pay({ outTradeNo: no });
  assert.equal(order.out_trade_no, no);
  assert.equal(order.state, 'paid');
  const fresh = payRequests(wx)[1];
  assert.equal(fresh.method, 'POST');
  assert.ok(fresh.url.endsWith('/v1/pay/orders/' + no + '/payment'), fresh.url);
  assert.equal(fresh.data, undefined, 'nothing but the order number is sent');

  // Paid: no more payment parameters for it.
  const again = await rejection(c.pay({ outTradeNo: no }));
  assert.equal(again.code, 'order_not_payable');
  assert.equal(again.status, 409);
});

test('a failed payment: pay_failed, and the order stays created', async (t) => {
  if (!hasPay) return t.skip(NO_PAY);
  const { wx, c } = client('pay-dan');
  wx.payBehaviour = 'fail';
  const err = await rejection(c.pay({ product: PRODUCT.id }));
  assert.equal(err.code, 'pay_failed');
  assert.match(err.message, /^requestPayment:fail /);
  assert.equal(err.order.state, 'created');
});

test('an unknown product is the server\'s unknown_product; nothing is paid', async (t) => {
  if (!hasPay) return t.skip(NO_PAY);
  const { wx, c } = client('pay-eve');
  const err = await rejection(c.pay({ product: 'no-such-product' }));
  assert.equal(err.code, 'unknown_product');
  assert.equal(err.status, 400);
  assert.equal(wx.payments.length, 0);
  await assert.rejects(c.pay({ product: PRODUCT.id, outTradeNo: 'W1234567' }), /one of them/);
  await assert.rejects(c.pay({ amount: 1 }), /one of them/);
});

test('WeChat Pay never confirms: pay_pending after bounded polling, with the order', async (t) => {
  if (!hasPay) return t.skip(NO_PAY);
  const { wx, c } = client('pay-fay');
  wx.payNotify = { mode: 'never' };
  await h.fake('/__fake/pay/behaviour', { fail: { api: 'query_out_trade_no', error: 'SYSTEM_ERROR', times: 1000 } });
  try {
    const err = await rejection(c.pay({ product: PRODUCT.id }));
    assert.equal(err.code, 'pay_pending');
    assert.equal(err.order.state, 'created');
    const polls = payRequests(wx).filter((r) => r.method === 'GET');
    assert.equal(polls.length, 6, 'bounded');
  } finally {
    await h.fake('/__fake/pay/behaviour', { clear_failures: true });
  }
});

test('the shim\'s requestPayment is as strict as the real one', async () => {
  const wx = createWx({ fakeUrl: h.fakeUrl, user: 'strict' });
  const pay = (opts) => new Promise((resolve) => {
    wx.requestPayment(Object.assign({}, opts, {
      success: (r) => resolve({ ok: true, errMsg: r.errMsg }),
      fail: (r) => resolve({ ok: false, errMsg: r.errMsg }),
    }));
  });
  const good = { timeStamp: '1796202600', nonceStr: 'n0nce', package: 'prepay_id=wx123', signType: 'RSA', paySign: 'AAAA' };
  let r = await pay(Object.assign({}, good, { timeStamp: 1796202600 }));
  assert.deepEqual(r, { ok: false, errMsg: 'requestPayment:fail parameter error: parameter.timeStamp should be String instead of Number;' });
  r = await pay({ timeStamp: '1', nonceStr: 'n', package: 'prepay_id=wx1' });
  assert.equal(r.ok, false);
  assert.match(r.errMsg, /parameter\.signType should be String instead of Undefined;.*parameter\.paySign/);
  r = await pay(good);
  assert.deepEqual(r, { ok: false, errMsg: 'requestPayment:fail 支付验证签名失败' }, 'a paySign that does not verify');
  assert.equal(wx.payments.length, 3);
});
