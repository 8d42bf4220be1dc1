//! The reference model of one container's healing, written from the rules the supervisor's
//! module doc and ARCHITECTURE.md state, not from the supervisor: it reads the same
//! observations and computes by itself what must follow (incidents opened and closed, restart
//! orders, quarantine and release, looking again) and the state the API must show. It never
//! reads the supervisor's state or effects. Its budget, backoff count, backoff reset, hold and
//! open incident are its own.

use crate::policy::{
    Action, DockerHealth, Exit, Observation, OnQuarantine, OrderOutcome, Outcome, PolicySpec,
    ProbeOutcome, RunStatus, Signal, Snapshot, State, Trigger, VerbKind, Verdict,
};
use crate::restart_policy::RestartPolicy;
use std::time::Duration;
use tokio::time::Instant;

/// Docker's `StartedAt` and the watchdog's clock are the same host's; a start report within
/// this of a run already known is that run.
const SAME_START: Duration = Duration::from_millis(50);
/// A restart Docker could not be asked for (unreachable) is looked at again after this long.
pub(super) const RECHECK_AFTER_UNREACHABLE: Duration = Duration::from_secs(1);
/// A user's stop is awaited this long: a death this soon after a `kill` that named no signal is
/// that kill's doing.
pub(super) const USER_STOP: Duration = Duration::from_secs(120);
/// Exit codes of a stop or kill (0, SIGINT, SIGKILL, SIGTERM); any other, or OOM, is a crash.
const STOP_CODES: [i64; 4] = [0, 130, 137, 143];

/// What the supervisor must say in answer to one observation, in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decision {
    /// The restarts counted for backoff are forgotten.
    BackoffReset,
    Opened(Trigger),
    Closed(Outcome),
    /// A restart or a recreate, the incident's `attempt`-th.
    Order {
        verb: VerbKind,
        trigger: Trigger,
        attempt: u32,
    },
    /// Quarantine's stop (`on-quarantine=stop`).
    QuarantineStop,
    /// The answer to the executor's turn.
    Turn(Verdict),
    /// Docker failed the order.
    OrderFailed,
    Quarantined {
        restarts_in_window: u32,
    },
    Released,
    Inspect,
    /// The container is gone: stop watching it.
    Unwatch,
}

/// A run of the process as the watchdog knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct KnownRun {
    since: Instant,
    /// The start period (Docker's `--start-period`, kubelet's `startupProbe`) is open until
    /// then; `None`: over, by a first success or by running out.
    grace_until: Option<Instant>,
}

impl KnownRun {
    fn begin(since: Instant, start_period: Duration, now: Instant) -> Self {
        let until = since + start_period;
        Self {
            since,
            grace_until: (until > now).then_some(until),
        }
    }

    fn in_grace(&self, now: Instant) -> bool {
        self.grace_until.is_some_and(|until| now < until)
    }
}

/// What the watchdog knows of the container's process.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    Up {
        run: KnownRun,
        paused: bool,
    },
    /// Died by itself; `docker_restarts`: Docker's restart policy brings it back.
    Down {
        trigger: Trigger,
        docker_restarts: bool,
    },
    /// A user's stopping signal was seen, the exit not yet.
    UserStopping {
        of: Option<KnownRun>,
    },
    UserStopped,
    /// A restart is ordered and waits for the executor's turn (`sent: None`), or Docker was
    /// asked at `sent`.
    Restarting {
        sent: Option<Instant>,
        of: Option<KnownRun>,
    },
    /// The watchdog does not know and looks (now, or at `at`); `last`: the run known before.
    Looking {
        at: Option<Instant>,
        last: Option<KnownRun>,
    },
    Gone,
}

/// What keeps a failed container from a restart now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hold {
    Free,
    Backoff { until: Instant },
    Quarantine,
}

/// The watchdog's own probe since the run began, counting only failures past the start period.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ProbeRecord {
    NoSuccessYet,
    Passing,
    Failing(u32),
}

