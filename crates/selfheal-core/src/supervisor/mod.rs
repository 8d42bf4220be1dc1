//! The recovery policy of one container: the only place selfheal decides anything.
//!
//! The daemon feeds [`Observation`]s with the time it received them; [`Supervisor::handle`]
//! returns the [`Effect`]s to carry out or record. The supervisor never touches Docker, never
//! reads a clock, and keeps its state as a [`Phase`] whose variants carry their own data.
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
//!   counts for backoff. Backoff is forgotten once the container has been healthy for
//!   `backoff.reset_after` without a break.
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
    DockerHealth, Effect, Exit, IncidentTimes, Observation, Order, OrderOutcome, Outcome,
    ParentRecreated, PolicySpec, ProbeOutcome, RecoveryResult, RunStatus, Signal, Snapshot, State,
    Trigger, Unobservable, Verb, Verdict,
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

mod swarm;

/// Does a `kill` event with this signal announce a stop? Only signals that end a process do
/// (INT, QUIT, KILL, TERM; a `kill` naming none is taken as one). HUP, USR1 and the like are
/// reloads, and SIGSTOP freezes the process without ending it: a frozen container is the
/// watchdog's to heal, not a user's stop (a Podman user's `kill --signal STOP` was once read as
/// one).
pub fn stops_process(signal: Option<Signal>) -> bool {
    matches!(
        signal,
        None | Some(Signal::Int | Signal::Quit | Signal::Kill | Signal::Term)
    )
}

/// A death by OOM, or by an exit code other than a stop's. An exit whose code is not known is
/// not taken as a crash: "cannot tell" is not "failed".
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
    /// Set when the core answered the executor's turn with [`Verdict::Send`].
    sent_at: Option<Instant>,
    /// Destroyed while a recreate was under way (its last step removes the old container):
    /// the executor's report says how it ended.
    removed: bool,
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
}

