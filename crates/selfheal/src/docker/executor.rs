//! The executor: the only code that changes containers. It carries out the healing core's
//! orders as they are and reports what happened in the core's own terms; it decides nothing.
//! Its verbs ([`Verb`]): restart (a plain container), recreate (a fresh container from the
//! old one's configuration, e.g. a network dependent whose parent was recreated), and stop or
//! kill (a Swarm task, which Swarm then replaces: never restarted in place, see
//! `selfheal_core::swarm`). When its turn comes it tells the core what it sees and asks
//! whether to go on ([`Turn`]): a user's stop meanwhile is the core's to weigh.

use crate::docker::recreate::{parked_name, replacement};
use crate::docker::{ContainerInfo, DockerError};
use crate::evidence::capture::Captured;
use crate::evidence::Logs;
use crate::shared::Shared;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
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
    /// log lines and its HEALTHCHECK log ([`crate::evidence::capture`]). Called off the
    /// restart path, after the restart is issued.
    fn capture<'a>(&'a self, id: &'a str, detected: SystemTime) -> BoxFuture<'a, Captured>;
}

/// Carries out orders, bounded by a global limit of actions in flight.
#[derive(Debug, Clone)]
pub struct Executor {
    docker: Arc<RwLock<Option<Docker>>>,
    limit: Arc<Semaphore>,
    shared: Arc<Shared>,
}

impl Executor {
    pub fn new(
        docker: Arc<RwLock<Option<Docker>>>,
        max_in_flight: usize,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            docker,
            limit: Arc::new(Semaphore::new(max_in_flight)),
            shared,
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
        if self.shared.dry_run {
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
        self.shared.metrics.restarts_in_flight.inc();
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
        self.shared.metrics.restarts_in_flight.dec();
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

    /// Recreates `id` from its own configuration, in `network_parent`'s network namespace if
    /// set (see [`crate::recreate`]): stop, rename the old one aside, create and start the
    /// replacement under the old name, then remove the old one (its volumes stay: they are the
    /// replacement's now). A configuration that cannot be copied safely is refused before
    /// anything is asked of Docker.
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
        // Only a network dependent's recreate is carried out so far: its networks are its
        // parent's. One in its own networks must carry them over (not done yet: refused).
        let Some(network_parent) = network_parent else {
            return Some(OrderOutcome::Refused(
                "not recreated: recreating a container in its own networks is not supported".into(),
            ));
        };
        let body = match replacement(&old, network_parent) {
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
        self.shared.metrics.restarts_in_flight.inc();
        let budget = Duration::from_secs(u64::from(order.stop_timeout)) + RESTART_MARGIN;
        let result = tokio::time::timeout(
            budget,
            replace(
                &docker.clone().with_timeout(budget),
                id,
                &name,
                body,
                order.stop_timeout,
            ),
        )
        .await;
        self.shared.metrics.restarts_in_flight.dec();
        Some(match result {
            Ok(Ok(new_id)) => {
                tracing::warn!(container = %name, old = id, new = %new_id, parent = network_parent,
                    "recreated in the new parent's network namespace");
                OrderOutcome::Replaced { new_id }
            }
            Ok(Err(e)) => OrderOutcome::Failed(e),
            Err(_) => OrderOutcome::Failed(format!("recreate did not finish within {budget:?}")),
        })
    }
}

/// The steps of a recreate; on a failure the old container gets its name back.
async fn replace(
    docker: &Docker,
    id: &str,
    name: &str,
    body: bollard::models::ContainerCreateBody,
    stop_timeout: u32,
) -> Result<String, String> {
    let t = i32::try_from(stop_timeout).unwrap_or(i32::MAX);
    match docker
        .stop_container(
            id,
            Some(StopContainerOptionsBuilder::default().t(t).build()),
        )
        .await
    {
        // 304: already stopped.
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => return Err(format!("stop: {e}")),
    }
    let rename = |to: &str| RenameContainerOptionsBuilder::default().name(to).build();
    let parked = parked_name(name, id);
    docker
        .rename_container(id, rename(&parked))
        .await
        .map_err(|e| format!("rename aside: {e}"))?;
    let give_back = || async {
        if let Err(e) = docker.rename_container(id, rename(name)).await {
            tracing::error!(container = %parked, error = %e, "could not give the old container its name back");
        }
    };
    let created = match docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await
    {
        Ok(c) => c.id,
        Err(e) => {
            give_back().await;
            return Err(format!("create: {e}"));
        }
    };
    if let Err(e) = docker.start_container(&created, None).await {
        let _ = docker
            .remove_container(
                &created,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
        give_back().await;
        return Err(format!("start: {e}"));
    }
    // Without `v`: the volumes belong to the replacement now.
    if let Err(e) = docker
        .remove_container(
            id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
    {
        tracing::warn!(container = %parked, error = %e, "replaced; the old container could not be removed");
    }
    Ok(created)
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
                Some(docker) => crate::evidence::capture::capture(&docker, id, detected).await,
                None => Captured {
                    health_log: Vec::new(),
                    logs: Some(Logs::note("no logs: Docker was not reachable to read them")),
                },
            }
        })
    }
}
