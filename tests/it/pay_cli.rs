//! The WeChat Pay command line, with the real binary on a temporary database whose
//! orders are made through the store API: `orders list | show | sync`, and
//! `check --live` against the fake WeChat Pay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};
use wxlogin::pay::{JsapiOrder, Merchant, PayClient, PayVerifier, SigningKey, VerifyingKey};
use wxlogin::secrets::Secret;
use wxlogin::store::{Caller, NewLogin, NewOrder, Payment, Store, Terms};

use crate::support::*;

const MCHID: &str = "1900007291";
const SERIAL: &str = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB";
const MERCHANT_KEY: &str = include_str!("../../src/pay/testdata/wechat_docs_merchant_key.pem");
const OTHER_KEY: &str = include_str!("../../src/pay/testdata/rsa3072_key.pem");
const PAY_PUBLIC_KEY: &str = include_str!("../../src/pay/testdata/fake_wechatpay_platform_public_key.pem");
const OTHER_PUBLIC_KEY: &str = include_str!("../../src/pay/testdata/wechat_docs_pay_public_key.pem");
const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0000000000000000000000000000000001";
const APIV3: &str = "wxloginFakeWeChatPayApiV3Key0001";
const NOTIFY_URL: &str = "https://login.example.com/v1/pay/notify";

/// An appliance.toml in `dir` for the database `dir/wxlogin.db` (or PostgreSQL: see
/// `dir_database`), WeChat (and WeChat Pay)
/// at `base`, and with `pay` (a `[pay]` table, or "") appended.
fn config(dir: &Path, base: &str, pay: &str) -> PathBuf {
    let path = dir.join("appliance.toml");
    let text = format!(
        "{db}\n[wechat]\napi_base = \"{base}\"\ntimeout_ms = 2000\nretries = 0\n\n\
         [[apps]]\nname = \"main\"\nappid = \"{APPID}\"\n\n{pay}",
        db = dir_database_table(dir, "wxlogin.db")
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A `[pay]` table for the fake's test merchant, signing with `merchant_key` and trusting
/// `public_key`, both written into `dir`.
fn pay_table(dir: &Path, base: &str, merchant_key: &str, public_key: &str) -> String {
    std::fs::write(dir.join("apiclient_key.pem"), merchant_key).unwrap();
    std::fs::write(dir.join("pub_key.pem"), public_key).unwrap();
    format!(
        "[pay]\nmchid = \"{MCHID}\"\nmerchant_serial = \"{SERIAL}\"\nmerchant_key_file = \"apiclient_key.pem\"\n\
         apiv3_key = \"{APIV3}\"\npublic_key_file = \"pub_key.pem\"\npublic_key_id = \"{PUBLIC_KEY_ID}\"\n\
         notify_url = \"{NOTIFY_URL}\"\napi_base = \"{base}\"\n\n\
         [[pay.products]]\nid = \"vip30\"\ndescription = \"VIP, 30 days\"\namount = 990\n"
    )
}

/// A user of app "main"; returns its id.
fn user(store: &Store, openid: &str, n: u8) -> i64 {
    store
        .record_login(&NewLogin {
            app: "main",
            openid,
            unionid: None,
            session_key: &Secret::new("k"),
            code_hash: [n; 32],
            token_hash: [n; 32],
            terms: Terms { now: wxlogin::store::now(), ttl: 3600, max_lifetime: 7200, max_per_user: 50 },
            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        })
        .unwrap()
        .user
        .id
}

fn order(store: &Store, no: &str, user_id: i64, openid: &str, amount: i64) {
    let now = wxlogin::store::now();
    store
        .create_order(&NewOrder {
            out_trade_no: no,
            app: "main",
            user_id,
            openid,
            product: Some("vip30"),
            description: "VIP, 30 days",
            amount,
            attach: None,
            created_at: now,
            expires_at: now + 7200,
        })
        .unwrap();
}

fn lines_with<'a>(out: &'a str, word: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.split_whitespace().any(|w| w == word)).collect()
}

