//! `appliance.toml` -> [`Config`].
//!
//! Every key has a default except the apps' `name` and `appid`. Anything wrong stops
//! start-up with one line that names the key path (`apps[1].appid: ...`), because an
//! operator reading a journal at 3 a.m. needs the key, not a TOML parser's caret.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secrets::Secret;

pub mod database;
pub mod pay;

pub use database::DatabaseConfig;

pub use pay::{PayConfig, Product};

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub session: SessionConfig,
    pub wechat: WeChatConfig,
    pub decrypt: DecryptConfig,
    pub rate_limit: RateLimitConfig,
    pub internal: InternalConfig,
    pub apps: Vec<AppConfig>,
    /// `[pay]`; `None` (no table) = payments are off.
    pub pay: Option<PayConfig>,
    /// The `_FILE` secrets that were read, for the warning when others can read them.
    pub secret_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub workers: usize,
    pub wechat_workers: usize,
    pub max_body_bytes: usize,
    pub metrics_public: bool,
    pub trust_forwarded_for: bool,
    /// Extension: the longest a read from a client may wait, and the whole of a body.
    pub read_timeout_seconds: u64,
    /// Extension: the time allowed to receive a request's line and headers.
    pub header_timeout_seconds: u64,
    /// Extension: connections open at once; more get 503 and are closed.
    pub max_connections: usize,
    /// Extension: connections open at once from one address (0: no cap); not applied with
    /// `trust_forwarded_for`, where every connection comes from the proxy.
    pub max_connections_per_ip: usize,
}

