//! The Docker Engine API edge: connecting, and turning inspect results into what the watchdog
//! needs. docs/reference.md lists the calls made, for users who put a socket proxy in front:
//! GET /version, GET /_ping, GET /events, GET /containers/json, GET /containers/{id}/json,
//! GET /containers/{id}/logs (evidence, [`capture`]),
//! POST /containers/{id}/restart; to recreate a container ([`recreate`]) also
//! POST /containers/{id}/stop, POST /containers/{id}/rename, POST /containers/create,
//! POST /containers/{id}/start, DELETE /containers/{id}, and, in its own networks,
//! GET /images/{name}/json and POST /networks/{id}/connect.
//! The same calls serve Podman's Docker-compatible API ([`identify`] tells them apart;
//! `docs/podman.md`).
//!
//! Its parts: [`events`] types the engine's events (Docker's and Podman's dialects) at the edge;
//! [`executor`] is the only code that changes containers; [`recreate`] builds a replacement
//! from a container's own configuration; [`capture`] reads a fault's evidence back (the
//! types are `crate::evidence`'s, which needs nothing from here).

pub mod capture;
pub mod events;
pub mod executor;
pub mod recreate;

use bollard::models::{ContainerInspectResponse, HealthStatusEnum, RestartPolicyNameEnum};
use bollard::Docker;
use selfheal_core::{DockerHealth, Exit, RestartPolicy, RunStatus, Snapshot};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// Timeout of ordinary API calls (list, inspect, ping). Restarts get their own, longer one.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// The event stream is long-lived; liveness is checked by pinging instead.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("container not found")]
    NotFound,
    // Transparent: the message and the `source()` are bollard's own, so a printed chain
    // does not show bollard's message twice.
    #[error(transparent)]
    Api(#[from] bollard::errors::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl DockerError {
    pub fn from_api(e: bollard::errors::Error) -> Self {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => DockerError::NotFound,
            e => DockerError::Api(e),
        }
    }
}

/// Connects to `host` (DOCKER_HOST syntax) or the local default socket, and settles the API
/// version with the engine so older engines (API 1.41) are served too.
pub async fn connect(host: Option<&str>) -> Result<Docker, DockerError> {
    let docker = match host {
        Some(h) if h.starts_with("unix://") => {
            Docker::connect_with_unix(h, STREAM_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)?
        }
        Some(h) => {
            Docker::connect_with_http(h, STREAM_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)?
        }
        None => Docker::connect_with_local_defaults()?.with_timeout(STREAM_TIMEOUT),
    };
    match tokio::time::timeout(API_TIMEOUT, docker.negotiate_version()).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(DockerError::Timeout(API_TIMEOUT)),
    }
}

/// Which engine answers on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

/// The engine behind the socket, from `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub kind: EngineKind,
    pub version: String,
    pub api_version: String,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            EngineKind::Docker => "Docker",
            EngineKind::Podman => "Podman",
        };
        write!(f, "{kind} {} (API {})", self.version, self.api_version)
    }
}

impl Engine {
    /// Podman's compatible API names itself in a component (`Podman Engine`) or, in some
    /// builds, in `Platform.Name`; Docker's components are `Engine`, `containerd`, `runc`.
    pub fn from_version(v: &bollard::models::SystemVersion) -> Self {
        let is_podman = |name: &str| name.to_ascii_lowercase().contains("podman");
        let podman = v.components.iter().flatten().find(|c| is_podman(&c.name));
        let named_podman = v.platform.as_ref().is_some_and(|p| is_podman(&p.name));
        let kind = if podman.is_some() || named_podman {
            EngineKind::Podman
        } else {
            EngineKind::Docker
        };
        let version = podman
            .map(|c| c.version.clone())
            .or_else(|| v.version.clone())
            .unwrap_or_else(|| "(version unknown)".into());
        Self {
            kind,
            version,
            api_version: v.api_version.clone().unwrap_or_else(|| "?".into()),
        }
    }
}

/// Asks the engine what it is.
pub async fn identify(docker: &Docker) -> Result<Engine, DockerError> {
    Ok(Engine::from_version(&bounded(docker.version()).await?))
}

