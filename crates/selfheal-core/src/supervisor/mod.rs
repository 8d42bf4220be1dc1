//! The recovery policy of one container: the only place selfheal decides anything.
//!
//! The daemon feeds [`Observation`]s with the time it received them; [`Supervisor::handle`]
//! returns the [`Effect`]s to carry out or record. The supervisor never touches Docker, never
//! reads a clock, and keeps its state as a [`Phase`] whose variants carry their own data.
//! By file: `events` (lifecycle observations), `orders` (the decision to act, its verb, the
//! executor's turn and outcome), `state` (time, recovery, incidents, the state shown), `swarm`
//! (what differs for a Swarm task).
//!
//! Semantics, with their references:
//! - **Start period** (Docker's `HEALTHCHECK --start-period`, kubelet's `startupProbe`): after
//!   every start, failures of the watchdog's own probe do not count until the first success
//!   (its own probe passing, or Docker reporting `healthy`) or until the period runs out,
//!   whichever comes first. Every failure after that counts.
//! - **Failure threshold** (kubelet's `failureThreshold`): `failures` consecutive failed
//!   probes make the container unhealthy; one success resets the count.
//! - **Docker's `unhealthy`** is acted on at once: Docker has already applied the
//!   HEALTHCHECK's own start period and retries. Not while a backoff or quarantine holds, a
//!   restart is in flight, the container is being stopped, is stopped or paused (Docker reports
//!   paused containers and containers in a slow `docker stop` as unhealthy: moby #46203,
//!   #36233).
//! - **Docker's restart policy** (layer 1) is left to do its job: a death it will restart is
//!   recorded (`observed`), not repeated.
//! - **Dependents** (see [`crate::dependents`]): a run that began before a parent's latest
//!   start is attached to the parent's old start (Docker joins a `container:<id>` network
//!   namespace only when the dependent starts); once the parent is ready, such a run counts as
//!   failed with trigger `dependency` and is restarted under this container's own backoff and
//!   budget. Not while it is paused, stopped, exited or already being restarted.
//! - **Budget and backoff**: only a restart Docker was asked to carry out spends budget and
//!   counts for backoff: an order the executor refused, or could not send, spends nothing.
//!   Backoff is forgotten once the container has been healthy for `backoff.reset_after`
//!   without a break ([`Effect::BackoffReset`], at that moment).
//! - **The ladder** (`spec.ladder`, a plain container's): a fault gets a restart; once
//!   `recreate_after` restarts (counted like backoff: since the container was last healthy for
//!   `backoff.reset_after`) have not kept it healthy, a recreate from its own configuration
//!   instead (a fresh writable layer, as kubelet gives every restart of a pod's container);
//!   past the budget, quarantine, which stops a running container when `on_quarantine` says
//!   so. A dependent restarted because its parent started again is restarted, never
//!   escalated: its own layer is not what failed. Action `recreate` always recreates;
//!   `notify` and `none` open and close incidents and never order anything. A recreate's
//!   replacement takes over the incident, budget and backoff ([`Supervisor::take_over`]).
//! - **Orders** carry a verb the core chose ([`crate::Verb`]). When the executor's turn comes
//!   it says what it sees; an order a user's stop, kill or pause overtook is dropped, whatever
//!   its verb ([`crate::Verdict::Drop`]).
//! - **A user's stop** is told by its events: a `kill` whose signal ends a process
//!   ([`stops_process`]; SIGSTOP only freezes it, and a frozen container is healed), then its
//!   `die`. A `kill` that names no signal (Podman's) may be either: it is a stop only if its
//!   process dies within `USER_STOP_WITHIN` (120 s) and before it starts again; until then
//!   nothing changes. A `die` that names no exit code is still a crash; only Docker's `on-failure`
//!   policy depends on the code, so the container is looked at before the watchdog acts.
//! - **A Swarm task** (`spec.swarm`, see [`crate::swarm`] for Swarm's own semantics) is never
//!   restarted in place. Docker's `unhealthy` is Swarm's to act on: the incident is recorded
//!   (`observed`) and nothing is done. A failed probe of the watchdog's own ends the task's
//!   container so that Swarm replaces it ([`RestartCondition::end_mode`]), or is only reported
//!   when Swarm would not replace it. Any end of the container is the task's end (nobody
//!   restarts it, not even a user): the supervisor hands its open incident, budget, backoff and
//!   quarantine over ([`Effect::HandOver`]) to the supervisor of the task that replaces it in
//!   the same slot, which closes the incident once healthy. Quarantine then means: stop acting,
//!   alert.

