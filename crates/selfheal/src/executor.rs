//! The executor: the only code that changes containers. It carries out the healing core's
//! orders and reports how each ended in the core's own terms. Its verbs: restart (a plain
//! container), and stop or kill (a Swarm task, which Swarm then replaces: never restarted in
//! place, see `selfheal_core::swarm`).

use crate::docker::{ContainerInfo, DockerError};
use crate::shared::Shared;
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use selfheal_core::{EndMode, NotAttempted, RestartOrder, RestartOutcome};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
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
}
