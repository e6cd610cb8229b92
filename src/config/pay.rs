//! `[pay]`: the WeChat Pay merchant, its keys and the products a mini-program may order.
//!
//! Keys are parsed here, once, into the `pay` types: a key that cannot work stops
//! start-up, naming the key (or variable) it came from, rather than failing the first
//! payment. Like every configuration error, none of these quotes the value found.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{ConfigError, Secrets};
use crate::pay::{ApiV3Key, Merchant, PayVerifier, SigningKey, VerifyingKey};
use crate::secrets::Secret;

/// The merchant everything pays through. `Debug` prints no key material: the pay types
/// show sizes or `***`, and `webhook_secret` is a [`Secret`].
#[derive(Debug, Clone)]
pub struct PayConfig {
    pub mchid: String,
    /// mchid, the merchant certificate's serial and the merchant's private key.
    pub merchant: Arc<Merchant>,
    pub apiv3_key: Arc<ApiV3Key>,
    /// The WeChat Pay public key under its id (`Wechatpay-Serial` names it), and the
    /// platform certificates once fetched.
    pub verifier: Arc<PayVerifier>,
    /// Older merchants: also trust platform certificates fetched from `/v3/certificates`.
    pub platform_certificates: bool,
    pub notify_url: String,
    pub api_base: String,
    pub order_ttl_seconds: i64,
    /// "" = events are recorded but not delivered.
    pub webhook_url: String,
    pub webhook_secret: Secret,
    pub products: Vec<Product>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub description: String,
    /// Fen.
    pub amount: i64,
}

impl PayConfig {
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }
}

pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";
/// WeChat Pay's `time_expire` may be from 5 minutes to 7 days ahead (research, §JSAPI).
pub const ORDER_TTL_SECONDS: std::ops::RangeInclusive<i64> = 300..=604_800;
/// WeChat Pay's limits on an order's `amount.total` (fen) and `description` (characters).
pub const AMOUNT: std::ops::RangeInclusive<i64> = 1..=1_000_000_000;
pub const MAX_DESCRIPTION_CHARS: usize = 127;
/// WeChat Pay refuses a `notify_url` longer than this.
const MAX_NOTIFY_URL: usize = 255;
/// A webhook HMAC key shorter than this could be guessed.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;

pub const MERCHANT_KEY_VAR: &str = "WXLOGIN_PAY_MERCHANT_KEY";
pub const APIV3_KEY_VAR: &str = "WXLOGIN_PAY_APIV3_KEY";
pub const WEBHOOK_SECRET_VAR: &str = "WXLOGIN_PAY_WEBHOOK_SECRET";

/// The `[pay]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPay {
    mchid: String,
    merchant_serial: String,
    #[serde(default)]
    merchant_key_file: String,
    #[serde(default)]
    apiv3_key: String,
    #[serde(default)]
    public_key_file: String,
    #[serde(default)]
    public_key_id: String,
    #[serde(default)]
    platform_certificates: bool,
    notify_url: String,
    #[serde(default = "default_api_base")]
    api_base: String,
    #[serde(default = "default_ttl")]
    order_ttl_seconds: i64,
    #[serde(default)]
    webhook_url: String,
    #[serde(default)]
    webhook_secret: String,
    #[serde(default)]
    products: Vec<RawProduct>,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_string()
}

fn default_ttl() -> i64 {
    7200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProduct {
    id: String,
    description: String,
    amount: i64,
}

/// Where a secret is read from, and what reading it found.
struct Source<'a> {
    base: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    secret_files: &'a mut Vec<PathBuf>,
}

