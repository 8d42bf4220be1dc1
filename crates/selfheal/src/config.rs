//! Configuration of `selfheal watch`: flags, their environment variables, and an optional TOML
//! file, merged in that order of precedence and validated before anything runs.

use crate::auth_token::Token;
use crate::http::auth::AdminGuard;
use clap::{ArgAction, Args};
use selfheal_core::{parse_duration, Backoff, WatchDefaults};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Flags shared by `watch` and `check`. Each has an environment variable; the TOML file given
/// by `--config` may set the same keys (flag name without `--`). Defaults are applied after
/// the file is merged, so clap does not know them: each flag's help states its own.
#[derive(Debug, Clone, Default, Args)]
pub struct WatchArgs {
    /// TOML file with the same keys as these flags.
    #[arg(long, env = "SELFHEAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Docker engine address (unix:///var/run/docker.sock, tcp://host:2375) (default: the
    /// local socket).
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Admin server address (/metrics, /healthz, /api/v1/...) (default 127.0.0.1:9100).
    #[arg(long, env = "SELFHEAL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// At most this many open admin connections; at the bound the longest idle one is closed
    /// to make room (default 256).
    #[arg(long, env = "SELFHEAL_ADMIN_MAX_CONNECTIONS")]
    pub admin_max_connections: Option<usize>,
    /// Guard the status page and /api/ with this token: requests carry it as a bearer token
    /// or as the basic-auth password (any user name). Prefer the environment variable: a flag
    /// shows in `ps` (default: open).
    #[arg(long, env = "SELFHEAL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Guard /metrics with this token, as --admin-token does the page; /healthz stays open
    /// (default: open).
    #[arg(long, env = "SELFHEAL_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Where the incident journal lives (default selfheal-state).
    #[arg(long, env = "SELFHEAL_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Watch every container unless it has selfheal.enable=false. `--watch-all=false` turns off
    /// `watch-all = true` from the file (default false).
    #[arg(long, env = "SELFHEAL_WATCH_ALL", value_name = "BOOL", action = ArgAction::Set,
        num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new())]
    pub watch_all: Option<bool>,
    /// Decide and record, but never restart anything. `--dry-run=false` turns off
    /// `dry-run = true` from the file (default false).
    #[arg(long, env = "SELFHEAL_DRY_RUN", value_name = "BOOL", action = ArgAction::Set,
        num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new())]
    pub dry_run: Option<bool>,
    /// Capture evidence for every incident: health-check results, probe failures, the exit,
    /// the container's last log lines (read after the restart is issued). `--evidence=false`
    /// turns it off (default true).
    #[arg(long, env = "SELFHEAL_EVIDENCE", value_name = "BOOL", action = ArgAction::Set,
        num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new())]
    pub evidence: Option<bool>,
    /// POST a JSON notification here (the generic JSON kind of --notify).
    #[arg(long, env = "SELFHEAL_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// A notification target, repeatable; the scheme names the kind: json+https://…,
    /// slack+https://…, discord+https://…, ntfy+https://host/topic,
    /// gotify+https://host/?token=…, telegram+https://api.telegram.org/?token=…&chats=…,
    /// pushover+https://api.pushover.net/?token=…&user=…,
    /// smtp://user:pass@host:587?from=…&to=…[&ca-file=…], or a shoutrrr URL (telegram://,
    /// pushover://, discord://, gotify://, ntfy://, slack://). Options after '#': name=NAME (for metrics), severity=info|warning|critical (the least
    /// severe message sent). The environment variable takes several, separated by spaces
    /// (default: none).
    #[arg(
        long = "notify",
        env = "SELFHEAL_NOTIFY",
        value_name = "URL",
        value_delimiter = ' '
    )]
    pub notify: Vec<String>,
    /// The host name notifications give (default: the Docker engine's name, from GET /info).
    #[arg(long, env = "SELFHEAL_HOST_NAME")]
    pub host_name: Option<String>,
    /// At most this many restarts in flight at once (default 4).
    #[arg(long, env = "SELFHEAL_MAX_CONCURRENT_RESTARTS")]
    pub max_concurrent_restarts: Option<usize>,
    /// Default probe interval (label selfheal.probe.interval) (default 1s).
    #[arg(long, env = "SELFHEAL_PROBE_INTERVAL", value_parser = duration_arg)]
    pub probe_interval: Option<Duration>,
    /// Default probe timeout (label selfheal.probe.timeout) (default 500ms).
    #[arg(long, env = "SELFHEAL_PROBE_TIMEOUT", value_parser = duration_arg)]
    pub probe_timeout: Option<Duration>,
    /// Default consecutive failures that make a container unhealthy (label
    /// selfheal.probe.failures) (default 2).
    #[arg(long, env = "SELFHEAL_PROBE_FAILURES")]
    pub probe_failures: Option<u32>,
    /// Default grace after each start (label selfheal.start-period) (default 10s).
    #[arg(long, env = "SELFHEAL_START_PERIOD", value_parser = duration_arg)]
    pub start_period: Option<Duration>,
    /// Default restart budget: restarts allowed per window before quarantine (label
    /// selfheal.restart.max) (default 10).
    #[arg(long, env = "SELFHEAL_RESTART_MAX")]
    pub restart_max: Option<u32>,
    /// Default restart budget window (label selfheal.restart.window) (default 1h).
    #[arg(long, env = "SELFHEAL_RESTART_WINDOW", value_parser = duration_arg)]
    pub restart_window: Option<Duration>,
    /// First backoff gap between restarts of one container, doubling each time (default 1s).
    #[arg(long, env = "SELFHEAL_BACKOFF_INITIAL", value_parser = duration_arg)]
    pub backoff_initial: Option<Duration>,
    /// Largest backoff gap (default 60s).
    #[arg(long, env = "SELFHEAL_BACKOFF_MAX", value_parser = duration_arg)]
    pub backoff_max: Option<Duration>,
    /// Healthy this long and the backoff starts over (default 60s).
    #[arg(long, env = "SELFHEAL_BACKOFF_RESET", value_parser = duration_arg)]
    pub backoff_reset: Option<Duration>,
    /// Only consider containers carrying this label (KEY=VALUE), e.g. one compose project:
    /// com.docker.compose.project=myapp (default: no filter).
    #[arg(long, env = "SELFHEAL_FILTER_LABEL")]
    pub filter_label: Option<String>,
    /// Docker network whose address probes use (default: one the watchdog shares, else the first).
    #[arg(long, env = "SELFHEAL_PROBE_NETWORK")]
    pub probe_network: Option<String>,
    /// On the Swarm leader: a service running fewer tasks than desired for this long is
    /// reported stuck (default 5m).
    #[arg(long, env = "SELFHEAL_SWARM_STUCK_AFTER", value_parser = duration_arg)]
    pub swarm_stuck_after: Option<Duration>,
    /// On Swarm: HOST:PORT that resolves to every node's watchdog, e.g. tasks.watchdog:9100 on
    /// the stack's overlay network. Asked where an ended task's replacement runs, and by a
    /// worker for a service's restart condition (default: none).
    #[arg(long, env = "SELFHEAL_SWARM_PEERS")]
    pub swarm_peers: Option<String>,
    /// On Swarm: how long an ended task's slot waits for its replacement to be seen healthy
    /// (here or by a peer) before its incident is closed abandoned (default 10m).
    #[arg(long, env = "SELFHEAL_SWARM_HANDOVER_WAIT", value_parser = duration_arg)]
    pub swarm_handover_wait: Option<Duration>,
}

