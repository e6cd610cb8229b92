//! `wxlogin orders list | show | sync | refund`: WeChat Pay orders, beside a serving
//! instance. `list` and `show` only read the database (no key needed); `refund` refunds
//! through the server's own code (`Payments::refund`: recorded first, idempotent on
//! `--out-refund-no`); `sync` asks WeChat Pay about one order and applies what it says
//! with the server's own code (`Payments::ask_and_apply`), exactly as a notification
//! would: a SUCCESS with the order's mchid, appid and amount becomes `paid` (once, with
//! its event), a CLOSED closes the order here.

use std::process::ExitCode;

use super::admin::{opt, print_table, row, user_id};
use super::{Args, CliError, Result};
use crate::config::{self, Config, PayConfig};
use crate::metrics::Metrics;
use crate::pay::explain;
use crate::payments::{Payments, SyncError, SyncOutcome};
use crate::store::{self, NewRefund, Order, OrderState, Refund, Store};

/// `wxlogin orders list|show|sync|refund`.
pub fn orders(mut args: Args) -> Result<ExitCode> {
    let sub = args.command().ok_or_else(|| CliError::usage("orders needs a subcommand: list, show, sync or refund"))?;
    match sub.as_str() {
        "list" => list(args),
        "show" => show(args),
        "sync" => sync(args),
        "refund" => refund(args),
        other => Err(CliError::usage(format!("unknown orders subcommand `{other}`"))),
    }
}