/// Validates `[pay]` and loads its keys. With [`Secrets::Optional`] (admin commands) a
/// key that is missing or cannot be read or used leaves payments off (`None`) rather
/// than stopping a command that only reads the database; everything else is checked.
pub(super) fn resolve(
    raw: RawPay,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: Secrets,
    secret_files: &mut Vec<PathBuf>,
) -> Result<Option<PayConfig>, ConfigError> {
    check_plain(&raw)?;
    let products = products(&raw.products)?;
    let mut src = Source { base, env, secret_files };
    let keys = match load_keys(&raw, &mut src) {
        Ok(keys) => keys,
        Err(_) if secrets == Secrets::Optional => return Ok(None),
        Err(e) => return Err(e),
    };
    let webhook_secret = secret_value(&raw.webhook_secret, WEBHOOK_SECRET_VAR, &mut src)?.unwrap_or_default();
    if !raw.webhook_url.is_empty() && webhook_secret.chars().count() < MIN_WEBHOOK_SECRET_CHARS {
        return Err(ConfigError::new(
            "pay.webhook_secret",
            format!(
                "must be at least {MIN_WEBHOOK_SECRET_CHARS} characters when pay.webhook_url is set \
                 (or set {WEBHOOK_SECRET_VAR} or {WEBHOOK_SECRET_VAR}_FILE; `openssl rand -hex 24` makes one)"
            ),
        ));
    }
    Ok(Some(PayConfig {
        mchid: raw.mchid,
        merchant: Arc::new(keys.merchant),
        apiv3_key: Arc::new(keys.apiv3_key),
        verifier: Arc::new(keys.verifier),
        platform_certificates: raw.platform_certificates,
        notify_url: raw.notify_url,
        api_base: raw.api_base,
        order_ttl_seconds: raw.order_ttl_seconds,
        webhook_url: raw.webhook_url,
        webhook_secret: Secret::new(webhook_secret),
        products,
    }))
}

/// The keys that need no file or secret.
fn check_plain(raw: &RawPay) -> Result<(), ConfigError> {
    let bad = |key: &str, msg: &str| Err(ConfigError::new(key, msg));
    if raw.mchid.is_empty() || raw.mchid.len() > 32 || !raw.mchid.bytes().all(|b| b.is_ascii_digit()) {
        return bad("pay.mchid", "must be the merchant number WeChat Pay gave you (digits, such as \"1900000109\")");
    }
    let serial_ok =
        (8..=64).contains(&raw.merchant_serial.len()) && raw.merchant_serial.bytes().all(|b| b.is_ascii_hexdigit());
    if !serial_ok {
        return bad(
            "pay.merchant_serial",
            "must be the serial number of the merchant API certificate (hexadecimal, as the merchant platform shows it)",
        );
    }
    if raw.public_key_file.is_empty() != raw.public_key_id.is_empty() {
        let key = if raw.public_key_id.is_empty() { "pay.public_key_id" } else { "pay.public_key_file" };
        return bad(key, "pay.public_key_file and pay.public_key_id go together: set both or neither");
    }
    let id_ok = raw.public_key_id.len() <= 64
        && raw.public_key_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !id_ok {
        return bad("pay.public_key_id", "must be the public key's id as WeChat Pay shows it (\"PUB_KEY_ID_...\")");
    }
    if raw.public_key_file.is_empty() && !raw.platform_certificates {
        return bad(
            "pay.public_key_file",
            "is required: the WeChat Pay public key file and its id (pay.public_key_id), from the merchant platform \
             (or, for merchants still on platform certificates, pay.platform_certificates = true)",
        );
    }
    check_notify_url(&raw.notify_url)?;
    if !is_base_url(&raw.api_base) {
        return bad("pay.api_base", "must be an http:// or https:// URL without a query or a trailing slash");
    }
    if !ORDER_TTL_SECONDS.contains(&raw.order_ttl_seconds) {
        return bad("pay.order_ttl_seconds", "must be between 300 (5 minutes) and 604800 (7 days)");
    }
    if !raw.webhook_url.is_empty() && !is_url(&raw.webhook_url, &["https://", "http://"]) {
        return bad("pay.webhook_url", "must be \"\" (no webhook) or an http:// or https:// URL");
    }
    Ok(())
}

