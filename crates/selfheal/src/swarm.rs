//! Swarm in the daemon: which restart condition applies to a task's service, the ledger
//! through which a task's supervisor hands its slot over to the supervisor of the task that
//! replaces it (see `selfheal_core::swarm` for Swarm's semantics), and the stuck-service check
//! the leader manager's watchdog runs.

use crate::docker::bounded;
use crate::journal::Incident;
use bollard::query_parameters::{InspectServiceOptions, ListServicesOptionsBuilder};
use bollard::Docker;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use selfheal_core::swarm::RESTART_CONDITION_LABEL;
use selfheal_core::{RestartCondition, Shortfall, SlotCarry, SwarmTask};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A watched container that is a Swarm task.
#[derive(Debug, Clone)]
pub struct SwarmBinding {
    pub task: SwarmTask,
    pub condition: RestartCondition,
}

/// What an ended task left for its slot: the core's carry and the open incident's record.
#[derive(Debug)]
pub struct Handed {
    pub carry: SlotCarry,
    pub incident: Option<Incident>,
}

/// Slots whose task ended and whose replacement has not been seen yet, by slot key.
#[derive(Debug, Default)]
pub struct SlotLedger {
    slots: Mutex<HashMap<String, Handed>>,
}

impl SlotLedger {
    pub fn put(&self, slot: String, handed: Handed) {
        if let Ok(mut m) = self.slots.lock() {
            m.insert(slot, handed);
        }
    }

    pub fn take(&self, slot: &str) -> Option<Handed> {
        self.slots.lock().ok()?.remove(slot)
    }
}

/// The task's service's `restart_policy.condition`: the container's
/// `selfheal.swarm.restart-condition` label (already validated), else the service itself
/// (`GET /services/{id}`, which only a manager answers), else not known: a worker without the
/// label, where a failed probe is then only reported.
pub async fn restart_condition(
    docker: &Docker,
    labels: &HashMap<String, String>,
    task: &SwarmTask,
) -> RestartCondition {
    if let Some(c) = labels
        .get(RESTART_CONDITION_LABEL)
        .and_then(|v| RestartCondition::from_swarm(v.trim()))
    {
        return c;
    }
    let service =
        bounded(docker.inspect_service(&task.service_id, None::<InspectServiceOptions>)).await;
    match service {
        Ok(s) => {
            let condition = s
                .spec
                .and_then(|s| s.task_template)
                .and_then(|t| t.restart_policy)
                .and_then(|r| r.condition)
                .map(|c| c.to_string())
                .unwrap_or_default();
            RestartCondition::from_swarm(&condition).unwrap_or(RestartCondition::Unknown)
        }
        Err(e) => {
            tracing::warn!(service = %task.service_name, error = %e,
                "cannot read the service's restart condition (not a manager?); label the task \
                 with {RESTART_CONDITION_LABEL} to let the watchdog end it on a failed probe; \
                 until then failed probes are only reported");
            RestartCondition::Unknown
        }
    }
}

/// The stuck-service metrics, reported only by the watchdog on the leader manager (so a
/// service is not counted once per node).
#[derive(Debug, Clone, Default)]
pub struct SwarmMetrics {
    pub leader: Gauge,
    pub missing: Family<ServiceLabels, Gauge>,
    pub stuck: Family<ServiceLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

impl SwarmMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "selfheal_swarm_leader",
            "1 on the watchdog of the Swarm leader manager, which alone reports services",
            m.leader.clone(),
        );
        registry.register(
            "selfheal_swarm_service_tasks_missing",
            "Tasks a Swarm service wants and does not run (desired - running), from the leader",
            m.missing.clone(),
        );
        registry.register(
            "selfheal_swarm_service_stuck",
            "1 while a Swarm service has run fewer tasks than desired for longer than --swarm-stuck-after",
            m.stuck.clone(),
        );
        m
    }
}

/// How often the leader's watchdog looks at the services.
const SERVICES_EVERY: Duration = Duration::from_secs(5);

/// Follows the Swarm's services while this node is the leader manager (`GET /info`,
/// `GET /nodes/{id}`, `GET /services?status=true`): a service short of tasks for `stuck_after`
/// is stuck. On any other node, or outside a swarm, it reports nothing.
pub async fn watch_services(
    docker_host: Option<String>,
    stuck_after: Duration,
    metrics: SwarmMetrics,
    cancel: CancellationToken,
) {
    let mut shortfalls: HashMap<String, Shortfall> = HashMap::new();
    let mut client: Option<Docker> = None;
    let mut every = tokio::time::interval(SERVICES_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        if client.is_none() {
            client = crate::docker::connect(docker_host.as_deref()).await.ok();
        }
        let looked = match &client {
            Some(docker) => look_at_services(docker).await,
            None => None,
        };
        if looked.is_none() {
            // Reconnect at the next look: cheap, and it heals a connection that broke.
            client = None;
        }
        let Some(services) = looked else {
            // Not the leader (or not a manager, or Docker unreachable): another node reports.
            metrics.leader.set(0);
            metrics.missing.clear();
            metrics.stuck.clear();
            shortfalls.clear();
            continue;
        };
        metrics.leader.set(1);
        let now = Instant::now();
        shortfalls.retain(|name, _| services.iter().any(|s| &s.0 == name));
        metrics.missing.clear();
        metrics.stuck.clear();
        for (name, running, desired) in services {
            let f = shortfalls.entry(name.clone()).or_default();
            f.observe(running, desired, now);
            let labels = ServiceLabels { service: name };
            metrics
                .missing
                .get_or_create(&labels)
                .set(i64::try_from(desired.saturating_sub(running)).unwrap_or(i64::MAX));
            let stuck = f.stuck(now, stuck_after);
            metrics.stuck.get_or_create(&labels).set(i64::from(stuck));
        }
    }
}

/// The services (name, running tasks, desired tasks) when this node is the leader manager.
/// Jobs are left out: their tasks are meant to end.
async fn look_at_services(docker: &Docker) -> Option<Vec<(String, u64, u64)>> {
    let info = bounded(docker.info()).await.ok()?;
    let swarm = info.swarm?;
    if swarm.control_available != Some(true) {
        return None;
    }
    let node = bounded(docker.inspect_node(swarm.node_id.as_deref()?))
        .await
        .ok()?;
    if node.manager_status.and_then(|m| m.leader) != Some(true) {
        return None;
    }
    let opts = ListServicesOptionsBuilder::default().status(true).build();
    let services = bounded(docker.list_services(Some(opts))).await.ok()?;
    Some(
        services
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                let mode = spec.mode.as_ref();
                if mode.is_some_and(|m| m.replicated_job.is_some() || m.global_job.is_some()) {
                    return None;
                }
                let status = s.service_status?;
                Some((
                    spec.name?,
                    status.running_tasks.unwrap_or(0),
                    status.desired_tasks.unwrap_or(0),
                ))
            })
            .collect(),
    )
}