#[derive(Debug, Clone, Copy)]
struct OpenIncident {
    trigger: Trigger,
    /// Restarts ordered by the watchdog and Docker's policy restarts seen.
    attempts: u32,
    /// A restart of this incident was sent to Docker.
    sent: bool,
}

#[derive(Debug)]
pub(super) struct Model {
    spec: PolicySpec,
    known: Known,
    hold: Hold,
    probe: ProbeRecord,
    docker: Option<DockerHealth>,
    /// A parent started after the current run began.
    stale: bool,
    incident: Option<OpenIncident>,
    /// The restart order the executor holds: `Some(sent)`.
    order: Option<Option<Instant>>,
    /// Send times of the restarts Docker was asked to carry out.
    sent: Vec<Instant>,
    /// Restarts since the backoff was last forgotten, and the latest one's send time.
    recent: u32,
    last_sent: Option<Instant>,
    healthy_since: Option<Instant>,
    state: State,
    /// The order held is quarantine's stop, not a restart or recreate.
    quarantine_stop: bool,
    /// The order held is a recreate.
    recreating: bool,
    /// The executor refused to recreate this container (its configuration cannot be copied,
    /// which does not change while it exists): its ladder restarts instead.
    recreate_refused: bool,
    /// The order held was counted at its start (which proves Docker carried it out), before
    /// Docker's answer.
    order_counted: bool,
    /// Quarantined when it runs next (its quarantine's stop was ordered).
    carried_quarantine: bool,
    /// How many times the backoff was forgotten (healthy `reset_after` without a break).
    pub(super) backoff_resets: u32,
    /// A `kill` that named no signal (Podman's) was seen then, since the process last started
    /// and last died.
    unstated_kill: Option<Instant>,
}

impl Model {
    /// Watching begins: nothing known yet, the watchdog looks.
    pub(super) fn new(spec: PolicySpec) -> Self {
        Self {
            spec,
            known: Known::Looking {
                at: None,
                last: None,
            },
            hold: Hold::Free,
            probe: ProbeRecord::NoSuccessYet,
            docker: None,
            stale: false,
            incident: None,
            order: None,
            sent: Vec::new(),
            recent: 0,
            last_sent: None,
            healthy_since: None,
            state: State::Starting,
            quarantine_stop: false,
            recreating: false,
            recreate_refused: false,
            order_counted: false,
            carried_quarantine: false,
            backoff_resets: 0,
            unstated_kill: None,
        }
    }

    pub(super) fn state(&self) -> State {
        self.state
    }

    pub(super) fn incident_open(&self) -> bool {
        self.incident.is_some()
    }

    /// The model's answer to one observation: what follows, in order.
    pub(super) fn observe(&mut self, obs: &Observation, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        // A healthy stretch long enough counts whatever the observation says.
        if self
            .healthy_since
            .is_some_and(|h| self.recent > 0 && now >= h + self.spec.backoff.reset_after)
        {
            self.recent = 0;
            self.backoff_resets += 1;
            out.push(Decision::BackoffReset);
        }
        self.apply(obs, now, &mut out);
        // A container healthy again closes its incident, is released from quarantine and
        // loses any hold.
        if self.healthy() {
            if self.hold == Hold::Quarantine {
                out.push(Decision::Released);
            }
            self.hold = Hold::Free;
            self.close(Outcome::Recovered, &mut out);
        }
        self.publish(now);
        self.decide(now, &mut out);
        self.publish(now);
        out
    }

    /// When a restart must be ordered at the latest, if the container needs one that nothing
    /// but time holds back: failing, no restart in flight, not quarantined, not stopped or
    /// paused by a user, not Docker's to restart; or the watchdog said it would look again.
    pub(super) fn restart_due_by(&self) -> Option<Instant> {
        if let Known::Looking { at: Some(at), .. } = self.known {
            return Some(at);
        }
        if self.order.is_some() || self.hold == Hold::Quarantine || !self.needs_restart() {
            return None;
        }
        match self.hold {
            Hold::Backoff { until } => Some(until),
            _ => None,
        }
    }

