//! The recovery policy of one container, as a state machine.
//!
//! The daemon feeds [`Input`]s (Docker events, probe results, the outcome of its own restarts,
//! timer ticks) together with the current time; [`Supervisor::handle`] returns the [`Effect`]s to
//! carry out or record. Deciding is separate from doing: the supervisor never touches Docker.

use crate::backoff::Backoff;
use crate::budget::RestartBudget;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// Where a watched container stands, as shown on metrics and the API.
    State {
        Starting => "starting",
        Healthy => "healthy",
        Failing => "failing",
        Unhealthy => "unhealthy",
        Restarting => "restarting",
        BackingOff => "backing_off",
        Quarantined => "quarantined",
        Stopped => "stopped",
        Exited => "exited",
    }
);

label_enum!(
    /// What started an incident.
    Trigger {
        Unhealthy => "unhealthy",
        ProbeFailed => "probe_failed",
        Died => "died",
        Oom => "oom",
    }
);

label_enum!(
    /// The `result` label of `app_recovery_events_total`.
    RecoveryResult {
        Success => "success",
        Failed => "failed",
        Observed => "observed",
        DryRun => "dry_run",
    }
);

label_enum!(
    /// Why a probe failed.
    ProbeFailure {
        Timeout => "timeout",
        Connect => "connect",
        Status => "status",
        Body => "body",
        Resolve => "resolve",
    }
);

label_enum!(
    /// How an incident ended.
    Outcome {
        Recovered => "recovered",
        Quarantined => "quarantined",
        Abandoned => "abandoned",
    }
);

label_enum!(
    /// Docker's view of the container's own HEALTHCHECK.
    DockerHealth {
        Starting => "starting",
        Healthy => "healthy",
        Unhealthy => "unhealthy",
    }
);

/// How the watchdog's own restart ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    Done,
    Failed(String),
    /// `--dry-run`: decided, recorded, not done.
    Skipped,
    /// Not sent: the container was no longer running when its turn came.
    Cancelled,
}

/// Something the daemon saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The container runs: a `start` event (`since` = now) or found running when listing.
    Running {
        since: Instant,
    },
    /// A `health_status` event, or the status read when listing.
    Health(DockerHealth),
    ProbeOk,
    ProbeFailed(ProbeFailure),
    /// A `kill` event not caused by the watchdog: someone is stopping the container.
    ExternalKill,
    /// A `die` event. `docker_restarts`: Docker's restart policy will start it again.
    Died {
        oom: bool,
        docker_restarts: bool,
    },
    /// A `stop` event not caused by the watchdog.
    Stopped,
    /// The container was removed.
    Removed,
    /// The executor is sending the restart request now.
    RestartSent,
    RestartFinished(RestartOutcome),
    /// A timer set from [`Supervisor::wake_at`] expired.
    Tick,
}

/// Something the daemon must do or record.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    StateChanged {
        from: State,
        to: State,
    },
    IncidentOpened {
        trigger: Trigger,
        first_failure: Instant,
        detected: Instant,
    },
    /// Restart the container now. Only the executor acts on this.
    Restart {
        trigger: Trigger,
        attempt: u32,
        stop_timeout: Option<u32>,
    },
    /// One increment of `app_recovery_events_total`.
    Recovery {
        trigger: Trigger,
        result: RecoveryResult,
    },
    IncidentClosed {
        trigger: Trigger,
        outcome: Outcome,
        time_to_recover: Option<Duration>,
        attempts: u32,
    },
    Quarantined {
        restarts_in_window: u32,
    },
    Released,
}

/// The policy's settings for one container.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    pub failures: u32,
    pub start_period: Duration,
    pub stop_timeout: Option<u32>,
    pub restart_max: u32,
    pub restart_window: Duration,
    pub backoff: Backoff,
    /// The container runs the watchdog's own probe.
    pub has_probe: bool,
    /// The container has a Docker HEALTHCHECK.
    pub has_docker_health: bool,
}

/// The incident being worked on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenIncident {
    pub trigger: Trigger,
    #[serde(skip)]
    pub first_failure: Instant,
    #[serde(skip)]
    pub detected: Instant,
    pub attempts: u32,
    /// Resumed from the journal with a restart the previous run sent at this time.
    #[serde(skip)]
    pub restart_sent: Option<Instant>,
}

/// A restart's own events are expected within its stop timeout plus this long.
const OWN_RESTART_MAX_SECS: u64 = 60;
/// Docker's StartedAt and the watchdog's clock come from the same host; allow for rounding.
const START_CLOCK_SLACK: Duration = Duration::from_millis(50);

