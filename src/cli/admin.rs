//! The admin commands that run beside a serving instance: `users list|show`,
//! `sessions list|revoke` and `stats`. They open the same database as the server (on
//! SQLite, WAL lets readers and a second writer work beside it; every write is one short
//! `BEGIN IMMEDIATE` transaction; on PostgreSQL they are one more client) and need no app
//! secret.

use std::process::ExitCode;

use super::{Args, CliError, Result};
use crate::config::{self, Config};
use crate::store::{self, Store, User};

/// `wxlogin users list [--app NAME] [--limit N]` and `wxlogin users show ID|OPENID`.
pub fn users(mut args: Args) -> Result<ExitCode> {
    let sub = args.command().ok_or_else(|| CliError::usage("users needs a subcommand: list, show or check-key"))?;
    match sub.as_str() {
        "list" => users_list(args),
        "show" => users_show(args),
        "check-key" => super::check_key::check_key(args),
        other => Err(CliError::usage(format!("unknown users subcommand `{other}`"))),
    }
}

/// `wxlogin sessions list --user ID` and `wxlogin sessions revoke --user ID | --all`.
pub fn sessions(mut args: Args) -> Result<ExitCode> {
    let sub = args.command().ok_or_else(|| CliError::usage("sessions needs a subcommand: list or revoke"))?;
    match sub.as_str() {
        "list" => sessions_list(args),
        "revoke" => sessions_revoke(args),
        other => Err(CliError::usage(format!("unknown sessions subcommand `{other}`"))),
    }
}

/// `wxlogin stats`: users, live sessions and today's logins, in total and per app.
pub fn stats(mut args: Args) -> Result<ExitCode> {
    let (config, store) = open(&mut args)?;
    args.finish()?;
    let s = store.stats(store::now())?;
    println!("users:          {}", s.users);
    println!("live sessions:  {}", s.live_sessions);
    println!("logins today:   {} (UTC day {})", s.logins_today, &utc(store::now())[..10]);
    println!();
    let mut rows = vec![row(&["APP", "USERS", "LIVE SESSIONS", "LOGINS TODAY"])];
    let mut names: Vec<String> = config.apps.iter().map(|a| a.name.clone()).collect();
    names.extend(s.by_app.iter().map(|a| a.app.clone()).filter(|n| config.app(n).is_none()));
    for name in names {
        let a = s.by_app.iter().find(|a| a.app == name).cloned().unwrap_or_default();
        let label = if config.app(&name).is_some() { name } else { format!("{name} (not configured)") };
        rows.push(vec![label, a.users.to_string(), a.live_sessions.to_string(), a.logins_today.to_string()]);
    }
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}