    /// The container failed and only time stands between it and a restart (or quarantine):
    /// not held by a user, Docker or a restart in flight, not quarantined.
    pub(super) fn awaits_restart(&self) -> bool {
        let looking = matches!(self.known, Known::Looking { at: Some(_), .. });
        self.order.is_none()
            && self.hold != Hold::Quarantine
            && (self.needs_restart() || looking && self.incident.is_some())
    }

    pub(super) fn quarantined(&self) -> bool {
        self.hold == Hold::Quarantine || self.carried_quarantine
    }

    /// The action orders something (restart, recreate); `notify` and `none` only record.
    fn acts(&self) -> bool {
        matches!(self.spec.ladder.action, Action::Restart | Action::Recreate)
    }

    /// A recreate replaced the container: the replacement's supervisor takes over (the open
    /// incident, the budget, the backoff) and knows nothing of the new container yet.
    pub(super) fn replaced(&mut self, now: Instant) -> Vec<Decision> {
        self.forget_signals();
        self.unstated_kill = None;
        self.known = Known::Looking {
            at: None,
            last: None,
        };
        self.hold = Hold::Free;
        self.quarantine_stop = false;
        self.carried_quarantine = false;
        // A new container: whether it can be recreated is its own question.
        self.recreate_refused = false;
        self.publish(now);
        Vec::new()
    }

    pub(super) fn needs_restart(&self) -> bool {
        // `notify` and `none` never order anything.
        if !self.acts() {
            return false;
        }
        match self.known {
            Known::Up { paused: false, .. } => self.failing().is_some(),
            Known::Down {
                docker_restarts, ..
            } => !docker_restarts,
            _ => false,
        }
    }

    fn apply(&mut self, obs: &Observation, now: Instant, out: &mut Vec<Decision>) {
        match obs {
            Observation::Started { at } => self.started((*at).min(now), now),
            Observation::Probe(p) => self.probe(*p, now),
            Observation::Health(h) => self.health(*h),
            // Only a signal that ends a process announces a stop; a reload (HUP, USR1) or a
            // freeze (STOP) is not a user's stop.
            Observation::Killed {
                signal:
                    Some(Signal::Hup | Signal::Usr1 | Signal::Usr2 | Signal::Stop | Signal::Cont),
            } => {}
            // Naming none, it may be either: told by a death within the window (below).
            Observation::Killed { signal: None } => self.unstated_kill = Some(now),
            Observation::Killed { .. } => self.user_stopping(),
            Observation::Died(exit) => {
                // The death of a process killed (no signal named) less than the window ago:
                // the kill was a stop, as if it had named its signal just before the death.
                if self
                    .unstated_kill
                    .take()
                    .is_some_and(|k| now < k + USER_STOP)
                {
                    self.user_stopping();
                }
                self.died(exit, out);
            }
            Observation::Stopped => match self.known {
                Known::Restarting { sent: Some(_), .. } | Known::UserStopped | Known::Gone => {}
                _ => self.user_stopped(out),
            },
            Observation::Paused => self.paused(),
            Observation::Unpaused => {
                if let Known::Up { run, paused: true } = self.known {
                    // What was seen while frozen says nothing of the running process.
                    self.forget_signals();
                    self.known = Known::Up { run, paused: false };
                }
            }
            Observation::Snapshot(s) => self.snapshot(*s, now, out),
            Observation::Removed => self.removed(out),
            Observation::Turn { running } => self.turn(*running, now, out),
            Observation::OrderEnded(outcome) => self.finished(outcome, now, out),
            Observation::Tick => self.tick(now, out),
            Observation::ParentStarted {
                at,
                recreated: None,
            } => {
                let run = match self.known {
                    Known::Up { run, paused: false }
                    | Known::Looking {
                        last: Some(run), ..
                    } => Some(run),
                    _ => None,
                };
                if run.is_some_and(|r| r.since < *at) && self.order.is_none() {
                    self.stale = true;
                }
            }
            Observation::HealthFailingSince(_)
            | Observation::ParentStarted { .. }
            | Observation::ParentWaiting { .. } => {
                unreachable!("not generated: {obs:?}")
            }
        }
    }

