//! The world the property test plays: Docker (the container's process, its health, its
//! restart policy), a user, and the executor carrying out the supervisor's orders. It is
//! truthful: what it reports happened, in Docker's order. Every observation goes to the
//! supervisor and to the reference model, and their answers are compared.

use super::model::{docker_restarts, Decision, Model, RECHECK_AFTER_UNREACHABLE, USER_STOP};
use super::{Fault, Step};
use crate::policy::{
    DockerHealth, Effect, Exit, Observation, OrderOutcome, PolicySpec, ProbeFailure, ProbeOutcome,
    RunStatus, Signal, Snapshot, Unobservable, Verb, Verdict,
};
use crate::supervisor::Supervisor;
use proptest::prelude::*;
use std::time::Duration;
use tokio::time::Instant;

/// Docker's side: the container's process as it really is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Process {
    Running {
        since: Instant,
        paused: bool,
    },
    Exited(Exit),
    /// Dead, and Docker's restart policy is about to start it again.
    PolicyRestarting(Exit),
}

/// The executor's side: the order it holds, by its verb.
#[derive(Debug, Clone, PartialEq)]
enum Order {
    /// Waiting for its turn.
    Queued(Verb),
    Sent {
        at: Instant,
        verb: Verb,
    },
}

/// How long Docker may take to carry out a restart in this world: well under the
/// supervisor's own wait for a restart's events (stop timeout + 60 s).
const RESTART_TAKES_AT_MOST: Duration = Duration::from_secs(20);

pub(super) struct Sim {
    sup: Supervisor,
    model: Model,
    spec: PolicySpec,
    now: Instant,
    process: Process,
    /// Docker's health of the current run (a HEALTHCHECK's last result).
    health: Option<DockerHealth>,
    restart_count: i64,
    order: Option<Order>,
    /// The service inside works (a new run mends it).
    service_works: bool,
    /// The daemon runs with `--dry-run`: the executor answers every order `Skipped` at once,
    /// before its turn.
    dry_run: bool,
    /// A user removed the container: nothing happens to it any more.
    removed: bool,
    /// The engine is Podman 4.3.1: its `kill` events name no signal, whatever was sent, and
    /// `podman stop` sends no `stop` event.
    podman: bool,
}

impl Sim {
    pub(super) fn new(spec: PolicySpec) -> Result<Self, TestCaseError> {
        Self::with(spec, false, false)
    }

    /// A world whose executor runs dry (`--dry-run`).
    pub(super) fn dry_run(spec: PolicySpec) -> Result<Self, TestCaseError> {
        Self::with(spec, true, false)
    }

    /// A world whose engine speaks Podman's dialect.
    pub(super) fn podman(spec: PolicySpec) -> Result<Self, TestCaseError> {
        Self::with(spec, false, true)
    }

    fn with(spec: PolicySpec, dry_run: bool, podman: bool) -> Result<Self, TestCaseError> {
        let now = Instant::now();
        let mut sim = Self {
            sup: Supervisor::new(spec.clone(), None, now),
            model: Model::new(spec.clone()),
            spec,
            now,
            process: Process::Running {
                since: now,
                paused: false,
            },
            health: None,
            restart_count: 0,
            order: None,
            service_works: true,
            dry_run,
            removed: false,
            podman,
        };
        // Watching begins with an inspect.
        sim.feed(Observation::Snapshot(sim.snapshot()))?;
        Ok(sim)
    }

    pub(super) fn incident_open(&self) -> bool {
        self.model.incident_open()
    }

    fn snapshot(&self) -> Snapshot {
        match self.process {
            Process::Running { since, paused } => Snapshot {
                status: RunStatus::Running {
                    started_at: since,
                    paused,
                },
                health: self.health,
            },
            Process::Exited(exit) => Snapshot {
                status: RunStatus::Exited { exit },
                health: None,
            },
            Process::PolicyRestarting(exit) => Snapshot {
                status: RunStatus::Restarting { exit },
                health: None,
            },
        }
    }

    fn exit(&self, code: i64, oom: bool) -> Exit {
        Exit {
            code: Some(code),
            oom_killed: oom,
            restart_count: self.restart_count,
        }
    }

    /// One observation to both. After every observation: the supervisor says exactly what the
    /// model says must follow (incidents opened and closed with their trigger and outcome,
    /// restart orders with their attempt, quarantine with the restarts in the window, release,
    /// looking again), and shows the state the model derives.
    pub(super) fn feed(&mut self, obs: Observation) -> Result<(), TestCaseError> {
        self.feed_and_see(obs).map(drop)
    }