use crate::budget::RestartBudget;
use crate::policy::{
    Action, Attempt, DockerHealth, Effect, Exit, IncidentTimes, Observation, OnQuarantine, Order,
    OrderOutcome, Outcome, ParentRecreated, PolicySpec, ProbeOutcome, RecoveryResult, RunStatus,
    Signal, Snapshot, State, Trigger, Unobservable, Verb, VerbKind, Verdict,
};
use crate::restart_policy::RestartPolicy;
use std::time::Duration;
use tokio::time::Instant;

/// Docker's `StartedAt` and the watchdog's clock come from the same host; allow for rounding.
const START_CLOCK_SLACK: Duration = Duration::from_millis(50);
/// A restart's own events are expected within its stop timeout plus this long; past it, look.
const RESTART_EVENTS_WITHIN: Duration = Duration::from_secs(60);
/// Once Docker answered a restart, its `start` event is expected within this long.
const START_AFTER_ANSWER: Duration = Duration::from_secs(5);
/// A restart a previous run of the watchdog sent: look again this long after it at the latest.
const RESUMED_RESTART_WITHIN: Duration = Duration::from_secs(5);
/// A user's stop in progress (a stopping signal was sent, no exit yet) is awaited this long
/// before the container is looked at again: a process may ignore SIGTERM.
const USER_STOP_WITHIN: Duration = Duration::from_secs(120);
/// After a restart that could not be sent because Docker was unreachable, look again after.
const UNREACHABLE_RECHECK: Duration = Duration::from_secs(1);
/// Exit codes of a process ended by a stop or kill: a clean exit, or death by SIGINT, SIGKILL
/// or SIGTERM (128 + signal). Anything else, or the OOM flag, is a crash.
const STOP_EXIT_CODES: [i64; 4] = [0, 130, 137, 143];

mod events;
mod orders;
mod state;
mod swarm;

pub use swarm::{Carried, Unadopted};

/// Does a `kill` event with this signal announce a stop? Only signals that end a process do
/// (INT, QUIT, KILL, TERM). HUP, USR1 and the like are reloads, and SIGSTOP freezes the
/// process without ending it: a frozen container is the watchdog's to heal, not a user's stop
/// (a Podman user's `kill --signal STOP` was once read as one). A `kill` that names no signal
/// is told by what follows it (see the module doc).
pub fn stops_process(signal: Signal) -> bool {
    matches!(
        signal,
        Signal::Int | Signal::Quit | Signal::Kill | Signal::Term
    )
}

/// For a death judged by its exit alone (seen in an inspect after a gap, or a Swarm task's
/// end), without the `kill` events that tell a user's stop: a death by OOM, or by an exit code
/// other than a stop's. An exit whose code is not known is then not taken as a crash ("cannot
/// tell" is not "failed"); a `die` event is a crash whatever its code ([`Supervisor::on_died`]).
fn is_crash(exit: &Exit) -> bool {
    exit.oom_killed || exit.code.is_some_and(|c| !STOP_EXIT_CODES.contains(&c))
}

fn death_trigger(exit: &Exit) -> Trigger {
    if exit.oom_killed {
        Trigger::Oom
    } else {
        Trigger::Died
    }
}

/// The start period of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// Failures of the watchdog's own probe do not count before `until`.
    Open { until: Instant },
    /// Ended by a first success or by running out.
    Over,
}

/// One run of the container's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub since: Instant,
    pub grace: Grace,
}

impl Run {
    fn new(since: Instant, start_period: Duration, now: Instant) -> Self {
        let until = since + start_period;
        let grace = if until > now {
            Grace::Open { until }
        } else {
            Grace::Over
        };
        Self { since, grace }
    }

    fn in_grace(&self, now: Instant) -> bool {
        matches!(self.grace, Grace::Open { until } if now < until)
    }
}

/// What keeps the watchdog from restarting a failed container now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Free,
    Backoff {
        until: Instant,
    },
    /// The restart budget is spent: left alone until it is healthy by itself.
    Quarantine,
}

impl Hold {
    /// The stronger of two holds: quarantine over backoff over free.
    fn max_with(self, other: Hold) -> Hold {
        match (self, other) {
            (Hold::Quarantine, _) | (_, Hold::Quarantine) => Hold::Quarantine,
            (Hold::Backoff { until: a }, Hold::Backoff { until: b }) => {
                Hold::Backoff { until: a.max(b) }
            }
            (Hold::Backoff { .. }, _) => self,
            (_, b) => b,
        }
    }
}