impl Supervisor {
    /// `resumed`: an incident a previous run of the watchdog left open.
    pub fn new(spec: PolicySpec, resumed: Option<IncidentTimes>, now: Instant) -> Self {
        let budget = RestartBudget::new(spec.restart_max, spec.restart_window);
        let phase = match resumed.as_ref().and_then(|i| i.last_restart) {
            // Its restart may still be under way: its events are not a user's.
            Some(sent) => Phase::Restarting {
                of: None,
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

    fn apply(&mut self, obs: Observation, now: Instant, out: &mut Vec<Effect>) {
        match obs {
            Observation::Started { at } => self.on_started(at.min(now), now, out),
            Observation::Probe(p) => self.on_probe(p, now),
            Observation::Health(h) => {
                if let Phase::Running { run, .. } = &mut self.phase {
                    self.docker = Some(h);
                    if h == DockerHealth::Healthy {
                        run.grace = Grace::Over;
                    }
                }
            }
            Observation::HealthFailingSince(at) => self.on_health_failing_since(at, out),
            // A Swarm task's end is the task's end, whoever caused it: seen at its `die`.
            Observation::Killed { .. } | Observation::Stopped if self.swarm().is_some() => {}
            // A reload or a freeze: the process goes on.
            Observation::Killed { signal } if !stops_process(signal) => {}
            Observation::Killed { .. } => match self.phase {
                Phase::Restarting { .. } | Phase::Stopped | Phase::Gone => {}
                _ => {
                    let of = match &self.phase {
                        Phase::Running { run, .. } | Phase::Paused { run, .. } => Some(*run),
                        Phase::Ordered { of }
                        | Phase::Stopping { of, .. }
                        | Phase::Unknown { last: of, .. } => *of,
                        _ => None,
                    };
                    self.phase = Phase::Stopping {
                        until: now + USER_STOP_WITHIN,
                        of,
                    }
                }
            },
            Observation::Died(exit) => self.on_died(exit, now, out),
            Observation::Stopped => match self.phase {
                Phase::Restarting { .. } | Phase::Stopped | Phase::Gone => {}
                _ => self.stopped_by_user(now, out),
            },
            Observation::Paused => match self.phase {
                Phase::Running { run, hold } => self.phase = Phase::Paused { run, hold },
                // A user's pause while the watchdog looks again or waits for its turn: the
                // pause stands.
                Phase::Unknown {
                    last: Some(run), ..
                }
                | Phase::Ordered { of: Some(run) } => {
                    self.phase = Phase::Paused {
                        run,
                        hold: Hold::Free,
                    }
                }
                _ => {}
            },
            Observation::Unpaused => {
                if let Phase::Paused { run, hold } = self.phase {
                    // What Docker's health said while frozen is stale, and so is the streak.
                    self.reset_signals();
                    self.phase = Phase::Running { run, hold };
                }
            }
            Observation::Snapshot(s) => self.on_snapshot(s, now, out),
            Observation::Removed => self.on_removed(now, out),
            Observation::Turn { running } => self.on_turn(running, now, out),
            Observation::OrderEnded(outcome) => self.on_order_ended(outcome, now, out),
            Observation::Tick => self.on_tick(now, out),
            Observation::ParentWaiting { since } => {
                self.parent_waiting = self.run_before(since);
            }
            Observation::ParentStarted { at, recreated } => {
                self.parent_waiting = false;
                if self.run_before(at) && self.order.is_none() {
                    let stale = self.stale.get_or_insert(Stale {
                        since: at,
                        recreated: None,
                    });
                    stale.since = stale.since.min(at);
                }
                if let (Some(stale), Some(r)) = (&mut self.stale, recreated) {
                    stale.recreated = Some(r);
                }
            }
        }
    }

    /// Did the run going on (or, while looking again, the run known before) begin before `at`?
    fn run_before(&self, at: Instant) -> bool {
        match &self.phase {
            Phase::Running { run, .. }
            | Phase::Unknown {
                last: Some(run), ..
            } => run.since < at,
            _ => false,
        }
    }

    fn on_removed(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if let Some(InFlight {
            verb: Verb::Recreate { .. },
            sent_at: Some(_),
            removed,
        }) = &mut self.order
        {
            // A recreate removes the old container as its last step: its `destroy` may come
            // before the executor's report, which says how the incident ended.
            *removed = true;
            return;
        }
        self.close_incident(Outcome::Abandoned, now, out);
        self.reset_signals();
        self.phase = Phase::Gone;
        out.push(Effect::Unwatch);
    }

    /// The executor's turn came: send the order, unless the container is no longer what it
    /// was decided for (a user stopped, paused or killed it meanwhile, or it is found not
    /// running any more): a user's action wins, for every verb.
    fn on_turn(&mut self, running: Option<bool>, now: Instant, out: &mut Vec<Effect>) {
        let Some(order) = self.order.as_mut().filter(|o| o.sent_at.is_none()) else {
            return;
        };
        let send = match self.phase {
            Phase::Ordered { of } => of.is_none() || running != Some(false),
            _ => false,
        };
        if !send {
            self.order = None;
            out.push(Effect::Turn(Verdict::Drop));
            self.look_again(None, out);
            return;
        }
        order.sent_at = Some(now);
        let of = match self.phase {
            Phase::Ordered { of } => of,
            _ => None,
        };
        self.phase = Phase::Restarting {
            of,
            sent_at: now,
            deadline: Some(
                now + Duration::from_secs(u64::from(self.spec.effective_stop_timeout()))
                    + RESTART_EVENTS_WITHIN,
            ),
        };
        if let Some(i) = &mut self.incident {
            i.action_begun.get_or_insert(now);
            i.last_restart = Some(now);
            out.push(Effect::IncidentUpdated(i.clone()));
        }
        out.push(Effect::Turn(Verdict::Send));
    }

    fn on_started(&mut self, at: Instant, now: Instant, out: &mut Vec<Effect>) {
        match &self.phase {
            Phase::Restarting { sent_at: sent, .. } => {
                if at + START_CLOCK_SLACK < *sent {
                    // A start from before the restart was sent: a stale report.
                    return;
                }
                if let Some(i) = &self.incident {
                    out.push(Effect::Recovery {
                        trigger: i.trigger,
                        result: RecoveryResult::Success,
                    });
                }
            }
            Phase::Exited {
                docker_restarts: true,
                ..
            } => {
                // Docker's restart policy brought it back (layer 1): recorded, not repeated.
                if let Some(i) = &mut self.incident {
                    i.attempts += 1;
                    out.push(Effect::Recovery {
                        trigger: i.trigger,
                        result: RecoveryResult::Observed,
                    });
                    out.push(Effect::IncidentUpdated(i.clone()));
                }
            }
            Phase::Running { run, .. } | Phase::Paused { run, .. }
                if at <= run.since + START_CLOCK_SLACK =>
            {
                // The run already known.
                return;
            }
            Phase::Ordered { of: Some(run) } | Phase::Stopping { of: Some(run), .. }
                if at <= run.since + START_CLOCK_SLACK =>
            {
                return
            }
            Phase::Unknown {
                last: Some(run), ..
            } if at <= run.since + START_CLOCK_SLACK => {
                // Looked again: the same run goes on, and what its checks said still stands.
                self.phase = Phase::Running {
                    run: *run,
                    hold: Hold::Free,
                };
                return;
            }
            _ => {}
        }
        let hold = self
            .hold()
            .max_with(std::mem::replace(&mut self.carried_hold, Hold::Free));
        self.reset_signals();
        self.parent_waiting = false;
        self.phase = Phase::Running {
            run: Run::new(at, self.spec.start_period, now),
            hold,
        };
    }

    fn on_probe(&mut self, outcome: ProbeOutcome, now: Instant) {
        let Phase::Running { run, .. } = &mut self.phase else {
            return;
        };
        match outcome {
            ProbeOutcome::Passed => {
                run.grace = Grace::Over;
                self.probe = Streak::Passing;
                self.unobservable = None;
            }
            ProbeOutcome::Failed(_) => {
                self.unobservable = None;
                if run.in_grace(now) {
                    return;
                }
                self.probe = match self.probe {
                    Streak::Failing { count, first } => Streak::Failing {
                        count: count.saturating_add(1),
                        first,
                    },
                    _ => Streak::Failing {
                        count: 1,
                        first: now,
                    },
                };
            }
            ProbeOutcome::Unobservable(why) => self.unobservable = Some(why),
        }
    }

    fn on_health_failing_since(&mut self, at: Instant, out: &mut Vec<Effect>) {
        let Some(i) = &mut self.incident else { return };
        // Not before the run that failed began.
        let at = i.run_began.map_or(at, |began| at.max(began));
        if i.trigger != Trigger::Unhealthy || at >= i.first_failure {
            return;
        }
        i.first_failure = at;
        out.push(Effect::IncidentUpdated(i.clone()));
    }

    fn on_died(&mut self, exit: Exit, now: Instant, out: &mut Vec<Effect>) {
        if self.swarm().is_some() {
            self.task_ended(exit, now, out);
            return;
        }
        match self.phase {
            Phase::Restarting { .. } | Phase::Stopped | Phase::Gone | Phase::Exited { .. } => {
                return
            }
            // A paused process cannot die by itself: someone killed it.
            Phase::Stopping { .. } | Phase::Paused { .. } => {
                self.stopped_by_user(now, out);
                return;
            }
            _ => {}
        }
        // A death without a user's stop is a crash, whatever its code. Whether Docker's
        // `on-failure` brings it back depends on the code: not named, look.
        let docker_restarts = self.spec.restart_policy.restarts_after(&exit);
        self.crashed(death_trigger(&exit), docker_restarts, now, out);
        if exit.code.is_none()
            && matches!(self.spec.restart_policy, RestartPolicy::OnFailure { .. })
        {
            out.push(Effect::Inspect);
        }
    }

    /// The process ended without a user's stop.
    fn crashed(
        &mut self,
        trigger: Trigger,
        docker_restarts: bool,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let hold = self.hold();
        if hold != Hold::Quarantine {
            self.open_incident(trigger, now, now, out);
        }
        let trigger = self.incident.as_ref().map_or(trigger, |i| i.trigger);
        self.reset_signals();
        self.phase = Phase::Exited {
            trigger,
            docker_restarts,
            hold,
        };
    }

    fn on_snapshot(&mut self, s: Snapshot, now: Instant, out: &mut Vec<Effect>) {
        if let (Some(_), RunStatus::Restarting { exit } | RunStatus::Exited { exit }) =
            (self.swarm(), s.status)
        {
            self.task_ended(exit, now, out);
            return;
        }
        match s.status {
            RunStatus::Running { started_at, paused } => {
                let started_at = started_at.min(now);
                match self.phase {
                    Phase::Restarting {
                        sent_at: sent,
                        deadline,
                        ..
                    } if started_at + START_CLOCK_SLACK < sent => {
                        // Still the run from before the restart.
                        if deadline.is_some_and(|d| now < d) {
                            return;
                        }
                        self.reset_signals();
                        self.phase = Phase::Running {
                            run: Run::new(started_at, self.spec.start_period, now),
                            hold: Hold::Free,
                        };
                    }
                    // A user's stop still under way.
                    Phase::Stopping { until, .. } if now < until => return,
                    Phase::Stopping { .. } => {
                        // The stopping signal did not end it: running as before.
                        self.reset_signals();
                        self.phase = Phase::Running {
                            run: Run::new(started_at, self.spec.start_period, now),
                            hold: Hold::Free,
                        };
                    }
                    _ => self.on_started(started_at, now, out),
                }
                match (&self.phase, paused) {
                    (Phase::Running { .. }, true) => self.apply(Observation::Paused, now, out),
                    (Phase::Paused { .. }, false) => self.apply(Observation::Unpaused, now, out),
                    _ => {}
                }
                if let Some(h) = s.health {
                    if self.docker != Some(h) {
                        self.apply(Observation::Health(h), now, out);
                    }
                }
            }
            RunStatus::Restarting { exit } => match self.phase {
                Phase::Exited { .. } | Phase::Stopped | Phase::Gone | Phase::Restarting { .. } => {}
                Phase::Stopping { .. } => self.stopped_by_user(now, out),
                _ => self.crashed(death_trigger(&exit), true, now, out),
            },
            RunStatus::Exited { exit } => self.on_found_exited(exit, now, out),
        }
    }

    /// The container is found down after a gap in what the watchdog saw. The rule: down after
    /// a restart of ours is ours to finish; otherwise a death by OOM or by an exit code other
    /// than a stop's is a crash, healed once (unless Docker's policy would restart it, in which
    /// case Docker not doing so means a user stopped it); anything else is a user's stop.
    fn on_found_exited(&mut self, exit: Exit, now: Instant, out: &mut Vec<Effect>) {
        // Down is what the open incident is about: a death, or a restart of ours.
        let ours = |i: &Option<IncidentTimes>| {
            i.as_ref().is_some_and(|i| {
                i.last_restart.is_some() || matches!(i.trigger, Trigger::Died | Trigger::Oom)
            })
        };
        match &mut self.phase {
            Phase::Exited {
                docker_restarts, ..
            } if *docker_restarts && !self.spec.restart_policy.restarts_after(&exit) => {
                // Docker is not bringing it back after all (a death whose code was not named
                // looked like one it would): the watchdog's to heal.
                *docker_restarts = false;
            }
            Phase::Stopped | Phase::Gone | Phase::Exited { .. } => {}
            Phase::Stopping { .. } => self.stopped_by_user(now, out),
            Phase::Restarting { deadline, .. } => {
                if deadline.is_some_and(|d| now < d) {
                    return;
                }
                let trigger = self.incident.as_ref().map_or(Trigger::Died, |i| i.trigger);
                self.crashed(trigger, false, now, out);
            }
            Phase::Unknown { .. } if self.incident.is_none() => {
                // Never seen running: not the watchdog's to start.
                self.phase = Phase::Stopped;
            }
            Phase::Unknown { .. } if ours(&self.incident) => {
                let trigger = self.incident.as_ref().map_or(Trigger::Died, |i| i.trigger);
                self.crashed(trigger, false, now, out);
            }
            _ => {
                if is_crash(&exit) && !self.spec.restart_policy.restarts_after(&exit) {
                    self.crashed(death_trigger(&exit), false, now, out);
                } else {
                    self.stopped_by_user(now, out);
                }
            }
        }
    }

    /// The executor's report on its order. Only an order Docker received spends budget.
    fn on_order_ended(&mut self, outcome: OrderOutcome, now: Instant, out: &mut Vec<Effect>) {
        let Some(order) = self.order.take() else {
            return;
        };
        let trigger = self
            .incident
            .as_ref()
            .map_or(Trigger::Unhealthy, |i| i.trigger);
        let sent_at = order.sent_at.unwrap_or(now);
        let gone = outcome == OrderOutcome::Gone;
        match outcome {
            OrderOutcome::Done => {
                self.count_attempt(sent_at, out);
                if self.swarm().is_some() {
                    // The task is ending; its `die` hands the slot over.
                    out.push(Effect::Recovery {
                        trigger,
                        result: RecoveryResult::Success,
                    });
                }
                if let Phase::Restarting { deadline, .. } = &mut self.phase {
                    // Its `start` (or, for a Swarm task, its `die`) may lag the answer; look
                    // if it does not come.
                    *deadline = Some(now + START_AFTER_ANSWER);
                }
            }
            OrderOutcome::Failed(why) => {
                self.count_attempt(sent_at, out);
                self.order_failed(trigger, why, out);
                self.look_again(None, out);
            }
            OrderOutcome::Refused(why) => {
                // Never sent: nothing spent. A refused recreate stays refused for this run.
                if let (Verb::Recreate { .. }, Some(stale)) = (&order.verb, &mut self.stale) {
                    stale.recreated = Some(ParentRecreated::CannotFollow { why: why.clone() });
                }
                self.order_failed(trigger, why, out);
                self.look_again(None, out);
            }
            OrderOutcome::Skipped => {
                // A dry run paces itself like real restarts, so its log reads like one.
                self.count_attempt(now, out);
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::DryRun,
                });
                self.look_again(None, out);
            }
            OrderOutcome::Unreachable => self.look_again(Some(now + UNREACHABLE_RECHECK), out),
            OrderOutcome::Gone => {}
            OrderOutcome::Replaced { .. } => {
                // This container is gone and its replacement runs, watched on its own.
                self.count_attempt(sent_at, out);
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::Success,
                });
                self.close_incident(Outcome::Recovered, now, out);
                self.reset_signals();
                self.phase = Phase::Gone;
                out.push(Effect::Unwatch);
                return;
            }
        }
        if order.removed || gone {
            self.on_removed(now, out);
        }
    }

    fn order_failed(&mut self, trigger: Trigger, why: String, out: &mut Vec<Effect>) {
        out.push(Effect::Recovery {
            trigger,
            result: RecoveryResult::Failed,
        });
        out.push(Effect::OrderFailed { why });
    }

    /// The order ended without the container's own events telling what it is doing: look
    /// (now, or at `at`). A user's stop or pause seen meanwhile stands.
    fn look_again(&mut self, at: Option<Instant>, out: &mut Vec<Effect>) {
        let (Phase::Restarting { of, .. } | Phase::Ordered { of }) = self.phase else {
            return;
        };
        self.phase = Phase::Unknown {
            recheck_at: at,
            last: of,
        };
        if at.is_none() {
            out.push(Effect::Inspect);
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let expire = |hold: &mut Hold| {
            if matches!(hold, Hold::Backoff { until } if now >= *until) {
                *hold = Hold::Free;
            }
        };
        match &mut self.phase {
            Phase::Running { run, hold } => {
                if matches!(run.grace, Grace::Open { until } if now >= until) {
                    run.grace = Grace::Over;
                }
                expire(hold);
            }
            Phase::Paused { hold, .. } | Phase::Exited { hold, .. } => expire(hold),
            Phase::Restarting { deadline, .. } => {
                if deadline.is_some_and(|d| now >= d) {
                    *deadline = None;
                    out.push(Effect::Inspect);
                }
            }
            Phase::Stopping { until, .. } => {
                if now >= *until {
                    *until = now + USER_STOP_WITHIN;
                    out.push(Effect::Inspect);
                }
            }
            Phase::Unknown { recheck_at, .. } => {
                if recheck_at.is_some_and(|t| now >= t) {
                    *recheck_at = None;
                    out.push(Effect::Inspect);
                }
            }
            Phase::Ordered { .. } | Phase::Stopped | Phase::Gone => {}
        }
    }

    /// After every observation: close what recovered, decide, and report the state.
    fn settle(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.check_recovered(now, out);
        self.publish_state(now, out);
        self.decide(now, out);
        self.publish_state(now, out);
    }

    /// Healthy for `backoff.reset_after` without a break: the restarts before no longer count
    /// for backoff (kube-runtime's reset timer).
    fn forget_backoff(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.backoff_reset_at().is_some_and(|at| now >= at) {
            self.backoff.recent = 0;
            out.push(Effect::BackoffReset);
        }
    }

    fn healthy(&self) -> bool {
        if !matches!(self.phase, Phase::Running { .. }) {
            return false;
        }
        let docker_ok = !self.spec.has_docker_health || self.docker == Some(DockerHealth::Healthy);
        let probe_ok = !self.spec.has_probe || self.probe == Streak::Passing;
        docker_ok
            && probe_ok
            && self.docker != Some(DockerHealth::Unhealthy)
            && self.stale.is_none()
    }

    fn check_recovered(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if !self.healthy() {
            return;
        }
        if let Phase::Running { hold, .. } = &mut self.phase {
            if *hold == Hold::Quarantine {
                out.push(Effect::Released);
            }
            *hold = Hold::Free;
        }
        self.close_incident(Outcome::Recovered, now, out);
    }

    /// What the container's checks say, while it runs.
    fn failing_trigger(&self) -> Option<Trigger> {
        if self.docker == Some(DockerHealth::Unhealthy) {
            return Some(Trigger::Unhealthy);
        }
        if self.stale.is_some() {
            return Some(Trigger::Dependency);
        }
        match self.probe {
            Streak::Failing { count, .. } if self.spec.has_probe && count >= self.spec.failures => {
                Some(Trigger::ProbeFailed)
            }
            _ => None,
        }
    }

    /// The earliest evidence of the failure now established.
    fn first_evidence(&self, now: Instant) -> Instant {
        if let Some(at) = self
            .stale
            .as_ref()
            .map(|s| s.since)
            .filter(|_| self.docker != Some(DockerHealth::Unhealthy))
        {
            // Left behind when the parent started.
            return at.min(now);
        }
        match self.probe {
            Streak::Failing { first, .. } => first.min(now),
            _ => now,
        }
    }

    /// Restart now, wait, or give up.
    fn decide(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.order.is_some() {
            return;
        }
        let (trigger, hold, of) = match &self.phase {
            Phase::Running { hold, run } => match self.failing_trigger() {
                Some(t) => (t, *hold, Some(*run)),
                None => return,
            },
            Phase::Exited {
                trigger,
                docker_restarts: false,
                hold,
            } => (*trigger, *hold, None),
            _ => return,
        };
        if hold == Hold::Quarantine {
            return;
        }
        let opened = self.incident.is_none();
        let first = self.first_evidence(now);
        self.open_incident(trigger, first, now, out);
        let verb = match self.swarm() {
            None => match self.stale.as_ref().and_then(|s| s.recreated.as_ref()) {
                None => Verb::Restart,
                Some(ParentRecreated::Follow { new_parent }) => Verb::Recreate {
                    network_parent: Some(new_parent.clone()),
                },
                // Its namespace is gone and it cannot follow its parent: a restart would fail
                // on the missing parent. Reported once, left alone until it starts again.
                Some(ParentRecreated::CannotFollow { why }) => {
                    if opened {
                        let why = format!("not recreated: {why}");
                        self.order_failed(trigger, why, out);
                    }
                    return;
                }
            },
            Some(_) if trigger == Trigger::Unhealthy => {
                // Swarm fails and replaces an unhealthy task itself: recorded, not acted on.
                if opened {
                    out.push(Effect::Recovery {
                        trigger,
                        result: RecoveryResult::Observed,
                    });
                    out.push(Effect::ReadHealthLog);
                }
                return;
            }
            Some(condition) => match condition.end_mode() {
                Some(mode) => Verb::End(mode),
                // Swarm would not replace it: reported (the incident), left alone.
                None => return,
            },
        };
        if matches!(hold, Hold::Backoff { until } if now < until) {
            return;
        }
        if !self.budget.allows(now) {
            self.set_hold(Hold::Quarantine);
            out.push(Effect::Quarantined {
                restarts_in_window: self.budget.used(now),
            });
            self.close_incident(Outcome::Quarantined, now, out);
            return;
        }
        if let Some(last) = self.backoff.last {
            let allowed = last + self.spec.backoff.gap(self.backoff.recent);
            if now < allowed {
                self.set_hold(Hold::Backoff { until: allowed });
                return;
            }
        }
        let Some(incident) = &self.incident else {
            return;
        };
        let attempt = incident.attempts + 1;
        out.push(Effect::Order(Order {
            verb: verb.clone(),
            trigger: incident.trigger,
            attempt,
            stop_timeout: self.spec.effective_stop_timeout(),
            detected: incident.detected,
        }));
        if opened && incident.trigger == Trigger::Unhealthy {
            // Dates the first failing check; after the order, so it never delays it.
            out.push(Effect::ReadHealthLog);
        }
        self.order = Some(InFlight {
            verb,
            sent_at: None,
            removed: false,
        });
        self.phase = Phase::Ordered { of };
    }

    fn count_attempt(&mut self, at: Instant, out: &mut Vec<Effect>) {
        self.budget.record(at);
        self.backoff.recent = self.backoff.recent.saturating_add(1);
        self.backoff.last = Some(at);
        if let Some(i) = &mut self.incident {
            i.attempts += 1;
            out.push(Effect::IncidentUpdated(i.clone()));
        }
    }

    fn hold(&self) -> Hold {
        match &self.phase {
            Phase::Running { hold, .. }
            | Phase::Paused { hold, .. }
            | Phase::Exited { hold, .. } => *hold,
            _ => Hold::Free,
        }
    }

    fn set_hold(&mut self, to: Hold) {
        match &mut self.phase {
            Phase::Running { hold, .. }
            | Phase::Paused { hold, .. }
            | Phase::Exited { hold, .. } => *hold = to,
            _ => {}
        }
    }

    fn reset_signals(&mut self) {
        self.stale = None;
        self.docker = None;
        self.probe = Streak::NoSuccessYet;
        self.unobservable = None;
    }

    fn stopped_by_user(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.close_incident(Outcome::Abandoned, now, out);
        self.reset_signals();
        self.phase = Phase::Stopped;
    }

    fn open_incident(
        &mut self,
        trigger: Trigger,
        first_failure: Instant,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        if self.incident.is_some() {
            return;
        }
        let run_began = match &self.phase {
            Phase::Running { run, .. } | Phase::Paused { run, .. } => Some(run.since),
            _ => None,
        };
        let i = IncidentTimes {
            trigger,
            first_failure,
            detected: now,
            action_begun: None,
            last_restart: None,
            attempts: 0,
            run_began,
        };
        out.push(Effect::IncidentOpened(i.clone()));
        self.incident = Some(i);
    }

    fn close_incident(&mut self, outcome: Outcome, now: Instant, out: &mut Vec<Effect>) {
        if let Some(incident) = self.incident.take() {
            let time_to_recover = (outcome == Outcome::Recovered)
                .then(|| now.saturating_duration_since(incident.first_failure));
            out.push(Effect::IncidentClosed {
                incident,
                outcome,
                time_to_recover,
            });
        }
    }

    fn derive_state(&self) -> State {
        let held = |hold: &Hold, otherwise: State| match hold {
            Hold::Quarantine => State::Quarantined,
            Hold::Backoff { .. } => State::BackingOff,
            Hold::Free => otherwise,
        };
        match &self.phase {
            Phase::Unknown { .. } if self.incident.is_some() => State::Unhealthy,
            Phase::Unknown { .. } => State::Starting,
            Phase::Running { hold, .. } => held(hold, self.running_state()),
            Phase::Paused { .. } => State::Paused,
            Phase::Exited { hold, .. } => held(hold, State::Exited),
            Phase::Ordered { .. } | Phase::Restarting { .. } => State::Restarting,
            Phase::Stopping { .. } | Phase::Stopped | Phase::Gone => State::Stopped,
        }
    }

    fn running_state(&self) -> State {
        if self.failing_trigger().is_some() {
            State::Unhealthy
        } else if matches!(self.probe, Streak::Failing { .. }) {
            State::Failing
        } else if self.healthy() {
            State::Healthy
        } else {
            State::Starting
        }
    }

    fn publish_state(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let to = self.derive_state();
        if to == self.state {
            return;
        }
        self.backoff.healthy_since = (to == State::Healthy).then_some(now);
        out.push(Effect::StateChanged {
            from: self.state,
            to,
        });
        self.state = to;
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