/// The TOML file: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    docker_host: Option<String>,
    listen: Option<String>,
    admin_max_connections: Option<usize>,
    admin_token: Option<String>,
    metrics_token: Option<String>,
    state_dir: Option<PathBuf>,
    watch_all: Option<bool>,
    dry_run: Option<bool>,
    evidence: Option<bool>,
    webhook_url: Option<String>,
    notify: Option<Vec<String>>,
    host_name: Option<String>,
    max_concurrent_restarts: Option<usize>,
    probe_interval: Option<String>,
    probe_timeout: Option<String>,
    probe_failures: Option<u32>,
    start_period: Option<String>,
    restart_max: Option<u32>,
    restart_window: Option<String>,
    backoff_initial: Option<String>,
    backoff_max: Option<String>,
    backoff_reset: Option<String>,
    probe_network: Option<String>,
    filter_label: Option<String>,
    swarm_stuck_after: Option<String>,
    swarm_peers: Option<String>,
    swarm_handover_wait: Option<String>,
}

/// A configuration error, naming the flag or key and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Target(#[from] crate::notify::TargetError),
    #[error("{key}: {message} (got {value:?})")]
    Invalid {
        key: &'static str,
        value: String,
        message: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub docker_host: Option<String>,
    pub listen: SocketAddr,
    pub admin_max_connections: usize,
    pub admin_guard: AdminGuard,
    pub state_dir: PathBuf,
    pub watch_all: bool,
    pub dry_run: bool,
    /// Capture evidence for incidents.
    pub evidence: bool,
    pub webhook_url: Option<String>,
    /// Every notification target: `--webhook-url` first (as the json kind), then `--notify`.
    pub notify: Vec<crate::notify::Target>,
    pub host_name: Option<String>,
    pub max_concurrent_restarts: usize,
    pub defaults: WatchDefaults,
    pub backoff: Backoff,
    pub probe_network: Option<String>,
    pub filter_label: Option<String>,
    pub swarm_stuck_after: Duration,
    /// HOST:PORT of every node's watchdog (checked: a host and a port).
    pub swarm_peers: Option<String>,
    pub swarm_handover_wait: Duration,
}

