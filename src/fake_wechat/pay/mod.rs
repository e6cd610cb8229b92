//! A fake WeChat Pay (APIv3, JSAPI orders), served by the fake WeChat on the same port.
//!
//! WeChat Pay has no APIv3 sandbox, so this is the only WeChat Pay test server there is:
//! it is worth what it refuses. Every rule cites research/wechat-pay.md (§n) or the
//! official page it comes from. The endpoints and control endpoints are listed in
//! `src/fake_wechat/README.md`.
//!
//! - `api.rs`: `/v3/pay/transactions/...`, each request checked as WeChat Pay does.
//! - `wire.rs`: the `Authorization` header read, every answer signed, RFC 3339 times.
//! - `orders.rs`: the orders the fake holds and their states.
//! - `refunds.rs`: `/v3/refund/domestic/refunds...` and the refunds the fake holds.
//! - `platform.rs`: which key signs (public key, certificate, or both: the migration),
//!   and `/v3/certificates`.
//! - `notify.rs`: payment and refund notifications, delivered on threads.
//! - `control.rs`: `/__fake/pay/...`, where tests play the paying user and WeChat Pay.

pub(crate) mod api;
pub(crate) mod control;
mod notify;
mod orders;
mod platform;
mod refunds;
mod wire;

#[cfg(test)]
mod http_tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::pay::{ApiV3Key, VerifyingKey};

use super::clock::Clock;
use notify::Delivery;
use orders::Orders;
use platform::Platform;
pub use platform::PlatformMode;
use refunds::Refunds;

/// WeChat's documented TEST merchant (research Appendix A): its key is public, so the
/// fake may hold it and print it for users' tests. Never a real merchant.
pub const TEST_MCHID: &str = "1900007291";
/// The serial of that test merchant's API certificate (research Appendix A).
pub const TEST_MERCHANT_SERIAL: &str = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB";
/// The test merchant's private key, for users' tests and `demo` to sign with.
pub const TEST_MERCHANT_KEY_PEM: &str = include_str!("../../pay/testdata/wechat_docs_merchant_key.pem");
/// Its public key (`openssl pkey -pubout`), which the fake verifies requests with.
pub const TEST_MERCHANT_PUBLIC_KEY_PEM: &str = include_str!("../../pay/testdata/wechat_docs_merchant_public_key.pem");
/// The fake's APIv3 key: 32 ASCII bytes, public, for tests only.
pub const TEST_APIV3_KEY: &str = "wxloginFakeWeChatPayApiV3Key0001";
/// The id of the fake's platform public key, sent as `Wechatpay-Serial` (real ones
/// look like `PUB_KEY_ID_0114...`, research §5).
pub const PLATFORM_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0000000000000000000000000000000001";
/// The fake's platform key pair (src/pay/testdata/README.md): it signs every answer and
/// notification; wxlogin under test trusts the public half.
pub const PLATFORM_KEY_PEM: &str = include_str!("../../pay/testdata/fake_wechatpay_platform_key.pem");
pub const PLATFORM_PUBLIC_KEY_PEM: &str = include_str!("../../pay/testdata/fake_wechatpay_platform_public_key.pem");
/// A self-signed certificate for the platform key (src/pay/testdata/README.md): what
/// `/v3/certificates` serves and `certificate` mode signs as.
pub const PLATFORM_CERT_PEM: &str = include_str!("../../pay/testdata/fake_wechatpay_platform_cert.pem");
/// Its serial number in upper-case hex, as `serial_no` and `Wechatpay-Serial` carry it.
pub const PLATFORM_CERT_SERIAL: &str = "1E67BC1813BE76B106AB44097F2EC661555DD8DB";
/// A second platform key and certificate: the certificate side of `mixed` mode.
pub const PLATFORM2_KEY_PEM: &str = include_str!("../../pay/testdata/fake_wechatpay_platform2_key.pem");
pub const PLATFORM2_PUBLIC_KEY_PEM: &str = include_str!("../../pay/testdata/fake_wechatpay_platform2_public_key.pem");
pub const PLATFORM2_CERT_PEM: &str = include_str!("../../pay/testdata/fake_wechatpay_platform2_cert.pem");
pub const PLATFORM2_CERT_SERIAL: &str = "27E2C32F08B7047F253ECCC60D1E2DBEE915EEAE";

/// What a wxlogin under test configures to pay through the fixed test merchant: writes
/// the merchant key (0600, as a real one must be) and the fake's WeChat Pay public key
/// into `dir` as `merchant.pem` and `wechatpay.pem`, and returns the `[pay]` table that
/// names them, without products (the caller's). Used by `demo`, the tests and the bench.
pub fn write_test_merchant(dir: &std::path::Path, fake_url: &str, notify_url: &str) -> std::io::Result<String> {
    use std::io::Write as _;
    crate::files::create_private_dir_all(dir)?;
    crate::files::create_new_private(&dir.join("merchant.pem"))?.write_all(TEST_MERCHANT_KEY_PEM.as_bytes())?;
    std::fs::write(dir.join("wechatpay.pem"), PLATFORM_PUBLIC_KEY_PEM)?;
    Ok(format!(
        r#"
[pay]
mchid = "{TEST_MCHID}"
merchant_serial = "{TEST_MERCHANT_SERIAL}"
merchant_key_file = "merchant.pem"
apiv3_key = "{TEST_APIV3_KEY}"
public_key_file = "wechatpay.pem"
public_key_id = "{PLATFORM_PUBLIC_KEY_ID}"
notify_url = "{notify_url}"
api_base = "{fake_url}"
"#
    ))
}

