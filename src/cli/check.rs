//! `wxlogin check`: is the configuration valid and the database usable? Exit 0 or 1.
//! With `--live`, do WeChat and WeChat Pay accept our credentials?

use std::process::ExitCode;

use super::{Args, CliError, Result};
use crate::config::{self, TokenApi};
use crate::metrics::Metrics;
use crate::pay::{explain as pay_explain, PayError};
use crate::store::{self, SCHEMA_VERSION};
use crate::wechat::access_token::fetch_token;
use crate::wechat::{explain, WeChat};

pub fn check(mut args: Args) -> Result<ExitCode> {
    let path = config::locate(args.path("--config")?.as_deref());
    let live = args.switch("--live");
    args.finish()?;
    let config = config::load(&path)?;
    println!("config: {} is valid ({} app(s): {})", path.display(), config.apps.len(), app_names(&config));
    for warning in super::readable_secret_files(&path, &config) {
        println!("warning: {warning}");
    }
    match &config.database.url {
        None => check_database(&config.database.path)?,
        Some(url) => check_postgres(url)?,
    }
    if live {
        // Both, whatever the first says: an operator fixing one wants to know about the other.
        let wechat_ok = check_live(&config);
        let pay_ok = config.pay.as_ref().is_none_or(|pay| check_pay(&config, pay));
        if !(wechat_ok && pay_ok) {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A missing database is fine (`serve` creates it); an existing one gets the same
/// verification as a backup: integrity_check, a wxlogin schema, a version this binary
/// knows. A newer or foreign file is an error naming the file.
fn check_database(db: &std::path::Path) -> Result<()> {
    if !db.exists() {
        println!("database: {} does not exist yet; it will be created on first start", db.display());
        return Ok(());
    }
    let v = store::verify(db).map_err(|e| CliError::new(format!("database: {}: {e}", db.display())))?;
    let upgrade = if v.version < SCHEMA_VERSION {
        format!(" (will be upgraded to version {SCHEMA_VERSION} on start)")
    } else {
        String::new()
    };
    println!(
        "database: {} is healthy, schema version {}{upgrade}, {} user(s), {} live session(s)",
        db.display(),
        v.version,
        v.users,
        v.live_sessions
    );
    Ok(())
}

/// Connects (no pool, nothing migrated: a check changes nothing), reads the schema
/// version and a few counts. An unreachable server, a refused login or a newer schema is
/// an error naming host:port/database, never the password.
fn check_postgres(url: &crate::secrets::Secret) -> Result<()> {
    let shown = store::describe_url(url).unwrap_or_else(|| "(URL not valid)".into());
    let s = store::inspect_postgres(url).map_err(|e| CliError::new(format!("database: PostgreSQL {shown}: {e}")))?;
    if s.version == 0 {
        println!(
            "database: PostgreSQL {} is reachable and has no wxlogin schema yet; it will be created on first start",
            s.shown
        );
        return Ok(());
    }
    let upgrade = if s.version < s.supported {
        format!(" (will be upgraded to version {} on start)", s.supported)
    } else {
        String::new()
    };
    println!(
        "database: PostgreSQL {} is reachable, schema version {}{upgrade}, {} user(s), {} live session(s)",
        s.shown, s.version, s.users, s.live_sessions
    );
    Ok(())
}

/// Asks WeChat for each app's access token and explains a failure in plain words.
/// Returns whether every app passed.
fn check_live(config: &config::Config) -> bool {
    let wechat = WeChat::new(&config.wechat, Metrics::default());
    let api = match config.wechat.token_api {
        TokenApi::Stable => "stable_token",
        TokenApi::Classic => "token",
    };
    let mut all_ok = true;
    for app in &config.apps {
        match fetch_token(&wechat, config.wechat.token_api, &app.appid, &app.secret, false) {
            Ok((_, expires_in)) => {
                println!(
                    "wechat: app {} ({}): OK, got an access token from {api} (valid for {expires_in} s)",
                    app.name, app.appid
                );
                if config.wechat.token_api == TokenApi::Classic {
                    println!("  note: with token_api = \"classic\" this fetch replaced the token a running server uses; it fetches a new one when WeChat rejects the old one");
                }
            }
            Err(e) => {
                all_ok = false;
                println!(
                    "wechat: app {} ({}): FAILED: {}",
                    app.name,
                    app.appid,
                    explain::token_failure(&e, &config.wechat.api_base)
                );
            }
        }
    }
    all_ok
}

/// Signs a query of an order that cannot exist. WeChat Pay checks the merchant's
/// signature before it looks for the order, so its verified ORDER_NOT_EXIST proves the
/// mchid, the merchant key and serial, and the WeChat Pay public key and id all work.
fn check_pay(config: &config::Config, pay: &config::PayConfig) -> bool {
    let client = bare_client(config, pay);
    if pay.platform_certificates && !check_certificates(&client, pay) {
        return false;
    }
    let made_up = format!("wxlogin-check-{}", crate::secrets::random_id(8));
    match client.query(&made_up) {
        Err(PayError::Refused { code, .. }) if code == "ORDER_NOT_EXIST" => {
            println!(
                "wechat pay: merchant {}: OK, a signed query was accepted and its answer verified (ORDER_NOT_EXIST \
                 for the made-up order {made_up})",
                pay.mchid
            );
            true
        }
        Ok(_) => {
            println!(
                "wechat pay: merchant {}: FAILED: {} answered a query of the made-up order {made_up} as if it \
                 existed; check pay.api_base",
                pay.mchid, pay.api_base
            );
            false
        }
        Err(e) => {
            println!("wechat pay: merchant {}: FAILED: {}", pay.mchid, pay_explain::failure(&e, &pay.api_base));
            false
        }
    }
}

/// The WeChat Pay client of `wxlogin serve` (same base, timeout, retries and keys), with
/// no platform certificate fetched yet.
pub(super) fn bare_client(config: &config::Config, pay: &config::PayConfig) -> crate::pay::PayClient {
    crate::pay::PayClient::new(
        &pay.api_base,
        std::time::Duration::from_millis(config.wechat.timeout_ms),
        config.wechat.retries,
        pay.merchant.clone(),
        pay.verifier.clone(),
    )
}

/// Fetches the platform certificates (`pay.platform_certificates`) and trusts them for the
/// query that follows, as the server does; a failure is explained.
fn check_certificates(client: &crate::pay::PayClient, pay: &config::PayConfig) -> bool {
    match client.certificates(&pay.apiv3_key) {
        Ok(certificates) => {
            let serials: Vec<&str> = certificates.iter().map(|c| c.serial.as_str()).collect();
            println!(
                "wechat pay: platform certificates: OK, {} fetched, decrypted and verified ({})",
                certificates.len(),
                serials.join(", ")
            );
            pay.verifier.set_certificates(certificates);
            true
        }
        Err(e) => {
            println!(
                "wechat pay: platform certificates: FAILED: {}",
                pay_explain::certificates_failure(&e, &pay.api_base)
            );
            false
        }
    }
}

fn app_names(c: &config::Config) -> String {
    c.apps.iter().map(|a| format!("{} ({})", a.name, a.appid)).collect::<Vec<_>>().join(", ")
}
