//! Docker Swarm tasks: how a container is known to be one, and what Swarm will do when it ends.
//!
//! Swarm's semantics, which the supervisor follows for a task (see [`crate::Supervisor`]):
//! - A task's container is never restarted in place: Swarm's orchestrator owns it, and a
//!   `docker restart` behind its back makes it schedule a second task (moby #39130). When a
//!   task's container ends, Swarm decides, by the service's `restart_policy.condition`, whether
//!   a new task (a new container, same service and slot, or same node for a global service)
//!   replaces it, after `restart_policy.delay` (5 s by default).
//! - A task whose HEALTHCHECK turns `unhealthy` is failed and shut down by Swarm itself.
//! - `condition: any` (Swarm's default) replaces a task however it ended; `on-failure` only
//!   when it ended with a non-zero exit (a clean exit 0 leaves the task `Complete`, never
//!   replaced: moby #38322); `none` never replaces it.

use crate::budget::RestartBudget;
use crate::policy::IncidentTimes;
use std::collections::HashMap;
use tokio::time::Instant;

/// `com.docker.swarm.service.id`, set by Swarm on every task's container.
pub const SERVICE_ID: &str = "com.docker.swarm.service.id";
/// `com.docker.swarm.service.name`.
pub const SERVICE_NAME: &str = "com.docker.swarm.service.name";
/// `com.docker.swarm.task.id`.
pub const TASK_ID: &str = "com.docker.swarm.task.id";
/// `com.docker.swarm.task.name`: `SERVICE.SLOT.TASK` (replicated) or `SERVICE.NODE.TASK`
/// (global).
pub const TASK_NAME: &str = "com.docker.swarm.task.name";
/// `com.docker.swarm.node.id`.
pub const NODE_ID: &str = "com.docker.swarm.node.id";
/// Set by the user on a task's container (the stack file's service `labels:`), for a node that
/// cannot read the service (a worker): the service's `restart_policy.condition`.
pub const RESTART_CONDITION_LABEL: &str = "selfheal.swarm.restart-condition";

/// Where a task stands in its service: the replacement of a task takes the same place.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SwarmSlot {
    /// A replicated service's slot number.
    Replica(u64),
    /// A global service's node id.
    Node(String),
}

/// A container Swarm runs as a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmTask {
    pub service_id: String,
    pub service_name: String,
    pub task_id: String,
    pub slot: SwarmSlot,
}

impl SwarmTask {
    /// Reads Swarm's labels; `None` for a container that is not a Swarm task (no service or
    /// task id).
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        let service_id = labels.get(SERVICE_ID).filter(|s| !s.is_empty())?.clone();
        let task_id = labels.get(TASK_ID).filter(|s| !s.is_empty())?.clone();
        let service_name = labels
            .get(SERVICE_NAME)
            .cloned()
            .unwrap_or_else(|| service_id.clone());
        let middle = labels.get(TASK_NAME).and_then(|name| {
            name.strip_prefix(&format!("{service_name}."))?
                .strip_suffix(&format!(".{task_id}"))
                .map(str::to_string)
        });
        let slot = match middle {
            Some(m) => match m.parse::<u64>() {
                Ok(n) => SwarmSlot::Replica(n),
                Err(_) => SwarmSlot::Node(m),
            },
            None => SwarmSlot::Node(labels.get(NODE_ID).cloned().unwrap_or_default()),
        };
        Some(Self {
            service_id,
            service_name,
            task_id,
            slot,
        })
    }

    /// The key of the task's place in its service: shared by a task and its replacements.
    pub fn slot_key(&self) -> String {
        match &self.slot {
            SwarmSlot::Replica(n) => format!("{}/{n}", self.service_id),
            SwarmSlot::Node(node) => format!("{}/{node}", self.service_id),
        }
    }
}

/// A Swarm service's `TaskTemplate.RestartPolicy.Condition`, or not known (a worker node
/// cannot read services, and no label says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCondition {
    Any,
    OnFailure,
    None,
    Unknown,
}

impl RestartCondition {
    /// Swarm's names; an empty condition is Swarm's default, `any`.
    pub fn from_swarm(name: &str) -> Option<Self> {
        match name {
            "" | "any" => Some(Self::Any),
            "on-failure" => Some(Self::OnFailure),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::OnFailure => "on-failure",
            Self::None => "none",
            Self::Unknown => "unknown",
        }
    }

