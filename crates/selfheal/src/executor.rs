//! The executor: the only code that changes containers. It carries out the healing core's
//! restart orders and reports how each ended in the core's own terms. Its verbs: restart (a
//! plain container), recreate (a network dependent whose parent was recreated), and stop or
//! kill (a Swarm task, which Swarm then replaces: never restarted in place, see
//! `selfheal_core::swarm`).

use crate::docker::{ContainerInfo, DockerError};
use crate::evidence::capture::Captured;
use crate::evidence::Logs;
use crate::recreate::{parked_name, replacement};
use crate::shared::Shared;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use selfheal_core::{EndMode, NotAttempted, RestartOrder, RestartOutcome};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{RwLock, Semaphore};

/// Margin over the stop timeout for the HTTP call, so the client never gives up while Docker is
/// still waiting for the process to exit (a known failure of autoheal-style tools).
const RESTART_MARGIN: Duration = Duration::from_secs(30);

/// How a restart order ended, from the engine's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    Finished(RestartOutcome),
    /// Docker answered 404: the container no longer exists.
    Gone,
    /// Recreated: the container is replaced by `new_id` (same name, config and volumes).
    Replaced {
        new_id: String,
    },
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The container engine as a container task sees it: look, and restart. The real one is
/// [`Executor`] over bollard; tests drive the task loop with a fake.
pub trait ContainerRuntime: Send + Sync + std::fmt::Debug + 'static {
    /// `GET /containers/{id}/json`, or `None` when it cannot be read now.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Option<ContainerInfo>>;
    /// Carries out `order`; `on_sent` is awaited right before the request goes to Docker.
    fn restart<'a>(
        &'a self,
        id: &'a str,
        order: &'a RestartOrder,
        on_sent: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, ExecOutcome>;
    /// Reads back what Docker holds of a fault detected at `detected`: the container's last
    /// log lines and its HEALTHCHECK log ([`crate::evidence::capture`]). Called off the
    /// restart path, after the restart is issued.
    fn capture<'a>(&'a self, id: &'a str, detected: SystemTime) -> BoxFuture<'a, Captured>;

    /// Carries out `order` as a recreate in `new_parent`'s network namespace.
    fn recreate<'a>(
        &'a self,
        id: &'a str,
        order: &'a RestartOrder,
        new_parent: &'a str,
        on_sent: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, ExecOutcome>;
}

