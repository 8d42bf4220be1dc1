//! A Swarm task's supervisor: what differs from a plain container's (see the module docs of
//! [`super`] and [`crate::swarm`]). Its container is never restarted in place; its end is the
//! task's end, and its slot's incident, budget, backoff and quarantine go to the task that
//! replaces it.

use super::{death_trigger, is_crash, Hold, InFlight, Phase, Supervisor};
use crate::policy::{Effect, Exit, Outcome, PolicySpec, RecoveryResult, Trigger, Verb, VerbKind};
use crate::swarm::{RestartCondition, SlotCarry};
use tokio::time::Instant;

/// What becomes of the open incident a recreate hands to its replacement
/// ([`Effect::Recreated`]), as [`Supervisor::carried_incident`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// The replacement's supervisor takes it over ([`Supervisor::take_over`]): it closes once
    /// the replacement is healthy.
    TakenOver,
    /// It cannot go on: closed now with `outcome`, for the reason `why`.
    Closed { outcome: Outcome, why: Unadopted },
}

/// Why a recreate's replacement does not take the carried incident over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unadopted {
    /// The replacement failed by itself and opened an incident of its own first.
    OwnIncidentFirst,
    /// The replacement is not watched (its labels no longer opt it in).
    NotWatched,
}

/// The reason as the journal records it (the incident's `failure`).
impl std::fmt::Display for Unadopted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OwnIncidentFirst => {
                "its replacement failed by itself before it took the incident over"
            }
            Self::NotWatched => "recreated, and the new container is not watched",
        })
    }
}

impl Supervisor {
    /// The supervisor of a Swarm task that replaces another in the same slot: it takes over
    /// the slot's open incident, budget, backoff and quarantine.
    pub fn replacement(spec: PolicySpec, carry: SlotCarry, now: Instant) -> Self {
        let mut sup = Self::new(spec, None, now);
        sup.incident = carry.incident;
        sup.budget = carry.budget;
        sup.backoff.recent = carry.recent;
        sup.backoff.last = carry.last;
        if carry.quarantined {
            sup.carried_hold = Hold::Quarantine;
        }
        sup
    }

    /// The supervisor of a container a recreate made ([`Effect::Recreated`]) takes over
    /// what the container it replaces carried: the open incident (closed once this one is
    /// healthy, its time to recover counted from the first failure), the budget and the
    /// backoff. What it saw of its own run meanwhile stands. An incident it opened itself
    /// meanwhile stays its own: the carried one is then closed as
    /// [`Supervisor::carried_incident`] says (ask it before this).
    pub fn take_over(&mut self, carry: SlotCarry, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        let sent: Vec<Instant> = carry.budget.sent().collect();
        self.budget.merge(sent, now);
        self.backoff.recent = self.backoff.recent.max(carry.recent);
        self.backoff.last = self.backoff.last.max(carry.last);
        if self.incident.is_none() {
            self.incident = carry.incident;
        }
        if carry.quarantined {
            self.carried_hold = Hold::Quarantine;
        }
        self.settle(now, &mut out);
        out
    }

    /// What becomes of the incident a recreate hands to its replacement, whose supervisor is
    /// `successor` (`None`: the replacement is not watched). One the replacement cannot go on
    /// with is abandoned: the fault it was about ended with the old container.
    pub fn carried_incident(successor: Option<&Supervisor>) -> Carried {
        let why = match successor {
            Some(sup) if sup.incident.is_none() => return Carried::TakenOver,
            Some(_) => Unadopted::OwnIncidentFirst,
            None => Unadopted::NotWatched,
        };
        Carried::Closed {
            outcome: Outcome::Abandoned,
            why,
        }
    }

    /// What a Swarm slot spent on another node, told by that node's watchdog after this task,
    /// its replacement here, was found: the slot's budget counts those ends too (so a slot
    /// whose tasks keep moving between nodes is still quarantined past the budget) and its
    /// backoff goes on from where it was. The open incident stays with the other node, which
    /// closes it when this task is healthy.
    pub fn adopt_slot(
        &mut self,
        sent: impl IntoIterator<Item = Instant>,
        recent: u32,
        last: Option<Instant>,
        now: Instant,
    ) {
        self.budget.merge(sent, now);
        self.backoff.recent = self.backoff.recent.max(recent);
        self.backoff.last = self.backoff.last.max(last);
    }

    /// A Swarm task's restart condition learnt while it is watched (a worker's watchdog asks
    /// a manager's, which may answer only after the task was found): it replaces `Unknown`
    /// only, and counts from the next decision to end the task.
    pub fn learn_restart_condition(&mut self, condition: RestartCondition) {
        if self.spec.swarm == Some(RestartCondition::Unknown) {
            self.spec.swarm = Some(condition);
        }
    }

    /// How a failed Swarm task is acted on. `None`: not by the watchdog (an unhealthy task is
    /// Swarm's to replace, recorded `observed`; a task Swarm would not replace is reported).
    pub(super) fn swarm_verb(
        &mut self,
        condition: RestartCondition,
        trigger: Trigger,
        opened: bool,
        out: &mut Vec<Effect>,
    ) -> Option<Verb> {
        if trigger == Trigger::Unhealthy {
            if opened {
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::Observed,
                    verb: VerbKind::None,
                });
                out.push(Effect::ReadHealthLog);
            }
            return None;
        }
        condition.end_mode().map(Verb::End)
    }

    pub(super) fn swarm(&self) -> Option<RestartCondition> {
        self.spec.swarm
    }

    /// A Swarm task's container ended: Swarm, not the watchdog, decides what comes next. An end
    /// the watchdog ordered counts against the slot's budget; a crash nobody ordered opens an
    /// incident (`observed`: Swarm replaces it by its restart condition). Everything the slot
    /// carries goes to the replacement's supervisor.
    pub(super) fn task_ended(&mut self, exit: Exit, now: Instant, out: &mut Vec<Effect>) {
        if self.phase == Phase::Gone {
            return;
        }
        if let Some(InFlight {
            sent_at: Some(sent),
            verb,
            counted,
            ..
        }) = self.order.take()
        {
            let verb = verb.kind();
            if !counted {
                self.count_attempt(sent, verb, out);
            }
            self.record_success(verb, out);
        }
        let hold = self.hold().max_with(self.carried_hold);
        if self.incident.is_none() && is_crash(&exit) && hold != Hold::Quarantine {
            let trigger = death_trigger(&exit);
            self.open_incident(trigger, now, now, out);
            out.push(Effect::Recovery {
                trigger,
                result: RecoveryResult::Observed,
                verb: VerbKind::None,
            });
        }
        self.reset_signals();
        self.phase = Phase::Gone;
        out.push(Effect::HandOver(Box::new(SlotCarry {
            incident: self.incident.take(),
            budget: self.budget.clone(),
            recent: self.backoff.recent,
            last: self.backoff.last,
            quarantined: hold == Hold::Quarantine,
        })));
    }
}