/// Runs one bounded API call.
pub async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, DockerError> {
    match tokio::time::timeout(API_TIMEOUT, fut).await {
        Ok(r) => r.map_err(DockerError::from_api),
        Err(_) => Err(DockerError::Timeout(API_TIMEOUT)),
    }
}

/// What the watchdog knows about one container from `inspect`.
#[derive(Debug, Clone, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
    pub paused: bool,
    /// Waiting for Docker's restart policy to start it again.
    pub restarting: bool,
    pub exit_code: i64,
    /// When the current run of failing HEALTHCHECK results began (`State.Health.Log`).
    pub health_failing_since: Option<SystemTime>,
    pub started_at: Option<SystemTime>,
    pub health: Option<DockerHealth>,
    pub has_healthcheck: bool,
    pub restart_policy: String,
    pub stop_timeout: Option<u32>,
    /// Network name -> address.
    pub addresses: Vec<(String, IpAddr)>,
    pub host_network: bool,
    /// `HostConfig.NetworkMode` as Docker keeps it (`container:<id>` for a network dependent).
    pub network_mode: Option<String>,
    pub oom_killed: bool,
    pub restart_count: i64,
    /// `on-failure:N`: Docker gives up after N restarts (0 = never).
    pub max_retries: i64,
}

impl ContainerInfo {
    pub fn from_inspect(c: ContainerInspectResponse) -> Self {
        let config = c.config.unwrap_or_default();
        let state = c.state.unwrap_or_default();
        let host = c.host_config.unwrap_or_default();
        let has_healthcheck = config
            .healthcheck
            .as_ref()
            .and_then(|h| h.test.as_ref())
            .is_some_and(|t| !t.is_empty() && t[0] != "NONE");
        let health = state
            .health
            .as_ref()
            .and_then(|h| h.status)
            .and_then(|s| match s {
                HealthStatusEnum::HEALTHY => Some(DockerHealth::Healthy),
                HealthStatusEnum::UNHEALTHY => Some(DockerHealth::Unhealthy),
                HealthStatusEnum::STARTING => Some(DockerHealth::Starting),
                _ => None,
            });
        let health_failing_since = state
            .health
            .as_ref()
            .and_then(|h| h.log.as_ref())
            .and_then(|log| first_failing_check(log));
        let mut addresses: Vec<(String, IpAddr)> = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(net, ep)| {
                let ip = ep.ip_address.filter(|s| !s.is_empty())?.parse().ok()?;
                Some((net, ip))
            })
            .collect();
        addresses.sort();
        let max_retries = host
            .restart_policy
            .as_ref()
            .and_then(|p| p.maximum_retry_count)
            .unwrap_or(0);
        let restart_policy = host
            .restart_policy
            .and_then(|p| p.name)
            .map(|n| match n {
                RestartPolicyNameEnum::ALWAYS => "always",
                RestartPolicyNameEnum::UNLESS_STOPPED => "unless-stopped",
                RestartPolicyNameEnum::ON_FAILURE => "on-failure",
                _ => "no",
            })
            .unwrap_or("no")
            .to_string();
        ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            labels: config.labels.unwrap_or_default(),
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            restarting: state.restarting.unwrap_or(false),
            exit_code: state.exit_code.unwrap_or(0),
            health_failing_since,
            started_at: state
                .started_at
                .as_deref()
                .and_then(|s| humantime::parse_rfc3339_weak(s).ok()),
            health,
            has_healthcheck,
            restart_policy,
            stop_timeout: config.stop_timeout.and_then(|t| u32::try_from(t).ok()),
            host_network: host.network_mode.as_deref() == Some("host"),
            network_mode: host.network_mode.clone(),
            addresses,
            oom_killed: state.oom_killed.unwrap_or(false),
            restart_count: c.restart_count.unwrap_or(0),
            max_retries,
        }
    }

    pub fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy::from_docker(&self.restart_policy, self.max_retries)
    }

    /// How the process ended last, as of this inspect.
    pub fn exit(&self, code: i64, oom_killed: bool) -> Exit {
        Exit {
            code: Some(code),
            oom_killed,
            restart_count: self.restart_count,
        }
    }

    /// What the healing core needs of this inspect; `at` maps Docker's times to the core's.
    pub fn snapshot(&self, at: impl Fn(SystemTime) -> tokio::time::Instant) -> Snapshot {
        let exit = self.exit(self.exit_code, self.oom_killed);
        let status = match (self.running, self.started_at) {
            (true, Some(started)) if !self.restarting => RunStatus::Running {
                started_at: at(started),
                paused: self.paused,
            },
            _ if self.restarting => RunStatus::Restarting { exit },
            _ => RunStatus::Exited { exit },
        };
        Snapshot {
            status,
            health: self.health.filter(|_| self.running),
        }
    }

    pub fn compose_project(&self) -> Option<String> {
        self.labels.get("com.docker.compose.project").cloned()
    }

    pub fn compose_service(&self) -> Option<String> {
        self.labels.get("com.docker.compose.service").cloned()
    }

    /// The address probes use: on `preferred` network if given, else on a network the watchdog
    /// shares with the container, else the first one; loopback for host networking.
    pub fn probe_address(
        &self,
        preferred: Option<&str>,
        own_networks: &[String],
    ) -> Option<IpAddr> {
        if self.host_network {
            return Some(IpAddr::from([127, 0, 0, 1]));
        }
        if let Some(p) = preferred {
            if let Some((_, ip)) = self.addresses.iter().find(|(n, _)| n == p) {
                return Some(*ip);
            }
        }
        self.addresses
            .iter()
            .find(|(n, _)| own_networks.contains(n))
            .or(self.addresses.first())
            .map(|(_, ip)| *ip)
    }
}

