//! The executor: the only code that changes containers.

use crate::docker::DockerError;
use crate::shared::Shared;
use bollard::query_parameters::RestartContainerOptionsBuilder;
use bollard::Docker;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{RwLock, Semaphore};

/// Docker's default stop timeout, used when neither the label nor the container set one.
pub const DEFAULT_STOP_TIMEOUT: u32 = 10;
/// Margin over the stop timeout for the HTTP call, so the client never gives up while Docker is
/// still waiting for the process to exit (a known failure of autoheal-style tools).
const RESTART_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    Restarted,
    Failed(String),
    DryRun,
    Cancelled,
    Gone,
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

    /// `GET /containers/{id}/json`, or `None` when it cannot be read now.
    pub async fn inspect(&self, id: &str) -> Option<crate::docker::ContainerInfo> {
        let docker = self.docker.read().await.clone()?;
        let opts = None::<bollard::query_parameters::InspectContainerOptions>;
        let c = crate::docker::bounded(docker.inspect_container(id, opts))
            .await
            .ok()?;
        Some(crate::docker::ContainerInfo::from_inspect(c))
    }

    /// `POST /containers/{id}/restart?t=<stop timeout>`.
    ///
    /// `must_be_running`: if the restart had to wait for its turn, it is dropped
    /// ([`ExecOutcome::Cancelled`]) when the container stopped meanwhile (a user's stop wins).
    /// `on_sent` runs right before the request goes out.
    pub async fn restart(
        &self,
        id: &str,
        stop_timeout: u32,
        must_be_running: bool,
        on_sent: impl FnOnce(),
    ) -> ExecOutcome {
        if self.shared.dry_run {
            return ExecOutcome::DryRun;
        }
        let (_permit, waited) = match self.limit.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match self.limit.clone().acquire_owned().await {
                Ok(p) => (p, true),
                Err(_) => return ExecOutcome::Failed("executor closed".into()),
            },
        };
        if waited && must_be_running && self.inspect(id).await.is_some_and(|c| !c.running) {
            return ExecOutcome::Cancelled;
        }
        let Some(docker) = self.docker.read().await.clone() else {
            return ExecOutcome::Failed("Docker engine not connected".into());
        };
        on_sent();
        self.shared.metrics.restarts_in_flight.inc();
        let budget = Duration::from_secs(u64::from(stop_timeout)) + RESTART_MARGIN;
        let docker = docker.with_timeout(budget);
        let opts = RestartContainerOptionsBuilder::default()
            .t(i32::try_from(stop_timeout).unwrap_or(i32::MAX))
            .build();
        let result = tokio::time::timeout(budget, docker.restart_container(id, Some(opts))).await;
        self.shared.metrics.restarts_in_flight.dec();
        match result {
            Ok(Ok(())) => ExecOutcome::Restarted,
            Ok(Err(e)) => match DockerError::from_api(e) {
                DockerError::NotFound => ExecOutcome::Gone,
                e => ExecOutcome::Failed(e.to_string()),
            },
            Err(_) => ExecOutcome::Failed(format!("restart did not finish within {budget:?}")),
        }
    }
}