/// Where one container's lifecycle stands, as far as the watchdog is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Nothing known yet (watching just began), or the core asked to look again. `last`: the
    /// run known before, whose signals still stand if it turns out to go on.
    Unknown {
        recheck_at: Option<Instant>,
        last: Option<Run>,
    },
    Running {
        run: Run,
        hold: Hold,
    },
    Paused {
        run: Run,
        hold: Hold,
    },
    /// The process died; `docker_restarts`: Docker's restart policy brings it back.
    Exited {
        trigger: Trigger,
        docker_restarts: bool,
        hold: Hold,
    },
    /// An order is decided and waits for the executor's turn (the global bound of actions in
    /// flight); the container's events are still its own. `of`: the run it acts on, if it was
    /// running.
    Ordered {
        of: Option<Run>,
    },
    /// An order was sent at `sent_at`: the container's kill, die and stop events are the
    /// order's own until its `start`. Past `deadline`, look again. `of`: the run being
    /// restarted, if it was running (a report of its start is stale).
    Restarting {
        sent_at: Instant,
        deadline: Option<Instant>,
        of: Option<Run>,
        /// What was sent.
        verb: VerbKind,
    },
    /// A user is stopping it: a stopping signal was seen, the exit not yet. `of`: the run
    /// being stopped.
    Stopping {
        until: Instant,
        of: Option<Run>,
    },
    /// Stopped or killed by a user, or never seen running: left alone.
    Stopped,
    Gone,
}

/// The watchdog's own probe, since the container last started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streak {
    NoSuccessYet,
    Passing,
    Failing { count: u32, first: Instant },
}

/// The order the executor holds: at most one at a time. It spends budget (at `sent_at`) once
/// Docker answered it, whatever the phase is by then (the order's `start` may come first).
#[derive(Debug, Clone)]
struct InFlight {
    verb: Verb,
    /// Set when the core answered the executor's turn with [`Verdict::Send`]. Equal to
    /// [`Phase::Restarting`]'s `sent_at` while both exist, but neither outlives the other: the
    /// phase may move on before Docker answers (its events were late and a look found the old
    /// run, or the container down), and goes on after the answer (awaiting the `start`), or
    /// without an order (a restart a previous run of the watchdog sent).
    sent_at: Option<Instant>,
    /// Destroyed while a recreate was under way (its last step removes the old container):
    /// the executor's report says how it ended.
    removed: bool,
    /// Counted already (budget, backoff, the incident's attempts and steps): its `start` came
    /// before Docker's answer, and proves Docker carried it out.
    counted: bool,
}

/// Restarts since backoff was last forgotten.
#[derive(Debug, Clone, Copy)]
struct BackoffCount {
    recent: u32,
    last: Option<Instant>,
    /// Since when the state is `healthy` without a break.
    healthy_since: Option<Instant>,
}

/// The current run was left behind by a parent's start (see [`crate::dependents`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stale {
    /// The parent's start.
    since: Instant,
    /// The parent is a new container: what that means for this one.
    recreated: Option<ParentRecreated>,
}

/// The policy state of one container.
#[derive(Debug)]
pub struct Supervisor {
    spec: crate::policy::PolicySpec,
    phase: Phase,
    docker: Option<DockerHealth>,
    probe: Streak,
    unobservable: Option<Unobservable>,
    /// A parent's start that left the current run behind (a signal about this run, cleared
    /// with the others when it starts again).
    stale: Option<Stale>,
    /// As a dependent: a parent started again after this run began and is not ready yet.
    parent_waiting: bool,
    incident: Option<IncidentTimes>,
    budget: RestartBudget,
    backoff: BackoffCount,
    order: Option<InFlight>,
    /// The state last reported through [`Effect::StateChanged`].
    state: State,
    /// A Swarm slot's quarantine or backoff, carried from the task this one replaces: applies
    /// from the first run seen.
    carried_hold: Hold,
    /// The executor refused to recreate this container from its own configuration (it cannot
    /// be copied safely, which does not change while it exists): the ladder restarts instead.
    recreate_refused: bool,
    /// When a `kill` that named no signal was seen, until the process dies or starts again:
    /// its death within [`USER_STOP_WITHIN`] makes that kill a user's stop.
    unstated_kill: Option<Instant>,
}

impl Supervisor {
    /// `resumed`: an incident a previous run of the watchdog left open.
    pub fn new(spec: PolicySpec, resumed: Option<IncidentTimes>, now: Instant) -> Self {
        let budget = RestartBudget::new(spec.restart_max, spec.restart_window);
        let phase = match resumed.as_ref().and_then(|i| i.last_restart) {
            // Its restart may still be under way: its events are not a user's.
            Some(sent) => Phase::Restarting {
                of: None,
                verb: resumed
                    .as_ref()
                    .and_then(|i| i.steps.last())
                    .map_or(VerbKind::Restart, |a| a.verb),
                sent_at: sent,
                deadline: Some(
                    (sent
                        + Duration::from_secs(u64::from(spec.effective_stop_timeout()))
                        + RESUMED_RESTART_WITHIN)
                        .max(now + RESUMED_RESTART_WITHIN),
                ),
            },
            None => Phase::Unknown {
                recheck_at: None,
                last: None,
            },
        };
        let backoff = BackoffCount {
            recent: resumed.as_ref().map_or(0, |i| i.attempts),
            last: resumed.as_ref().and_then(|i| i.last_restart),
            healthy_since: None,
        };
        Self {
            spec,
            phase,
            docker: None,
            probe: Streak::NoSuccessYet,
            unobservable: None,
            stale: None,
            parent_waiting: false,
            incident: resumed,
            budget,
            backoff,
            order: None,
            state: State::Starting,
            carried_hold: Hold::Free,
            recreate_refused: false,
            unstated_kill: None,
        }
    }

