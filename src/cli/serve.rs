//! `wxlogin serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{announce, Args, CliError, Result};
use crate::app::App;
use crate::config::{self, Config};
use crate::http::RunningServer;
use crate::store::ServerLock;

/// How often expired sessions and spent codes are purged.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

pub fn serve(mut args: Args) -> Result<ExitCode> {
    let path = config::locate(args.path("--config")?.as_deref());
    args.finish()?;
    crate::logging::init();
    let config = config::load(&path)?;
    for warning in super::readable_secret_files(&path, &config) {
        log::warn!("{warning}");
    }
    run_until_signal(config, |_| {})
}

/// Runs the service until SIGTERM or SIGINT, then stops it cleanly: in-flight requests
/// finish, the WAL is folded back into the database file, and the exit code is 0.
/// `ready` is called once the server listens (demo prints its walk-through there).
pub fn run_until_signal(config: Config, ready: impl FnOnce(&RunningServer)) -> Result<ExitCode> {
    // Registered before anything starts, so that an early SIGTERM is not the default
    // (instant) death.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    // Held until this function returns: tells `wxlogin restore` (and a second serve) that
    // this database is in use. See store::ServerLock for why a lock file.
    // PostgreSQL is shared by design: instances coordinate through it instead.
    let _lock = match config.database.url {
        None => Some(ServerLock::acquire(&config.database.path).map_err(|e| CliError::new(format!("database: {e}")))?),
        Some(_) => None,
    };
    let app = Arc::new(App::open(config).map_err(|e| CliError::new(format!("database: {e}")))?);
    let server = RunningServer::start(app.clone())?;
    let maintenance = app.spawn_maintenance(MAINTENANCE_EVERY)?;
    // Not joined on the way out: an attempt cut short is sent again after its lease.
    let _webhook = crate::pay::webhook::spawn(&app)?;
    log::info!(
        "wxlogin {} listening on http://{} ({} app(s), database {})",
        env!("CARGO_PKG_VERSION"),
        server.addr(),
        app.config.apps.len(),
        app.store.describe()
    );
    announce(server.addr());
    ready(&server);
    let signal = signals.forever().next();
    log::info!("received signal {}; finishing in-flight requests", signal.unwrap_or(0));
    server.shutdown();
    let _ = maintenance.join();
    if let Err(e) = app.store.checkpoint() {
        log::warn!("could not checkpoint the database on the way out: {e}");
    }
    log::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}
