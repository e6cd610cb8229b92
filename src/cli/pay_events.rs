//! `wxlogin pay events list [--pending] [--limit N]` and `wxlogin pay events retry ID`:
//! the webhook outbox, beside a serving instance (same style as `admin.rs`).

use std::process::ExitCode;

use super::admin::{open, print_table, utc};
use super::{Args, CliError, Result};
use crate::store::{self, EventStatus, OutboxEvent};

/// `wxlogin pay events ...`.
pub fn pay(mut args: Args) -> Result<ExitCode> {
    match args.command().as_deref() {
        Some("events") => {}
        Some(other) => return Err(CliError::usage(format!("unknown pay subcommand `{other}`"))),
        None => return Err(CliError::usage("pay needs a subcommand: events")),
    }
    let sub = args.command().ok_or_else(|| CliError::usage("pay events needs a subcommand: list or retry"))?;
    match sub.as_str() {
        "list" => list(args),
        "retry" => retry(args),
        other => Err(CliError::usage(format!("unknown pay events subcommand `{other}`"))),
    }
}

fn list(mut args: Args) -> Result<ExitCode> {
    let pending = args.switch("--pending");
    let limit = args.number("--limit")?.unwrap_or(50).min(i64::MAX as u64) as usize;
    let (config, store) = open(&mut args)?;
    args.finish()?;
    let events = store.list_pay_events(pending, limit)?;
    let mut rows = vec![["ID", "ORDER", "SEQ", "TYPE", "CREATED", "STATUS", "ATTEMPTS", "WHEN", "LAST ERROR"]
        .iter()
        .map(|c| c.to_string())
        .collect()];
    for e in &events {
        rows.push(vec![
            e.id.clone(),
            e.out_trade_no.clone(),
            e.seq.to_string(),
            e.kind.clone(),
            utc(e.created_at),
            e.status().as_str().to_string(),
            e.attempts.to_string(),
            when(e),
            e.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&rows);
    let what = if pending { "undelivered event(s)" } else { "event(s)" };
    println!(
        "({} {what}, newest first{}; WHEN: delivered at, next attempt, or given up at)",
        events.len(),
        if events.len() == limit { "; --limit N for more" } else { "" }
    );
    if config.pay.as_ref().is_some_and(|p| p.webhook_url.is_empty()) {
        eprintln!("note: pay.webhook_url is empty: events are recorded, not delivered");
    }
    Ok(ExitCode::SUCCESS)
}

fn when(e: &OutboxEvent) -> String {
    match e.status() {
        EventStatus::Delivered => e.delivered_at.map(utc).unwrap_or_default(),
        EventStatus::Failed => e.failed_at.map(utc).unwrap_or_default(),
        EventStatus::Pending => utc(e.next_attempt_at),
    }
}

fn retry(mut args: Args) -> Result<ExitCode> {
    let (_, store) = open(&mut args)?;
    let id = args.positional().ok_or_else(|| CliError::usage("pay events retry needs an event ID"))?;
    args.finish()?;
    let Some(before) = store.retry_event(&id, store::now())? else {
        return Err(CliError::new(format!("no event with ID `{id}` (see `wxlogin pay events list`)")));
    };
    let was = match before.status() {
        EventStatus::Delivered => "was delivered; it will be sent again (receivers drop duplicates by id)",
        EventStatus::Failed => "had been given up on; it is due again, for 3 more days",
        EventStatus::Pending => "was pending; it is due now",
    };
    println!("event {id} ({} of order {}) {was}", before.kind, before.out_trade_no);
    Ok(ExitCode::SUCCESS)
}
