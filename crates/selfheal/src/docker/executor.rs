//! The executor: the only code that changes containers. It carries out the healing core's
//! orders as they are and reports what happened in the core's own terms; it decides nothing.
//! Its verbs ([`Verb`]): restart (a plain container), recreate (a fresh container from the
//! old one's configuration: the ladder's step after restarts, or a network dependent whose
//! parent was recreated), and stop or kill (a Swarm task, which Swarm then replaces: never
//! restarted in place, see `selfheal_core::swarm`). When its turn comes it tells the core what
//! it sees and asks whether to go on ([`Turn`]): a user's stop meanwhile is the core's to weigh.

use crate::docker::recreate::{image_for, own_replacement, parked_name, replacement, Replacement};
use crate::docker::{ContainerInfo, DockerError};
use crate::evidence::Captured;
use crate::evidence::Logs;
use bollard::models::NetworkConnectRequest;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use prometheus_client::metrics::gauge::Gauge;
use selfheal_core::{EndMode, Order, OrderOutcome, Verb, Verdict};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{RwLock, Semaphore};

/// Margin over the stop timeout for the HTTP call, so the client never gives up while Docker is
/// still waiting for the process to exit (a known failure of autoheal-style tools).
const RESTART_MARGIN: Duration = Duration::from_secs(30);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The executor's turn for an order came: it reports whether it saw the container running
/// (`None`: it did not look, or could not) and is told whether to send the order.
pub type Turn<'a> = Box<dyn FnOnce(Option<bool>) -> BoxFuture<'a, Verdict> + Send + 'a>;

/// The container engine as a container task sees it: look, and carry out an order. The real
/// one is [`Executor`] over bollard; tests drive the task loop with a fake.
pub trait ContainerRuntime: Send + Sync + std::fmt::Debug + 'static {
    /// `GET /containers/{id}/json`, or `None` when it cannot be read now.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<ContainerInfo>>;
    /// Carries out `order`: asks `turn` right before anything that changes the container is
    /// sent. `None`: the core dropped it at its turn (nothing was done, nothing to report).
    fn execute<'a>(
        &'a self,
        id: &'a str,
        order: &'a Order,
        turn: Turn<'a>,
    ) -> BoxFuture<'a, Option<OrderOutcome>>;
    /// Reads back what Docker holds of a fault detected at `detected`: the container's last
    /// log lines and its HEALTHCHECK log ([`super::capture`]). Called off the
    /// restart path, after the restart is issued.
    fn capture<'a>(&'a self, id: &'a str, detected: SystemTime) -> BoxFuture<'a, Captured>;
}

/// Carries out orders, bounded by a global limit of actions in flight.
#[derive(Debug, Clone)]
pub struct Executor {
    docker: Arc<RwLock<Option<Docker>>>,
    limit: Arc<Semaphore>,
    /// `--dry-run`: every order is skipped.
    dry_run: bool,
    /// `selfheal_restarts_in_flight`. Given by the caller rather than the whole shared state,
    /// so the Docker edge needs nothing from the modules built on it.
    in_flight: Gauge,
}

impl Executor {
    pub fn new(
        docker: Arc<RwLock<Option<Docker>>>,
        max_in_flight: usize,
        dry_run: bool,
        in_flight: Gauge,
    ) -> Self {
        Self {
            docker,
            limit: Arc::new(Semaphore::new(max_in_flight)),
            dry_run,
            in_flight,
        }
    }

    async fn inspect_now(&self, id: &str) -> Option<ContainerInfo> {
        let docker = self.docker.read().await.clone()?;
        let c =
            crate::docker::bounded(docker.inspect_container(id, None::<InspectContainerOptions>))
                .await
                .ok()?;
        Some(ContainerInfo::from_inspect(c))
    }