    /// A death: a crash, unless a user ended it (a stop announced, or a paused process).
    fn died(&mut self, exit: &Exit, out: &mut Vec<Decision>) {
        match self.known {
            Known::Restarting { sent: Some(_), .. }
            | Known::UserStopped
            | Known::Gone
            | Known::Down { .. } => {}
            // A paused process cannot die by itself: a user ended it.
            Known::UserStopping { .. } | Known::Up { paused: true, .. } => self.user_stopped(out),
            _ => {
                self.crashed(
                    trigger_of(exit),
                    docker_restarts(self.spec.restart_policy, exit),
                    out,
                );
                // Whether `on-failure` brings it back depends on a code the event did not
                // name: look.
                if exit.code.is_none()
                    && matches!(self.spec.restart_policy, RestartPolicy::OnFailure { .. })
                {
                    out.push(Decision::Inspect);
                }
            }
        }
    }

    /// A signal that ends the process was sent: its death is awaited as a user's stop.
    fn user_stopping(&mut self) {
        match self.known {
            Known::Restarting { sent: Some(_), .. } | Known::UserStopped | Known::Gone => {}
            _ => {
                let of = self.run_known();
                self.enter(Known::UserStopping { of });
            }
        }
    }

    /// The executor's turn for the order came: it is sent unless the container is no longer
    /// what it was decided for (a user stopped, paused or killed it, or it was running and is
    /// found not running any more): a user's action wins.
    fn turn(&mut self, running: Option<bool>, now: Instant, out: &mut Vec<Decision>) {
        if self.order != Some(None) {
            return;
        }
        let send = match self.known {
            Known::Restarting { sent: None, of } => of.is_none() || running != Some(false),
            _ => false,
        };
        if !send {
            self.order = None;
            self.quarantine_stop = false;
            out.push(Decision::Turn(Verdict::Drop));
            self.look_again(None, out);
            return;
        }
        self.order = Some(Some(now));
        let of = self.run_known();
        self.enter(Known::Restarting {
            sent: Some(now),
            of,
        });
        if let Some(i) = &mut self.incident {
            i.sent = true;
        }
        out.push(Decision::Turn(Verdict::Send));
    }

    fn run_known(&self) -> Option<KnownRun> {
        match self.known {
            Known::Up { run, .. } => Some(run),
            Known::Restarting { of, .. }
            | Known::UserStopping { of }
            | Known::Looking { last: of, .. } => of,
            _ => None,
        }
    }

    /// Moves on; a hold (backoff, quarantine) lives only with a run or an exited process.
    fn enter(&mut self, known: Known) {
        if !matches!(known, Known::Up { .. } | Known::Down { .. }) {
            self.hold = Hold::Free;
        }
        self.known = known;
    }

    fn started(&mut self, at: Instant, now: Instant) {
        match self.known {
            // A start from before the restart was sent is a stale report.
            Known::Restarting {
                sent: Some(sent), ..
            } if at + SAME_START < sent => return,
            // The restart's own start: Docker carried it out, so it counts now. A recreate's
            // start is its new container's: this one's start meanwhile is not the order's.
            Known::Restarting {
                sent: Some(sent), ..
            } if self.order.is_some()
                && !self.quarantine_stop
                && !self.recreating
                && !self.order_counted =>
            {
                self.order_counted = true;
                self.count(sent);
            }
            // Docker's restart policy brought it back: counted for the incident, not repeated.
            Known::Down {
                docker_restarts: true,
                ..
            } => {
                if let Some(i) = &mut self.incident {
                    i.attempts += 1;
                }
            }
            Known::Up { run, .. } if at <= run.since + SAME_START => return,
            Known::Restarting {
                sent: None,
                of: Some(run),
            }
            | Known::UserStopping { of: Some(run) }
                if at <= run.since + SAME_START =>
            {
                return
            }
            // Looked again and the same run goes on: what its checks said still stands.
            Known::Looking {
                last: Some(run), ..
            } if at <= run.since + SAME_START => {
                self.enter(Known::Up { run, paused: false });
                self.take_carried_quarantine();
                return;
            }
            _ => {}
        }
        self.forget_signals();
        // A new run: a kill that named no signal before it stopped nothing of it.
        self.unstated_kill = None;
        let run = KnownRun::begin(at, self.spec.start_period, now);
        self.enter(Known::Up { run, paused: false });
        self.take_carried_quarantine();
    }

