//! Swarm in the daemon (see `selfheal_core::swarm` for Swarm's semantics). By job:
//! - this module: which tasks are watched ([`SwarmBinding`]) and which restart condition
//!   applies to a task's service;
//! - the ledger: the slots whose task ended here, waiting for their replacement (kept in
//!   [`crate::shared::ledger`], since the shared state holds it; re-exported here);
//! - `peers`: the other nodes' watchdogs, which tell where a slot's replacement went, what a
//!   slot spent there, and (to a worker) a service's restart condition;
//! - `handover`: a slot kept for its replacement, followed through the peers, and closed;
//! - `stuck`: the stuck-service check the leader manager's watchdog runs.

mod handover;
mod peers;
mod stuck;

pub use crate::shared::ledger::{Handed, SlotLedger, MAX_HANDED};
pub use handover::{close_handed, follow_handovers, keep_for_replacement};
pub use peers::{
    condition_from_peers, slot_spent_elsewhere, Peers, ServiceReply, SlotReply, SlotSpent,
    TasksReply,
};
pub use stuck::{watch_services, ServiceLabels, SwarmMetrics};

use crate::docker::bounded;
use bollard::query_parameters::InspectServiceOptions;
use bollard::Docker;
use selfheal_core::swarm::RESTART_CONDITION_LABEL;
use selfheal_core::{RestartCondition, SwarmTask};
use std::collections::HashMap;

/// A watched container that is a Swarm task.
#[derive(Debug, Clone)]
pub struct SwarmBinding {
    pub task: SwarmTask,
    pub condition: RestartCondition,
}

/// The task's service's `restart_policy.condition`: the container's
/// `selfheal.swarm.restart-condition` label (already validated), else the service itself
/// (`GET /services/{id}`, which only a manager answers), else not known yet: on a worker the
/// task then asks a manager's watchdog among the peers ([`condition_from_peers`]), and until
/// one answers a failed probe is only reported.
pub async fn restart_condition(
    docker: &Docker,
    labels: &HashMap<String, String>,
    task: &SwarmTask,
    peers: Option<&Peers>,
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
        Err(e) if peers.is_some() => {
            tracing::info!(service = %task.service_name, error = %e,
                "cannot read the service here (not a manager): asking a manager's watchdog");
            RestartCondition::Unknown
        }
        Err(e) => {
            tracing::warn!(service = %task.service_name, error = %e,
                "cannot read the service's restart condition (not a manager, and no \
                 --swarm-peers to ask a manager's watchdog); label the task with \
                 {RESTART_CONDITION_LABEL} to let the watchdog end it on a failed probe; until \
                 then failed probes are only reported");
            RestartCondition::Unknown
        }
    }
}

#[cfg(test)]
mod tests;