    /// Carries out one order: waits for its turn behind the global bound, then acts by its
    /// verb.
    async fn execute_now(&self, id: &str, order: &Order, turn: Turn<'_>) -> Option<OrderOutcome> {
        if self.dry_run {
            return Some(OrderOutcome::Skipped);
        }
        let (_permit, waited) = match self.limit.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match self.limit.clone().acquire_owned().await {
                Ok(p) => (p, true),
                Err(_) => return Some(OrderOutcome::Unreachable),
            },
        };
        let Some(docker) = self.docker.read().await.clone() else {
            return Some(OrderOutcome::Unreachable);
        };
        match &order.verb {
            Verb::Recreate { network_parent } => {
                self.recreate_now(&docker, id, order, network_parent.as_deref(), turn)
                    .await
            }
            Verb::Restart | Verb::End(_) | Verb::Stop => {
                // After a wait the container may have changed: look, for the core to judge.
                let running = match waited {
                    true => self.inspect_now(id).await.map(|c| c.running),
                    false => None,
                };
                if turn(running).await == Verdict::Drop {
                    return None;
                }
                Some(self.restart_now(docker, id, order).await)
            }
        }
    }

    /// `POST /containers/{id}/restart?t=<stop timeout>`; for a Swarm task ([`Verb::End`]),
    /// `POST /containers/{id}/stop?t=<stop timeout>` or `POST /containers/{id}/kill`
    /// (SIGKILL); for quarantine's [`Verb::Stop`], the same stop.
    async fn restart_now(&self, docker: Docker, id: &str, order: &Order) -> OrderOutcome {
        self.in_flight.inc();
        let stop_timeout = order.stop_timeout;
        let budget = Duration::from_secs(u64::from(stop_timeout)) + RESTART_MARGIN;
        let docker = docker.with_timeout(budget);
        let t = i32::try_from(stop_timeout).unwrap_or(i32::MAX);
        let call = async {
            match order.verb {
                Verb::Restart | Verb::Recreate { .. } => {
                    let opts = RestartContainerOptionsBuilder::default().t(t).build();
                    docker.restart_container(id, Some(opts)).await
                }
                Verb::End(EndMode::Stop) | Verb::Stop => {
                    let opts = StopContainerOptionsBuilder::default().t(t).build();
                    docker.stop_container(id, Some(opts)).await
                }
                Verb::End(EndMode::Kill) => {
                    let opts = KillContainerOptionsBuilder::default()
                        .signal("SIGKILL")
                        .build();
                    docker.kill_container(id, Some(opts)).await
                }
            }
        };
        let result = tokio::time::timeout(budget, call).await;
        self.in_flight.dec();
        match result {
            Ok(Ok(())) => OrderOutcome::Done,
            Ok(Err(e)) => match DockerError::from_api(e) {
                // "Gone" only if the container itself is: a restart can also fail on a network
                // parent that is gone (Docker 20.10 answers that with a 500, "No such
                // container: <parent>"; a 404 for a container that exists is not taken as gone).
                DockerError::NotFound if self.inspect_now(id).await.is_some() => {
                    OrderOutcome::Failed("Docker answered 404 for a container that exists".into())
                }
                DockerError::NotFound => OrderOutcome::Gone,
                // Docker's own answer: it tried and refused or failed.
                DockerError::Api(e @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                    OrderOutcome::Failed(e.to_string())
                }
                // The request did not get an answer from Docker at all.
                _ => OrderOutcome::Unreachable,
            },
            Err(_) => OrderOutcome::Failed(format!("restart did not finish within {budget:?}")),
        }
    }

    /// Recreates `id` from its own configuration (see [`crate::docker::recreate`]): in its own
    /// networks, or in `network_parent`'s network namespace if set. Stop, rename the old one
    /// aside, create the replacement under the old name, connect its other networks, start it,
    /// then remove the old one (its volumes stay: they are the replacement's now). A
    /// configuration that cannot be copied safely is refused before anything is asked of
    /// Docker that changes a container.
    async fn recreate_now(
        &self,
        docker: &Docker,
        id: &str,
        order: &Order,
        network_parent: Option<&str>,
        turn: Turn<'_>,
    ) -> Option<OrderOutcome> {
        let old = match crate::docker::bounded(
            docker.inspect_container(id, None::<InspectContainerOptions>),
        )
        .await
        {
            Ok(c) => c,
            Err(DockerError::NotFound) => return Some(OrderOutcome::Gone),
            Err(_) => return Some(OrderOutcome::Unreachable),
        };
        let built = match network_parent {
            Some(parent) => replacement(&old, parent).map(|body| Replacement {
                body,
                connect: Vec::new(),
            }),
            None => {
                let resolved = match resolve_image(docker, &old).await {
                    Ok(r) => r,
                    Err(outcome) => return Some(outcome),
                };
                image_for(&old, resolved.as_deref()).and_then(|image| own_replacement(&old, image))
            }
        };
        let plan = match built {
            Ok(b) => b,
            Err(e) => return Some(OrderOutcome::Refused(format!("not recreated: {e}"))),
        };
        let running = old.state.as_ref().and_then(|s| s.running);
        if turn(running).await == Verdict::Drop {
            return None;
        }
        let name = old
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        self.in_flight.inc();
        // Each call is bounded by the client's timeout, not the whole: a deadline that cut the
        // steps short would leave the old container parked instead of given back.
        let budget = Duration::from_secs(u64::from(order.stop_timeout)) + RESTART_MARGIN;
        let steps = Steps {
            docker: &docker.clone().with_timeout(budget),
            id,
            name: &name,
            stop_timeout: order.stop_timeout,
            // In its own networks it can run again; a dependent's old namespace is gone.
            start_again: network_parent.is_none() && running == Some(true),
        };
        let result = steps.replace(plan).await;
        self.in_flight.dec();
        Some(match result {
            Ok(new_id) => {
                match network_parent {
                    Some(parent) => tracing::warn!(container = %name, old = id, new = %new_id,
                        parent, "recreated in the new parent's network namespace"),
                    None => tracing::warn!(container = %name, old = id, new = %new_id,
                        "recreated from its own configuration"),
                }
                OrderOutcome::Replaced { new_id }
            }
            Err(e) => OrderOutcome::Failed(e),
        })
    }
}