fn users_list(mut args: Args) -> Result<ExitCode> {
    let app = args.value("--app")?;
    let limit = args.number("--limit")?.unwrap_or(50).min(i64::MAX as u64) as i64;
    let (config, store) = open(&mut args)?;
    args.finish()?;
    if let Some(a) = app.as_deref().filter(|a| config.app(a).is_none()) {
        eprintln!("note: no app named \"{a}\" in the configuration");
    }
    let users = store.list_users(app.as_deref(), limit)?;
    let mut rows = vec![row(&["ID", "APP", "OPENID", "UNIONID", "NICKNAME", "PHONE", "CREATED", "LAST LOGIN"])];
    for u in &users {
        rows.push(vec![
            u.id.to_string(),
            u.app.clone(),
            u.openid.clone(),
            opt(&u.unionid),
            opt(&u.nickname),
            opt(&u.phone_number),
            utc(u.created_at),
            utc(u.last_login_at),
        ]);
    }
    print_table(&rows);
    println!(
        "({} user(s), newest first{})",
        users.len(),
        if users.len() as i64 == limit { "; --limit N for more" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

fn users_show(mut args: Args) -> Result<ExitCode> {
    let (_, store) = open(&mut args)?;
    let who = args.positional().ok_or_else(|| CliError::usage("users show needs a user ID or an openid"))?;
    args.finish()?;
    let found = find_users(&store, &who)?;
    let now = store::now();
    for (i, u) in found.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let live = store.list_sessions(u.id, now)?.len();
        let fields = [
            ("id", u.id.to_string()),
            ("app", u.app.clone()),
            ("openid", u.openid.clone()),
            ("unionid", opt(&u.unionid)),
            ("nickname", opt(&u.nickname)),
            ("avatar_url", opt(&u.avatar_url)),
            ("gender", u.gender.map(|g| g.to_string()).unwrap_or_else(|| "-".into())),
            ("phone_number", opt(&u.phone_number)),
            ("country_code", opt(&u.country_code)),
            ("created", utc(u.created_at)),
            ("last login", utc(u.last_login_at)),
            ("live sessions", live.to_string()),
        ];
        for (k, v) in fields {
            println!("{k:<14} {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A number is a user ID (an openid is never all digits); anything else an openid,
/// which may name one user in each of several apps.
fn find_users(store: &Store, who: &str) -> Result<Vec<User>> {
    let found = match who.parse::<i64>() {
        Ok(id) => store.user(id)?.into_iter().collect(),
        Err(_) => store.user_by_openid(who)?,
    };
    if found.is_empty() {
        return Err(CliError::new(format!("no user with ID or openid `{who}`")));
    }
    Ok(found)
}

fn sessions_list(mut args: Args) -> Result<ExitCode> {
    let user = user_id(&mut args)?.ok_or_else(|| CliError::usage("sessions list needs --user ID"))?;
    let (_, store) = open(&mut args)?;
    args.finish()?;
    let now = store::now();
    if store.user(user)?.is_none() {
        return Err(CliError::new(format!("no user with ID {user}")));
    }
    let sessions = store.list_sessions(user, now)?;
    let mut rows = vec![row(&["TOKEN HASH", "CREATED", "LAST SEEN", "EXPIRES"])];
    for s in &sessions {
        rows.push(vec![format!("{}…", s.token_hash_prefix), utc(s.created_at), utc(s.last_seen_at), utc(s.expires_at)]);
    }
    print_table(&rows);
    println!("({} live session(s) of user {user}; tokens are stored only as SHA-256 hashes)", sessions.len());
    Ok(ExitCode::SUCCESS)
}

fn sessions_revoke(mut args: Args) -> Result<ExitCode> {
    let user = user_id(&mut args)?;
    let all = args.switch("--all");
    let (_, store) = open(&mut args)?;
    args.finish()?;
    match (user, all) {
        (Some(id), false) => {
            if store.user(id)?.is_none() {
                return Err(CliError::new(format!("no user with ID {id}")));
            }
            let n = store.revoke_sessions(Some(id))?;
            println!("revoked {n} session(s) of user {id}; their recent login codes no longer replay");
        }
        (None, true) => {
            let n = store.revoke_sessions(None)?;
            println!("revoked all {n} session(s); every user must log in again with a new code");
        }
        _ => return Err(CliError::usage("sessions revoke needs exactly one of --user ID or --all")),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn user_id(args: &mut Args) -> Result<Option<i64>> {
    match args.value("--user")? {
        None => Ok(None),
        Some(v) => {
            v.parse().map(Some).map_err(|_| CliError::usage(format!("--user takes a user ID (a number), not `{v}`")))
        }
    }
}

/// The configuration (secrets optional) and the existing database it names.
pub(super) fn open(args: &mut Args) -> Result<(Config, Store)> {
    let path = config::locate(args.path("--config")?.as_deref());
    let config = config::load_for_admin(&path)?;
    let store = Store::connect_existing(&config.database).map_err(|e| CliError::new(database_error(&config, &e)))?;
    Ok((config, store))
}

/// A database error, naming the database (never a PostgreSQL URL's password).
pub(super) fn database_error(config: &Config, e: &crate::store::StoreError) -> String {
    match &config.database.url {
        None => format!("database {}: {e}", config.database.path.display()),
        Some(url) => {
            let shown = crate::store::describe_url(url).unwrap_or_else(|| "(URL not valid)".into());
            format!("database PostgreSQL {shown}: {e}")
        }
    }
}

pub(super) fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

pub(super) fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

pub(super) fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// `YYYY-MM-DD HH:MM:SSZ` for Unix seconds (UTC), without a date crate.
pub fn utc(ts: i64) -> String {
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400));
    let (y, m, d) = crate::civil::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_732_060_800), "2024-11-20 00:00:00Z");
        assert_eq!(utc(951_782_400 + 3661), "2000-02-29 01:01:01Z");
    }
}