fn list(mut args: Args) -> Result<ExitCode> {
    let state =
        match args.value("--state")? {
            None => None,
            Some(s) => Some(OrderState::parse(&s).ok_or_else(|| {
                CliError::usage(format!("--state takes created, paid, closed or refunded, not `{s}`"))
            })?),
        };
    let user = user_id(&mut args)?;
    let limit = usize::try_from(args.number("--limit")?.unwrap_or(50)).unwrap_or(usize::MAX);
    let opened = open(&mut args)?;
    args.finish()?;
    opened.require_table()?;
    let orders = opened.store.list_orders(state, user, limit)?;
    let mut rows = vec![row(&["OUT_TRADE_NO", "STATE", "USER", "APP", "PRODUCT", "AMOUNT", "CREATED", "PAID"])];
    for o in &orders {
        rows.push(vec![
            o.out_trade_no.clone(),
            o.state.as_str().into(),
            o.user_id.to_string(),
            o.app.clone(),
            opt(&o.product),
            money(o.amount, &o.currency),
            super::admin::utc(o.created_at),
            o.paid_at.map(super::admin::utc).unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&rows);
    println!(
        "({} order(s), newest first{})",
        orders.len(),
        if orders.len() == limit { "; --limit N for more" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

fn show(mut args: Args) -> Result<ExitCode> {
    let no = args.positional().ok_or_else(|| CliError::usage("orders show needs an OUT_TRADE_NO"))?;
    let opened = open(&mut args)?;
    args.finish()?;
    opened.require_table()?;
    let order = find(&opened.store, &no)?;
    print_order(&order);
    let events = opened.store.order_events(&no)?;
    println!();
    let mut rows = vec![row(&["EVENT", "TYPE", "CREATED", "DELIVERED", "ATTEMPTS", "ID"])];
    for e in &events {
        rows.push(vec![
            e.seq.to_string(),
            e.kind.clone(),
            super::admin::utc(e.created_at),
            e.delivered_at.map(super::admin::utc).unwrap_or_else(|| "-".into()),
            e.attempts.to_string(),
            e.id.clone(),
        ]);
    }
    print_table(&rows);
    println!("({} event(s), oldest first)", events.len());
    let refunds = opened.store.refunds_of_order(&no)?;
    if !refunds.is_empty() {
        println!();
        print_refunds(&refunds);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_refunds(refunds: &[Refund]) {
    let mut rows = vec![row(&["OUT_REFUND_NO", "STATE", "AMOUNT", "CREATED", "SUCCEEDED", "REFUND_ID", "REASON"])];
    for r in refunds {
        rows.push(vec![
            r.out_refund_no.clone(),
            r.state.as_str().into(),
            format!("{} fen", r.amount),
            super::admin::utc(r.created_at),
            r.succeeded_at.map(super::admin::utc).unwrap_or_else(|| "-".into()),
            opt(&r.refund_id),
            opt(&r.reason),
        ]);
    }
    print_table(&rows);
    println!("({} refund(s), oldest first)", refunds.len());
}

/// `orders refund NO --amount FEN [--reason TEXT] [--out-refund-no NO]`: exit 0 when
/// WeChat Pay took the refund (its result may still be `processing`: the server's
/// maintenance task follows it), 1 otherwise. Without an answer from WeChat Pay the
/// refund stays recorded: run the command again with the printed `--out-refund-no`.
fn refund(mut args: Args) -> Result<ExitCode> {
    let no = args.positional().ok_or_else(|| CliError::usage("orders refund needs an OUT_TRADE_NO"))?;
    let amount = args.number("--amount")?.ok_or_else(|| CliError::usage("orders refund needs --amount FEN"))?;
    let amount = i64::try_from(amount)
        .ok()
        .filter(|a| crate::config::pay::AMOUNT.contains(a))
        .ok_or_else(|| CliError::usage("--amount must be from 1 to 1000000000 fen"))?;
    let reason = args.value("--reason")?;
    let out_refund_no = args.value("--out-refund-no")?;
    let opened = open(&mut args)?;
    args.finish()?;
    opened.require_keys()?;
    let payments = payments(&opened.config)?;
    let now = store::now();
    let out_refund_no = out_refund_no.unwrap_or_else(|| format!("R{now}{}", crate::secrets::random_id(6)));
    let new = NewRefund {
        out_refund_no: &out_refund_no,
        out_trade_no: &no,
        amount,
        reason: reason.as_deref(),
        created_at: now,
    };
    match payments.refund(&opened.store, &new, now) {
        Ok((status, r)) => {
            let what = if status == 201 { "refund" } else { "refund already made with this --out-refund-no" };
            println!("order {no}: {what} {out_refund_no} of {} fen: {}", r.amount, r.state.as_str());
            print_refunds(&opened.store.refunds_of_order(&no)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let retry = match opened.store.refund(&out_refund_no)? {
                Some(_) => format!("; it is recorded: retry with --out-refund-no {out_refund_no}"),
                None => String::new(),
            };
            Err(CliError::new(format!("order {no}: the refund failed: {}{retry}", e.message())))
        }
    }
}

fn print_order(o: &Order) {
    let time = |t: Option<i64>| t.map(super::admin::utc).unwrap_or_else(|| "-".into());
    let fields = [
        ("out_trade_no", o.out_trade_no.clone()),
        ("state", o.state.as_str().to_string()),
        ("app", o.app.clone()),
        ("user", o.user_id.to_string()),
        ("openid", o.openid.clone()),
        ("product", opt(&o.product)),
        ("description", o.description.clone()),
        ("amount", format!("{} fen ({})", o.amount, money(o.amount, &o.currency))),
        ("attach", opt(&o.attach)),
        ("transaction_id", opt(&o.transaction_id)),
        ("created", super::admin::utc(o.created_at)),
        ("expires", super::admin::utc(o.expires_at)),
        ("paid", time(o.paid_at)),
        ("refunded", format!("{} fen", o.refunded_amount)),
        ("prepay", if o.prepay_id.is_some() { format!("yes, at {}", time(o.prepay_at)) } else { "no".into() }),
    ];
    for (k, v) in fields {
        println!("{k:<15} {v}");
    }
}

/// `orders sync NO`: asks WeChat Pay now, through the same code as `?sync=true` and the
/// maintenance pass ([`Payments::ask_and_apply`]). Exit 0 when its answer was applied (or
/// said nothing changed), 1 when it could not be asked or its answer could not be applied.
fn sync(mut args: Args) -> Result<ExitCode> {
    let no = args.positional().ok_or_else(|| CliError::usage("orders sync needs an OUT_TRADE_NO"))?;
    let opened = open(&mut args)?;
    args.finish()?;
    let pay = opened.require_keys()?;
    let (config, store) = (&opened.config, &opened.store);
    let payments = payments(config)?;
    let order = find(store, &no)?;
    let before = order.state;
    let synced = match payments.ask_and_apply(config, store, order, store::now()) {
        Ok(s) => s,
        Err(SyncError::Unasked(e)) => {
            return Err(CliError::new(format!("order {no}: {}", explain::failure(&e, &pay.api_base))))
        }
        Err(SyncError::Store(e)) => return Err(e.into()),
        Err(SyncError::Vanished) => return Err(gone(&no)),
    };
    let after = synced.order.state.as_str();
    let Some(state) = synced.trade_state else {
        println!(
            "order {no}: WeChat Pay has no such order (ORDER_NOT_EXIST: it was never placed there); unchanged, {after}"
        );
        return Ok(ExitCode::SUCCESS);
    };
    let transaction = synced.transaction_id.map(|t| format!(" (transaction {t})")).unwrap_or_default();
    match synced.outcome {
        SyncOutcome::Changed => {
            println!("order {no}: WeChat Pay says {state}{transaction}; {} -> {after}", before.as_str());
            Ok(ExitCode::SUCCESS)
        }
        SyncOutcome::Unchanged if synced.order.state == before && before != OrderState::Created => {
            println!("order {no}: WeChat Pay says {state}; already {after}, unchanged");
            Ok(ExitCode::SUCCESS)
        }
        SyncOutcome::Unchanged | SyncOutcome::NotAtWeChatPay => {
            println!("order {no}: WeChat Pay says {state}; unchanged, {after}");
            Ok(ExitCode::SUCCESS)
        }
        SyncOutcome::NotApplied(why) => {
            Err(CliError::new(format!("order {no}: WeChat Pay says {state}{transaction}, but {why}; nothing recorded")))
        }
    }
}

fn gone(no: &str) -> CliError {
    CliError::new(format!("order {no} vanished from the database meanwhile"))
}

fn find(store: &Store, no: &str) -> Result<Order> {
    store.order(no)?.ok_or_else(|| CliError::new(format!("no order `{no}`")))
}

/// The server's own WeChat Pay operations, with its client (same base, timeout, retries
/// and keys). With `pay.platform_certificates`, the certificates are fetched first, as
/// `serve` does at start-up (a failure is explained, and the calls then fail as
/// unverified).
fn payments(config: &Config) -> Result<Payments> {
    let payments = Payments::new(config, Metrics::default()).ok_or_else(not_configured)?;
    if payments.config.platform_certificates {
        if let Err(e) = payments.refresh_certificates() {
            eprintln!(
                "warning: wechat pay: platform certificates: {}",
                explain::certificates_failure(&e, &payments.config.api_base)
            );
        }
    }
    Ok(payments)
}

/// Where the command found the configuration, and whether it has a `[pay]` table.
struct Opened {
    config: Config,
    store: Store,
    pay_table: bool,
}

impl Opened {
    /// `list` and `show` only read the database: a `[pay]` table is enough, its keys (which
    /// an operator's shell may not have) are not needed.
    fn require_table(&self) -> Result<()> {
        if self.pay_table {
            Ok(())
        } else {
            Err(not_configured())
        }
    }

    /// `sync` and `refund` talk to WeChat Pay: the keys must load.
    fn require_keys(&self) -> Result<&PayConfig> {
        match (&self.config.pay, self.pay_table) {
            (Some(pay), _) => Ok(pay),
            (None, true) => Err(CliError::new(
                "the [pay] keys could not be loaded (missing or unreadable; `wxlogin check` says which), so WeChat \
                 Pay cannot be asked",
            )),
            (None, false) => Err(not_configured()),
        }
    }
}

fn not_configured() -> CliError {
    CliError::new("payments are not configured (the configuration has no [pay] table)")
}

/// The configuration (secrets optional) and the existing database it names.
fn open(args: &mut Args) -> Result<Opened> {
    let path = config::locate(args.path("--config")?.as_deref());
    let config = config::load_for_admin(&path)?;
    // load_for_admin has just read and parsed this file.
    let pay_table = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("pay"));
    let store = Store::connect_existing(&config.database)
        .map_err(|e| CliError::new(super::admin::database_error(&config, &e)))?;
    Ok(Opened { config, store, pay_table })
}

/// `990` fen in CNY -> `9.90 CNY`.
fn money(fen: i64, currency: &str) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}.{:02} {currency}", fen.unsigned_abs() / 100, fen.unsigned_abs() % 100)
}

#[cfg(test)]
mod tests {
    use super::money;

    #[test]
    fn money_in_yuan() {
        assert_eq!(money(990, "CNY"), "9.90 CNY");
        assert_eq!(money(1, "CNY"), "0.01 CNY");
        assert_eq!(money(100_000, "CNY"), "1000.00 CNY");
    }
}