    /// How to end a task whose own probe failed so that Swarm replaces it, or `None` when
    /// Swarm would not: report only. `any` takes a plain stop; `on-failure` needs the task to
    /// end as a failure, and a graceful stop may exit 0 (task `Complete`, moby #38322), so it
    /// is killed; `none`, or a condition not known, is reported and left alone.
    pub fn end_mode(self) -> Option<EndMode> {
        match self {
            Self::Any => Some(EndMode::Stop),
            Self::OnFailure => Some(EndMode::Kill),
            Self::None | Self::Unknown => None,
        }
    }
}

/// How the executor ends a Swarm task's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndMode {
    /// `POST /containers/{id}/stop?t=<stop timeout>`: SIGTERM, then SIGKILL after the timeout.
    Stop,
    /// `POST /containers/{id}/kill` (SIGKILL): a non-zero exit (137) whatever the process does.
    Kill,
}

/// What one task's supervisor hands to the task that replaces it in the same slot: the open
/// incident (closed when the replacement is healthy, with the time to recover from its first
/// failure), and the slot's budget, backoff and quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotCarry {
    pub incident: Option<IncidentTimes>,
    pub budget: RestartBudget,
    /// Ends ordered since backoff was last forgotten, and the last one's send time.
    pub recent: u32,
    pub last: Option<Instant>,
    pub quarantined: bool,
}

/// How long a slot's hand-over waits for its replacement before it is given up (the
/// `--swarm-handover-wait` default): the incident is then closed `abandoned`.
pub const HANDOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// What another node's watchdog reports of a Swarm task it watches (its
/// `GET /api/v1/swarm/tasks`), with the time already on this watchdog's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTask {
    /// [`SwarmTask::slot_key`].
    pub slot_key: String,
    pub task_id: String,
    /// Since when that watchdog has seen the task healthy without a break, if it is now.
    pub healthy_since: Option<Instant>,
}

/// A slot whose task ended on this node and whose replacement has not started here. Swarm's
/// scheduler may place a replicated service's replacement (same service, same slot number) on
/// any node; a global service's replacement is always on the same node. The replacement's
/// node is not known here, so the slot is followed through what the other nodes' watchdogs
/// report.
#[derive(Debug, Clone, PartialEq)]
pub struct Handover {
    pub slot_key: String,
    /// The task that ended here: never its own replacement.
    pub ended_task: String,
    pub handed_at: Instant,
    /// The open incident's first failure, if the slot carried one.
    pub first_failure: Option<Instant>,
}

/// What becomes of a [`Handover`] at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// No healthy replacement seen elsewhere, and the wait is not over: keep the slot, so a
    /// replacement that starts here takes it over.
    Wait,
    /// Another node runs a different task in the same slot, healthy now: the incident closes
    /// `recovered`, its time to recover measured to the moment it was healthy. The slot's
    /// budget and backoff stay behind: they count per node.
    RecoveredElsewhere {
        time_to_recover: std::time::Duration,
    },
    /// Nothing within `wait`: the slot is given up and its incident closes `abandoned`.
    GaveUp,
}

impl Handover {
    /// Decides from the peers' reports at `now`. A replacement seen healthy wins over the end
    /// of the wait; among several (Swarm runs one task per slot, but reports can overlap a
    /// task's end), the earliest healthy one counts. Swarm starts the replacement only after
    /// the task ended here, so a report of an earlier moment is the other node's clock running
    /// behind: it counts as healthy when the task ended (`handed_at`), which keeps a skewed
    /// clock from losing the recovery or making the time to recover shorter than the fault
    /// took here. A slot without an incident has nothing to close: it only waits for a local
    /// replacement, then is given up.
    pub fn follow(&self, peers: &[PeerTask], now: Instant, wait: std::time::Duration) -> Followed {
        if let Some(first_failure) = self.first_failure {
            let healthy = peers
                .iter()
                .filter(|p| p.slot_key == self.slot_key && p.task_id != self.ended_task)
                .filter_map(|p| p.healthy_since)
                .min();
            if let Some(h) = healthy {
                let h = h.max(self.handed_at);
                return Followed::RecoveredElsewhere {
                    time_to_recover: h.saturating_duration_since(first_failure),
                };
            }
        }
        if now.saturating_duration_since(self.handed_at) >= wait {
            Followed::GaveUp
        } else {
            Followed::Wait
        }
    }
}

/// How long a service may run fewer tasks than it wants before it counts as stuck (the
/// `--swarm-stuck-after` default).
pub const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// One service's shortfall: running tasks below desired since when. Swarm sometimes never
/// reschedules (moby #36945, #37275); a shortfall longer than the limit is a stuck service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shortfall {
    since: Option<Instant>,
}

