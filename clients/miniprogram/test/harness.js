'use strict';
// Starts the real binaries for the client tests: `wxlogin fake-wechat` and
// `wxlogin serve` on loopback ephemeral ports, with a temporary database. The binary
// comes from $WXLOGIN_BIN (`cargo test` sets it; by hand:
// WXLOGIN_BIN=target/debug/wxlogin node --test clients/miniprogram/test/).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const http = require('node:http');

const APPID = 'wxtest0000000001';
const SECRET = 'test-secret';
// The one product the test server sells, and the notify_url it tells WeChat Pay.
const PRODUCT = { id: 'vip30', description: 'VIP, 30 days', amount: 990 };
const NOTIFY_URL = 'https://login.example.com/v1/pay/notify';

function bin() {
  const b = process.env.WXLOGIN_BIN;
  if (!b) {
    throw new Error('WXLOGIN_BIN is not set: point it at the wxlogin binary, e.g. ' +
      'WXLOGIN_BIN=target/debug/wxlogin node --test clients/miniprogram/test/ (cargo test sets it)');
  }
  if (!fs.existsSync(b)) throw new Error(`WXLOGIN_BIN=${b} does not exist; run cargo build first`);
  return b;
}

// Spawns `wxlogin args...` and resolves {child, url} once it prints its listening line.
function startListening(args, env, logPath) {
  return new Promise((resolve, reject) => {
    const log = fs.openSync(logPath, 'w');
    const child = spawn(bin(), args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', log] });
    fs.closeSync(log);
    const lines = readline.createInterface({ input: child.stdout });
    let done = false;
    const timer = setTimeout(() => fail(new Error('no listening line within 20 s')), 20000);
    function fail(err) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      let text = '';
      try { text = fs.readFileSync(logPath, 'utf8'); } catch (e) { /* none */ }
      reject(new Error(`wxlogin ${args[0]}: ${err.message}; stderr:\n${text}`));
    }
    lines.on('line', (line) => {
      const m = /^listening on (http:\/\/\S+)/.exec(line);
      if (m && !done) {
        done = true;
        clearTimeout(timer);
        resolve({ child, url: m[1] });
      }
    });
    child.on('error', fail);
    child.on('exit', (code, sig) => fail(new Error(`exited (${code === null ? sig : code}) before listening`)));
  });
}

// A plain JSON HTTP call, for the tests' own side channels (fake control, revocation).
function call(method, url, body, headers) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const h = Object.assign({}, headers || {});
    if (data !== undefined) h['Content-Type'] = 'application/json';
    const req = http.request(url, { method, headers: h }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.setTimeout(30000, () => req.destroy(new Error('timeout')));
    if (data !== undefined) req.write(data);
    req.end();
  });
}

// A [pay] table for the fake WeChat Pay's test merchant, whose keys the fake publishes at
// GET /__fake/pay/stats; the keys go into files in `dir`. notify_url is a public-looking
// https address, as WeChat Pay requires: the shim's requestPayment tells the fake to
// deliver the notification to the server under test instead.
async function payConfig(dir, fakeUrl) {
  const r = await call('GET', fakeUrl + '/__fake/pay/stats');
  const c = r.json && r.json.config;
  if (r.status !== 200 || !c || !c.merchant_key_pem) throw new Error(`fake /__fake/pay/stats: ${r.status} ${r.text}`);
  fs.writeFileSync(path.join(dir, 'apiclient_key.pem'), c.merchant_key_pem, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'pub_key.pem'), c.public_key_pem);
  return `[pay]
mchid = "${c.mchid}"
merchant_serial = "${c.merchant_serial}"
merchant_key_file = "apiclient_key.pem"
apiv3_key = "${c.apiv3_key}"
public_key_file = "pub_key.pem"
public_key_id = "${c.public_key_id}"
notify_url = "${NOTIFY_URL}"
api_base = "${fakeUrl}"

[[pay.products]]
id = "${PRODUCT.id}"
description = "${PRODUCT.description}"
amount = ${PRODUCT.amount}
`;
}

async function start() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxlogin-js-'));
  const procs = [];
  const h = { dir, procs };
  try {
    const fake = await startListening(
      ['fake-wechat', '--listen', '127.0.0.1:0', '--app', `${APPID}:${SECRET}`], {}, path.join(dir, 'fake.log'));
    procs.push(fake.child);
    h.fakeUrl = fake.url;
    const payTable = await payConfig(dir, fake.url);
    const config = path.join(dir, 'appliance.toml');
    fs.writeFileSync(config, `
[server]
listen = "127.0.0.1:0"
workers = 4
wechat_workers = 8

[database]
path = "data/wxlogin.db"

[wechat]
api_base = "${fake.url}"
timeout_ms = 2000
retries = 1

[rate_limit]
login_per_ip_per_minute = 10000

[[apps]]
name = "main"
appid = "${APPID}"

${payTable}`);
    const server = await startListening(['serve', '--config', config], { WXLOGIN_SECRET_MAIN: SECRET },
      path.join(dir, 'serve.log'));
    procs.push(server.child);
    h.baseUrl = server.url;
  } catch (e) {
    await stop(h);
    throw e;
  }
  h.call = call;
  h.stop = () => stop(h);
  h.notifyUrl = h.baseUrl + '/v1/pay/notify';
  // Control endpoints of the fake WeChat.
  h.fake = async (p, body) => {
    const r = await call('POST', h.fakeUrl + p, body);
    if (r.status !== 200) throw new Error(`fake ${p}: ${r.status} ${r.text}`);
    return r.json;
  };
  // Does the server have this endpoint yet? (404 not_found = not merged yet.)
  h.has = async (method, p) => (await call(method, h.baseUrl + p, {})).status !== 404;
  return h;
}

function stop(h) {
  const waits = h.procs.map((child) => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 10000);
    child.on('exit', () => { clearTimeout(t); resolve(); });
    child.kill('SIGTERM');
  }));
  return Promise.all(waits).then(() => {
    fs.rmSync(h.dir, { recursive: true, force: true });
  });
}

module.exports = { start, call, APPID, SECRET, PRODUCT };
