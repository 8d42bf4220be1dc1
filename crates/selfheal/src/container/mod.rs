//! One task per watched container: a thin shell around the container's
//! [`selfheal_core::Supervisor`]. It turns Docker events, inspects and probe results into
//! observations, and carries the supervisor's effects out through the [`ContainerRuntime`]
//! (the executor's orders, inspects) and the incident recorder (journal, metrics,
//! notifications). It decides nothing itself. By job:
//! - `task`: the loop: messages in, observations to the core in order; within it, `spawn`
//!   sets a task up and `effects` carries the core's effects out;
//! - `dispatch`: work handed off the task's path (orders, inspects), answered in its inbox;
//! - `probe`: the probe loop and its metric series;
//! - `evidence`: what an incident's evidence gathers, at detection and read back after;
//! - `link`: the links to parents and dependents;
//! - `slot`: a Swarm task's questions to the peers, and its slot's hand-over;
//! - `record`: incidents into journal records, metrics and notifications;
//! - `view`: the container's view for the API.

mod dispatch;
mod evidence;
mod link;
mod probe;
mod record;
mod slot;
mod task;
mod view;

pub use crate::incident::close_orphan;
pub use task::spawn;

use crate::dependents::GateReport;
use crate::docker::executor::ContainerRuntime;
use crate::docker::ContainerInfo;
use crate::evidence::Captured;
use crate::journal::Incident;
use crate::notify::Notifier;
use crate::probe::Prober;
use crate::shared::Shared;
use selfheal_core::{Backoff, Observation, OrderOutcome, ParentRecreated, SlotCarry, Verdict};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A task's inbox is bounded: the watch loop, the probe and the task's own helpers share it.
/// A full inbox makes the sender wait (events are never dropped).
pub const INBOX: usize = 256;

/// Messages to a container task.
#[derive(Debug)]
pub enum Msg {
    /// An event the core takes as it is (health, kill, stop, pause, probe result, ...).
    Observe(Observation),
    /// A Docker `health_status: unhealthy` event, with when it was received.
    Unhealthy {
        received: Instant,
    },
    /// Look at the container (inspect it in this task, in order with its events); `started`:
    /// after a `start` event.
    Look {
        started: bool,
    },
    /// A `start` event, with inspect data read right after it.
    Started(Box<ContainerInfo>),
    /// Fresh inspect data after a gap (watching began, a reconnect, the core asked).
    Snapshot(Box<ContainerInfo>),
    /// A `die` event, with the exit code it names.
    Died {
        exit_code: Option<i64>,
    },
    Oom,
    Rename(String),
    /// The first failing check of Docker's health log, read for the open incident.
    HealthFailingSince(SystemTime),
    /// The executor's turn for the order came: what it saw, and where the core's verdict goes.
    Turn {
        running: Option<bool>,
        reply: oneshot::Sender<Verdict>,
    },
    /// How the executor's order ended.
    Ended(OrderOutcome),
    /// Evidence read back from Docker for incident `incident`.
    Evidence {
        incident: u64,
        captured: Box<Captured>,
    },
    /// Destroyed, or no longer opted in: close out and end.
    Removed,
    /// A parent this container depends on started again at `at` and is ready: the parent's
    /// name and the incident that restarted it.
    ParentStarted {
        parent: String,
        at: SystemTime,
        incident: Option<u64>,
        /// Its network parent was recreated: what that means for it.
        recreate: Option<ParentRecreated>,
    },
    /// A parent started again at `since` and is not ready yet.
    ParentWaiting {
        parent: String,
        since: SystemTime,
    },
    /// A Swarm task's restart condition, told by a manager's watchdog after watching began.
    RestartCondition(selfheal_core::RestartCondition),
    /// What its slot spent on the node where the last task ended, told by that node's watchdog.
    AdoptSlot {
        sent: Vec<Instant>,
        recent: u32,
        last: Option<Instant>,
    },
    /// This container replaced another by a recreate: what the other one carried.
    TakeOver(Box<Successor>),
}

/// A container a recreate replaced, for the task of the container that replaces it: what the
/// old one's supervisor carried ([`selfheal_core::Effect::Recreated`]) and the open
/// incident's record.
#[derive(Debug)]
pub struct Successor {
    pub new_id: String,
    pub carry: SlotCarry,
    pub incident: Option<Incident>,
    /// The old container's name (its incident's and metrics' name).
    pub container: String,
}

/// Everything a task needs from the daemon.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub prober: Prober,
    pub notifier: Notifier,
    pub backoff: Backoff,
    pub probe_network: Option<String>,
    pub own_networks: Arc<Vec<String>>,
    /// Capture evidence for incidents (`--evidence`).
    pub evidence: bool,
    /// Where this container, as a parent, reports that its dependents wait or may go on.
    pub gates: mpsc::Sender<GateReport>,
    /// Swarm slots handed over by an ended task, for its replacement.
    pub slots: Arc<crate::swarm::SlotLedger>,
    /// Where a container replaced by a recreate hands over to its replacement (the watch
    /// loop routes it to the replacement's task).
    pub successors: mpsc::Sender<Successor>,
    /// The other nodes' watchdogs on Swarm (`--swarm-peers`).
    pub peers: Option<crate::swarm::Peers>,
}

pub struct ContainerHandle {
    pub tx: mpsc::Sender<Msg>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ContainerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerHandle").finish_non_exhaustive()
    }
}

impl ContainerHandle {
    pub fn stop(self) {
        self.cancel.cancel();
        drop(self.task);
    }

    /// Hands `msg` to the task, waiting while its inbox is full.
    pub async fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg).await;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod order_tests;
