//! Finding the drill's container (by name or compose service) and how to reach its app.

use super::{DrillArgs, DrillError};
use crate::docker::{bounded, ContainerInfo, DockerError};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use bollard::Docker;
use selfheal_core::labels::parse_labels;
use selfheal_core::WatchDefaults;
use std::collections::HashMap;

const SERVICE_LABEL: &str = "com.docker.compose.service";
const PROJECT_LABEL: &str = "com.docker.compose.project";

/// The container under drill, as found when the drill started. It is followed by its name
/// (Docker's API takes a name wherever it takes an id): the watchdog's ladder may recreate it,
/// which gives the container under that name a new id.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub service: Option<String>,
    pub project: Option<String>,
    pub opted_in: bool,
    pub has_healthcheck: bool,
    pub restart_max: Option<u32>,
    /// Memory limit in bytes (0 or absent: none).
    pub memory_limit: Option<i64>,
    /// Chaos token: the flag, else the container's own CHAOS_TOKEN.
    pub chaos_token: Option<String>,
    /// App port and health path, from selfheal.probe.http, else 8080 and /health.
    pub app_port: u16,
    pub health_path: String,
    pub app_url_override: Option<String>,
}

impl Target {
    pub fn describe(&self) -> String {
        match (&self.service, &self.project) {
            (Some(s), Some(p)) => format!("{} (service {s} of project {p})", self.name),
            _ => self.name.clone(),
        }
    }

    /// The app's base URL now (a restart may move an ephemeral host port or the address).
    pub async fn app_url(&self, docker: &Docker) -> Option<String> {
        if let Some(u) = &self.app_url_override {
            return Some(u.trim_end_matches('/').to_string());
        }
        let c = bounded(docker.inspect_container(&self.name, None::<InspectContainerOptions>))
            .await
            .ok()?;
        app_url_of(&c, self.app_port)
    }
}

/// Published on the host: `127.0.0.1:<host port>`; else the container's own address.
fn app_url_of(c: &ContainerInspectResponse, port: u16) -> Option<String> {
    let published = c
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
        .and_then(|p| p.get(&format!("{port}/tcp")).cloned().flatten())
        .unwrap_or_default()
        .into_iter()
        .find_map(|b| {
            let host_port = b.host_port.filter(|p| !p.is_empty())?;
            let ip = match b.host_ip.as_deref() {
                None | Some("") | Some("0.0.0.0") => "127.0.0.1".to_string(),
                Some("::") => "[::1]".to_string(),
                Some(ip) if ip.contains(':') => format!("[{ip}]"),
                Some(ip) => ip.to_string(),
            };
            Some(format!("http://{ip}:{host_port}"))
        });
    if published.is_some() {
        return published;
    }
    let info = ContainerInfo::from_inspect(c.clone());
    match info.probe_address(None, &[])? {
        std::net::IpAddr::V6(ip) => Some(format!("http://[{ip}]:{port}")),
        ip => Some(format!("http://{ip}:{port}")),
    }
}

pub async fn resolve(docker: &Docker, args: &DrillArgs) -> Result<Target, DrillError> {
    let id = match &args.container {
        Some(c) => c.clone(),
        None => find_service(docker, &args.service, args.project.as_deref()).await?,
    };
    let c = match bounded(docker.inspect_container(&id, None::<InspectContainerOptions>)).await {
        Ok(c) => c,
        Err(DockerError::NotFound) => {
            return Err(DrillError::Target(format!("no container named {id:?}")))
        }
        Err(e) => return Err(e.into()),
    };
    let memory_limit = c
        .host_config
        .as_ref()
        .and_then(|h| h.memory)
        .filter(|m| *m > 0);
    let env: HashMap<String, String> = c
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
        .collect();
    let info = ContainerInfo::from_inspect(c);
    if !info.running {
        return Err(DrillError::Target(format!(
            "container {} is not running; start it first",
            info.name
        )));
    }
    let opted_in = info
        .labels
        .get(selfheal_core::labels::ENABLE)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let spec = parse_labels(&info.labels, &WatchDefaults::default(), true)
        .ok()
        .flatten();
    let (app_port, health_path) = spec
        .as_ref()
        .and_then(|s| s.probe.as_ref())
        .filter(|p| p.kind == selfheal_core::ProbeKind::Http && p.host.is_none())
        .map_or((8080, "/health".to_string()), |p| (p.port, p.path.clone()));
    let restart_max = info
        .labels
        .contains_key("selfheal.restart.max")
        .then(|| spec.as_ref().map(|s| s.restart_max))
        .flatten();
    Ok(Target {
        service: info.compose_service(),
        project: info.compose_project(),
        name: info.name.clone(),
        opted_in,
        has_healthcheck: info.has_healthcheck,
        restart_max,
        memory_limit,
        chaos_token: args
            .chaos_token
            .clone()
            .or_else(|| env.get("CHAOS_TOKEN").cloned())
            .filter(|t| !t.is_empty()),
        app_port,
        health_path,
        app_url_override: args.app_url.clone(),
    })
}

async fn find_service(
    docker: &Docker,
    service: &str,
    project: Option<&str>,
) -> Result<String, DrillError> {
    let mut wanted = vec![format!("{SERVICE_LABEL}={service}")];
    if let Some(p) = project {
        wanted.push(format!("{PROJECT_LABEL}={p}"));
    }
    let filters = HashMap::from([("label", wanted.iter().map(String::as_str).collect())]);
    let list = bounded(
        docker.list_containers(Some(
            ListContainersOptionsBuilder::default()
                .filters(&filters)
                .build(),
        )),
    )
    .await?;
    let of_project = project.map_or(String::new(), |p| format!(" of project {p}"));
    match list.as_slice() {
        [] => Err(DrillError::Target(format!(
            "no running container of compose service {service:?}{of_project}; start the stack \
             (make up) or name one with --container"
        ))),
        [one] => one
            .id
            .clone()
            .ok_or_else(|| DrillError::Target("container without id".into())),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|c| {
                    let name = c
                        .names
                        .as_ref()
                        .and_then(|n| n.first())
                        .map_or("?", |n| n.trim_start_matches('/'));
                    let proj = c
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(PROJECT_LABEL))
                        .map_or("?", String::as_str);
                    format!("{name} (project {proj})")
                })
                .collect();
            Err(DrillError::Target(format!(
                "{} running containers of compose service {service:?}{of_project}: {}; choose \
                 one with --project or --container",
                many.len(),
                names.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{NetworkSettings, PortBinding};

    #[test]
    fn published_port_wins_and_wildcards_mean_loopback() {
        let mut ports = HashMap::new();
        ports.insert(
            "8080/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some("32768".into()),
            }]),
        );
        let c = ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            app_url_of(&c, 8080).as_deref(),
            Some("http://127.0.0.1:32768")
        );
        assert_eq!(app_url_of(&c, 9000), None);
    }
}