/// The start of the oldest failing check in the unbroken run of failures that ends the log.
fn first_failing_check(log: &[bollard::models::HealthcheckResult]) -> Option<SystemTime> {
    log.iter()
        .rev()
        .take_while(|r| r.exit_code.is_some_and(|c| c != 0))
        .filter_map(|r| r.start.as_ref())
        .filter_map(|t| humantime::parse_rfc3339_weak(t).ok())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_answer_tells_podman_from_docker() {
        // `GET /version` as Podman 4.3.1 and Docker 20.10 answered it (trimmed).
        let podman: bollard::models::SystemVersion = serde_json::from_str(
            r#"{"Platform":{"Name":"linux/amd64/debian-12"},"Components":[{"Name":"Podman Engine","Version":"4.3.1","Details":{"APIVersion":"4.3.1"}},{"Name":"Conmon","Version":"conmon version 2.1.6"}],"Version":"4.3.1","ApiVersion":"1.41"}"#,
        )
        .unwrap();
        let docker: bollard::models::SystemVersion = serde_json::from_str(
            r#"{"Platform":{"Name":""},"Components":[{"Name":"Engine","Version":"20.10.24+dfsg1"},{"Name":"containerd","Version":"1.6.20"},{"Name":"runc","Version":"1.1.5"}],"Version":"20.10.24+dfsg1","ApiVersion":"1.41"}"#,
        )
        .unwrap();
        assert_eq!(
            Engine::from_version(&podman).to_string(),
            "Podman 4.3.1 (API 1.41)"
        );
        assert_eq!(
            Engine::from_version(&docker).to_string(),
            "Docker 20.10.24+dfsg1 (API 1.41)"
        );
        let named: bollard::models::SystemVersion = serde_json::from_str(
            r#"{"Platform":{"Name":"Podman Engine"},"Version":"5.0.0","ApiVersion":"1.41"}"#,
        )
        .unwrap();
        assert_eq!(Engine::from_version(&named).kind, EngineKind::Podman);
    }

    #[test]
    fn probe_address_prefers_shared_networks() {
        let info = ContainerInfo {
            addresses: vec![
                ("a_default".into(), "172.18.0.2".parse().unwrap()),
                ("b_private".into(), "172.19.0.5".parse().unwrap()),
            ],
            ..Default::default()
        };
        assert_eq!(
            info.probe_address(None, &[]),
            Some("172.18.0.2".parse().unwrap())
        );
        assert_eq!(
            info.probe_address(None, &["b_private".into()]),
            Some("172.19.0.5".parse().unwrap())
        );
        assert_eq!(
            info.probe_address(Some("b_private"), &[]),
            Some("172.19.0.5".parse().unwrap())
        );
        let host = ContainerInfo {
            host_network: true,
            ..Default::default()
        };
        assert_eq!(
            host.probe_address(None, &[]),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(ContainerInfo::default().probe_address(None, &[]), None);
    }
}
