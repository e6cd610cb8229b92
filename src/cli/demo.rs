//! `wxlogin demo` and `wxlogin fake-wechat`: wxlogin with no WeChat account at all.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{Args, CliError, Result};
use crate::config;
use crate::fake_wechat::{self as fake, FakeOptions, FakePayOptions, FakeWeChat};
use crate::pay::{ApiV3Key, VerifyingKey};

pub const DEMO_APPID: &str = "wxd3m0a11ce0000001";
const DEMO_SECRET: &str = "demo-secret-not-for-production";

/// The service and a fake WeChat (and WeChat Pay) on loopback, a fresh database in a
/// temporary folder, and a walk-through of curl commands to paste. The folder is removed
/// on exit.
pub fn demo(mut args: Args) -> Result<ExitCode> {
    let listen = args.value("--listen")?.unwrap_or_else(|| "127.0.0.1:8080".into());
    args.finish()?;
    crate::logging::init();
    // WeChat Pay's notify_url names wxlogin's port, so a port 0 is chosen here, first.
    let listen = resolve_listen(&listen)?;
    let notify_url = format!("http://{}/v1/pay/notify", loopback_of(listen));
    let dir = std::env::temp_dir().join(format!("wxlogin-demo-{}", crate::secrets::random_id(4)));
    let fake = FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions {
            apps: vec![(DEMO_APPID.into(), DEMO_SECRET.into())],
            // The demo's notify_url is wxlogin on plain loopback HTTP.
            pay: Some(FakePayOptions { allow_http_notify: true, ..FakePayOptions::test() }),
            ..FakeOptions::default()
        },
    )?;
    let config = demo_config(listen, &dir, &fake.base_url(), &notify_url);
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            fake.stop();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let result = super::serve::run_until_signal(config, |server| {
        println!("{}", walkthrough(&server.addr().to_string(), &fake.base_url()));
    });
    fake.stop();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `--listen` as one address, a port 0 replaced by a port free right now.
fn resolve_listen(listen: &str) -> Result<SocketAddr> {
    let addr = listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| CliError::usage(format!("--listen takes HOST:PORT, not `{listen}`")))?;
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = TcpListener::bind(addr).map_err(|e| CliError::new(format!("--listen {listen}: {e}")))?;
    Ok(probe.local_addr()?)
}

/// Where the fake WeChat Pay reaches wxlogin: loopback on its port (a notify_url may be
/// plain http only on loopback).
fn loopback_of(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_loopback() || listen.ip().is_unspecified() {
        SocketAddr::new(
            if listen.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
            listen.port(),
        )
    } else {
        SocketAddr::new([127, 0, 0, 1].into(), listen.port())
    }
}

/// The demo's configuration, with payments through the fake's fixed test merchant (its
/// public test keys written to the demo's folder).
fn demo_config(listen: SocketAddr, dir: &Path, fake_url: &str, notify_url: &str) -> Result<config::Config> {
    let pay = fake::write_test_merchant(dir, fake_url, notify_url)?;
    let text = format!(
        r#"
[server]
listen = "{listen}"
wechat_workers = 16

[database]
path = "wxlogin.db"

[wechat]
api_base = "{fake_url}"
timeout_ms = 3000

[[apps]]
name = "main"
appid = "{DEMO_APPID}"
secret = "{DEMO_SECRET}"

{pay}
[[pay.products]]
id = "vip30"
description = "VIP, 30 days"
amount = 990

[[pay.products]]
id = "coins_100"
description = "100 coins"
amount = 100
"#
    );
    config::parse(&text, dir, &|_| None).map_err(|e| CliError::new(format!("demo configuration: {e}")))
}

