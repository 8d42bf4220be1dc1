//! A container's links to the others it depends on or that depend on it. As a parent: tells
//! the watch loop when the dependents of a new run wait on it or may go on (the core's
//! [`ReleaseGate`]). As a dependent: remembers which parent it waits on and which parent (and
//! incident) told it to restart, for the incident it opens. Whether it waits or restarts is
//! the core's to decide.

use crate::dependents::GateReport;
use crate::docker::ContainerInfo;
use crate::shared::Clock;
use selfheal_core::dependents::ReleaseGate;
use selfheal_core::{Supervisor, Trigger};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub(super) struct DependentsLink {
    /// As a parent: when its dependents are released after it started again.
    gate: ReleaseGate,
    /// The run last seen, and the incident whose restart began it.
    run_seen: Option<Instant>,
    run_incident: Option<u64>,
    /// As a dependent: the parent that last said it started again and is not ready yet.
    waiting_on: Option<String>,
    /// The parent (and its incident) that last told it to restart.
    released_by: Option<(String, Option<u64>)>,
}

impl DependentsLink {
    pub(super) fn parent_waiting(&mut self, parent: String) {
        self.waiting_on = Some(parent);
    }

    pub(super) fn parent_released(&mut self, parent: String, incident: Option<u64>) {
        self.released_by = Some((parent, incident));
    }

    /// The parent it waits on, while the core says it does.
    pub(super) fn waiting_on(&self, sup: &Supervisor) -> Option<String> {
        self.waiting_on.clone().filter(|_| sup.parent_waiting())
    }

    /// For an incident with trigger `dependency`: the parent and the parent's incident.
    pub(super) fn take_parent(&mut self, trigger: Trigger) -> Option<(String, Option<u64>)> {
        self.released_by
            .take()
            .filter(|_| trigger == Trigger::Dependency)
    }

    /// As a parent, after each observation: note the incident that began a new run
    /// (`open_before` the observation, else `open_now`), and report to the watch loop when
    /// the run's dependents wait on it or may go on.
    pub(super) fn report_gate(
        &mut self,
        sup: &Supervisor,
        info: &ContainerInfo,
        (open_before, open_now): (Option<u64>, Option<u64>),
        clock: &Clock,
        gates: &mpsc::Sender<GateReport>,
    ) {
        let since = sup.run_since();
        if since != self.run_seen {
            self.run_seen = since;
            self.run_incident = open_before.or(open_now);
        }
        let (Some(gate), Some(at)) = (self.gate.observe(since, sup.state()), since) else {
            return;
        };
        let report = GateReport {
            parent_id: info.id.clone(),
            parent_name: info.name.clone(),
            gate,
            since: clock.wall(at),
            incident: self.run_incident,
        };
        if let Err(mpsc::error::TrySendError::Full(report)) = gates.try_send(report) {
            let gates = gates.clone();
            tokio::spawn(async move {
                let _ = gates.send(report).await;
            });
        }
    }
}