/// WeChat Pay posts notifications only to a public https URL without a query string.
/// Plain http is accepted for loopback alone, so that tests and `wxlogin demo` can
/// receive the fake WeChat Pay's notifications on their own machine; any other http
/// would let notifications (and their order data) cross the network in clear text, and
/// WeChat Pay itself refuses it.
fn check_notify_url(url: &str) -> Result<(), ConfigError> {
    let bad = |msg: &str| Err(ConfigError::new("pay.notify_url", msg));
    if url.is_empty() {
        return bad("is required: the public https URL that reaches POST /v1/pay/notify through your proxy");
    }
    if url.len() > MAX_NOTIFY_URL {
        return bad("must be at most 255 characters (WeChat Pay's limit)");
    }
    if url.contains(['?', '#']) {
        return bad("must have no query string or fragment (WeChat Pay refuses them)");
    }
    if is_url(url, &["https://"]) {
        return Ok(());
    }
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
    if loopback && is_url(url, &["http://"]) {
        return Ok(());
    }
    bad("must be an https:// URL (plain http only for 127.0.0.1 or localhost, with the fake WeChat Pay)")
}

/// `scheme://host...`: one of `schemes`, a host, visible ASCII only.
fn is_url(url: &str, schemes: &[&str]) -> bool {
    let Some(rest) = schemes.iter().find_map(|s| url.strip_prefix(s)) else { return false };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty() && url.bytes().all(|b| b.is_ascii_graphic())
}

/// A base that paths are appended to: no query, fragment or trailing slash.
fn is_base_url(url: &str) -> bool {
    is_url(url, &["https://", "http://"]) && !url.ends_with('/') && !url.contains(['?', '#'])
}

fn products(raw: &[RawProduct]) -> Result<Vec<Product>, ConfigError> {
    let mut out: Vec<Product> = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let key = |field: &str| format!("pay.products[{i}].{field}");
        let id_ok =
            (1..=32).contains(&p.id.len()) && p.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(ConfigError::new(key("id"), "must be 1 to 32 letters, digits, '_' or '-'"));
        }
        if out.iter().any(|o| o.id == p.id) {
            return Err(ConfigError::new(key("id"), "is used by an earlier product"));
        }
        if let Some(problem) = description_problem(&p.description) {
            return Err(ConfigError::new(key("description"), problem));
        }
        if !AMOUNT.contains(&p.amount) {
            return Err(ConfigError::new(key("amount"), "must be between 1 and 1000000000 (fen)"));
        }
        out.push(Product { id: p.id.clone(), description: p.description.clone(), amount: p.amount });
    }
    Ok(out)
}

/// What is wrong with an order description for WeChat Pay, if anything (also for the
/// descriptions a service sends through the internal API): 1 to 127 characters, no
/// control characters, and nothing outside the Basic Multilingual Plane (4 bytes in
/// UTF-8: emoji and the like), which WeChat Pay refuses.
pub fn description_problem(description: &str) -> Option<&'static str> {
    let chars = description.chars().count();
    if !(1..=MAX_DESCRIPTION_CHARS).contains(&chars) || description.chars().any(char::is_control) {
        return Some("must be 1 to 127 characters, without control characters");
    }
    if description.chars().any(|c| c.len_utf8() == 4) {
        return Some("must not contain emoji or other 4-byte UTF-8 characters");
    }
    None
}

struct Keys {
    merchant: Merchant,
    apiv3_key: ApiV3Key,
    verifier: PayVerifier,
}