impl ServerConfig {
    /// The local lane's size: `workers`, or with 0 twice the machine's cores, at least 4.
    /// Local requests are a few microseconds of CPU each and seldom block, so threads
    /// beyond about two a core only contend for SQLite's readers and the CPU (measured:
    /// 16 workers on 2 cores verified 25% slower than 4).
    pub fn local_workers(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (2 * cores).max(4)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            workers: 0,
            wechat_workers: 64,
            max_body_bytes: 65536,
            metrics_public: false,
            trust_forwarded_for: false,
            read_timeout_seconds: 30,
            header_timeout_seconds: 10,
            max_connections: 1024,
            max_connections_per_ip: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub ttl_seconds: i64,
    pub sliding: bool,
    pub max_lifetime_seconds: i64,
    pub expose_openid: bool,
    pub code_replay_seconds: i64,
    /// Sessions one user may hold; a login beyond it ends the least recently used.
    pub max_per_user: i64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            ttl_seconds: 2_592_000,
            sliding: true,
            max_lifetime_seconds: 7_776_000,
            expose_openid: true,
            code_replay_seconds: 60,
            max_per_user: 50,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenApi {
    Stable,
    Classic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeChatConfig {
    pub api_base: String,
    pub timeout_ms: u64,
    pub retries: u32,
    pub token_api: TokenApi,
}

impl Default for WeChatConfig {
    fn default() -> Self {
        WeChatConfig {
            api_base: "https://api.weixin.qq.com".into(),
            timeout_ms: 5000,
            retries: 2,
            token_api: TokenApi::Stable,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecryptConfig {
    pub max_age_seconds: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub login_per_ip_per_minute: u32,
    /// Extension: POST /v1/me/phone per user per hour (each costs a WeChat call).
    pub phone_per_user_per_hour: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { login_per_ip_per_minute: 30, phone_per_user_per_hour: 10 }
    }
}

#[derive(Debug, Clone, Default)]
pub struct InternalConfig {
    pub api_keys: Vec<Secret>,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub name: String,
    pub appid: String,
    pub secret: Secret,
}

/// The file's shape, before environment overrides and validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    database: database::RawDatabase,
    #[serde(default)]
    session: SessionConfig,
    #[serde(default)]
    wechat: WeChatConfig,
    #[serde(default)]
    decrypt: DecryptConfig,
    #[serde(default)]
    rate_limit: RateLimitConfig,
    #[serde(default)]
    internal: RawInternal,
    #[serde(default)]
    apps: Vec<RawApp>,
    #[serde(default)]
    pay: Option<pay::RawPay>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawInternal {
    api_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: String,
    appid: String,
    #[serde(default)]
    secret: String,
}

/// A configuration problem: where (a key path or a file) and what.
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Where the configuration comes from: `--config`, else `WXLOGIN_CONFIG`, else `./appliance.toml`.
pub fn locate(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("WXLOGIN_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("appliance.toml"),
    }
}

/// Reads, parses and validates the file at `path`, with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (pass --config FILE, set WXLOGIN_CONFIG, or try `wxlogin demo` for a no-config start)"
        } else {
            ""
        };
        ConfigError::new(path.display().to_string(), format!("cannot read the configuration file: {e}{hint}"))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_with(&text, base, &|name| std::env::var(name).ok(), Secrets::Required)
}

/// Whether the app secrets must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// `serve` and `check`: a missing secret stops start-up, naming the variable to set.
    Required,
    /// The admin commands (backup, restore, users, sessions, stats) only touch the
    /// database: a secret that is missing (or whose `_FILE` cannot be read) is left empty,
    /// so that they run without access to it. Everything else is validated as usual.
    Optional,
}

/// [`load`] for the admin commands: the same file, parser and checks, but the app
/// secrets may be missing (see [`Secrets::Optional`]).
pub fn load_for_admin(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(path.display().to_string(), format!("cannot read the configuration file: {e}"))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_with(&text, base, &|name| std::env::var(name).ok(), Secrets::Optional)
}

/// Parses `text`; relative paths are resolved against `base`; `env` looks up variables.
pub fn parse(text: &str, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    parse_with(text, base, env, Secrets::Required)
}

/// [`parse`], saying whether the app secrets are required.
pub fn parse_with(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: Secrets,
) -> Result<Config, ConfigError> {
    let raw = deserialize(text)?;
    let mut apps = Vec::with_capacity(raw.apps.len());
    let mut secret_files = Vec::new();
    for (i, app) in raw.apps.into_iter().enumerate() {
        apps.push(match resolve_app(i, &app, base, env, &mut secret_files) {
            Err(_) if secrets == Secrets::Optional => {
                AppConfig { name: app.name, appid: app.appid, secret: Secret::new(String::new()) }
            }
            other => other?,
        });
    }
    let mut api_keys: Vec<Secret> = raw.internal.api_keys.into_iter().map(Secret::new).collect();
    check_api_keys("internal.api_keys", &api_keys)?;
    if let Some(keys) = env("WXLOGIN_INTERNAL_KEYS") {
        let from_env: Vec<Secret> =
            keys.split(',').map(str::trim).filter(|k| !k.is_empty()).map(Secret::from).collect();
        check_api_keys("WXLOGIN_INTERNAL_KEYS", &from_env)?;
        api_keys.extend(from_env);
    }
    let pay = match raw.pay {
        Some(p) => pay::resolve(p, base, env, secrets, &mut secret_files)?,
        None => None,
    };
    let database = database::resolve(raw.database, base, env, &mut secret_files)?;
    let config = Config {
        server: raw.server,
        database,
        session: raw.session,
        wechat: raw.wechat,
        decrypt: raw.decrypt,
        rate_limit: raw.rate_limit,
        internal: InternalConfig { api_keys },
        apps,
        pay,
        secret_files,
    };
    validate(&config)?;
    Ok(config)
}

/// The shortest internal API key accepted: a guessable key opens the access token.
pub const MIN_API_KEY_CHARS: usize = 16;

/// Refuses short keys, naming where the key came from and its position, never the key.
fn check_api_keys(source: &str, keys: &[Secret]) -> Result<(), ConfigError> {
    match keys.iter().position(|k| k.expose().chars().count() < MIN_API_KEY_CHARS) {
        Some(i) => Err(ConfigError::new(
            format!("{source}[{i}]"),
            format!("is shorter than {MIN_API_KEY_CHARS} characters; use a long random key (`openssl rand -hex 24` makes one)"),
        )),
        None => Ok(()),
    }
}

fn deserialize(text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = if path.is_empty() || path == "." { "appliance.toml".to_string() } else { path };
        ConfigError::new(key, without_value(&one_line(inner.message())))
    })
}