/// `HOST:PORT`, with a host and a port number.
fn host_port(key: &'static str, value: String) -> Result<String, ConfigError> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(value),
        _ => Err(ConfigError::Invalid {
            key,
            value,
            message: "expected HOST:PORT, e.g. tasks.watchdog:9100".into(),
        }),
    }
}

impl WatchArgs {
    pub fn resolve(&self) -> Result<WatchConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let dur = |key: &'static str,
                   flag: Option<Duration>,
                   file: &Option<String>,
                   default: Duration| {
            match (flag, file) {
                (Some(d), _) => Ok(d),
                (None, Some(s)) => parse_duration(s).map_err(|e| ConfigError::Invalid {
                    key,
                    value: s.clone(),
                    message: e.to_string(),
                }),
                (None, None) => Ok(default),
            }
        };
        let d = WatchDefaults::default();
        let b = Backoff::default();
        let listen = match (self.listen, &file.listen) {
            (Some(a), _) => a,
            (None, Some(s)) => s.parse().map_err(|_| ConfigError::Invalid {
                key: "listen",
                value: s.clone(),
                message: "expected ADDRESS:PORT, e.g. 127.0.0.1:9100".into(),
            })?,
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 9100)),
        };
        let cfg = WatchConfig {
            docker_host: self.docker_host.clone().or(file.docker_host),
            listen,
            admin_max_connections: self
                .admin_max_connections
                .or(file.admin_max_connections)
                .unwrap_or(crate::http::server::DEFAULT_MAX_CONNECTIONS),
            admin_guard: AdminGuard {
                admin: token("admin-token", self.admin_token.clone().or(file.admin_token))?,
                metrics: token(
                    "metrics-token",
                    self.metrics_token.clone().or(file.metrics_token),
                )?,
            },
            state_dir: self
                .state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from("selfheal-state")),
            watch_all: self.watch_all.or(file.watch_all).unwrap_or(false),
            dry_run: self.dry_run.or(file.dry_run).unwrap_or(false),
            evidence: self.evidence.or(file.evidence).unwrap_or(true),
            webhook_url: self.webhook_url.clone().or(file.webhook_url),
            notify: Vec::new(),
            host_name: self
                .host_name
                .clone()
                .or(file.host_name)
                .filter(|h| !h.trim().is_empty()),
            max_concurrent_restarts: self
                .max_concurrent_restarts
                .or(file.max_concurrent_restarts)
                .unwrap_or(4),
            defaults: WatchDefaults {
                interval: dur(
                    "probe-interval",
                    self.probe_interval,
                    &file.probe_interval,
                    d.interval,
                )?,
                timeout: dur(
                    "probe-timeout",
                    self.probe_timeout,
                    &file.probe_timeout,
                    d.timeout,
                )?,
                failures: self
                    .probe_failures
                    .or(file.probe_failures)
                    .unwrap_or(d.failures),
                start_period: dur(
                    "start-period",
                    self.start_period,
                    &file.start_period,
                    d.start_period,
                )?,
                restart_max: self
                    .restart_max
                    .or(file.restart_max)
                    .unwrap_or(d.restart_max),
                restart_window: dur(
                    "restart-window",
                    self.restart_window,
                    &file.restart_window,
                    d.restart_window,
                )?,
            },
            backoff: Backoff {
                initial: dur(
                    "backoff-initial",
                    self.backoff_initial,
                    &file.backoff_initial,
                    b.initial,
                )?,
                max: dur("backoff-max", self.backoff_max, &file.backoff_max, b.max)?,
                factor: b.factor,
                reset_after: dur(
                    "backoff-reset",
                    self.backoff_reset,
                    &file.backoff_reset,
                    b.reset_after,
                )?,
            },
            probe_network: self.probe_network.clone().or(file.probe_network),
            filter_label: self.filter_label.clone().or(file.filter_label),
            swarm_stuck_after: dur(
                "swarm-stuck-after",
                self.swarm_stuck_after,
                &file.swarm_stuck_after,
                selfheal_core::swarm::STUCK_AFTER,
            )?,
            swarm_peers: match self.swarm_peers.clone().or(file.swarm_peers) {
                Some(p) => Some(host_port("swarm-peers", p)?),
                None => None,
            },
            swarm_handover_wait: dur(
                "swarm-handover-wait",
                self.swarm_handover_wait,
                &file.swarm_handover_wait,
                selfheal_core::swarm::HANDOVER_WAIT,
            )?,
        };
        cfg.validate()?;
        let mut cfg = cfg;
        let listed = if self.notify.is_empty() {
            file.notify.unwrap_or_default()
        } else {
            self.notify.clone()
        };
        let raw = cfg
            .webhook_url
            .iter()
            .map(|u| format!("json+{u}"))
            .chain(listed.into_iter().filter(|u| !u.trim().is_empty()));
        cfg.notify = raw
            .enumerate()
            .map(|(i, u)| crate::notify::target::parse(&u, i))
            .collect::<Result<_, _>>()?;
        let mut names = std::collections::HashSet::new();
        if let Some(t) = cfg.notify.iter().find(|t| !names.insert(t.name.clone())) {
            return Err(ConfigError::Invalid {
                key: "notify",
                value: t.redacted.clone(),
                message: format!("two targets are named {:?}", t.name),
            });
        }
        Ok(cfg)
    }
}