    /// A quarantine whose stop was ordered holds the run seen next.
    fn take_carried_quarantine(&mut self) {
        if std::mem::take(&mut self.carried_quarantine) {
            self.hold = Hold::Quarantine;
        }
    }

    fn probe(&mut self, outcome: ProbeOutcome, now: Instant) {
        let Known::Up { run, paused: false } = &mut self.known else {
            return;
        };
        match outcome {
            ProbeOutcome::Passed => {
                run.grace_until = None;
                self.probe = ProbeRecord::Passing;
            }
            ProbeOutcome::Failed(_) if run.in_grace(now) => {}
            ProbeOutcome::Failed(_) => {
                self.probe = match self.probe {
                    ProbeRecord::Failing(n) => ProbeRecord::Failing(n + 1),
                    _ => ProbeRecord::Failing(1),
                }
            }
            // Cannot observe is not failed.
            ProbeOutcome::Unobservable(_) => {}
        }
    }

    fn health(&mut self, h: DockerHealth) {
        if let Known::Up { run, paused: false } = &mut self.known {
            self.docker = Some(h);
            if h == DockerHealth::Healthy {
                run.grace_until = None;
            }
        }
    }

    fn paused(&mut self) {
        match self.known {
            Known::Up { run, paused: false } => self.known = Known::Up { run, paused: true },
            // A user's pause while the watchdog looks or its order waits: the pause stands.
            Known::Looking {
                last: Some(run), ..
            }
            | Known::Restarting {
                sent: None,
                of: Some(run),
            } => self.enter_paused(run),
            _ => {}
        }
    }

    fn enter_paused(&mut self, run: KnownRun) {
        self.hold = Hold::Free;
        self.known = Known::Up { run, paused: true };
    }

    fn crashed(&mut self, trigger: Trigger, docker_restarts: bool, out: &mut Vec<Decision>) {
        if self.hold != Hold::Quarantine {
            self.open(trigger, out);
        }
        let trigger = self.incident.map_or(trigger, |i| i.trigger);
        self.forget_signals();
        self.enter(Known::Down {
            trigger,
            docker_restarts,
        });
    }

    fn user_stopped(&mut self, out: &mut Vec<Decision>) {
        self.close(Outcome::Abandoned, out);
        self.forget_signals();
        self.enter(Known::UserStopped);
    }

    fn snapshot(&mut self, s: Snapshot, now: Instant, out: &mut Vec<Decision>) {
        match s.status {
            RunStatus::Running { started_at, paused } => {
                self.started(started_at.min(now), now);
                match (self.known, paused) {
                    (Known::Up { paused: false, .. }, true) => self.paused(),
                    (Known::Up { paused: true, .. }, false) => {
                        self.apply(&Observation::Unpaused, now, out)
                    }
                    _ => {}
                }
                if let Some(h) = s.health {
                    if self.docker != Some(h) {
                        self.health(h);
                    }
                }
            }
            RunStatus::Restarting { exit } => match self.known {
                Known::Down { .. }
                | Known::UserStopped
                | Known::Gone
                | Known::Restarting { sent: Some(_), .. } => {}
                Known::UserStopping { .. } => self.user_stopped(out),
                _ => self.crashed(trigger_of(&exit), true, out),
            },
            RunStatus::Exited { exit } => self.found_exited(&exit, out),
        }
    }

