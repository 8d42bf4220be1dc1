//! `selfheal drill`: inject faults into one running container, time detection and recovery
//! from Docker's events and the watchdog's incidents, and hold every round to its time limit.
//!
//! Submodules: `target` finds the container and how to reach its app, `inject` causes the
//! faults, `spacing` decides when the next round may start (not inside the watchdog's backoff
//! from the previous one), `round` observes one round, `split` divides its time into
//! detection, hold and restart, `verdict` judges the rounds, `report` turns them into a
//! table, JSON, Markdown and an SVG timeline.

mod inject;
mod record;
mod report;
mod round;
mod spacing;
mod split;
mod target;
mod verdict;
mod watchdog_api;

pub use report::{percentile, DrillReport, RoundRecord, ScenarioSummary, Stats};
pub use spacing::Pacing;
pub use split::{HoldReason, RoundOutcome, Split};
pub use verdict::{Caveat, Verdict};

use clap::ValueEnum;
use selfheal_core::parse_duration;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// The faults a drill can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// The main process exits (the app's /chaos/crash, else SIGKILL of its host process).
    Crash,
    /// SIGSTOP of the main process: hung as seen from outside, works on any image.
    Freeze,
    /// The app stops answering every request (/chaos/hang).
    Hang,
    /// The app's /health answers 503 (/chaos/unhealthy).
    Unhealthy,
    /// The app leaks memory past its limit (/chaos/leak) and is OOM-killed.
    Oom,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Crash => "crash",
            Scenario::Freeze => "freeze",
            Scenario::Hang => "hang",
            Scenario::Unhealthy => "unhealthy",
            Scenario::Oom => "oom",
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `--slo` item: `30s` for every scenario or `freeze=45s` for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SloItem {
    pub scenario: Option<Scenario>,
    pub limit: Duration,
}

fn slo_item(s: &str) -> Result<SloItem, String> {
    let (scenario, value) = match s.split_once('=') {
        Some((name, v)) => (
            Some(Scenario::from_str(name.trim(), true).map_err(|_| {
                format!("unknown scenario {name:?} (crash, freeze, hang, unhealthy, oom)")
            })?),
            v,
        ),
        None => (None, s),
    };
    let limit = parse_duration(value.trim()).map_err(|e| e.to_string())?;
    if limit.is_zero() {
        return Err("a time limit must be more than 0".into());
    }
    Ok(SloItem { scenario, limit })
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Default time limit of a round: fault injected -> healthy again.
pub const DEFAULT_SLO: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    /// Target container (name or id). Default: the compose service given by --service.
    #[arg(long, conflicts_with = "service")]
    pub container: Option<String>,
    /// Target the container of this compose service (label com.docker.compose.service).
    #[arg(long, default_value = "app")]
    pub service: String,
    /// Compose project of --service (label com.docker.compose.project); needed when several
    /// projects have that service.
    #[arg(long, env = "COMPOSE_PROJECT_NAME")]
    pub project: Option<String>,
    /// Scenarios to run, in order, each --rounds times.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "crash,unhealthy,hang,freeze"
    )]
    pub scenarios: Vec<Scenario>,
    /// Rounds per scenario.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Time limit from fault to healthy again: `30s` for all, `freeze=45s` for one scenario;
    /// repeat or separate with commas. Default 60s.
    #[arg(long, value_delimiter = ',', value_parser = slo_item)]
    pub slo: Vec<SloItem>,
    /// The watchdog's admin API (incidents are read from it).
    #[arg(
        long,
        env = "SELFHEAL_WATCHDOG_URL",
        default_value = "http://127.0.0.1:9100"
    )]
    pub watchdog: String,
    /// Base URL of the app (chaos endpoints, /health). Default: the port of the container's
    /// selfheal.probe.http label (else 8080), published on the host if it is, else the
    /// container's own address.
    #[arg(long)]
    pub app_url: Option<String>,
    /// Bearer token of the app's /chaos endpoints. Default: the container's CHAOS_TOKEN.
    #[arg(long, env = "CHAOS_TOKEN", hide_env_values = true)]
    pub chaos_token: Option<String>,
    /// How long to wait for the container to be healthy (and its incident closed) before a
    /// round.
    #[arg(long, default_value = "120s", value_parser = duration_arg)]
    pub settle_timeout: Duration,
    /// Start each round as soon as the container is healthy again, even inside the watchdog's
    /// backoff from the previous round (to test the backoff). By default a round waits until
    /// the container has been healthy for the backoff's reset period, so that no round is
    /// held by the rounds before it.
    #[arg(long)]
    pub back_to_back: bool,
    /// Run against a container that is not opted in (selfheal.enable=true).
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write a Markdown report here, and its SVG timeline beside it (same name, .svg).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Docker engine address (unix:///var/run/docker.sock, tcp://host:2375).
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
}