/// serde's messages quote the offending value (`invalid type: string "my-secret..."`),
/// and the value may be a secret: only its kind and what was expected are kept.
fn without_value(message: &str) -> String {
    const NAMES_A_KEY: [&str; 3] = ["unknown field ", "missing field ", "duplicate field "];
    const QUOTES_A_VALUE: [&str; 4] = ["invalid type: ", "invalid value: ", "invalid length ", "unknown variant "];
    if NAMES_A_KEY.iter().any(|p| message.starts_with(p)) {
        return message.to_string();
    }
    let expected = match message.rfind(", expected ") {
        Some(i) if QUOTES_A_VALUE.iter().any(|p| message.starts_with(p)) => i,
        _ => message.len(),
    };
    let (head, tail) = message.split_at(expected);
    let head = head.find(['`', '"', '\'']).map_or(head, |q| &head[..q]).trim_end();
    format!("{head}{tail}")
}

/// A syntax error names the line; the parser's message names the grammar it expected,
/// and any quoted text from that line is cut, in case the line holds a secret.
fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
    let key = match line {
        Some(l) => format!("appliance.toml line {l}"),
        None => "appliance.toml".to_string(),
    };
    let source_line = line.and_then(|l| text.lines().nth(l - 1)).unwrap_or(text);
    ConfigError::new(key, without_quoted_source(&one_line(e.message()), source_line))
}

/// `message` with every quoted piece longer than one character that also appears in
/// `source` replaced by `(value not shown)`, and an unclosed quote cut; one-character
/// pieces are grammar (`]`, `=`).
fn without_quoted_source(message: &str, source: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"', '\'']) {
        let quote = rest[open..].chars().next().unwrap_or('`');
        let Some(len) = rest[open + 1..].find(quote) else {
            rest = &rest[..open];
            break;
        };
        let inner = &rest[open + 1..open + 1 + len];
        out.push_str(&rest[..open]);
        if inner.chars().count() > 1 && source.contains(inner) {
            out.push_str("(value not shown)");
        } else {
            out.push_str(&rest[open..open + len + 2]);
        }
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn resolve_app(
    i: usize,
    app: &RawApp,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    secret_files: &mut Vec<PathBuf>,
) -> Result<AppConfig, ConfigError> {
    let key = format!("apps[{i}]");
    let var = secret_var(&app.name);
    let secret = if !app.secret.is_empty() {
        app.secret.clone()
    } else if let Some(s) = env(&var).filter(|s| !s.is_empty()) {
        s
    } else if let Some(file) = env(&format!("{var}_FILE")).filter(|s| !s.is_empty()) {
        let path = base.join(&file);
        let s = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new(format!("{var}_FILE"), format!("cannot read {}: {e}", pay::shown(&path))))?;
        secret_files.push(path);
        s.trim().to_string()
    } else {
        return Err(ConfigError::new(
            format!("{key}.secret"),
            format!("the app secret of {:?} is missing: set {var} (or {var}_FILE), or `secret` in the file", app.name),
        ));
    };
    Ok(AppConfig { name: app.name.clone(), appid: app.appid.clone(), secret: Secret::new(secret) })
}