    /// [`Sim::feed`], returning the supervisor's effects.
    fn feed_and_see(&mut self, obs: Observation) -> Result<Vec<Effect>, TestCaseError> {
        let effects = self.sup.handle(obs.clone(), self.now);
        let expected = self.model.observe(&obs, self.now);
        self.compare(&effects, &expected, &obs)?;
        self.check_wakes_in_time(&obs)?;
        if effects.contains(&Effect::Inspect) {
            self.feed(Observation::Snapshot(self.snapshot()))?;
        }
        Ok(effects)
    }

    /// The supervisor said what the model says must follow, and shows the model's state; the
    /// executor holds what the supervisor orders, and follows its verdict at its turn.
    fn compare(
        &mut self,
        effects: &[Effect],
        expected: &[Decision],
        after: &dyn std::fmt::Debug,
    ) -> Result<(), TestCaseError> {
        let said: Vec<Decision> = effects.iter().filter_map(decision).collect();
        prop_assert_eq!(&said, expected, "after {:?}", after);
        prop_assert_eq!(
            self.sup.state(),
            self.model.state(),
            "state after {:?}",
            after
        );
        for e in effects {
            match e {
                Effect::Order(o) => self.order = Some(Order::Queued(o.verb.clone())),
                Effect::Turn(Verdict::Send) => {
                    if let Some(Order::Queued(verb)) = self.order.take() {
                        self.order = Some(Order::Sent { at: self.now, verb });
                    }
                }
                Effect::Turn(Verdict::Drop) => self.order = None,
                _ => {}
            }
        }
        Ok(())
    }

    /// Liveness, in time: a container that needs a restart and is held back only by a
    /// backoff, or that the watchdog said it would look at again, has the supervisor asking to
    /// be woken no later than then.
    fn check_wakes_in_time(&self, obs: &Observation) -> Result<(), TestCaseError> {
        if let Some(due) = self.model.restart_due_by() {
            let wake = self.sup.wake_at();
            prop_assert!(
                wake.is_some_and(|w| w <= due),
                "after {:?}: due in {:?}, wake-up asked {:?}",
                obs,
                due.saturating_duration_since(self.now),
                wake.map(|w| w.saturating_duration_since(self.now))
            );
        }
        Ok(())
    }

    /// Liveness (see [`super::a_failed_container_is_restarted_in_bounded_time`]): waking
    /// the supervisor when it asks, with nothing else happening, a container awaiting a restart
    /// gets the order (or is quarantined, or a look finds it recovered) within 6 wake-ups and
    /// within the longest backoff plus a recheck.
    pub(super) fn restarted_in_bounded_time(&mut self) -> Result<(), TestCaseError> {
        let bound = self.now + self.spec.backoff.max + RECHECK_AFTER_UNREACHABLE;
        for _ in 0..6 {
            if !self.model.awaits_restart() {
                break;
            }
            self.wake_up()?;
        }
        prop_assert!(
            !self.model.awaits_restart(),
            "no restart after 6 wake-ups: {:?}",
            self.sup.phase()
        );
        prop_assert!(self.now <= bound, "{:?} past the bound", self.now - bound);
        if self.model.needs_restart() && !self.model.quarantined() {
            prop_assert!(
                self.order.is_some(),
                "failed, no order: {:?}",
                self.sup.phase()
            );
        }
        Ok(())
    }

    /// Brings the container back to running, unpaused, with no order in flight (the user
    /// starts or resumes it, Docker carries out the order), unless the fault needs the order.
    pub(super) fn prepare(&mut self, fault: &Fault) -> Result<(), TestCaseError> {
        if matches!(fault, Fault::FailedRestart { .. } | Fault::BackoffEnds) {
            return Ok(());
        }
        for step in [
            Step::Turn { looks: true },
            Step::Finish(3),
            Step::Unpause,
            Step::PolicyStart,
            Step::UserStart,
        ] {
            self.step(step)?;
        }
        Ok(())
    }

    pub(super) fn fault(&mut self, fault: Fault) -> Result<(), TestCaseError> {
        match fault {
            Fault::Die { code } => self.step(Step::Crash {
                code,
                oom: false,
                named: true,
            }),
            Fault::ProbeFails => {
                let Process::Running { since, .. } = self.process else {
                    return Ok(());
                };
                self.now = self.now.max(since + self.spec.start_period);
                self.service_works = false;
                for _ in 0..self.spec.failures {
                    self.step(Step::Probe(2))?;
                }
                Ok(())
            }
            Fault::Unhealthy => {
                self.service_works = false;
                self.step(Step::Health(1))
            }
            Fault::ParentStarted => {
                self.now += Duration::from_millis(250);
                self.step(Step::ParentStarted { ago: 0 })
            }
            Fault::FailedRestart { left_down } => {
                self.step(Step::Turn { looks: true })?;
                self.step(Step::Finish(u8::from(left_down)))
            }
            Fault::BackoffEnds => self.step(Step::WakeUp),
        }
    }