    /// Found down after a gap in what was seen: down after a restart of ours, or with a death
    /// as the open incident, is ours to finish; a death by OOM or a crash code that Docker's
    /// policy would not restart is a crash; anything else (an unknown code too) is a user's
    /// stop. Docker not bringing back a death it seemed to is the watchdog's to heal.
    fn found_exited(&mut self, exit: &Exit, out: &mut Vec<Decision>) {
        let ours = self
            .incident
            .is_some_and(|i| i.sent || matches!(i.trigger, Trigger::Died | Trigger::Oom));
        match &mut self.known {
            Known::Down {
                docker_restarts, ..
            } if *docker_restarts && !self::docker_restarts(self.spec.restart_policy, exit) => {
                *docker_restarts = false;
            }
            Known::UserStopped | Known::Gone | Known::Down { .. } => {}
            Known::UserStopping { .. } => self.user_stopped(out),
            // Never seen running: not the watchdog's to start.
            Known::Looking { .. } if self.incident.is_none() => self.enter(Known::UserStopped),
            Known::Looking { .. } if ours => {
                let trigger = self.incident.map_or(Trigger::Died, |i| i.trigger);
                self.crashed(trigger, false, out);
            }
            _ => {
                let crash = exit.oom_killed || exit.code.is_some_and(|c| !STOP_CODES.contains(&c));
                if crash && !docker_restarts(self.spec.restart_policy, exit) {
                    self.crashed(trigger_of(exit), false, out);
                } else {
                    self.user_stopped(out);
                }
            }
        }
    }

    /// The container was removed: its incident is abandoned and it is no longer watched.
    fn removed(&mut self, out: &mut Vec<Decision>) {
        self.close(Outcome::Abandoned, out);
        self.forget_signals();
        self.unstated_kill = None;
        self.enter(Known::Gone);
        out.push(Decision::Unwatch);
    }

    /// The executor's report. Only an order Docker received spends budget and counts for
    /// backoff (and a dry run's, which paces itself like real ones); one Docker could not be
    /// reached with is looked at again a second later; one the executor refused spends
    /// nothing, and a refused recreate is not asked for again for this container.
    fn finished(&mut self, outcome: &OrderOutcome, now: Instant, out: &mut Vec<Decision>) {
        let Some(sent) = self.order.take() else {
            return;
        };
        if std::mem::take(&mut self.quarantine_stop) {
            // Quarantine's stop spends nothing. Stopped: left stopped; otherwise looked at.
            match outcome {
                OrderOutcome::Done => self.enter(Known::UserStopped),
                OrderOutcome::Gone => self.removed(out),
                OrderOutcome::Failed(_) | OrderOutcome::Refused(_) => {
                    out.push(Decision::OrderFailed);
                    self.look_again(None, out);
                }
                OrderOutcome::Unreachable => {
                    self.look_again(Some(now + RECHECK_AFTER_UNREACHABLE), out)
                }
                OrderOutcome::Skipped | OrderOutcome::Replaced { .. } => self.look_again(None, out),
            }
            return;
        }
        let counted = std::mem::take(&mut self.order_counted);
        match outcome {
            OrderOutcome::Done if counted => {}
            OrderOutcome::Done => self.count(sent.unwrap_or(now)),
            OrderOutcome::Replaced { .. } => {
                // The container is gone; its replacement goes on (see `replaced`).
                self.count(sent.unwrap_or(now));
                self.forget_signals();
                self.enter(Known::Gone);
                out.push(Decision::Unwatch);
            }
            OrderOutcome::Failed(_) => {
                if !counted {
                    self.count(sent.unwrap_or(now));
                }
                out.push(Decision::OrderFailed);
                self.look_again(None, out);
            }
            OrderOutcome::Unreachable => {
                self.look_again(Some(now + RECHECK_AFTER_UNREACHABLE), out)
            }
            OrderOutcome::Refused(_) => {
                if self.recreating {
                    self.recreate_refused = true;
                }
                out.push(Decision::OrderFailed);
                self.look_again(None, out);
            }
            // Never sent; dated when the executor said so.
            OrderOutcome::Skipped => {
                self.count(now);
                self.look_again(None, out);
            }
            OrderOutcome::Gone => self.removed(out),
        }
    }