fn walkthrough(addr: &str, fake: &str) -> String {
    format!(
        r#"
wxlogin demo is running: the service on http://{addr}, a fake WeChat and WeChat Pay on
{fake} (fixed public test keys), a fresh database that is deleted when you stop (Ctrl-C).
Paste these into another shell:

  # 1. What wx.login() hands the mini-program: a one-time code (from the fake WeChat).
  CODE=$(curl -s -X POST {fake}/__fake/login -d '{{"user":"alice"}}' | sed -E 's/.*"code":"([^"]+)".*/\1/')

  # 2. The mini-program posts it to wxlogin, which exchanges it with WeChat and answers
  #    with its own session token (the session_key and the app secret never leave the server).
  curl -s http://{addr}/v1/login -H 'Content-Type: application/json' -d "{{\"code\":\"$CODE\"}}" | tee /tmp/wxlogin-login.json
  TOKEN=$(sed -E 's/.*"token":"([^"]+)".*/\1/' /tmp/wxlogin-login.json)

  # 3. Every later request carries the token; this is how your pages learn who is calling.
  curl -s http://{addr}/v1/session -H "Authorization: Bearer $TOKEN"

  # 4. The user fills in a profile (WeChat no longer hands out nicknames).
  curl -s -X PATCH http://{addr}/v1/me -H "Authorization: Bearer $TOKEN" -d '{{"nickname":"Alice","avatar_url":"https://example.com/a.png"}}'

  # 5. Your other services (or nginx/Caddy) check a caller with /v1/auth.
  curl -si http://{addr}/v1/auth -H "Authorization: Bearer $TOKEN" | grep -i '^x-'

  # 6. Open data: what wx.getUserInfo hands the mini-program (encrypted with the user's
  #    session_key, which only the server holds). wxlogin decrypts it, checks the signature
  #    and the watermark, and fills in the profile.
  curl -s -X POST {fake}/__fake/open_data -d '{{"user":"alice","kind":"user_info"}}' > /tmp/wxlogin-open.json
  curl -s http://{addr}/v1/me/decrypt -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d @/tmp/wxlogin-open.json

  # 7. The classic "-41003 / pad block corrupted" bug made explicit: a new wx.login rotates
  #    the session_key, so data fetched before it no longer decrypts: 409 session_key_stale
  #    (the client calls wx.login, POST /v1/login, fetches the data again and retries).
  CODE2=$(curl -s -X POST {fake}/__fake/login -d '{{"user":"alice"}}' | sed -E 's/.*"code":"([^"]+)".*/\1/')
  curl -s http://{addr}/v1/login -H 'Content-Type: application/json' -d "{{\"code\":\"$CODE2\"}}" -o /dev/null
  curl -s http://{addr}/v1/me/decrypt -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d @/tmp/wxlogin-open.json

  # 8. WeChat Pay: order a product. wxlogin places the order at (the fake) WeChat Pay and
  #    answers the parameters for wx.requestPayment, signed with the merchant key.
  curl -s http://{addr}/v1/pay/orders -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"product":"vip30"}}' | tee /tmp/wxlogin-order.json
  NO=$(sed -E 's/.*"out_trade_no":"([^"]+)".*/\1/' /tmp/wxlogin-order.json)

  # 9. The user pays, as wx.requestPayment would; WeChat Pay then POSTs its signed,
  #    encrypted notification to wxlogin's /v1/pay/notify.
  curl -s -X POST {fake}/__fake/pay/pay -d "{{\"out_trade_no\":\"$NO\",\"notify\":{{\"wait\":true}}}}"

  # 10. The order is paid (?sync=true asks WeChat Pay itself when no notification came).
  curl -s "http://{addr}/v1/pay/orders/$NO?sync=true" -H "Authorization: Bearer $TOKEN"

  # 11. WeChat Pay delivers notifications again (it retries); a payment is applied once:
  #     every delivery was answered 204, and the order has not changed.
  curl -s -X POST {fake}/__fake/pay/notify -d "{{\"out_trade_no\":\"$NO\",\"wait\":true}}"
  curl -s "{fake}/__fake/pay/deliveries?out_trade_no=$NO"
  curl -s "http://{addr}/v1/pay/orders/$NO" -H "Authorization: Bearer $TOKEN"

  # 12. Log out; the token stops working.
  curl -s -X DELETE http://{addr}/v1/session -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{{http_code}}\n'
  curl -s http://{addr}/v1/session -H "Authorization: Bearer $TOKEN"
"#
    )
}

/// The fake WeChat alone, in the foreground, for users' own integration tests.
pub fn fake_wechat(mut args: Args) -> Result<ExitCode> {
    let listen = args.value("--listen")?.unwrap_or_else(|| "127.0.0.1:9090".into());
    let mut apps = Vec::new();
    for spec in args.values("--app")? {
        let (appid, secret) =
            spec.split_once(':').ok_or_else(|| CliError::usage(format!("--app takes APPID:SECRET, not `{spec}`")))?;
        apps.push((appid.to_string(), secret.to_string()));
    }
    let latency = Duration::from_millis(args.number("--latency-ms")?.unwrap_or(0));
    let mock_codes = args.switch("--mock-codes");
    let pay = pay_options(&mut args)?;
    args.finish()?;
    crate::logging::init();
    eprintln!("{}", pay_banner(&pay));
    let opts = FakeOptions { apps, latency, mock_codes, pay: Some(pay), ..FakeOptions::default() };
    crate::fake_wechat::serve_forever(&listen, opts)?;
    Ok(ExitCode::SUCCESS)
}