    fn wake_up(&mut self) -> Result<(), TestCaseError> {
        if let Some(at) = self.sup.wake_at() {
            self.now = self.now.max(at);
            self.feed(Observation::Tick)?;
        }
        Ok(())
    }

    fn running(&self) -> bool {
        matches!(self.process, Process::Running { paused: false, .. })
    }

    fn sent(&self) -> bool {
        matches!(self.order, Some(Order::Sent { .. }))
    }

    /// The process dies by itself; Docker's restart policy may bring it back.
    fn die(&mut self, code: i64, oom: bool) -> Exit {
        let exit = self.exit(code, oom);
        self.process = if docker_restarts(self.spec.restart_policy, &exit) {
            Process::PolicyRestarting(exit)
        } else {
            Process::Exited(exit)
        };
        self.health = None;
        exit
    }

    /// A new run of the process begins now, and Docker reports it.
    fn begin_run(&mut self) -> Result<(), TestCaseError> {
        self.new_run();
        self.feed(Observation::Started { at: self.now })
    }

    fn new_run(&mut self) {
        self.process = Process::Running {
            since: self.now,
            paused: false,
        };
        self.health = None;
        self.service_works = true;
    }

    /// Docker ends the process: `docker stop` (kill, die, stop) or `docker kill` (kill, die).
    /// Podman's `kill` names no signal, and its stop sends no `stop` event.
    fn end_run(&mut self, signal: Signal, stop_event: bool) -> Result<(), TestCaseError> {
        let code = match signal {
            Signal::Kill => 137,
            _ => 143,
        };
        self.process = Process::Exited(self.exit(code, false));
        self.health = None;
        self.feed(self.killed(signal))?;
        self.feed(Observation::Died(self.exit(code, false)))?;
        if stop_event && !self.podman {
            self.feed(Observation::Stopped)?;
        }
        Ok(())
    }

    /// The `kill` event of `signal`, as the engine words it.
    fn killed(&self, signal: Signal) -> Observation {
        Observation::Killed {
            signal: (!self.podman).then_some(signal),
        }
    }