    /// A restart spent budget and counts for backoff, dated when Docker was asked.
    fn count(&mut self, sent: Instant) {
        self.sent.push(sent);
        self.recent += 1;
        self.last_sent = Some(sent);
        if let Some(i) = &mut self.incident {
            i.attempts += 1;
        }
    }

    fn look_again(&mut self, at: Option<Instant>, out: &mut Vec<Decision>) {
        // A user's stop or pause seen meanwhile stands.
        let Known::Restarting { of, .. } = self.known else {
            return;
        };
        self.enter(Known::Looking { at, last: of });
        if at.is_none() {
            out.push(Decision::Inspect);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Decision>) {
        match &mut self.known {
            Known::Looking { at, .. } if at.is_some_and(|t| now >= t) => {
                *at = None;
                out.push(Decision::Inspect);
            }
            Known::Up { .. } | Known::Down { .. } => {
                if matches!(self.hold, Hold::Backoff { until } if now >= until) {
                    self.hold = Hold::Free;
                }
            }
            _ => {}
        }
    }

    fn forget_signals(&mut self) {
        self.stale = false;
        self.docker = None;
        self.probe = ProbeRecord::NoSuccessYet;
    }

    /// Every check the container has passes, nothing says it failed, and its run is not
    /// behind a parent's start.
    fn healthy(&self) -> bool {
        let Known::Up { paused: false, .. } = self.known else {
            return false;
        };
        let docker_ok = !self.spec.has_docker_health || self.docker == Some(DockerHealth::Healthy);
        let probe_ok = !self.spec.has_probe || self.probe == ProbeRecord::Passing;
        docker_ok && probe_ok && self.docker != Some(DockerHealth::Unhealthy) && !self.stale
    }

    /// Why the running container counts as failed, if it does: Docker's `unhealthy` at once,
    /// a run left behind by its parent, or `failures` probe failures past the start period.
    fn failing(&self) -> Option<Trigger> {
        if self.docker == Some(DockerHealth::Unhealthy) {
            return Some(Trigger::Unhealthy);
        }
        if self.stale {
            return Some(Trigger::Dependency);
        }
        match self.probe {
            ProbeRecord::Failing(n) if self.spec.has_probe && n >= self.spec.failures => {
                Some(Trigger::ProbeFailed)
            }
            _ => None,
        }
    }

    fn restarts_in_window(&self, now: Instant) -> u32 {
        let counted = self
            .sent
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < self.spec.restart_window)
            .count();
        u32::try_from(counted).expect("few restarts")
    }

    /// `initial * factor^(n-1)` before the restart that follows `n` counted ones, capped.
    fn gap(&self, n: u32) -> Duration {
        let b = &self.spec.backoff;
        if n == 0 {
            return Duration::ZERO;
        }
        let mut gap = b.initial;
        for _ in 1..n {
            gap = gap.saturating_mul(b.factor).min(b.max);
        }
        gap.min(b.max)
    }