/// `WXLOGIN_SECRET_<NAME>`: the app name upper-cased, anything not alphanumeric as `_`.
pub fn secret_var(app_name: &str) -> String {
    let name: String =
        app_name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("WXLOGIN_SECRET_{name}")
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    let bad = |key: &str, msg: &str| Err(ConfigError::new(key, msg));
    if c.server.listen.parse::<SocketAddr>().is_err() {
        return bad("server.listen", "must be an address and port such as \"127.0.0.1:8080\"");
    }
    if c.server.workers > 1024 {
        return bad("server.workers", "must be between 0 (sized to this machine) and 1024");
    }
    if !(1..=4096).contains(&c.server.wechat_workers) {
        return bad("server.wechat_workers", "must be between 1 and 4096");
    }
    if !(1024..=64 * 1024 * 1024).contains(&c.server.max_body_bytes) {
        return bad("server.max_body_bytes", "must be between 1024 and 67108864");
    }
    if !(1..=600).contains(&c.server.read_timeout_seconds) {
        return bad("server.read_timeout_seconds", "must be between 1 and 600");
    }
    if !(1..=600).contains(&c.server.header_timeout_seconds) {
        return bad("server.header_timeout_seconds", "must be between 1 and 600");
    }
    if !(16..=100_000).contains(&c.server.max_connections) {
        return bad("server.max_connections", "must be between 16 and 100000");
    }
    if c.server.max_connections_per_ip > 100_000 {
        return bad("server.max_connections_per_ip", "must be between 0 (no cap) and 100000");
    }
    if c.session.ttl_seconds < 60 {
        return bad("session.ttl_seconds", "must be at least 60");
    }
    if c.session.max_lifetime_seconds < c.session.ttl_seconds {
        return bad("session.max_lifetime_seconds", "must be at least session.ttl_seconds");
    }
    if !(0..=300).contains(&c.session.code_replay_seconds) {
        return bad("session.code_replay_seconds", "must be between 0 and 300 (a wx.login code lives 5 minutes)");
    }
    if c.session.max_per_user < 1 {
        return bad("session.max_per_user", "must be at least 1");
    }
    if !(c.wechat.api_base.starts_with("https://") || c.wechat.api_base.starts_with("http://")) {
        return bad("wechat.api_base", "must be an http:// or https:// URL");
    }
    if !(100..=120_000).contains(&c.wechat.timeout_ms) {
        return bad("wechat.timeout_ms", "must be between 100 and 120000");
    }
    if c.wechat.retries > 5 {
        return bad("wechat.retries", "must be between 0 and 5");
    }
    if c.decrypt.max_age_seconds < 0 {
        return bad("decrypt.max_age_seconds", "must be 0 (off) or a positive number of seconds");
    }
    if c.rate_limit.login_per_ip_per_minute == 0 {
        return bad("rate_limit.login_per_ip_per_minute", "must be at least 1");
    }
    if !(1..=10_000).contains(&c.rate_limit.phone_per_user_per_hour) {
        return bad("rate_limit.phone_per_user_per_hour", "must be between 1 and 10000");
    }
    validate_apps(&c.apps)
}

fn validate_apps(apps: &[AppConfig]) -> Result<(), ConfigError> {
    if apps.is_empty() {
        return Err(ConfigError::new("apps", "at least one [[apps]] table is required"));
    }
    for (i, app) in apps.iter().enumerate() {
        let ok_name = !app.name.is_empty()
            && app.name.len() <= 32
            && app.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok_name {
            return Err(ConfigError::new(format!("apps[{i}].name"), "must be 1 to 32 letters, digits, '_' or '-'"));
        }
        if apps[..i].iter().any(|a| a.name == app.name) {
            return Err(ConfigError::new(
                format!("apps[{i}].name"),
                format!("\"{}\" is used by an earlier app", app.name),
            ));
        }
        let ok_appid =
            app.appid.len() >= 3 && app.appid.len() <= 64 && app.appid.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok_appid {
            return Err(ConfigError::new(
                format!("apps[{i}].appid"),
                "must be the mini-program's AppID, such as \"wx4f4bc4dec97d474b\"",
            ));
        }
    }
    Ok(())
}

impl Config {
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests;