/// Restarts containers, bounded by a global limit of restarts in flight.
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

    /// `POST /containers/{id}/restart?t=<stop timeout>`; for a Swarm task (`order.end`),
    /// `POST /containers/{id}/stop?t=<stop timeout>` or `POST /containers/{id}/kill`
    /// (SIGKILL). If the order had to wait for its
    /// turn and requires a running container, it is dropped when the container stopped
    /// meanwhile (a user's stop wins).
    async fn restart_now(
        &self,
        id: &str,
        order: &RestartOrder,
        on_sent: BoxFuture<'_, ()>,
    ) -> ExecOutcome {
        if self.shared.dry_run {
            return ExecOutcome::Finished(RestartOutcome::Skipped);
        }
        let not_attempted = |why| ExecOutcome::Finished(RestartOutcome::NotAttempted(why));
        let (_permit, waited) = match self.limit.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match self.limit.clone().acquire_owned().await {
                Ok(p) => (p, true),
                Err(_) => return not_attempted(NotAttempted::Unreachable),
            },
        };
        if waited && order.require_running && self.inspect_now(id).await.is_some_and(|c| !c.running)
        {
            return not_attempted(NotAttempted::Cancelled);
        }
        let Some(docker) = self.docker.read().await.clone() else {
            return not_attempted(NotAttempted::Unreachable);
        };
        on_sent.await;
        self.shared.metrics.restarts_in_flight.inc();
        let stop_timeout = order.stop_timeout;
        let budget = Duration::from_secs(u64::from(stop_timeout)) + RESTART_MARGIN;
        let docker = docker.with_timeout(budget);
        let t = i32::try_from(stop_timeout).unwrap_or(i32::MAX);
        let call = async {
            match order.end {
                None => {
                    let opts = RestartContainerOptionsBuilder::default().t(t).build();
                    docker.restart_container(id, Some(opts)).await
                }
                Some(EndMode::Stop) => {
                    let opts = StopContainerOptionsBuilder::default().t(t).build();
                    docker.stop_container(id, Some(opts)).await
                }
                Some(EndMode::Kill) => {
                    let opts = KillContainerOptionsBuilder::default()
                        .signal("SIGKILL")
                        .build();
                    docker.kill_container(id, Some(opts)).await
                }
            }
        };
        let result = tokio::time::timeout(budget, call).await;
        self.shared.metrics.restarts_in_flight.dec();
        let outcome = match result {
            Ok(Ok(())) => RestartOutcome::Done,
            Ok(Err(e)) => match DockerError::from_api(e) {
                // "Gone" only if the container itself is: a restart can also fail on a network
                // parent that is gone (Docker 20.10 answers that with a 500, "No such
                // container: <parent>"; a 404 for a container that exists is not taken as gone).
                DockerError::NotFound if self.inspect_now(id).await.is_some() => {
                    RestartOutcome::Failed("Docker answered 404 for a container that exists".into())
                }
                DockerError::NotFound => return ExecOutcome::Gone,
                // Docker's own answer: it tried and refused or failed.
                DockerError::Api(e @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                    RestartOutcome::Failed(e.to_string())
                }
                // The request did not get an answer from Docker at all.
                _ => RestartOutcome::NotAttempted(NotAttempted::Unreachable),
            },
            Err(_) => RestartOutcome::Failed(format!("restart did not finish within {budget:?}")),
        };
        ExecOutcome::Finished(outcome)
    }

    /// Recreates `id` in `new_parent`'s network namespace (see [`crate::recreate`]): stop,
    /// rename the old one aside, create and start the replacement under the old name, then
    /// remove the old one (its volumes stay: they are the replacement's now).
    async fn recreate_now(
        &self,
        id: &str,
        order: &RestartOrder,
        new_parent: &str,
        on_sent: BoxFuture<'_, ()>,
    ) -> ExecOutcome {
        if self.shared.dry_run {
            return ExecOutcome::Finished(RestartOutcome::Skipped);
        }
        let not_attempted = |why| ExecOutcome::Finished(RestartOutcome::NotAttempted(why));
        let Ok(_permit) = self.limit.clone().acquire_owned().await else {
            return not_attempted(NotAttempted::Unreachable);
        };
        let Some(docker) = self.docker.read().await.clone() else {
            return not_attempted(NotAttempted::Unreachable);
        };
        let old = match crate::docker::bounded(
            docker.inspect_container(id, None::<InspectContainerOptions>),
        )
        .await
        {
            Ok(c) => c,
            Err(DockerError::NotFound) => return ExecOutcome::Gone,
            Err(_) => return not_attempted(NotAttempted::Unreachable),
        };
        let body = match replacement(&old, new_parent) {
            Ok(b) => b,
            Err(e) => {
                return ExecOutcome::Finished(RestartOutcome::Failed(format!("not recreated: {e}")))
            }
        };
        let name = old
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        on_sent.await;
        self.shared.metrics.restarts_in_flight.inc();
        let budget = Duration::from_secs(u64::from(order.stop_timeout)) + RESTART_MARGIN;
        let result = tokio::time::timeout(
            budget,
            replace(
                &docker.with_timeout(budget),
                id,
                &name,
                body,
                order.stop_timeout,
            ),
        )
        .await;
        self.shared.metrics.restarts_in_flight.dec();
        match result {
            Ok(Ok(new_id)) => {
                tracing::warn!(container = %name, old = id, new = %new_id, parent = new_parent,
                    "recreated in the new parent's network namespace");
                ExecOutcome::Replaced { new_id }
            }
            Ok(Err(e)) => ExecOutcome::Finished(RestartOutcome::Failed(e)),
            Err(_) => ExecOutcome::Finished(RestartOutcome::Failed(format!(
                "recreate did not finish within {budget:?}"
            ))),
        }
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

    fn restart<'a>(
        &'a self,
        id: &'a str,
        order: &'a RestartOrder,
        on_sent: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, ExecOutcome> {
        Box::pin(self.restart_now(id, order, on_sent))
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

    fn recreate<'a>(
        &'a self,
        id: &'a str,
        order: &'a RestartOrder,
        new_parent: &'a str,
        on_sent: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, ExecOutcome> {
        Box::pin(self.recreate_now(id, order, new_parent, on_sent))
    }
}