    /// A failed container not held by a user, quarantine or a restart in flight: restart now,
    /// or wait out the backoff, or quarantine it when the budget is spent.
    fn decide(&mut self, now: Instant, out: &mut Vec<Decision>) {
        if self.order.is_some() {
            return;
        }
        let (trigger, of) = match self.known {
            Known::Up { run, paused: false } => match self.failing() {
                Some(t) => (t, Some(run)),
                None => return,
            },
            Known::Down {
                trigger,
                docker_restarts: false,
            } => (trigger, None),
            _ => return,
        };
        if self.hold == Hold::Quarantine {
            return;
        }
        self.open(trigger, out);
        if !self.acts() {
            return;
        }
        if matches!(self.hold, Hold::Backoff { until } if now < until) {
            return;
        }
        let used = self.restarts_in_window(now);
        if used >= self.spec.restart_max {
            self.hold = Hold::Quarantine;
            out.push(Decision::Quarantined {
                restarts_in_window: used,
            });
            self.close(Outcome::Quarantined, out);
            // `on-quarantine=stop` stops a running container; its next run is quarantined.
            if self.spec.ladder.on_quarantine == OnQuarantine::Stop && of.is_some() {
                out.push(Decision::QuarantineStop);
                self.order = Some(None);
                self.quarantine_stop = true;
                self.carried_quarantine = true;
                self.enter(Known::Restarting { sent: None, of });
            }
            return;
        }
        if let Some(last) = self.last_sent {
            let until = last + self.gap(self.recent);
            if now < until {
                self.hold = Hold::Backoff { until };
                return;
            }
        }
        let incident = self.incident.expect("opened above");
        // The ladder: a recreate once `recreate_after` restarts since the backoff was last
        // forgotten did not hold (always, for action `recreate`); a dependent's restart is
        // never escalated; a container whose recreate was refused is restarted.
        let ladder = self.spec.ladder;
        let recreate = match ladder.action {
            _ if self.recreate_refused => false,
            Action::Recreate => true,
            _ if trigger == Trigger::Dependency => false,
            _ => ladder.recreate_after.is_some_and(|n| self.recent >= n),
        };
        out.push(Decision::Order {
            verb: if recreate {
                VerbKind::Recreate
            } else {
                VerbKind::Restart
            },
            trigger: incident.trigger,
            attempt: incident.attempts + 1,
        });
        self.order = Some(None);
        self.recreating = recreate;
        self.enter(Known::Restarting { sent: None, of });
    }

    fn open(&mut self, trigger: Trigger, out: &mut Vec<Decision>) {
        if self.incident.is_none() {
            out.push(Decision::Opened(trigger));
            self.incident = Some(OpenIncident {
                trigger,
                attempts: 0,
                sent: false,
            });
        }
    }

    fn close(&mut self, outcome: Outcome, out: &mut Vec<Decision>) {
        if self.incident.take().is_some() {
            out.push(Decision::Closed(outcome));
        }
    }

    fn derive_state(&self) -> State {
        let held = |otherwise: State| match self.hold {
            Hold::Quarantine => State::Quarantined,
            Hold::Backoff { .. } => State::BackingOff,
            Hold::Free => otherwise,
        };
        match self.known {
            Known::Restarting { .. } if self.quarantine_stop => State::Quarantined,
            Known::UserStopped | Known::Looking { .. } if self.carried_quarantine => {
                State::Quarantined
            }
            Known::Looking { .. } if self.incident.is_some() => State::Unhealthy,
            Known::Looking { .. } => State::Starting,
            Known::Up { paused: true, .. } => State::Paused,
            Known::Up { .. } => held(if self.failing().is_some() {
                State::Unhealthy
            } else if matches!(self.probe, ProbeRecord::Failing(_)) {
                State::Failing
            } else if self.healthy() {
                State::Healthy
            } else {
                State::Starting
            }),
            Known::Down { .. } => held(State::Exited),
            Known::Restarting { .. } => State::Restarting,
            Known::UserStopping { .. } | Known::UserStopped | Known::Gone => State::Stopped,
        }
    }

    /// The state shown; a healthy stretch begins when it turns `healthy` and ends with any
    /// other state.
    fn publish(&mut self, now: Instant) {
        let to = self.derive_state();
        if to != self.state {
            self.healthy_since = (to == State::Healthy).then_some(now);
            self.state = to;
        }
    }
}

fn trigger_of(exit: &Exit) -> Trigger {
    if exit.oom_killed {
        Trigger::Oom
    } else {
        Trigger::Died
    }
}

/// Docker's restart policy (moby's restartmanager): `always` and `unless-stopped` restart any
/// exit, `on-failure[:N]` a non-zero one while `RestartCount` is under N (0: no limit).
pub(super) fn docker_restarts(policy: RestartPolicy, exit: &Exit) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        // Docker knows the code even when the `die` event did not name it: an unknown code is
        // taken as a failure until a look says otherwise.
        RestartPolicy::OnFailure { max_retries } => {
            exit.code != Some(0) && (max_retries == 0 || exit.restart_count < max_retries)
        }
    }
}