#[test]
fn orders_without_payments_configured_say_so_in_one_line() {
    let dir = TempDir::new("orders-off");
    dir_store(dir.path(), "wxlogin.db");
    let cfg = config(dir.path(), "http://127.0.0.1:9", "");
    let cfg = cfg.to_str().unwrap();
    for args in [
        vec!["orders", "list"],
        vec!["orders", "show", "W1234567"],
        vec!["orders", "sync", "W1234567"],
        vec!["orders", "refund", "W1234567", "--amount", "100"],
    ] {
        let args: Vec<&str> = args.into_iter().chain(["--config", cfg]).collect();
        let (code, out, err) = run_bare(&args, &[]);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("payments are not configured"), "{err}");
    }
    let (code, _, err) = run_bare(&["orders", "refund", "W1234567", "--config", cfg], &[]);
    assert_eq!(code, 2, "--amount is required: {err}");
    let (code, _, err) = run_bare(&["orders", "--config", cfg], &[]);
    assert_eq!(code, 2, "{err}");
    let (_, help, _) = run_bare(&["help"], &[]);
    assert!(help.contains("wxlogin orders  list [--state S] [--user ID] [--limit N]"), "{help}");
    assert!(help.contains("wxlogin orders  refund OUT_TRADE_NO --amount FEN [--reason TEXT]"), "{help}");
}