/// The policy state of one container.
#[derive(Debug)]
pub struct Supervisor {
    spec: PolicySpec,
    state: State,
    budget: RestartBudget,
    grace_until: Option<Instant>,
    docker_health: Option<DockerHealth>,
    probe_failures: u32,
    probe_ok_since_start: bool,
    first_failure: Option<Instant>,
    /// Died and Docker will not start it again: the watchdog must.
    exited: Option<Trigger>,
    external_kill: bool,
    restart_in_flight: bool,
    /// Between issuing a restart and seeing its `start`: the kill/die/stop events are ours.
    own_pending: Option<Instant>,
    /// Past this, a restart whose `start` was never seen is assumed over.
    own_pending_until: Option<Instant>,
    last_restart: Option<Instant>,
    recent_restarts: u32,
    healthy_since: Option<Instant>,
    backoff_until: Option<Instant>,
    incident: Option<OpenIncident>,
}

impl Supervisor {
    pub fn new(spec: PolicySpec, resumed: Option<OpenIncident>) -> Self {
        let budget = RestartBudget::new(spec.restart_max, spec.restart_window);
        Self {
            spec,
            state: State::Starting,
            budget,
            grace_until: None,
            docker_health: None,
            probe_failures: 0,
            probe_ok_since_start: false,
            first_failure: resumed.as_ref().map(|i| i.first_failure),
            exited: None,
            external_kill: false,
            restart_in_flight: false,
            // A restart the previous run issued may still be under way: its kill/die/stop
            // events are not a user's.
            own_pending: resumed.as_ref().and_then(|i| i.restart_sent),
            own_pending_until: resumed
                .as_ref()
                .and_then(|i| i.restart_sent)
                .map(|t| t + Duration::from_secs(OWN_RESTART_MAX_SECS)),
            last_restart: None,
            recent_restarts: resumed.as_ref().map_or(0, |i| i.attempts),
            healthy_since: None,
            backoff_until: None,
            incident: resumed,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The restart a previous run issued evidently ended (the container is still down):
    /// events from now on are not its own.
    pub fn forget_resumed_restart(&mut self) {
        if !self.restart_in_flight {
            self.own_pending = None;
        }
    }
    pub fn incident(&self) -> Option<&OpenIncident> {
        self.incident.as_ref()
    }
    pub fn probe_failures(&self) -> u32 {
        self.probe_failures
    }
    pub fn docker_health(&self) -> Option<DockerHealth> {
        self.docker_health
    }
    pub fn restarts_in_window(&mut self, now: Instant) -> u32 {
        self.budget.used(now)
    }
    pub fn restart_in_flight(&self) -> bool {
        self.restart_in_flight
    }
    pub fn backoff_until(&self) -> Option<Instant> {
        self.backoff_until
    }

    /// When the daemon should send [`Input::Tick`] next, if at all.
    pub fn wake_at(&self) -> Option<Instant> {
        let state_timer = match self.state {
            State::BackingOff => self.backoff_until,
            State::Starting | State::Failing | State::Healthy => self.grace_until,
            _ => None,
        };
        let own = self
            .own_pending
            .and(self.own_pending_until)
            .filter(|_| !self.restart_in_flight);
        match (state_timer, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        self.apply(input, now, &mut out);
        out
    }

    fn in_grace(&self, now: Instant) -> bool {
        self.grace_until.is_some_and(|g| now < g)
    }

    fn apply(&mut self, input: Input, now: Instant, out: &mut Vec<Effect>) {
        match input {
            Input::Running { since } => self.on_running(since, now, out),
            Input::Health(h) => {
                if self.own_pending.is_some() {
                    return;
                }
                self.docker_health = Some(h);
                match h {
                    DockerHealth::Healthy => self.check_recovered(now, out),
                    DockerHealth::Unhealthy => {
                        if !self.in_grace(now) {
                            self.note_failure(now, out);
                        }
                        self.evaluate(now, out);
                    }
                    DockerHealth::Starting => {}
                }
            }
            Input::ProbeOk => {
                if self.own_pending.is_some() || self.exited.is_some() {
                    return;
                }
                self.probe_failures = 0;
                self.probe_ok_since_start = true;
                if self.docker_health != Some(DockerHealth::Unhealthy)
                    && self.state == State::Failing
                {
                    self.first_failure = None;
                    self.set_state(State::Healthy, now, out);
                }
                self.check_recovered(now, out);
            }
            Input::ProbeFailed(_) => {
                if self.own_pending.is_some()
                    || matches!(
                        self.state,
                        State::Restarting | State::Stopped | State::Exited
                    )
                    || self.in_grace(now)
                {
                    return;
                }
                self.probe_failures = self.probe_failures.saturating_add(1);
                self.note_failure(now, out);
                self.evaluate(now, out);
            }
            Input::ExternalKill => {
                if self.own_pending.is_none() {
                    self.external_kill = true;
                }
            }
            Input::Died {
                oom,
                docker_restarts,
            } => {
                if self.own_pending.is_some() {
                    return;
                }
                if self.external_kill || self.state == State::Stopped {
                    self.stopped_by_user(now, out);
                    return;
                }
                let trigger = if oom { Trigger::Oom } else { Trigger::Died };
                self.first_failure = Some(self.first_failure.unwrap_or(now));
                if self.state == State::Quarantined {
                    return;
                }
                self.open_incident(trigger, now, out);
                self.set_state(State::Exited, now, out);
                if !docker_restarts {
                    self.exited = Some(trigger);
                    self.evaluate(now, out);
                }
            }
            Input::Stopped => {
                if self.own_pending.is_none() {
                    self.stopped_by_user(now, out);
                }
            }
            Input::Removed => {
                self.close_incident(Outcome::Abandoned, now, out);
            }
            Input::RestartFinished(result) => self.on_restart_finished(result, now, out),
            Input::RestartSent => {
                if self.restart_in_flight {
                    self.own_pending = Some(now);
                    let stop = u64::from(self.spec.stop_timeout.unwrap_or(10));
                    self.own_pending_until =
                        Some(now + Duration::from_secs(stop + OWN_RESTART_MAX_SECS));
                }
            }
            Input::Tick => {
                if !self.restart_in_flight && self.own_pending_until.is_some_and(|t| now >= t) {
                    self.own_pending = None;
                    self.own_pending_until = None;
                }
                if self.state == State::BackingOff && self.backoff_until.is_some_and(|t| now >= t) {
                    self.backoff_until = None;
                    self.set_state(State::Unhealthy, now, out);
                }
                if self.grace_until.is_some_and(|g| now >= g) {
                    self.grace_until = None;
                }
                self.evaluate(now, out);
            }
        }
    }

    fn on_running(&mut self, since: Instant, now: Instant, out: &mut Vec<Effect>) {
        if let Some(sent) = self.own_pending {
            if since + START_CLOCK_SLACK < sent {
                // A start from before our restart was sent (a stale report): not news.
                return;
            }
            // Our restart's `start`: its kill/die/stop came before it in the stream.
            self.own_pending = None;
        } else if self.state == State::Exited {
            // Docker's restart policy brought it back (layer 1): recorded, not repeated.
            if let Some(i) = &mut self.incident {
                i.attempts += 1;
                out.push(Effect::Recovery {
                    trigger: i.trigger,
                    result: RecoveryResult::Observed,
                });
            }
        }
        self.external_kill = false;
        self.exited = None;
        self.docker_health = None;
        self.probe_failures = 0;
        self.probe_ok_since_start = false;
        let grace = since + self.spec.start_period;
        self.grace_until = (grace > now).then_some(grace);
        if self.state != State::Quarantined {
            self.set_state(State::Starting, now, out);
        }
        self.check_recovered(now, out);
    }

    fn on_restart_finished(&mut self, result: RestartOutcome, now: Instant, out: &mut Vec<Effect>) {
        if !self.restart_in_flight {
            return;
        }
        self.restart_in_flight = false;
        let trigger = self
            .incident
            .as_ref()
            .map_or(Trigger::Unhealthy, |i| i.trigger);
        match result {
            RestartOutcome::Done => {
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::Success,
                });
                // The container's `start` event (which may lag the API's answer) moves it on;
                // until then the kill/die/stop events still arriving are the restart's own.
                self.check_recovered(now, out);
                // It may have died again while the answer was on its way.
                self.evaluate(now, out);
            }
            RestartOutcome::Cancelled => {
                // Stopped while the restart waited for its turn: a user's stop wins.
                self.own_pending = None;
                self.stopped_by_user(now, out);
            }
            RestartOutcome::Failed(_) | RestartOutcome::Skipped => {
                let result = if result == RestartOutcome::Skipped {
                    RecoveryResult::DryRun
                } else {
                    RecoveryResult::Failed
                };
                out.push(Effect::Recovery { trigger, result });
                self.own_pending = None;
                self.set_state(State::Unhealthy, now, out);
                self.evaluate(now, out);
            }
        }
    }

    fn stopped_by_user(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.close_incident(Outcome::Abandoned, now, out);
        self.exited = None;
        self.external_kill = false;
        self.first_failure = None;
        self.backoff_until = None;
        self.probe_failures = 0;
        self.set_state(State::Stopped, now, out);
    }

    fn note_failure(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.first_failure.is_none() {
            self.first_failure = Some(now);
        }
        if matches!(self.state, State::Healthy | State::Starting) {
            self.set_state(State::Failing, now, out);
        }
    }

    fn failing_trigger(&self) -> Option<Trigger> {
        if let Some(t) = self.exited {
            return Some(t);
        }
        if self.docker_health == Some(DockerHealth::Unhealthy) {
            return Some(Trigger::Unhealthy);
        }
        if self.spec.has_probe && self.probe_failures >= self.spec.failures {
            return Some(Trigger::ProbeFailed);
        }
        None
    }

    /// Decide whether to restart now, wait, or give up.
    fn evaluate(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.restart_in_flight
            || matches!(
                self.state,
                State::Stopped | State::Quarantined | State::Restarting
            )
        {
            return;
        }
        if self.exited.is_none() && self.in_grace(now) {
            return;
        }
        let Some(trigger) = self.failing_trigger() else {
            return;
        };
        self.open_incident(trigger, now, out);
        if !self.budget.allows(now) {
            let used = self.budget.used(now);
            self.backoff_until = None;
            self.set_state(State::Quarantined, now, out);
            out.push(Effect::Quarantined {
                restarts_in_window: used,
            });
            self.close_incident(Outcome::Quarantined, now, out);
            return;
        }
        if let Some(last) = self.last_restart {
            let allowed = last + self.spec.backoff.gap(self.recent_restarts);
            if now < allowed {
                self.backoff_until = Some(allowed);
                self.set_state(State::BackingOff, now, out);
                return;
            }
        }
        if self.state != State::Exited {
            self.set_state(State::Unhealthy, now, out);
        }
        self.restart_in_flight = true;
        // Events become the restart's own once it is actually sent (Input::RestartSent).
        self.own_pending = None;
        self.budget.record(now);
        self.recent_restarts = self.recent_restarts.saturating_add(1);
        self.last_restart = Some(now);
        self.backoff_until = None;
        let attempt = match &mut self.incident {
            Some(i) => {
                i.attempts += 1;
                i.attempts
            }
            None => 1,
        };
        self.set_state(State::Restarting, now, out);
        out.push(Effect::Restart {
            trigger,
            attempt,
            stop_timeout: self.spec.stop_timeout,
        });
    }

    fn healthy_now(&self) -> bool {
        if self.exited.is_some()
            || self.restart_in_flight
            || matches!(
                self.state,
                State::Exited | State::Stopped | State::Restarting
            )
        {
            return false;
        }
        let docker_ok =
            !self.spec.has_docker_health || self.docker_health == Some(DockerHealth::Healthy);
        let probe_ok =
            !self.spec.has_probe || (self.probe_failures == 0 && self.probe_ok_since_start);
        docker_ok && probe_ok
    }

    fn check_recovered(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if !self.healthy_now() {
            return;
        }
        if self.state == State::Quarantined {
            out.push(Effect::Released);
        }
        if self.state != State::Healthy {
            self.set_state(State::Healthy, now, out);
        }
        self.first_failure = None;
        self.close_incident(Outcome::Recovered, now, out);
    }

    fn open_incident(&mut self, trigger: Trigger, now: Instant, out: &mut Vec<Effect>) {
        if self.incident.is_some() {
            return;
        }
        let first_failure = self.first_failure.unwrap_or(now);
        self.incident = Some(OpenIncident {
            trigger,
            first_failure,
            detected: now,
            attempts: 0,
            restart_sent: None,
        });
        out.push(Effect::IncidentOpened {
            trigger,
            first_failure,
            detected: now,
        });
    }

    fn close_incident(&mut self, outcome: Outcome, now: Instant, out: &mut Vec<Effect>) {
        if let Some(i) = self.incident.take() {
            let time_to_recover = (outcome == Outcome::Recovered)
                .then(|| now.saturating_duration_since(i.first_failure));
            out.push(Effect::IncidentClosed {
                trigger: i.trigger,
                outcome,
                time_to_recover,
                attempts: i.attempts,
            });
        }
    }

    fn set_state(&mut self, to: State, now: Instant, out: &mut Vec<Effect>) {
        if self.state != to {
            if to == State::Healthy {
                self.healthy_since = Some(now);
            } else if self.state == State::Healthy {
                // Healthy long enough: the restarts before no longer count for backoff.
                let reset = self.spec.backoff.reset_after;
                if self
                    .healthy_since
                    .is_some_and(|h| now.saturating_duration_since(h) >= reset)
                {
                    self.recent_restarts = 0;
                }
                self.healthy_since = None;
            }
            out.push(Effect::StateChanged {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
