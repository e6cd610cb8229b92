//! One function per subcommand. Arguments are parsed by hand: the grammar is small and
//! a parser crate would be most of the binary's dependencies' compile time.

mod admin;
mod args;
mod backup;
mod check;
mod check_key;
mod copy_db;
mod demo;
mod orders;
mod pay_events;
mod serve;

use std::fmt;
use std::process::ExitCode;

pub use args::Args;

/// A command's failure: one line for stderr, and the exit code.
#[derive(Debug)]
pub struct CliError {
    message: String,
    usage: bool,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), usage: false }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError { message: format!("{} (see `wxlogin help`)", message.into()), usage: true }
    }

    /// 2 for a command line that makes no sense, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        if self.usage {
            2
        } else {
            1
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError::new(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

pub const HELP: &str = "\
wxlogin: the login backend for WeChat mini-programs, in one binary

USAGE:
  wxlogin serve   [--config FILE]           run the service
  wxlogin demo    [--listen ADDR]           the service plus a built-in fake WeChat and WeChat
                                            Pay on a fresh database, with a printed walk-through
  wxlogin check   [--config FILE] [--live]  validate the configuration and the database (exit 0/1);
                                            --live also fetches each app's access token from WeChat,
                                            signs a WeChat Pay query of a made-up order when [pay] is
                                            set, and explains a failure in plain words
  wxlogin backup  DEST [--force] [--config FILE]
                                            consistent, verified online copy, safe while serving;
                                            never replaces an existing DEST without --force
  wxlogin restore SRC [--config FILE]       put a verified backup in place (refuses while a
                                            server holds the database; keeps the old file); on
                                            PostgreSQL both print the pg_dump / pg_restore lines
                                            to use instead and exit 1
  wxlogin copy-db --from SQLITE_PATH (--to postgres://... | --to-file FILE)
                                            move an installation into an empty PostgreSQL database
                                            (every row, ids and sessions kept; one transaction), then
                                            print each table's count on both sides (exit 0 when all
                                            match); --to-file reads the URL from FILE, out of `ps`
  wxlogin users   list [--app NAME] [--limit N] | show ID|OPENID | check-key ID
                                            (check-key asks WeChat whether the user's session_key
                                            is still valid: prints valid / stale, exit 0/1)
  wxlogin sessions list --user ID | revoke --user ID | revoke --all
                                            (tokens are never shown, only a hash prefix)
  wxlogin stats                             users, live sessions, logins today, by app
  wxlogin orders  list [--state S] [--user ID] [--limit N] | show OUT_TRADE_NO | sync OUT_TRADE_NO
                                            WeChat Pay orders, newest first (S: created, paid, closed,
                                            refunded); show: the order, its events and refunds; sync asks
                                            WeChat Pay now and applies a payment or a close as a
                                            notification would
  wxlogin orders  refund OUT_TRADE_NO --amount FEN [--reason TEXT] [--out-refund-no NO]
                                            refund part or all of a paid order (a retry with the same
                                            --out-refund-no never refunds twice)
  wxlogin pay events list [--pending] [--limit N] | retry ID
                                            the webhook's events, newest first; retry makes one
                                            due now (a failed one for 3 more days)
  wxlogin fake-wechat [--listen ADDR] [--app APPID:SECRET]... [--latency-ms N] [--mock-codes]
                                            the fake WeChat API alone, for integration tests
                                            (--mock-codes: accept unseen codes mock-<user>-<n>
                                            once each, for load tests)
                    [--pay-mchid ID --pay-merchant-public-key FILE --pay-apiv3-key-file FILE]
                    [--pay-merchant-serial S] [--pay-appid APPID]... [--allow-http-notify]
                    [--pay-notify-to URL] [--pay-platform-mode public_key|certificate|mixed]
                                            with it a fake WeChat Pay (APIv3) on the same port;
                                            without --pay-*, WeChat's public test merchant and
                                            fixed test keys, printed on stderr
  wxlogin --version | help

The configuration is --config FILE, else $WXLOGIN_CONFIG, else ./appliance.toml.
App secrets may come from WXLOGIN_SECRET_<NAME> or WXLOGIN_SECRET_<NAME>_FILE.
backup, restore, users (but check-key), sessions, stats, orders and pay events need no app secret
(orders sync and refund need the [pay] keys), and all but restore work while the server runs. Add
--config FILE to any of them.
Logging: RUST_LOG=info (default), debug, warn, ...
";

/// Runs the command line `args` (without the program name).
pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args = Args::new(args);
    let Some(command) = args.command() else {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    };
    match command.as_str() {
        "serve" => serve::serve(args),
        "demo" => demo::demo(args),
        "check" => check::check(args),
        "backup" => backup::backup(args),
        "restore" => backup::restore(args),
        "copy-db" => copy_db::copy_db(args),
        "users" => admin::users(args),
        "sessions" => admin::sessions(args),
        "stats" => admin::stats(args),
        "orders" => orders::orders(args),
        "pay" => pay_events::pay(args),
        "fake-wechat" => demo::fake_wechat(args),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        "--version" | "-V" | "version" => {
            println!("wxlogin {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(CliError::usage(format!("unknown command `{other}`"))),
    }
}

/// One warning per file with secrets in it (the configuration file, `_FILE` secrets)
/// that every user can read. Not a failure: the operator may share it on purpose.
fn readable_secret_files(config_path: &std::path::Path, config: &crate::config::Config) -> Vec<String> {
    let config_file = crate::files::readable_by_others(config_path, "the configuration file");
    let secrets = config.secret_files.iter().filter_map(|p| crate::files::readable_by_others(p, "the secret file"));
    config_file.into_iter().chain(secrets).collect()
}

/// Prints the line scripts and tests wait for, and flushes it at once.
fn announce(addr: std::net::SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
}