    /// Closes an incident a previous run left open for a container that no longer exists.
    pub fn close_orphan(incident: IncidentTimes) -> Effect {
        Effect::IncidentClosed {
            incident,
            outcome: Outcome::Abandoned,
            time_to_recover: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn phase(&self) -> &Phase {
        &self.phase
    }
    pub fn incident(&self) -> Option<&IncidentTimes> {
        self.incident.as_ref()
    }
    pub fn docker_health(&self) -> Option<DockerHealth> {
        self.docker
    }
    /// Consecutive probe failures counted (after the start period).
    pub fn consecutive_failures(&self) -> u32 {
        match self.probe {
            Streak::Failing { count, .. } => count,
            _ => 0,
        }
    }
    /// Why the last probe could not look at the container, until one does.
    pub fn unobservable(&self) -> Option<Unobservable> {
        self.unobservable
    }
    pub fn restarts_in_window(&mut self, now: Instant) -> u32 {
        self.budget.used(now)
    }
    /// When the current run began, while it runs.
    pub fn run_since(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Running { run, .. } => Some(run.since),
            _ => None,
        }
    }
    /// The parent's start the current run is behind, until the run is restarted.
    pub fn stale_since(&self) -> Option<Instant> {
        self.stale.as_ref().map(|s| s.since)
    }
    /// As a dependent: a parent started again after this run began and is not ready yet.
    pub fn parent_waiting(&self) -> bool {
        self.parent_waiting
    }
    pub fn restart_in_flight(&self) -> bool {
        self.order.is_some()
    }
    /// Since when the state is `healthy` without a break.
    pub fn healthy_since(&self) -> Option<Instant> {
        self.backoff.healthy_since
    }
    /// Restarts that lengthen the next backoff (forgotten after `backoff.reset_after` healthy).
    pub fn recent_restarts(&self) -> u32 {
        self.backoff.recent
    }
    /// Probe results count only while the process runs and is not paused: the daemon may skip
    /// probing otherwise.
    pub fn wants_probes(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
    }

    /// When the daemon should feed [`Observation::Tick`] next, if at all.
    pub fn wake_at(&self) -> Option<Instant> {
        earliest(self.phase_wake_at(), self.backoff_reset_at())
    }

    fn phase_wake_at(&self) -> Option<Instant> {
        let backoff = |hold: &Hold| match hold {
            Hold::Backoff { until } => Some(*until),
            _ => None,
        };
        match &self.phase {
            Phase::Running { run, hold } => {
                let grace = match run.grace {
                    Grace::Open { until } => Some(until),
                    Grace::Over => None,
                };
                earliest(grace, backoff(hold))
            }
            Phase::Paused { hold, .. } | Phase::Exited { hold, .. } => backoff(hold),
            Phase::Restarting { deadline, .. } => *deadline,
            Phase::Stopping { until, .. } => Some(*until),
            Phase::Unknown { recheck_at, .. } => *recheck_at,
            Phase::Ordered { .. } | Phase::Stopped | Phase::Gone => None,
        }
    }

    /// When the restarts counted for backoff are forgotten, if that is pending.
    fn backoff_reset_at(&self) -> Option<Instant> {
        let since = self.backoff.healthy_since?;
        (self.backoff.recent > 0).then(|| since + self.spec.backoff.reset_after)
    }

    pub fn handle(&mut self, obs: Observation, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        // Time passed before this observation: a healthy stretch that is long enough counts
        // whatever the observation says.
        self.forget_backoff(now, &mut out);
        self.apply(obs, now, &mut out);
        self.settle(now, &mut out);
        out
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[path = "../supervisor_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "../supervisor_props.rs"]
mod props;

#[cfg(test)]
#[path = "../supervisor_swarm_tests.rs"]
mod swarm_tests;

#[cfg(test)]
#[path = "../supervisor_order_tests.rs"]
mod order_tests;

#[cfg(test)]
#[path = "../supervisor_ladder_tests.rs"]
mod ladder_tests;

#[cfg(test)]
#[path = "../supervisor_kill_tests.rs"]
mod kill_tests;