/// The id `old`'s image name (`Config.Image`) resolves to now (`GET /images/{name}/json`):
/// `None` if it names no image any more; an outcome if Docker could not be asked.
async fn resolve_image(
    docker: &Docker,
    old: &bollard::models::ContainerInspectResponse,
) -> Result<Option<String>, OrderOutcome> {
    let Some(name) = old.config.as_ref().and_then(|c| c.image.as_deref()) else {
        return Ok(None);
    };
    match crate::docker::bounded(docker.inspect_image(name)).await {
        Ok(image) => Ok(image.id),
        Err(DockerError::NotFound) => Ok(None),
        Err(DockerError::Api(e @ bollard::errors::Error::DockerResponseServerError { .. })) => {
            Err(OrderOutcome::Failed(format!("inspect image {name}: {e}")))
        }
        Err(_) => Err(OrderOutcome::Unreachable),
    }
}

/// One recreate's steps against Docker.
struct Steps<'a> {
    docker: &'a Docker,
    /// The old container.
    id: &'a str,
    name: &'a str,
    stop_timeout: u32,
    /// On a failure, start the old container again after giving it its name back.
    start_again: bool,
}

impl Steps<'_> {
    /// Stop, park, create, connect, start, remove the old one; on a failure the replacement is
    /// removed and the old container gets its name back (and runs again if `start_again`).
    async fn replace(&self, plan: Replacement) -> Result<String, String> {
        let docker = self.docker;
        let t = i32::try_from(self.stop_timeout).unwrap_or(i32::MAX);
        let stop = StopContainerOptionsBuilder::default().t(t).build();
        // 304: already stopped.
        if let Err(e) = docker
            .stop_container(self.id, Some(stop))
            .await
            .or_else(not_modified)
        {
            return Err(self.undo(format!("stop: {e}"), None, false).await);
        }
        let parked = parked_name(self.name, self.id);
        if let Err(e) = docker.rename_container(self.id, rename(&parked)).await {
            return Err(self.undo(format!("rename aside: {e}"), None, false).await);
        }
        let create = CreateContainerOptionsBuilder::default()
            .name(self.name)
            .build();
        let created = match docker.create_container(Some(create), plan.body).await {
            Ok(c) => c.id,
            Err(e) => return Err(self.undo(format!("create: {e}"), None, true).await),
        };
        for (network, endpoint) in plan.connect {
            let request = NetworkConnectRequest {
                container: created.clone(),
                endpoint_config: Some(endpoint),
            };
            if let Err(e) = docker.connect_network(&network, request).await {
                let why = format!("connect to network {network}: {e}");
                return Err(self.undo(why, Some(&created), true).await);
            }
        }
        if let Err(e) = docker.start_container(&created, None).await {
            return Err(self.undo(format!("start: {e}"), Some(&created), true).await);
        }
        // Without `v`: the volumes belong to the replacement now.
        if let Err(e) = docker.remove_container(self.id, Some(force())).await {
            tracing::warn!(container = %parked, error = %e, "replaced; the old container could not be removed");
        }
        Ok(created)
    }

    /// Leaves things as they were after step `why` failed: removes the replacement if
    /// `created`, gives the old container its name back if `parked`, starts it again if
    /// `start_again`. The answer says what failed and what could not be undone.
    async fn undo(&self, why: String, created: Option<&str>, parked: bool) -> String {
        let docker = self.docker;
        let mut left = Vec::new();
        if let Some(new) = created {
            if let Err(e) = docker.remove_container(new, Some(force())).await {
                left.push(format!("the replacement {new} could not be removed: {e}"));
            }
        }
        if parked {
            if let Err(e) = docker.rename_container(self.id, rename(self.name)).await {
                left.push(format!(
                    "the old container could not get its name back: {e}"
                ));
            }
        }
        if self.start_again {
            // 304: it was still running (its stop had failed).
            if let Err(e) = docker
                .start_container(self.id, None)
                .await
                .or_else(not_modified)
            {
                left.push(format!("the old container could not be started again: {e}"));
            }
        }
        if left.is_empty() {
            let running = if self.start_again { ", running" } else { "" };
            return format!("{why} (undone: the old container is back under its name{running})");
        }
        tracing::error!(container = %self.name, old = self.id, "recreate failed ({why}) and was not fully undone: {}", left.join("; "));
        format!("{why}; then {}", left.join("; "))
    }
}