    pub(super) fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        // While Docker carries out a restart, the user and the process leave it alone (their
        // events would be the restart's own), and it takes a bounded time.
        let in_restart = self.sent();
        if self.removed && !matches!(step, Step::Wait(_) | Step::LongWait(_)) {
            return Ok(());
        }
        match step {
            Step::Wait(ms) => self.wait(Duration::from_millis(ms)),
            Step::LongWait(s) => self.wait(Duration::from_secs(s)),
            Step::Tick => self.feed(Observation::Tick)?,
            Step::WakeUp if !in_restart => self.wake_up()?,
            Step::Probe(pick) if self.spec.has_probe => {
                let outcome = match pick % 8 {
                    0 => ProbeOutcome::Unobservable(Unobservable::Resources),
                    _ if self.running() && self.service_works == (pick % 8 != 1) => {
                        ProbeOutcome::Passed
                    }
                    _ => ProbeOutcome::Failed(ProbeFailure::Timeout),
                };
                self.feed(Observation::Probe(outcome))?;
            }
            Step::Break => self.service_works = false,
            Step::Mend => self.service_works = true,
            Step::Health(pick) if self.spec.has_docker_health && !in_restart => {
                if let Process::Running { paused, .. } = self.process {
                    let healthy = self.service_works == (pick % 8 != 0);
                    // Docker reports a paused container unhealthy (moby #46203).
                    let h = if healthy && !paused {
                        DockerHealth::Healthy
                    } else {
                        DockerHealth::Unhealthy
                    };
                    self.health = Some(h);
                    self.feed(Observation::Health(h))?;
                }
            }
            Step::Crash { code, oom, named } if self.running() && !in_restart => {
                let exit = self.die(code, oom);
                // Some engines' `die` events name no exit code.
                self.feed(Observation::Died(Exit {
                    code: exit.code.filter(|_| named),
                    ..exit
                }))?;
            }
            // On Podman, now and then a `podman kill` (a TERM) the process takes its time with:
            // it dies at the end of the window for a stop, or just inside it.
            Step::Signal(pick) if self.podman && pick >= 192 && self.running() && !in_restart => {
                self.feed(self.killed(Signal::Term))?;
                self.now += USER_STOP - Duration::from_millis(250 * u64::from(pick % 2));
                let exit = self.die(143, false);
                self.feed(Observation::Died(exit))?;
            }
            Step::Signal(pick) if self.running() && !in_restart => {
                let signal = [Signal::Hup, Signal::Usr1, Signal::Stop][usize::from(pick % 3)];
                if signal == Signal::Stop {
                    // Frozen: it answers nothing.
                    self.service_works = false;
                }
                self.feed(self.killed(signal))?;
            }
            Step::PolicyStart => {
                if let Process::PolicyRestarting(_) = self.process {
                    self.restart_count += 1;
                    self.begin_run()?;
                }
            }
            Step::LostDeath { code, resync } if self.running() && !in_restart => {
                self.die(code, false);
                if resync {
                    self.feed(Observation::Snapshot(self.snapshot()))?;
                }
            }
            Step::UserStop if !in_restart && matches!(self.process, Process::Running { .. }) => {
                self.end_run(Signal::Term, true)?
            }
            Step::UserKill if !in_restart && matches!(self.process, Process::Running { .. }) => {
                self.end_run(Signal::Kill, false)?
            }
            Step::UserStart if self.order.is_none() => {
                if let Process::Exited(_) = self.process {
                    self.restart_count = 0;
                    self.begin_run()?;
                }
            }
            Step::Pause if self.running() && !in_restart => {
                if let Process::Running { since, .. } = self.process {
                    self.process = Process::Running {
                        since,
                        paused: true,
                    };
                    self.feed(Observation::Paused)?;
                }
            }
            Step::Unpause => {
                if let Process::Running {
                    since,
                    paused: true,
                } = self.process
                {
                    self.process = Process::Running {
                        since,
                        paused: false,
                    };
                    self.feed(Observation::Unpaused)?;
                }
            }
            Step::ParentStarted { ago } => {
                let at = self
                    .now
                    .checked_sub(Duration::from_millis(ago))
                    .unwrap_or(self.now);
                self.feed(Observation::ParentStarted {
                    at,
                    recreated: None,
                })?;
            }
            Step::Resync if !in_restart => self.feed(Observation::Snapshot(self.snapshot()))?,
            // A dry run's executor answers at once, without asking for its turn.
            Step::Turn { .. } if self.dry_run => {
                if let Some(Order::Queued(_)) = self.order {
                    self.order = None;
                    self.feed(Observation::OrderEnded(OrderOutcome::Skipped))?;
                }
            }
            Step::Turn { looks } => {
                if let Some(Order::Queued(_)) = self.order {
                    // A restart is sent seconds after any start it could be taken for.
                    self.now += Duration::from_millis(250);
                    let running = matches!(self.process, Process::Running { .. });
                    self.feed(Observation::Turn {
                        running: looks.then_some(running),
                    })?;
                }
            }
            Step::Unreachable if self.order.is_some() && !self.dry_run => {
                self.order = None;
                self.feed(Observation::OrderEnded(OrderOutcome::Unreachable))?;
            }
            Step::Finish(pick) => self.finish(pick)?,
            _ => {}
        }
        Ok(())
    }

    fn wait(&mut self, d: Duration) {
        let d = match self.order {
            Some(Order::Sent { at, .. }) => {
                d.min((at + RESTART_TAKES_AT_MOST).saturating_duration_since(self.now))
            }
            _ => d,
        };
        self.now += d;
    }

    /// What the executor reports on its order. A queued recreate may be refused before its
    /// turn (the configuration cannot be copied, as the executor finds before it asks), or
    /// find the container removed; a sent order may find it removed (Docker answers 404).
    /// Anything else is Docker's doing with an order sent.
    fn finish(&mut self, pick: u8) -> Result<(), TestCaseError> {
        // A dry run's executor answers before anything else (see `Step::Turn`).
        if self.dry_run {
            return Ok(());
        }
        // A user's `docker rm -f` meanwhile, now and then.
        let removal = pick >= 248;
        let verb = match self.order.clone() {
            Some(Order::Queued(Verb::Recreate { .. })) if removal => return self.gone(pick),
            Some(Order::Queued(Verb::Recreate { .. })) if pick.is_multiple_of(2) => {
                self.order = None;
                let refused = OrderOutcome::Refused("not recreated: --rm".into());
                return self.feed(Observation::OrderEnded(refused));
            }
            // A recreate's steps answer a failure, never a 404, once under way.
            Some(Order::Sent { verb, .. }) if removal && !matches!(verb, Verb::Recreate { .. }) => {
                return self.gone(pick)
            }
            Some(Order::Sent { verb, .. }) => verb,
            _ => return Ok(()),
        };
        self.order = None;
        let failed = OrderOutcome::Failed("Docker said no".into());
        match (pick % 5, verb) {
            (0 | 1, _) => {}
            // Quarantine's stop: kill, die, stop, then Docker's answer.
            (_, Verb::Stop) => {
                self.stop_for_restart()?;
                self.feed(Observation::OrderEnded(OrderOutcome::Done))?;
                return Ok(());
            }
            (_, Verb::Recreate { .. }) => return self.replace(),
            _ => {}
        }
        match pick % 5 {
            // Docker answered an error before it touched the container: `Failed` (Docker was
            // asked, unlike an order the executor itself refuses).
            0 => self.feed(Observation::OrderEnded(failed))?,
            // Stopped it, then failed to start it.
            1 => {
                self.stop_for_restart()?;
                self.feed(Observation::OrderEnded(failed))?;
            }
            // Docker's answer may come before the restart's start event.
            2 => {
                self.stop_for_restart()?;
                self.new_run();
                self.feed(Observation::OrderEnded(OrderOutcome::Done))?;
                self.feed(Observation::Started { at: self.now })?;
            }
            _ => {
                self.stop_for_restart()?;
                self.begin_run()?;
                self.feed(Observation::OrderEnded(OrderOutcome::Done))?;
            }
        }
        Ok(())
    }

    /// The container was removed while the executor held its order: the executor reports it
    /// `Gone`, and Docker's `destroy` event comes before or after that report.
    fn gone(&mut self, pick: u8) -> Result<(), TestCaseError> {
        self.order = None;
        self.removed = true;
        let reports = [
            Observation::OrderEnded(OrderOutcome::Gone),
            Observation::Removed,
        ];
        let first = usize::from(pick % 2);
        self.feed(reports[first].clone())?;
        self.feed(reports[1 - first].clone())
    }

    /// A recreate: the old container is stopped and removed, a new one from its configuration
    /// starts; the old one's supervisor is done and the new one's takes over what it carried
    /// (before it sees the new container: the order the daemon's tasks see it in when the
    /// watch loop routes the hand-over first), then watching begins with an inspect.
    fn replace(&mut self) -> Result<(), TestCaseError> {
        self.stop_for_restart()?;
        let effects = self.feed_and_see(Observation::OrderEnded(OrderOutcome::Replaced {
            new_id: "new".into(),
        }))?;
        let carry = effects.into_iter().find_map(|e| match e {
            Effect::Recreated { carry, .. } => Some(*carry),
            _ => None,
        });
        prop_assert!(carry.is_some(), "a recreate hands over");
        self.new_run();
        self.sup = Supervisor::new(self.spec.clone(), None, self.now);
        let effects = self.sup.take_over(carry.expect("checked"), self.now);
        let expected = self.model.replaced(self.now);
        self.compare(&effects, &expected, &"the take-over")?;
        self.feed(Observation::Snapshot(self.snapshot()))?;
        Ok(())
    }

    /// `docker restart` first stops a running container.
    fn stop_for_restart(&mut self) -> Result<(), TestCaseError> {
        self.restart_count = 0;
        if let Process::Running { .. } = self.process {
            self.end_run(Signal::Term, true)?;
        }
        Ok(())
    }
}

/// The supervisor's effects the model predicts.
fn decision(e: &Effect) -> Option<Decision> {
    Some(match e {
        Effect::IncidentOpened(i) => Decision::Opened(i.trigger),
        Effect::IncidentClosed { outcome, .. } => Decision::Closed(*outcome),
        Effect::BackoffReset => Decision::BackoffReset,
        Effect::Order(o) if o.verb == Verb::Stop => Decision::QuarantineStop,
        Effect::Order(o) => Decision::Order {
            verb: o.verb.kind(),
            trigger: o.trigger,
            attempt: o.attempt,
        },
        Effect::Turn(verdict) => Decision::Turn(*verdict),
        Effect::OrderFailed { .. } => Decision::OrderFailed,
        Effect::Unwatch => Decision::Unwatch,
        Effect::Quarantined { restarts_in_window } => Decision::Quarantined {
            restarts_in_window: *restarts_in_window,
        },
        Effect::Released => Decision::Released,
        Effect::Inspect => Decision::Inspect,
        _ => return None,
    })
}