/// The fake WeChat Pay's merchant: given by `--pay-mchid`, `--pay-merchant-public-key` and
/// `--pay-apiv3-key-file` together, or the fixed test setup when none is given.
fn pay_options(args: &mut Args) -> Result<FakePayOptions> {
    let mchid = args.value("--pay-mchid")?;
    let public_key = args.path("--pay-merchant-public-key")?;
    let apiv3_file = args.path("--pay-apiv3-key-file")?;
    let serial = args.value("--pay-merchant-serial")?;
    let appids = args.values("--pay-appid")?;
    let allow_http_notify = args.switch("--allow-http-notify");
    let notify_override = args.value("--pay-notify-to")?;
    let platform_mode = match args.value("--pay-platform-mode")? {
        None => fake::PlatformMode::default(),
        Some(mode) => mode.parse().map_err(|e| CliError::usage(format!("--pay-platform-mode: {e}")))?,
    };
    if notify_override.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
        return Err(CliError::usage("--pay-notify-to takes an http:// or https:// URL"));
    }
    let mut opts = match (mchid, public_key, apiv3_file) {
        (None, None, None) => FakePayOptions { merchant_serial: serial.or(Some(fake::TEST_MERCHANT_SERIAL.into())), ..FakePayOptions::test() },
        (Some(mchid), Some(public_key), Some(apiv3_file)) => {
            let read = |path: &Path, what: &str| {
                std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("{what} {}: {e}", path.display())))
            };
            let pem = read(&public_key, "--pay-merchant-public-key")?;
            let merchant_public_key = VerifyingKey::from_pem(&pem)
                .map_err(|e| CliError::usage(format!("--pay-merchant-public-key: {e}")))?;
            let key = read(&apiv3_file, "--pay-apiv3-key-file")?;
            let key = key.strip_suffix('\n').unwrap_or(&key);
            let apiv3_key = ApiV3Key::new(key.strip_suffix('\r').unwrap_or(key).as_bytes())
                .map_err(|e| CliError::usage(format!("--pay-apiv3-key-file: {e}")))?;
            FakePayOptions { mchid, merchant_public_key, merchant_serial: serial, apiv3_key, ..FakePayOptions::test() }
        }
        _ => {
            return Err(CliError::usage(
                "--pay-mchid, --pay-merchant-public-key and --pay-apiv3-key-file go together (none: the fixed test merchant)",
            ))
        }
    };
    opts.appids = appids;
    opts.allow_http_notify = allow_http_notify;
    opts.notify_override = notify_override;
    opts.platform_mode = platform_mode;
    Ok(opts)
}

/// What a wxlogin (or any client) under test configures to talk to the fake WeChat Pay,
/// printed on stderr (stdout carries only the `listening on` line). The private key is
/// printed only for the fixed test merchant, whose key WeChat publishes.
fn pay_banner(opts: &FakePayOptions) -> String {
    let mut out = format!(
        "fake WeChat Pay: mchid {}, merchant serial {}, WeChat Pay public key id {}, platform certificate serials {} {} (signing: {}), notify_url {}\n",
        opts.mchid,
        opts.merchant_serial.as_deref().unwrap_or("(any)"),
        fake::PLATFORM_PUBLIC_KEY_ID,
        fake::PLATFORM_CERT_SERIAL,
        fake::PLATFORM2_CERT_SERIAL,
        opts.platform_mode,
        if opts.allow_http_notify { "http or https" } else { "https only" },
    );
    if opts.is_test_setup() {
        out.push_str(&format!(
            "FIXED PUBLIC TEST KEYS, never for production:\napiv3_key = {}\nmerchant private key (WeChat's documented test key):\n{}",
            fake::TEST_APIV3_KEY,
            fake::TEST_MERCHANT_KEY_PEM
        ));
    }
    out.push_str(&format!(
        "WeChat Pay public key ({}):\n{}",
        fake::PLATFORM_PUBLIC_KEY_ID,
        fake::PLATFORM_PUBLIC_KEY_PEM
    ));
    out.push_str("(also at GET /__fake/pay/stats)");
    out
}