/// Docker's 304: the container already was in the state asked for.
fn not_modified(e: bollard::errors::Error) -> Result<(), bollard::errors::Error> {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        } => Ok(()),
        e => Err(e),
    }
}

fn rename(to: &str) -> bollard::query_parameters::RenameContainerOptions {
    RenameContainerOptionsBuilder::default().name(to).build()
}

fn force() -> bollard::query_parameters::RemoveContainerOptions {
    RemoveContainerOptionsBuilder::default().force(true).build()
}

impl ContainerRuntime for Executor {
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<ContainerInfo>> {
        Box::pin(self.inspect_now(id))
    }

    fn execute<'a>(
        &'a self,
        id: &'a str,
        order: &'a Order,
        turn: Turn<'a>,
    ) -> BoxFuture<'a, Option<OrderOutcome>> {
        Box::pin(self.execute_now(id, order, turn))
    }

    fn capture<'a>(&'a self, id: &'a str, detected: SystemTime) -> BoxFuture<'a, Captured> {
        Box::pin(async move {
            match self.docker.read().await.clone() {
                Some(docker) => super::capture::capture(&docker, id, detected).await,
                None => Captured {
                    health_log: Vec::new(),
                    logs: Some(Logs::note("no logs: Docker was not reachable to read them")),
                },
            }
        })
    }
}