fn load_keys(raw: &RawPay, src: &mut Source) -> Result<Keys, ConfigError> {
    let (pem, key) = merchant_pem(raw, src)?;
    let signing = SigningKey::from_pem(&pem).map_err(|e| ConfigError::new(key, e.to_string()))?;
    let merchant = Merchant::new(&raw.mchid, &raw.merchant_serial, signing)
        .map_err(|e| ConfigError::new("pay.merchant_serial", e.to_string()))?;
    let Some(apiv3) = secret_value(&raw.apiv3_key, APIV3_KEY_VAR, src)? else {
        return Err(ConfigError::new(
            "pay.apiv3_key",
            format!("is missing: set {APIV3_KEY_VAR} (or {APIV3_KEY_VAR}_FILE), or `apiv3_key` in the file"),
        ));
    };
    let apiv3_key = ApiV3Key::new(apiv3.as_bytes()).map_err(|e| ConfigError::new("pay.apiv3_key", e.to_string()))?;
    if raw.public_key_file.is_empty() {
        // Certificates only: they are fetched once the server runs.
        return Ok(Keys { merchant, apiv3_key, verifier: PayVerifier::default() });
    }
    let path = src.base.join(&raw.public_key_file);
    let public = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new("pay.public_key_file", format!("cannot read {}: {e}", shown(&path))))?;
    let public = VerifyingKey::from_pem(&public).map_err(|e| ConfigError::new("pay.public_key_file", e.to_string()))?;
    Ok(Keys { merchant, apiv3_key, verifier: PayVerifier::new(&raw.public_key_id, public) })
}

/// The merchant private key's PEM and the key path to name in its errors:
/// `pay.merchant_key_file`, else `WXLOGIN_PAY_MERCHANT_KEY`, else its `_FILE`.
fn merchant_pem(raw: &RawPay, src: &mut Source) -> Result<(String, String), ConfigError> {
    if !raw.merchant_key_file.is_empty() {
        let path = src.base.join(&raw.merchant_key_file);
        let pem = read_secret_file(&path, "pay.merchant_key_file", src)?;
        return Ok((pem, "pay.merchant_key_file".into()));
    }
    match secret_value("", MERCHANT_KEY_VAR, src)? {
        Some(pem) if (src.env)(MERCHANT_KEY_VAR).is_some_and(|v| !v.is_empty()) => Ok((pem, MERCHANT_KEY_VAR.into())),
        Some(pem) => Ok((pem, format!("{MERCHANT_KEY_VAR}_FILE"))),
        None => Err(ConfigError::new(
            "pay.merchant_key_file",
            format!(
                "is missing: the merchant private key (apiclient_key.pem); set pay.merchant_key_file, \
                 {MERCHANT_KEY_VAR} or {MERCHANT_KEY_VAR}_FILE"
            ),
        )),
    }
}

/// A secret: the file's value if set, else the variable `var`, else the file that
/// `{var}_FILE` names (relative to the configuration's folder); each with one trailing
/// newline trimmed (what `echo` and editors add). `None` when none is set.
fn secret_value(in_file: &str, var: &str, src: &mut Source) -> Result<Option<String>, ConfigError> {
    if !in_file.is_empty() {
        return Ok(Some(in_file.to_string()));
    }
    if let Some(v) = (src.env)(var).filter(|v| !v.is_empty()) {
        return Ok(Some(trim_newline(v)));
    }
    let file_var = format!("{var}_FILE");
    match (src.env)(&file_var).filter(|v| !v.is_empty()) {
        Some(file) => {
            let path = src.base.join(file);
            read_secret_file(&path, &file_var, src).map(Some)
        }
        None => Ok(None),
    }
}

fn read_secret_file(path: &Path, key: &str, src: &mut Source) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", shown(path))))?;
    src.secret_files.push(path.to_path_buf());
    Ok(trim_newline(text))
}

/// A key file's path for an error message, unless it looks like a key itself (a key or
/// secret pasted where its file name belongs must not be printed back).
pub(super) fn shown(path: &Path) -> String {
    let text = path.to_string_lossy();
    let base64_run = |c: &str| {
        c.len() >= 16
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            && c.bytes().any(|b| b.is_ascii_digit())
    };
    let secret_like = text.contains("-----")
        || text.chars().any(char::is_whitespace)
        || path.components().any(|c| base64_run(&c.as_os_str().to_string_lossy()));
    if secret_like {
        "the file it names (the name looks like key material, so it is not shown: give the file's path, not the key)"
            .into()
    } else {
        path.display().to_string()
    }
}

fn trim_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}
