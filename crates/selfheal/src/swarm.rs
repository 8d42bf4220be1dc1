//! Swarm tasks in the daemon: which restart condition applies to a task's service, and the
//! ledger through which a task's supervisor hands its slot over to the supervisor of the task
//! that replaces it (see `selfheal_core::swarm` for Swarm's semantics).

use crate::docker::bounded;
use crate::journal::Incident;
use bollard::query_parameters::InspectServiceOptions;
use bollard::Docker;
use selfheal_core::swarm::RESTART_CONDITION_LABEL;
use selfheal_core::{RestartCondition, SlotCarry, SwarmTask};
use std::collections::HashMap;
use std::sync::Mutex;

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
