//! The command line: `watch`, `check`, `incidents`, `healthcheck`.

use crate::config::{WatchArgs, WatchConfig};
use crate::discovery::{self, Discovered};
use crate::docker;
use crate::journal::{self, Incident, IncidentJournal, JournalMetrics};
use crate::shared::Shared;
use crate::watch::Watcher;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod incidents;
use incidents::incidents;

#[derive(Debug, Parser)]
#[command(
    name = "selfheal",
    version,
    about = "Self-healing for Docker containers: detect, restart, record, prove.",
    after_help = "Every flag of watch and check, with its environment variable and default: \
        selfheal watch --help"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "SELFHEAL_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch opted-in containers and heal them.
    Watch(WatchArgs),
    /// Validate the configuration and the labels of the current containers, then exit.
    Check(WatchArgs),
    /// Show recorded incidents, newest first; `incidents show ID`: one with its evidence.
    Incidents(IncidentsArgs),
    /// Exit 0 if the watchdog at --url is healthy (for Docker's HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
    /// Inject faults into a running container and time its recovery against a limit.
    Drill(crate::drill::DrillArgs),
    /// Notification targets: `selfheal notify test` sends a test message to each.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message to every configured target (the flags, environment and file of
    /// `watch`) and print each result; exit 1 if any failed.
    Test(WatchArgs),
}