impl DrillArgs {
    pub fn pacing(&self) -> Pacing {
        if self.back_to_back {
            Pacing::BackToBack
        } else {
            Pacing::Spaced
        }
    }

    /// The time limit of `scenario`: its own `--slo` item, else the general one, else 60 s.
    pub fn slo_for(&self, scenario: Scenario) -> Duration {
        self.slo
            .iter()
            .rev()
            .find(|s| s.scenario == Some(scenario))
            .or_else(|| self.slo.iter().rev().find(|s| s.scenario.is_none()))
            .map_or(DEFAULT_SLO, |s| s.limit)
    }
}

/// Why a drill could not run at all (as opposed to rounds that missed their limit).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The message includes the cause, so it is not also the `source()` (no `#[from]`).
    #[error("cannot reach Docker: {0}")]
    Docker(crate::docker::DockerError),
    #[error("{0}")]
    Target(String),
    #[error("{0}")]
    Setup(String),
}

impl From<crate::docker::DockerError> for DrillError {
    fn from(e: crate::docker::DockerError) -> Self {
        Self::Docker(e)
    }
}

/// Runs the drill; exit 0 when every round recovered within its limit (the verdict says when
/// only because the limit is generous), 1 when one did not, 2 when the drill could not run.
pub async fn run(args: DrillArgs) -> ExitCode {
    match drive(args).await {
        Ok(report) if report.verdict.passed() => ExitCode::SUCCESS,
        Ok(report) => {
            for f in &report.failures {
                eprintln!("selfheal drill: FAILED {f}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("selfheal drill: {e}");
            ExitCode::from(2)
        }
    }
}

async fn drive(args: DrillArgs) -> Result<DrillReport, DrillError> {
    let docker = crate::docker::connect(args.docker_host.as_deref()).await?;
    let target = target::resolve(&docker, &args).await?;
    if !target.opted_in && !args.force {
        return Err(DrillError::Target(format!(
            "container {} is not opted in (label selfheal.enable=true): the watchdog would not \
             heal it; pass --force to drill it anyway",
            target.name
        )));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| DrillError::Setup(format!("HTTP client: {e}")))?;
    let watchdog = round::WatchdogApi::new(http.clone(), &args.watchdog);
    let watchdog_up = watchdog.reachable().await;
    if !watchdog_up {
        eprintln!(
            "selfheal drill: warning: the watchdog API at {} does not answer; detection comes \
             from Docker's events only, incidents are not awaited, and rounds cannot be spaced \
             past its backoff",
            args.watchdog
        );
    }
    let plan = inject::plan(&args, &target, &docker, &http).await;
    let restarting = plan.iter().filter(|p| p.skip.is_none()).count() as u32 * args.rounds;
    if let Some(max) = target.restart_max {
        if restarting > max {
            eprintln!(
                "selfheal drill: warning: {restarting} rounds need about as many restarts, more \
                 than {}'s restart budget (selfheal.restart.max={max}); later rounds may find it \
                 quarantined",
                target.name
            );
        }
    }
    let total = plan.len() as u32 * args.rounds;
    let mut progress = Progress::new(total);
    let mut rounds = Vec::new();
    let started = SystemTime::now();
    let mut observer = round::Observer::start(docker.clone(), &target.name);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    'all: for p in &plan {
        for n in 1..=args.rounds {
            let label = format!("{} round {n}/{}", p.scenario, args.rounds);
            if let Some(reason) = &p.skip {
                rounds.push(RoundRecord::skipped(p.scenario, n, reason));
                progress.done(&label, "skipped");
                continue;
            }
            let round = round::RoundRun {
                docker: &docker,
                http: &http,
                target: &target,
                scenario: p.scenario,
                number: n,
                slo: args.slo_for(p.scenario),
                settle: args.settle_timeout,
                watchdog: watchdog_up.then_some(&watchdog),
                chaos: p.chaos.as_ref(),
                pacing: args.pacing(),
            };
            let record = {
                let fut = round.run(&mut observer, &progress);
                tokio::pin!(fut);
                tokio::select! {
                    r = &mut fut => Some(r),
                    _ = &mut ctrl_c => {
                        interrupted = true;
                        None
                    }
                }
            };
            match record {
                Some(r) => {
                    let state = match (r.ok(), r.hold) {
                        (false, _) => "FAILED".to_string(),
                        (true, Some(h)) => format!("recovered, held by the watchdog ({h})"),
                        (true, None) => "recovered".to_string(),
                    };
                    progress.done(&label, &state);
                    rounds.push(r);
                }
                None => {
                    // Interrupted: make sure nothing is left frozen.
                    if p.scenario == Scenario::Freeze {
                        inject::thaw(&docker, &target.name).await;
                    }
                    break 'all;
                }
            }
            if let Some(r) = rounds.last() {
                if r.aborts_drill() {
                    break 'all;
                }
            }
        }
    }
    observer.stop();
    progress.finish();
    let report = DrillReport::new(
        &target.describe(),
        started,
        rounds,
        |s| args.slo_for(s),
        args.pacing() == Pacing::Spaced,
        interrupted,
    );
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => return Err(DrillError::Setup(format!("JSON: {e}"))),
        }
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.report {
        let svg = path.with_extension("svg");
        let svg_name = svg
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DrillError::Setup(format!("creating {}: {e}", dir.display())))?;
        }
        std::fs::write(path, report.markdown(&svg_name))
            .and_then(|()| std::fs::write(&svg, report.svg()))
            .map_err(|e| DrillError::Setup(format!("writing {}: {e}", path.display())))?;
        if !args.json {
            println!("report: {} (timeline {})", path.display(), svg.display());
        }
    }
    Ok(report)
}