/// A guard token: no blanks (they would not survive a header), not empty.
fn token(key: &'static str, value: Option<String>) -> Result<Option<Token>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(ConfigError::Invalid {
                key,
                // The value is a secret: say what is wrong with it, not what it is.
                value: format!("{} characters", v.chars().count()),
                message: "must be non-empty, without spaces or control characters".into(),
            })
        }
        Some(v) => Ok(Some(Token::new(&v))),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.into(),
        message: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.into(),
        message: e.to_string(),
    })
}

impl WatchConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, value: String, message: &str| {
            Err(ConfigError::Invalid {
                key,
                value,
                message: message.into(),
            })
        };
        if self.max_concurrent_restarts == 0 {
            return invalid("max-concurrent-restarts", "0".into(), "must be at least 1");
        }
        if self.admin_max_connections == 0 {
            return invalid("admin-max-connections", "0".into(), "must be at least 1");
        }
        if self.defaults.failures == 0 {
            return invalid("probe-failures", "0".into(), "must be at least 1");
        }
        if self.defaults.interval < Duration::from_millis(100) {
            return invalid(
                "probe-interval",
                format!("{:?}", self.defaults.interval),
                "must be at least 100ms",
            );
        }
        if self.defaults.timeout.is_zero() {
            return invalid("probe-timeout", "0s".into(), "must be more than 0");
        }
        if self.defaults.restart_window < Duration::from_secs(1) {
            let v = format!("{:?}", self.defaults.restart_window);
            return invalid("restart-window", v, "must be at least 1s");
        }
        if self.backoff.initial.is_zero() || self.backoff.reset_after.is_zero() {
            let v = format!("{:?}/{:?}", self.backoff.initial, self.backoff.reset_after);
            return invalid("backoff-initial/backoff-reset", v, "must be more than 0");
        }
        if self.backoff.initial > self.backoff.max {
            return invalid(
                "backoff-initial",
                format!("{:?}", self.backoff.initial),
                "must not exceed backoff-max",
            );
        }
        if let Some(url) = &self.webhook_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return invalid(
                        "webhook-url",
                        selfheal_core::labels::redact_userinfo(url),
                        "expected an http:// or https:// URL",
                    )
                }
            }
        }
        if let Some(f) = &self.filter_label {
            if f.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return invalid("filter-label", f.clone(), "expected KEY=VALUE");
            }
        }
        if let Some(host) = &self.docker_host {
            if !(host.starts_with("unix://")
                || host.starts_with("tcp://")
                || host.starts_with("http://"))
            {
                return invalid(
                    "docker-host",
                    host.clone(),
                    "expected unix:///path or tcp://host:port",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
