//! Causing the faults: the app's /chaos endpoints where it has them, signals otherwise.
//!
//! `docker kill` is not a crash: Docker and the watchdog both read it as a manual stop and
//! neither restarts the container. So a crash without a chaos endpoint is a SIGKILL of the
//! main process sent from the host, which looks to both like the process died by itself.

use super::target::Target;
use super::{DrillArgs, Scenario};
use crate::docker::bounded;
use bollard::query_parameters::{InspectContainerOptions, KillContainerOptionsBuilder};
use bollard::Docker;
use std::time::Duration;

const CHAOS_TIMEOUT: Duration = Duration::from_secs(5);
/// Leaked beyond the limit, so the OOM kill is certain even with some memory already free.
const OOM_MARGIN_MIB: i64 = 64;

/// The app's fault injection, when it has it and the token is known.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub token: String,
}

/// One scenario as it will run, or why it is skipped.
#[derive(Debug, Clone)]
pub struct Planned {
    pub scenario: Scenario,
    pub skip: Option<String>,
    pub chaos: Option<Chaos>,
}

/// Does the app answer `/` with `"chaos_enabled": true`?
async fn chaos_enabled(http: &reqwest::Client, app: &str) -> bool {
    let Ok(r) = http
        .get(format!("{app}/"))
        .timeout(CHAOS_TIMEOUT)
        .send()
        .await
    else {
        return false;
    };
    r.json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v.get("chaos_enabled").and_then(|c| c.as_bool()))
        .unwrap_or(false)
}

pub async fn plan(
    args: &DrillArgs,
    target: &Target,
    docker: &Docker,
    http: &reqwest::Client,
) -> Vec<Planned> {
    let app = target.app_url(docker).await;
    let chaos = match (&target.chaos_token, &app) {
        (Some(token), Some(app)) if chaos_enabled(http, app).await => Some(Chaos {
            token: token.clone(),
        }),
        _ => None,
    };
    let mut out: Vec<Planned> = Vec::new();
    for &scenario in &args.scenarios {
        if out.iter().any(|p| p.scenario == scenario) {
            continue;
        }
        let needs_chaos = matches!(
            scenario,
            Scenario::Hang | Scenario::Unhealthy | Scenario::Oom
        );
        let skip = if needs_chaos && chaos.is_none() {
            Some(format!(
                "needs the app's /chaos endpoints (selfheal/demo-app with CHAOS_TOKEN set; pass \
                 the token with --chaos-token), which {} does not offer",
                target.name
            ))
        } else if scenario == Scenario::Oom && target.memory_limit.is_none() {
            Some(format!(
                "{} has no memory limit: a leak would eat the host's memory instead of \
                 tripping the container's OOM killer; set mem_limit to drill oom",
                target.name
            ))
        } else {
            None
        };
        out.push(Planned {
            scenario,
            skip,
            chaos: chaos.clone(),
        });
    }
    out
}

/// Injects `scenario`. Returns what was done, for the report.
pub async fn inject(
    docker: &Docker,
    http: &reqwest::Client,
    target: &Target,
    scenario: Scenario,
    chaos: Option<&Chaos>,
) -> Result<&'static str, String> {
    let app = target.app_url(docker).await;
    let chaos_call = |path: &'static str| {
        let token = chaos.map(|c| c.token.clone());
        let app = app.clone();
        async move {
            let (Some(token), Some(app)) = (token, app) else {
                return Err("no chaos endpoint".to_string());
            };
            let r = http
                .post(format!("{app}/chaos/{path}"))
                .bearer_auth(token)
                .timeout(CHAOS_TIMEOUT)
                .send()
                .await
                .map_err(|e| format!("POST {app}/chaos/{path}: {e}"))?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("POST {app}/chaos/{path}: {}", r.status()))
            }
        }
    };
    match scenario {
        Scenario::Crash if chaos.is_some() => chaos_call("crash").await.map(|()| "/chaos/crash"),
        Scenario::Crash => kill_main_process(docker, &target.name)
            .await
            .map(|()| "SIGKILL of the main process (host)"),
        Scenario::Freeze => signal(docker, &target.name, "SIGSTOP")
            .await
            .map(|()| "docker kill --signal SIGSTOP"),
        Scenario::Hang => chaos_call("hang").await.map(|()| "/chaos/hang"),
        Scenario::Unhealthy => chaos_call("unhealthy").await.map(|()| "/chaos/unhealthy"),
        Scenario::Oom => {
            let limit = target.memory_limit.unwrap_or(0);
            let mb = limit / (1024 * 1024) + OOM_MARGIN_MIB;
            let (Some(token), Some(app)) = (chaos.map(|c| c.token.clone()), app) else {
                return Err("no chaos endpoint".into());
            };
            // The answer never comes: the process is killed while allocating.
            let http = http.clone();
            tokio::spawn(async move {
                let _ = http
                    .post(format!("{app}/chaos/leak?mb={mb}"))
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
            });
            Ok("/chaos/leak past the memory limit")
        }
    }
}

async fn signal(docker: &Docker, id: &str, sig: &str) -> Result<(), String> {
    bounded(docker.kill_container(
        id,
        Some(KillContainerOptionsBuilder::default().signal(sig).build()),
    ))
    .await
    .map_err(|e| format!("signal {sig}: {e}"))
}

/// SIGKILL of the container's main process from the host: needs the drill on the Docker host
/// with the right to signal that process (root, or the same user).
async fn kill_main_process(docker: &Docker, id: &str) -> Result<(), String> {
    let c = bounded(docker.inspect_container(id, None::<InspectContainerOptions>))
        .await
        .map_err(|e| e.to_string())?;
    let pid = c
        .state
        .and_then(|s| s.pid)
        .filter(|p| *p > 0)
        .ok_or("the container has no running main process")?;
    let out = tokio::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .output()
        .await
        .map_err(|e| format!("kill: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "kill -KILL {pid} failed ({}): a crash without a /chaos endpoint needs the drill to \
             run as root on the Docker host",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Resumes a frozen main process. Harmless on a running one; used whenever a freeze round ends
/// without the container having been restarted, so nothing is left stopped.
pub async fn thaw(docker: &Docker, id: &str) {
    if let Err(e) = signal(docker, id, "SIGCONT").await {
        eprintln!("selfheal drill: could not resume the frozen container: {e}");
    }
}