impl Shortfall {
    /// Feeds one look at the service (`ServiceStatus.RunningTasks` / `DesiredTasks`).
    pub fn observe(&mut self, running: u64, desired: u64, now: Instant) {
        if running >= desired {
            self.since = None;
        } else if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// Short of tasks, without a break, for `limit` or longer.
    pub fn stuck(&self, now: Instant, limit: std::time::Duration) -> bool {
        self.since
            .is_some_and(|s| now.saturating_duration_since(s) >= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn a_replicated_task_is_known_by_its_service_and_slot() {
        let t = SwarmTask::from_labels(&labels(&[
            (SERVICE_ID, "svc1"),
            (SERVICE_NAME, "stack_web"),
            (TASK_ID, "t9"),
            (TASK_NAME, "stack_web.3.t9"),
            (NODE_ID, "n1"),
        ]))
        .unwrap();
        assert_eq!(t.slot, SwarmSlot::Replica(3));
        assert_eq!(t.slot_key(), "svc1/3");
    }

    #[test]
    fn a_global_task_is_known_by_its_service_and_node() {
        let t = SwarmTask::from_labels(&labels(&[
            (SERVICE_ID, "svc1"),
            (SERVICE_NAME, "stack.web"),
            (TASK_ID, "t9"),
            (TASK_NAME, "stack.web.nodeabc.t9"),
            (NODE_ID, "nodeabc"),
        ]))
        .unwrap();
        assert_eq!(t.slot, SwarmSlot::Node("nodeabc".into()));
        assert_eq!(t.slot_key(), "svc1/nodeabc");
    }

    #[test]
    fn a_plain_container_is_no_task() {
        assert_eq!(
            SwarmTask::from_labels(&labels(&[("com.docker.compose.service", "web")])),
            None
        );
        assert_eq!(
            SwarmTask::from_labels(&labels(&[(SERVICE_ID, "svc1")])),
            None
        );
    }

    /// A service is stuck only after a shortfall without a break lasting the limit; one look
    /// with every task running starts the count over.
    #[test]
    fn a_service_is_stuck_after_a_shortfall_lasting_the_limit() {
        let t0 = Instant::now();
        let limit = std::time::Duration::from_secs(300);
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        let mut f = Shortfall::default();
        f.observe(1, 1, at(0));
        assert!(!f.stuck(at(1000), limit));
        f.observe(0, 1, at(10));
        f.observe(0, 1, at(200));
        assert!(!f.stuck(at(309), limit));
        assert!(f.stuck(at(310), limit));
        f.observe(1, 1, at(311));
        assert!(!f.stuck(at(311), limit));
        f.observe(2, 3, at(400));
        assert!(!f.stuck(at(699), limit), "counted from the new shortfall");
        assert!(f.stuck(at(700), limit));
        // Scaled to zero: nothing is missing.
        f.observe(0, 0, at(701));
        assert!(!f.stuck(at(2000), limit));
    }

    /// Swarm replaces a task under `any` however it ends, under `on-failure` only after a
    /// non-zero exit (moby #38322), never under `none`.
    #[test]
    fn the_end_mode_follows_swarms_restart_condition() {
        assert_eq!(
            RestartCondition::from_swarm(""),
            Some(RestartCondition::Any)
        );
        assert_eq!(RestartCondition::Any.end_mode(), Some(EndMode::Stop));
        assert_eq!(RestartCondition::OnFailure.end_mode(), Some(EndMode::Kill));
        assert_eq!(RestartCondition::None.end_mode(), None);
        assert_eq!(RestartCondition::Unknown.end_mode(), None);
        assert_eq!(RestartCondition::from_swarm("always"), None);
    }

    fn secs(n: u64) -> std::time::Duration {
        std::time::Duration::from_secs(n)
    }

    #[test]
    fn a_handover_closes_on_a_healthy_replacement_elsewhere_and_never_on_the_ended_task() {
        let t0 = Instant::now();
        let h = Handover {
            slot_key: "svc/1".into(),
            ended_task: "old".into(),
            handed_at: t0 + secs(3),
            first_failure: Some(t0),
        };
        let peer = |slot: &str, task: &str, healthy: Option<u64>| PeerTask {
            slot_key: slot.into(),
            task_id: task.into(),
            healthy_since: healthy.map(|s| t0 + secs(s)),
        };
        let wait = secs(60);
        // The ended task itself, another slot, a replacement not healthy yet: wait.
        let not_yet = [
            peer("svc/1", "old", Some(1)),
            peer("svc/2", "x", Some(9)),
            peer("svc/1", "new", None),
        ];
        assert_eq!(h.follow(&not_yet, t0 + secs(10), wait), Followed::Wait);
        // The same reports after the wait: given up.
        assert_eq!(h.follow(&not_yet, t0 + secs(63), wait), Followed::GaveUp);
        // Healthy at +12 s: recovered, 12 s after the first failure, even past the wait.
        let seen = [peer("svc/1", "new", Some(12))];
        for now in [13, 100] {
            assert_eq!(
                h.follow(&seen, t0 + secs(now), wait),
                Followed::RecoveredElsewhere {
                    time_to_recover: secs(12)
                }
            );
        }
        // The other node's clock behind: healthy "before" the task ended here counts as the
        // end here (+3 s), never as lost or shorter.
        let skewed = [peer("svc/1", "new", Some(1))];
        assert_eq!(
            h.follow(&skewed, t0 + secs(10), wait),
            Followed::RecoveredElsewhere {
                time_to_recover: secs(3)
            }
        );
        // No incident carried: nothing to close, only a wait for a local replacement.
        let quiet = Handover {
            first_failure: None,
            ..h.clone()
        };
        assert_eq!(quiet.follow(&seen, t0 + secs(13), wait), Followed::Wait);
        assert_eq!(quiet.follow(&seen, t0 + secs(63), wait), Followed::GaveUp);
    }

    use proptest::prelude::*;

    fn report() -> impl Strategy<Value = (bool, bool, Option<u64>)> {
        // (same slot, the ended task, healthy since: seconds from the test's origin)
        (
            any::<bool>(),
            prop::bool::weighted(0.3),
            prop::option::of(0u64..200),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// A hand-over followed over random looks (increasing times, each with a random set of
        /// peers' reports) until it is decided. Invariants, at every look:
        /// - it closes `recovered` exactly when some report names the same slot, a task other
        ///   than the ended one, healthy now; the time to recover is from the first failure to
        ///   the earliest such moment, or to the hand-over if that moment is earlier (a clock
        ///   behind), so it is never shorter than first failure -> hand-over;
        /// - without an incident it never closes `recovered`;
        /// - otherwise it is given up exactly when the wait is over, and waits before;
        /// - so the first look that is not `Wait` ends the story, and every look before it saw
        ///   no replacement and came before the end of the wait.
        #[test]
        fn a_handover_is_decided_by_the_replacement_or_the_wait(
            first_failure in prop::option::of(0u64..50),
            handed_after in 0u64..20,
            wait in 1u64..150,
            looks in prop::collection::vec((1u64..20, prop::collection::vec(report(), 0..4)), 1..25),
        ) {
            let origin = Instant::now();
            let at = |s: u64| origin + secs(s);
            let handed = first_failure.unwrap_or(0) + handed_after;
            let h = Handover {
                slot_key: "svc/3".into(),
                ended_task: "ended".into(),
                handed_at: at(handed),
                first_failure: first_failure.map(at),
            };
            let mut now = handed;
            for (step, reports) in looks {
                now += step;
                let peers: Vec<PeerTask> = reports
                    .iter()
                    .enumerate()
                    .map(|(i, (same_slot, ended, healthy))| PeerTask {
                        slot_key: if *same_slot { "svc/3".into() } else { "svc/4".into() },
                        task_id: if *ended { "ended".into() } else { format!("t{i}") },
                        healthy_since: healthy.map(at),
                    })
                    .collect();
                let replacement = first_failure.and_then(|f| {
                    reports
                        .iter()
                        .filter(|(same, ended, _)| *same && !*ended)
                        .filter_map(|(_, _, healthy)| *healthy)
                        .min()
                        .map(|h| h.max(handed) - f)
                });
                let verdict = h.follow(&peers, at(now), secs(wait));
                match (replacement, verdict) {
                    (Some(ttr), Followed::RecoveredElsewhere { time_to_recover }) => {
                        prop_assert_eq!(time_to_recover, secs(ttr));
                        prop_assert!(time_to_recover >= secs(handed - first_failure.unwrap_or(0)));
                        break;
                    }
                    (None, Followed::GaveUp) => {
                        prop_assert!(now - handed >= wait, "given up before the wait was over");
                        break;
                    }
                    (None, Followed::Wait) => {
                        prop_assert!(now - handed < wait, "still waiting after the wait");
                    }
                    (expected, got) => {
                        prop_assert!(false, "replacement {:?} but {:?}", expected, got);
                    }
                }
            }
        }
    }
}