#[derive(Debug, clap::Args)]
pub struct IncidentsArgs {
    #[command(subcommand)]
    pub show: Option<IncidentsCommand>,
    /// Read the journal in this directory.
    #[arg(
        long,
        env = "SELFHEAL_STATE_DIR",
        default_value = "selfheal-state",
        global = true
    )]
    pub state_dir: PathBuf,
    /// Ask a running watchdog instead (e.g. http://127.0.0.1:9100).
    #[arg(long, global = true)]
    pub api: Option<String>,
    /// Only incidents detected since (RFC 3339 or a duration like 24h).
    #[arg(long)]
    pub since: Option<String>,
    /// Only this container (name or id prefix).
    #[arg(long)]
    pub container: Option<String>,
    /// Print JSON instead of a table (or of text).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// One incident with its evidence: health checks, probe failures, exit, last log lines.
    Show {
        /// The incident's id (the ID column of `selfheal incidents`).
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The watchdog's health endpoint.
    #[arg(
        long,
        env = "SELFHEAL_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:9100/healthz"
    )]
    pub url: String,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Watch(args) => {
            init_logging(cli.log_format);
            watch(args).await
        }
        Command::Check(args) => check(args).await,
        Command::Incidents(args) => incidents(args).await,
        Command::Healthcheck(args) => return healthcheck(args).await,
        Command::Drill(args) => return crate::drill::run(args).await,
        Command::Notify {
            command: NotifyCommand::Test(args),
        } => notify_test(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("selfheal: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.resolve()?;
    let soft = raise_descriptor_limit();
    if soft.is_some_and(|n| cfg.admin_max_connections as u64 > n / 2) {
        tracing::warn!(admin_max_connections = cfg.admin_max_connections, descriptor_limit = ?soft,
            "admin connections may take more than half of the descriptors; probes may run short");
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = crate::metrics::Metrics::register(&mut registry);
    let notify_metrics = crate::notify::NotifyMetrics::register(&mut registry);
    let swarm_metrics = crate::swarm::SwarmMetrics::register(&mut registry);
    let journal_metrics = JournalMetrics {
        write_failures: metrics.journal_write_failures.clone(),
        unpersisted: metrics.incidents_unpersisted.clone(),
    };
    let (journal, recovery) = IncidentJournal::open(&cfg.state_dir, journal_metrics)?;
    if recovery.torn_tail_bytes > 0 {
        tracing::warn!(bytes = recovery.torn_tail_bytes, path = %journal.path().display(),
            "incident journal ended in a torn record (crash while writing); it was cut off");
    }
    for s in recovery
        .skipped
        .iter()
        .filter(|s| s.reason != journal::SkipReason::TornTail)
    {
        tracing::warn!(line = s.line, bytes = s.len, reason = s.reason.as_str(), excerpt = %s.excerpt,
            "skipped an unreadable incident record");
    }
    if recovery.skipped_count > recovery.skipped.len() {
        tracing::warn!(
            more = recovery.skipped_count - recovery.skipped.len(),
            "skipped more unreadable incident records than are listed"
        );
    }
    tracing::info!(records = recovery.records, open = journal.open_incidents().len(), path = %journal.path().display(), "incident journal loaded");
    let shared = Shared::with_metrics(Arc::new(journal), registry, metrics, cfg.dry_run);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", cfg.listen))?;
    // With port 0 the kernel picks the port: this line says which (tests and benches read it).
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "listening on {bound}");
    tracing::info!(listen = %cfg.listen, dry_run = cfg.dry_run, watch_all = cfg.watch_all, "selfheal watchdog starting");
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    let server = {
        let cancel = cancel.clone();
        let app = crate::http::router_guarded(shared.clone(), &cfg.admin_guard);
        let limits = crate::http::server::ConnectionLimits {
            max_connections: cfg.admin_max_connections,
            ..Default::default()
        };
        tokio::spawn(async move {
            crate::http::server::serve(listener, app, limits, cancel).await;
        })
    };
    let journal = shared.journal.clone();
    tokio::spawn(crate::swarm::watch_services(
        cfg.docker_host.clone(),
        cfg.swarm_stuck_after,
        swarm_metrics,
        shared.clone(),
        cancel.clone(),
    ));
    let notifier =
        crate::notify::Notifier::start(cfg.notify.clone(), cfg.host_name.clone(), notify_metrics)?;
    Watcher::new(cfg, shared, notifier)?
        .run(cancel.clone())
        .await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let flushed = tokio::task::spawn_blocking(move || journal.flush(Duration::from_secs(5)))
        .await
        .unwrap_or(false);
    if !flushed {
        tracing::error!("incidents not written to the journal before stopping");
    }
    tracing::info!("selfheal watchdog stopped");
    Ok(ExitCode::SUCCESS)
}

/// Raises the descriptor soft limit to the hard limit and logs both; a failure is logged and
/// the watchdog goes on with the limit it has. Returns the soft limit in force (`None`:
/// unlimited).
fn raise_descriptor_limit() -> Option<u64> {
    match crate::limits::raise_nofile_to_hard() {
        Ok(l) => {
            let text = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
            tracing::info!(
                "descriptor limit (RLIMIT_NOFILE): soft {} -> {}, hard {}",
                text(l.soft_before),
                text(l.soft),
                text(l.hard)
            );
            l.soft
        }
        Err(e) => {
            tracing::warn!(error = %e, "descriptor limit not raised");
            e.soft
        }
    }
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    cancel.cancel();
}

async fn check(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let cfg: WatchConfig = args.resolve()?;
    println!(
        "configuration ok: listen {}, state dir {}, watch-all {}, dry-run {}",
        cfg.listen,
        cfg.state_dir.display(),
        cfg.watch_all,
        cfg.dry_run
    );
    for t in &cfg.notify {
        println!(
            "notify {:<24} {} (from severity {})",
            t.name,
            t.redacted,
            t.min_severity.as_str()
        );
    }
    let docker = docker::connect(cfg.docker_host.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Docker: {e}"))?;
    match docker::identify(&docker).await {
        Ok(engine) => println!("engine {engine}"),
        Err(e) => println!("engine unknown: GET /version failed: {e}"),
    }
    let mut bad = 0;
    let mut watched = 0;
    let mut uninspectable = 0;
    let mut found = Vec::new();
    for c in discovery::list(&docker, &cfg).await? {
        if !c.considered {
            continue;
        }
        match discovery::inspect(&docker, &c.id, &cfg).await {
            Discovered::Watched { info, spec } => {
                watched += 1;
                println!("ok     {:<32} {}", info.name, spec.describe());
                found.push((info, spec));
            }
            Discovered::LabelErrors { info, errors } => {
                bad += 1;
                for e in errors {
                    println!("ERROR  {:<32} {e}", info.name);
                }
            }
            Discovered::NotInspectable(e) => {
                uninspectable += 1;
                println!("ERROR  {:<32} cannot inspect: {e}", c.name);
            }
            Discovered::NotOptedIn | Discovered::Gone => {}
        }
    }
    // Dependencies: shown, and an error there is a warning: the container is still healed.
    let deps = crate::dependents::check_views(&found);
    for (info, _) in &found {
        let Some(d) = deps.get(&info.id) else {
            continue;
        };
        if let Some(e) = &d.dependency_error {
            println!("WARN   {:<32} dependencies off: {e}", info.name);
        }
        for p in &d.depends_on {
            println!(
                "dep    {:<32} depends on {} ({})",
                info.name,
                p.name,
                p.via.as_str()
            );
        }
    }
    println!(
        "{watched} container(s) watched, {bad} with label errors, {uninspectable} not inspectable"
    );
    Ok(if bad + uninspectable > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn notify_test(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.resolve()?;
    if cfg.notify.is_empty() {
        anyhow::bail!("no notification targets configured (--notify URL or --webhook-url URL)");
    }
    let host = match &cfg.host_name {
        Some(h) => h.clone(),
        None => match docker::connect(cfg.docker_host.as_deref()).await {
            Ok(d) => match docker::bounded(d.info()).await {
                Ok(info) => info.name.unwrap_or_default(),
                Err(e) => {
                    eprintln!("selfheal: engine name unknown ({e}); use --host-name");
                    crate::notify::message::UNKNOWN_HOST.into()
                }
            },
            Err(e) => {
                eprintln!("selfheal: engine name unknown ({e}); use --host-name");
                crate::notify::message::UNKNOWN_HOST.into()
            }
        },
    };
    let mut failed = 0;
    for (name, address, result) in crate::notify::test_all(&cfg.notify, &host).await {
        match result {
            Ok(()) => println!("ok    {name:<20} {address}"),
            Err(e) => {
                failed += 1;
                println!("FAIL  {name:<20} {address}: {e}");
            }
        }
    }
    println!(
        "{} target(s), {failed} failed (host {host})",
        cfg.notify.len()
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    {
        Ok(c) => c,
        Err(_) => return ExitCode::from(1),
    };
    match client.get(&args.url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!(
                "unhealthy: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}