/// The progress line on stderr: redrawn in place on a terminal, one line per round otherwise.
#[derive(Debug)]
pub struct Progress {
    total: u32,
    done: u32,
    tty: bool,
}

impl Progress {
    fn new(total: u32) -> Self {
        Self {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn bar(&self) -> String {
        const WIDTH: u32 = 24;
        let filled = (self.done * WIDTH).checked_div(self.total).unwrap_or(WIDTH) as usize;
        format!(
            "[{}{}] {}/{}",
            "#".repeat(filled),
            "-".repeat(WIDTH as usize - filled),
            self.done,
            self.total
        )
    }

    /// Shows what the current round is doing (terminal only).
    pub fn status(&self, label: &str, what: &str, elapsed: Duration) {
        if self.tty {
            eprint!(
                "\r\x1b[2K{} {label}: {what} ({:.1}s)",
                self.bar(),
                elapsed.as_secs_f64()
            );
        }
    }

    fn done(&mut self, label: &str, result: &str) {
        self.done += 1;
        if self.tty {
            eprint!("\r\x1b[2K{} {label}: {result}", self.bar());
        } else {
            eprintln!("{} {label}: {result}", self.bar());
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: DrillArgs,
    }

    #[test]
    fn slo_items_apply_per_scenario_then_default() {
        let w = Wrap::parse_from([
            "x",
            "--slo",
            "30s,freeze=45s",
            "--scenarios",
            "crash,freeze",
        ]);
        assert_eq!(w.args.slo_for(Scenario::Crash), Duration::from_secs(30));
        assert_eq!(w.args.slo_for(Scenario::Freeze), Duration::from_secs(45));
        let w = Wrap::parse_from(["x"]);
        assert_eq!(w.args.slo_for(Scenario::Hang), DEFAULT_SLO);
        assert_eq!(w.args.service, "app");
        assert_eq!(w.args.scenarios.len(), 4);
        assert!(Wrap::try_parse_from(["x", "--slo", "nap=3s"]).is_err());
        assert!(Wrap::try_parse_from(["x", "--slo", "0s"]).is_err());
        assert!(Wrap::try_parse_from(["x", "--rounds", "0"]).is_err());
        assert!(Wrap::try_parse_from(["x", "--scenarios", "crash,melt"]).is_err());
    }

    #[test]
    fn progress_bar_fills() {
        let mut p = Progress {
            total: 4,
            done: 0,
            tty: false,
        };
        assert!(p.bar().starts_with("[----"));
        p.done += 2;
        assert_eq!(
            p.bar(),
            format!("[{}{}] 2/4", "#".repeat(12), "-".repeat(12))
        );
    }
}