#[test]
fn orders_list_and_show_read_the_database_without_the_keys() {
    let dir = TempDir::new("orders-list");
    let store = dir_store(dir.path(), "wxlogin.db");
    let ann = user(&store, "o-ann", 1);
    let ben = user(&store, "o-ben", 2);
    order(&store, "Wann-paid-01", ann, "o-ann", 990);
    order(&store, "Wann-open-02", ann, "o-ann", 990);
    order(&store, "Wben-closed-3", ben, "o-ben", 12345);
    let now = wxlogin::store::now();
    let paid = Payment {
        out_trade_no: "Wann-paid-01",
        transaction_id: "4200000001202612020000000001",
        amount_total: 990,
        paid_at: now,
    };
    store.apply_payment(&paid, now).unwrap();
    store.close_order("Wben-closed-3", now).unwrap();
    drop(store);
    // The merchant key comes from the environment, which an operator's shell lacks.
    let text = pay_table(dir.path(), "http://127.0.0.1:9", MERCHANT_KEY, PAY_PUBLIC_KEY)
        .replace("merchant_key_file = \"apiclient_key.pem\"\n", "");
    let cfg = config(dir.path(), "http://127.0.0.1:9", &text);
    let cfg = cfg.to_str().unwrap();

    let (code, out, err) = run_bare(&["orders", "list", "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("OUT_TRADE_NO") && out.contains("3 order(s)"), "{out}");
    let newest = out.lines().nth(1).unwrap();
    assert!(newest.starts_with("Wben-closed-3") && newest.contains("123.45 CNY"), "newest first: {out}");
    assert!(lines_with(&out, "Wann-paid-01")[0].contains("paid"), "{out}");
    let (_, out, _) = run_bare(&["orders", "list", "--state", "created", "--config", cfg], &[]);
    assert!(out.contains("Wann-open-02") && out.contains("1 order(s)"), "{out}");
    let (_, out, _) = run_bare(&["orders", "list", "--user", &ann.to_string(), "--limit", "1", "--config", cfg], &[]);
    assert!(out.contains("Wann-open-02") && !out.contains("Wann-paid-01") && out.contains("--limit N"), "{out}");
    let (code, _, err) = run_bare(&["orders", "list", "--state", "unpaid", "--config", cfg], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--state takes created, paid, closed or refunded"), "{err}");

    let (code, out, err) = run_bare(&["orders", "show", "Wann-paid-01", "--config", cfg], &[]);
    assert_eq!(code, 0, "{err}");
    for want in
        ["state           paid", "4200000001202612020000000001", "990 fen (9.90 CNY)", "order.paid", "1 event(s)"]
    {
        assert!(out.contains(want), "{want}: {out}");
    }
    let (_, out, _) = run_bare(&["orders", "show", "Wben-closed-3", "--config", cfg], &[]);
    assert!(out.contains("state           closed") && out.contains("order.closed"), "{out}");
    let (code, _, err) = run_bare(&["orders", "show", "Wnobody-0000", "--config", cfg], &[]);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "wxlogin: no order `Wnobody-0000`");

    // sync must talk to WeChat Pay: without the key it says so, in one line.
    let (code, _, err) = run_bare(&["orders", "sync", "Wann-open-02", "--config", cfg], &[]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("[pay] keys could not be loaded"), "{err}");
}

/// A client of the fake WeChat Pay as the test merchant, to place and close orders there.
fn merchant_client(base: &str) -> PayClient {
    let merchant = Merchant::new(MCHID, SERIAL, SigningKey::from_pem(MERCHANT_KEY).unwrap()).unwrap();
    let verifier = PayVerifier::new(PUBLIC_KEY_ID, VerifyingKey::from_pem(PAY_PUBLIC_KEY).unwrap());
    PayClient::new(base, Duration::from_secs(5), 0, Arc::new(merchant), Arc::new(verifier))
}

fn place(client: &PayClient, no: &str, openid: &str, amount: i64) -> String {
    client
        .jsapi(&JsapiOrder {
            appid: APPID,
            mchid: MCHID,
            description: "VIP, 30 days",
            out_trade_no: no,
            time_expire: wxlogin::store::now() + 7200,
            attach: None,
            notify_url: NOTIFY_URL,
            amount_total: amount,
            payer_openid: openid,
        })
        .unwrap()
}

fn start_fake() -> FakeWeChat {
    FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
    )
    .unwrap()
}

#[test]
fn orders_sync_applies_what_wechat_pay_says_once() {
    let fake = start_fake();
    let base = fake.base_url();
    let dir = TempDir::new("orders-sync");
    let store = dir_store(dir.path(), "wxlogin.db");
    let ann = user(&store, "o-ann", 1);
    for no in ["Wsync-paid-01", "Wsync-closed-02", "Wsync-never-03"] {
        order(&store, no, ann, "o-ann", 990);
    }
    let cfg = config(dir.path(), &base, &pay_table(dir.path(), &base, MERCHANT_KEY, PAY_PUBLIC_KEY));
    let cfg = cfg.to_str().unwrap();
    let pay = merchant_client(&base);

    // Paid at WeChat Pay, its notification never delivered: sync finds it.
    place(&pay, "Wsync-paid-01", "o-ann", 990);
    let r = send(
        &format!("{base}/__fake/pay/pay"),
        "POST",
        None,
        Some(serde_json::json!({"out_trade_no": "Wsync-paid-01", "notify": {"mode": "never"}}).to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let transaction_id = r.json()["transaction_id"].as_str().unwrap().to_string();
    let (code, out, err) = run_bare(&["orders", "sync", "Wsync-paid-01", "--config", cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SUCCESS") && out.contains("created -> paid"), "{out}");
    let o = store.order("Wsync-paid-01").unwrap().unwrap();
    assert_eq!((o.state.as_str(), o.transaction_id.as_deref()), ("paid", Some(transaction_id.as_str())));
    // Again: nothing changes, no second event.
    let (code, out, _) = run_bare(&["orders", "sync", "Wsync-paid-01", "--config", cfg], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("already paid, unchanged"), "{out}");
    let events = store.order_events("Wsync-paid-01").unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["order.paid"]);

    // Closed at WeChat Pay: closed here.
    place(&pay, "Wsync-closed-02", "o-ann", 990);
    pay.close("Wsync-closed-02").unwrap();
    let (code, out, err) = run_bare(&["orders", "sync", "Wsync-closed-02", "--config", cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("CLOSED") && out.contains("created -> closed"), "{out}");
    assert_eq!(store.order("Wsync-closed-02").unwrap().unwrap().state.as_str(), "closed");
    let (_, out, _) = run_bare(&["orders", "sync", "Wsync-closed-02", "--config", cfg], &[]);
    assert!(out.contains("already closed, unchanged"), "{out}");
    assert_eq!(store.order_events("Wsync-closed-02").unwrap().len(), 1, "one order.closed event");

    // Never placed there: WeChat Pay does not know it; nothing changes.
    let (code, out, err) = run_bare(&["orders", "sync", "Wsync-never-03", "--config", cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ORDER_NOT_EXIST") && out.contains("unchanged, created"), "{out}");
    assert_eq!(store.order("Wsync-never-03").unwrap().unwrap().state.as_str(), "created");

    // An answer that does not verify with the key we trust is not believed.
    std::fs::write(dir.path().join("other_pub.pem"), OTHER_PUBLIC_KEY).unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(cfg).unwrap().replace("\"pub_key.pem\"", "\"other_pub.pem\"");
    std::fs::write(&bad, text).unwrap();
    let bad = bad.to_str().unwrap();
    let (code, _, err) = run_bare(&["orders", "sync", "Wsync-never-03", "--config", bad], &[]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("did not verify") && err.contains("pay.public_key_id"), "{err}");
}

/// `pay_table` for a merchant on platform certificates only (no public key), with the
/// given APIv3 key.
fn certificates_table(dir: &Path, base: &str, apiv3: &str) -> String {
    pay_table(dir, base, MERCHANT_KEY, PAY_PUBLIC_KEY)
        .replace(&format!("public_key_file = \"pub_key.pem\"\npublic_key_id = \"{PUBLIC_KEY_ID}\"\n"), "")
        .replace(APIV3, apiv3)
        .replace("[pay]\n", "[pay]\nplatform_certificates = true\n")
}

fn pay_line(out: &str, prefix: &str) -> String {
    out.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_string()
}

#[test]
fn check_live_explains_each_bad_merchant_setting_by_its_key() {
    let fake = start_fake();
    let base = fake.base_url();
    let secret = [("WXLOGIN_SECRET_MAIN", SECRET)];
    let check = |cfg: &Path| run_bare(&["check", "--live", "--config", cfg.to_str().unwrap()], &secret);
    let r = send(&format!("{base}/__fake/pay/platform"), "POST", None, Some(r#"{"mode":"certificate"}"#.into()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);

    // Certificates only, all good: fetched, decrypted, verified, then the query verifies
    // with the certificate that signs it.
    let dir = TempDir::new("check-cert-ok");
    let cfg = config(dir.path(), &base, &certificates_table(dir.path(), &base, APIV3));
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{out}{err}");
    let certs = pay_line(&out, "wechat pay: platform certificates:");
    assert!(certs.contains("OK, 2 fetched") && certs.contains("1E67BC1813BE76B106AB44097F2EC661555DD8DB"), "{out}");
    assert!(pay_line(&out, "wechat pay: merchant").contains("OK"), "{out}");

    // Another APIv3 key: the certificates do not decrypt; named.
    let dir = TempDir::new("check-cert-apiv3");
    let cfg = config(dir.path(), &base, &certificates_table(dir.path(), &base, "0123456789abcdef0123456789abcdef"));
    let (code, out, _) = check(&cfg);
    assert_eq!(code, 1, "{out}");
    let certs = pay_line(&out, "wechat pay: platform certificates:");
    assert!(certs.contains("FAILED") && certs.contains("do not decrypt with pay.apiv3_key"), "{out}");

    // Certificates only and the wrong merchant key: WeChat Pay's SIGN_ERROR cannot be
    // verified yet (no key held), but is still explained, naming the key file.
    let dir = TempDir::new("check-cert-sign");
    let table = certificates_table(dir.path(), &base, APIV3);
    std::fs::write(dir.path().join("apiclient_key.pem"), OTHER_KEY).unwrap();
    let (code, out, _) = check(&config(dir.path(), &base, &table));
    assert_eq!(code, 1, "{out}");
    let certs = pay_line(&out, "wechat pay: platform certificates:");
    assert!(certs.contains("SIGN_ERROR") && certs.contains("pay.merchant_key_file"), "{out}");

    // The merchant's serial is not its certificate's: SIGN_ERROR, naming the serial.
    let r = send(&format!("{base}/__fake/pay/platform"), "POST", None, Some(r#"{"mode":"public_key"}"#.into()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let dir = TempDir::new("check-serial");
    let table = pay_table(dir.path(), &base, MERCHANT_KEY, PAY_PUBLIC_KEY).replace(SERIAL, "0123456789ABCDEF");
    let (code, out, _) = check(&config(dir.path(), &base, &table));
    assert_eq!(code, 1, "{out}");
    let line = pay_line(&out, "wechat pay: merchant");
    assert!(line.contains("SIGN_ERROR") && line.contains("pay.merchant_serial"), "{out}");

    // A public key beside the certificates: a wrong APIv3 key is still found (the
    // refusal to decrypt is the APIv3 key's, whatever verifies the answer).
    let dir = TempDir::new("check-both-apiv3");
    let table = pay_table(dir.path(), &base, MERCHANT_KEY, PAY_PUBLIC_KEY)
        .replace(APIV3, "0123456789abcdef0123456789abcdef")
        .replace("[pay]\n", "[pay]\nplatform_certificates = true\n");
    let (code, out, _) = check(&config(dir.path(), &base, &table));
    assert_eq!(code, 1, "{out}");
    assert!(pay_line(&out, "wechat pay: platform certificates:").contains("pay.apiv3_key"), "{out}");
}

#[test]
fn orders_sync_with_certificates_only_fetches_them_first() {
    let fake = start_fake();
    let base = fake.base_url();
    let r = send(&format!("{base}/__fake/pay/platform"), "POST", None, Some(r#"{"mode":"certificate"}"#.into()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let dir = TempDir::new("orders-sync-certs");
    let store = dir_store(dir.path(), "wxlogin.db");
    let ann = user(&store, "o-ann", 1);
    order(&store, "Wsync-cert-01", ann, "o-ann", 990);
    let cfg = config(dir.path(), &base, &certificates_table(dir.path(), &base, APIV3));
    let (code, out, err) = run_bare(&["orders", "sync", "Wsync-cert-01", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ORDER_NOT_EXIST") && out.contains("unchanged, created"), "a verified answer: {out}{err}");
}

#[test]
fn check_live_signs_a_query_and_explains_a_refusal() {
    let fake = start_fake();
    let base = fake.base_url();
    let secret = [("WXLOGIN_SECRET_MAIN", SECRET)];

    let dir = TempDir::new("check-pay-ok");
    let cfg = config(dir.path(), &base, &pay_table(dir.path(), &base, MERCHANT_KEY, PAY_PUBLIC_KEY));
    let (code, out, err) = run_bare(&["check", "--live", "--config", cfg.to_str().unwrap()], &secret);
    assert_eq!(code, 0, "{out}{err}");
    let line = out.lines().find(|l| l.starts_with("wechat pay:")).unwrap_or_default();
    assert!(line.contains("merchant 1900007291: OK") && line.contains("ORDER_NOT_EXIST"), "{out}");

    let dir = TempDir::new("check-pay-sign");
    let cfg = config(dir.path(), &base, &pay_table(dir.path(), &base, OTHER_KEY, PAY_PUBLIC_KEY));
    let (code, out, err) = run_bare(&["check", "--live", "--config", cfg.to_str().unwrap()], &secret);
    assert_eq!(code, 1, "{out}{err}");
    let line = out.lines().find(|l| l.starts_with("wechat pay:")).unwrap_or_default();
    assert!(line.contains("FAILED") && line.contains("SIGN_ERROR") && line.contains("pay.merchant_key_file"), "{out}");
    assert!(out.contains("wechat: app main") && out.contains("OK"), "WeChat itself was still checked: {out}");

    let dir = TempDir::new("check-pay-verify");
    let cfg = config(dir.path(), &base, &pay_table(dir.path(), &base, MERCHANT_KEY, OTHER_PUBLIC_KEY));
    let (code, out, _) = run_bare(&["check", "--live", "--config", cfg.to_str().unwrap()], &secret);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("did not verify with the configured WeChat Pay public key"), "{out}");

    // Nothing listens there: explained, not a hang.
    let dir = TempDir::new("check-pay-down");
    let dead = "http://127.0.0.1:9";
    let text = pay_table(dir.path(), dead, MERCHANT_KEY, PAY_PUBLIC_KEY);
    let cfg = config(dir.path(), &base, &text);
    let (code, out, _) = run_bare(&["check", "--live", "--config", cfg.to_str().unwrap()], &secret);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("could not be reached at http://127.0.0.1:9"), "{out}");
}

#[test]
fn orders_refund_refunds_once_per_number_and_show_lists_the_refunds() {
    let fake = start_fake();
    let base = fake.base_url();
    let dir = TempDir::new("orders-refund");
    let store = dir_store(dir.path(), "wxlogin.db");
    let ann = user(&store, "o-ann", 1);
    order(&store, "Wrefund-paid-01", ann, "o-ann", 990);
    order(&store, "Wrefund-unpaid-02", ann, "o-ann", 990);
    let cfg = config(dir.path(), &base, &pay_table(dir.path(), &base, MERCHANT_KEY, PAY_PUBLIC_KEY));
    let cfg = cfg.to_str().unwrap();
    place(&merchant_client(&base), "Wrefund-paid-01", "o-ann", 990);
    let body = serde_json::json!({"out_trade_no": "Wrefund-paid-01", "notify": {"mode": "never"}});
    let r = send(&format!("{base}/__fake/pay/pay"), "POST", None, Some(body.to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let transaction_id = r.json()["transaction_id"].as_str().unwrap().to_string();
    let now = wxlogin::store::now();
    let paid =
        Payment { out_trade_no: "Wrefund-paid-01", transaction_id: &transaction_id, amount_total: 990, paid_at: now };
    store.apply_payment(&paid, now).unwrap();
    // WeChat Pay keeps the refunds processing, without notifications.
    let plan = serde_json::json!({"outcome": "processing", "times": 5, "notify": {"mode": "never"}});
    assert_eq!(send(&format!("{base}/__fake/pay/refunds/next"), "POST", None, Some(plan.to_string()), &[]).status, 200);

    let refund = ["orders", "refund", "Wrefund-paid-01", "--amount", "300", "--reason", "goodwill"];
    let args: Vec<&str> = refund.iter().copied().chain(["--out-refund-no", "RF-CLI-01", "--config", cfg]).collect();
    let (code, out, err) = run_bare(&args, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("refund RF-CLI-01 of 300 fen: processing"), "{out}");
    let (code, out, err) = run_bare(&args, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already made"), "{out}");
    let stats = send(&format!("{base}/__fake/pay/stats"), "GET", None, None, &[]).json();
    assert_eq!((stats["calls"]["refund"].as_u64(), stats["refunds"].as_u64()), (Some(1), Some(1)), "{stats}");

    let (code, out, _) = run_bare(&["orders", "show", "Wrefund-paid-01", "--config", cfg], &[]);
    assert_eq!(code, 0);
    assert_eq!(lines_with(&out, "RF-CLI-01").len(), 1, "{out}");
    assert!(out.contains("goodwill"), "{out}");

    let (code, _, err) = run_bare(&["orders", "refund", "Wrefund-paid-01", "--amount", "691", "--config", cfg], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("more than what is left") && err.contains("690 fen"), "{err}");
    let (code, _, err) = run_bare(&["orders", "refund", "Wrefund-unpaid-02", "--amount", "1", "--config", cfg], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not paid"), "{err}");
    assert_eq!(store.refunds_of_order("Wrefund-unpaid-02").unwrap().len(), 0);
}