/// The merchant the fake serves. `FakePayOptions::test()` is the fixed test setup.
#[derive(Debug, Clone)]
pub struct FakePayOptions {
    pub mchid: String,
    /// The merchant's public key: requests whose signature it does not verify are
    /// 401 SIGN_ERROR.
    pub merchant_public_key: VerifyingKey,
    /// The merchant certificate serial that `serial_no` must name, if known.
    pub merchant_serial: Option<String>,
    pub apiv3_key: ApiV3Key,
    /// The appids bound to the mchid; empty = every app of the fake.
    pub appids: Vec<String>,
    /// Accept `http://` notify_urls (real WeChat Pay requires https, research §3): for
    /// tests and `demo`, whose receivers listen on plain loopback HTTP.
    pub allow_http_notify: bool,
    /// Deliver every notification here instead of the order's notify_url: for a wxlogin
    /// under test whose configured notify_url is an https address it cannot receive on.
    pub notify_override: Option<String>,
    /// Which key signs answers and notifications (platform.rs); switchable at run time.
    pub platform_mode: PlatformMode,
}

impl FakePayOptions {
    /// The fixed test keys: WeChat's documented test merchant and the fake's APIv3 key.
    pub fn test() -> FakePayOptions {
        FakePayOptions {
            mchid: TEST_MCHID.to_string(),
            merchant_public_key: VerifyingKey::from_pem(TEST_MERCHANT_PUBLIC_KEY_PEM)
                .expect("the committed test merchant public key parses"),
            merchant_serial: Some(TEST_MERCHANT_SERIAL.to_string()),
            apiv3_key: ApiV3Key::new(TEST_APIV3_KEY.as_bytes()).expect("the test APIv3 key is 32 bytes"),
            appids: Vec::new(),
            allow_http_notify: false,
            notify_override: None,
            platform_mode: PlatformMode::PublicKey,
        }
    }

    /// Whether these are the fixed test keys (then the fake may print the private key).
    pub fn is_test_setup(&self) -> bool {
        let test = FakePayOptions::test();
        self.mchid == test.mchid
            && self.merchant_public_key == test.merchant_public_key
            && self.apiv3_key == test.apiv3_key
    }
}

/// The fake WeChat Pay's state, apart from the WeChat fake's lock (deliveries run on
/// their own threads and must not hold up logins).
#[derive(Debug)]
pub(crate) struct PayFake {
    pub opts: FakePayOptions,
    /// The fake's own appids, used when `opts.appids` is empty.
    pub apps: Vec<String>,
    pub platform: Platform,
    pub clock: Clock,
    /// Set when the fake stops: pending (late, retried) deliveries are dropped.
    stopping: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub orders: Orders,
    pub refunds: Refunds,
    pub deliveries: Vec<Delivery>,
    pub calls: BTreeMap<&'static str, u64>,
    /// Queued failures: (api or "*", failure, remaining).
    pub failures: Vec<(String, PayFailure, u32)>,
}

/// How an answer goes wrong, on request (`POST /__fake/pay/behaviour`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayFailure {
    /// A signed WeChat Pay error instead of the answer (nothing changes).
    Code(u16, &'static str),
    /// An unsigned HTML 500, as a broken gateway sends.
    Http500,
    /// The real answer (the request took effect) without `Wechatpay-*` headers.
    Unsigned,
    /// The real answer with the signature of another body.
    BadSignature,
    /// A signed 200 whose body is not JSON.
    Garbage,
    /// No answer for 60 s, then a signed 500 SYSTEM_ERROR.
    Hang,
}

impl Inner {
    /// The failure the next call of `api` gets, if one is queued; using it up.
    pub(crate) fn take_failure(&mut self, api: &str) -> Option<PayFailure> {
        let index = self.failures.iter().position(|(a, _, _)| a == api || a == "*")?;
        let entry = &mut self.failures[index];
        let failure = entry.1;
        entry.2 -= 1;
        if entry.2 == 0 {
            self.failures.remove(index);
        }
        Some(failure)
    }
}

impl PayFake {
    pub(crate) fn new(opts: FakePayOptions, apps: Vec<String>, clock: Clock) -> PayFake {
        let platform = Platform::new(opts.platform_mode);
        let calls = api::APIS.iter().map(|a| (*a, 0)).collect();
        PayFake {
            opts,
            apps,
            platform,
            clock,
            stopping: AtomicBool::new(false),
            inner: Mutex::new(Inner { calls, ..Inner::default() }),
        }
    }

    /// The state, also after a panic elsewhere (each update is one consistent step).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether `appid` is bound to the merchant (APPID_MCHID_NOT_MATCH otherwise).
    pub(crate) fn appid_bound(&self, appid: &str) -> bool {
        let bound = if self.opts.appids.is_empty() { &self.apps } else { &self.opts.appids };
        bound.iter().any(|a| a == appid)
    }
}
