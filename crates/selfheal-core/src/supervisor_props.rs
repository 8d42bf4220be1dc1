//! Property test of the healing core: random timed sequences of what a user, Docker and the
//! executor do to one container ([`Step`]), turned into the observations the daemon would feed,
//! given to the supervisor and, independently, to a reference model ([`model::Model`]) that
//! computes from the stated rules what must follow. The spec varies too: with or without the
//! watchdog's probe, 1 to 3 failures, a start period or none, a Docker HEALTHCHECK or none,
//! Docker's restart policies, budgets and backoffs.
//!
//! The world is truthful (what Docker reports is what happened, in Docker's order) so that
//! the model can be exact; lost events are covered by resyncs after a death nobody reported.

use super::*;
use crate::backoff::Backoff;
use crate::policy::ProbeFailure;
use crate::restart_policy::RestartPolicy;
use proptest::prelude::*;

#[path = "supervisor_props/model.rs"]
mod model;

use model::{docker_restarts, Decision, Model};

/// One thing that happens to the container, or to time.
#[derive(Debug, Clone)]
enum Step {
    /// Time passes (milliseconds).
    Wait(u64),
    /// A long quiet spell (seconds): budget windows slide, backoff resets fall due.
    LongWait(u64),
    /// A wake-up at no particular time.
    Tick,
    /// The daemon wakes the supervisor when it asked to ([`Supervisor::wake_at`]).
    WakeUp,
    /// The watchdog's probe: passes if the service works (and runs), fails, or cannot look;
    /// now and then the opposite of what the service's state says.
    Probe(u8),
    /// Docker's `health_status` (a container with a HEALTHCHECK), from the service's state.
    Health(u8),
    /// The service breaks (it hangs, its dependency goes), or starts working again.
    Break,
    Mend,
    /// The process dies by itself.
    Crash {
        code: i64,
        oom: bool,
    },
    /// Docker's restart policy starts it again.
    PolicyStart,
    /// The process died and the event was lost: a resync finds it.
    LostDeath {
        code: i64,
    },
    /// `docker stop`: kill, die, stop.
    UserStop,
    /// `docker kill`: kill, die.
    UserKill,
    /// `docker start` of a container that is down.
    UserStart,
    Pause,
    Unpause,
    /// A parent started `ago` ms ago and is ready now.
    ParentStarted {
        ago: u64,
    },
    /// A resync (the daemon reconnected): a truthful inspect.
    Resync,
    /// The executor takes its order: sends it, or drops it when the container it had to find
    /// running is not.
    Send,
    /// The executor could not reach Docker with its order.
    Unreachable,
    /// Docker carries out the order sent: restarted (start event before or after the
    /// answer), or refused with the container left running or left down.
    Finish(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u64..4_000).prop_map(Step::Wait),
        2 => (5u64..90).prop_map(Step::LongWait),
        2 => Just(Step::Tick),
        3 => Just(Step::WakeUp),
        24 => any::<u8>().prop_map(Step::Probe),
        6 => any::<u8>().prop_map(Step::Health),
        3 => Just(Step::Break),
        1 => Just(Step::Mend),
        2 => (prop_oneof![Just(1i64), Just(0), Just(2), Just(137), Just(143)], prop::bool::weighted(0.2))
            .prop_map(|(code, oom)| Step::Crash { code, oom }),
        6 => Just(Step::PolicyStart),
        1 => prop_oneof![Just(1i64), Just(0), Just(143)].prop_map(|code| Step::LostDeath { code }),
        1 => Just(Step::UserStop),
        1 => Just(Step::UserKill),
        8 => Just(Step::UserStart),
        1 => Just(Step::Pause),
        4 => Just(Step::Unpause),
        2 => (0u64..3_000).prop_map(|ago| Step::ParentStarted { ago }),
        1 => Just(Step::Resync),
        14 => Just(Step::Send),
        1 => Just(Step::Unreachable),
        14 => any::<u8>().prop_map(Step::Finish),
    ]
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    let checks = (
        any::<bool>(),
        any::<bool>(),
        1u32..=3,
        prop_oneof![Just(0u64), Just(3), Just(8)],
    );
    let restart_policy = prop_oneof![
        Just(RestartPolicy::No),
        Just(RestartPolicy::Always),
        Just(RestartPolicy::UnlessStopped),
        Just(RestartPolicy::OnFailure { max_retries: 0 }),
        Just(RestartPolicy::OnFailure { max_retries: 2 }),
    ];
    let budget = (1u32..=4, prop_oneof![Just(20u64), Just(60), Just(300)]);
    let backoff = (
        1u64..=2,
        prop_oneof![Just(4u64), Just(16)],
        prop_oneof![Just(5u64), Just(20)],
    );
    (checks, restart_policy, budget, backoff).prop_map(
        |(
            (has_probe, has_docker_health, failures, start_period),
            restart_policy,
            budget,
            backoff,
        )| {
            PolicySpec {
                failures,
                start_period: Duration::from_secs(start_period),
                stop_timeout: Some(2),
                container_stop_timeout: None,
                restart_max: budget.0,
                restart_window: Duration::from_secs(budget.1),
                backoff: Backoff {
                    initial: Duration::from_secs(backoff.0),
                    max: Duration::from_secs(backoff.1),
                    factor: 2,
                    reset_after: Duration::from_secs(backoff.2),
                },
                restart_policy,
                has_probe,
                has_docker_health,
                swarm: None,
            }
        },
    )
}

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

/// The executor's side: the order it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    Queued { require_running: bool },
    Sent { at: Instant },
}

/// How long Docker may take to carry out a restart in this world: well under the
/// supervisor's own wait for a restart's events (stop timeout + 60 s).
const RESTART_TAKES_AT_MOST: Duration = Duration::from_secs(20);

struct Sim {
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
}

impl Sim {
    fn new(spec: PolicySpec) -> Result<Self, TestCaseError> {
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
        };
        // Watching begins with an inspect.
        sim.feed(Observation::Snapshot(sim.snapshot()))?;
        Ok(sim)
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
            code,
            oom_killed: oom,
            restart_count: self.restart_count,
        }
    }

    /// One observation to both. After every observation: the supervisor says exactly what the
    /// model says must follow (incidents opened and closed with their trigger and outcome,
    /// restart orders with their attempt, quarantine with the restarts in the window, release,
    /// looking again), and shows the state the model derives.
    fn feed(&mut self, obs: Observation) -> Result<(), TestCaseError> {
        let effects = self.sup.handle(obs.clone(), self.now);
        let expected = self.model.observe(&obs, self.now);
        let said: Vec<Decision> = effects.iter().filter_map(decision).collect();
        prop_assert_eq!(&said, &expected, "after {:?}", obs);
        prop_assert_eq!(
            self.sup.state(),
            self.model.state(),
            "state after {:?}",
            obs
        );
        if let Some(Effect::Restart(o)) = effects.iter().find(|e| matches!(e, Effect::Restart(_))) {
            self.order = Some(Order::Queued {
                require_running: o.require_running,
            });
        }
        self.check_wakes_in_time(&obs)?;
        if effects.contains(&Effect::Inspect) {
            self.feed(Observation::Snapshot(self.snapshot()))?;
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

    /// Liveness, in steps: waking the supervisor when it asks, with nothing else happening,
    /// a container that needs a restart gets the order (or is quarantined when the budget is
    /// spent) within a few wake-ups.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..6 {
            if self.model.restart_due_by().is_none() {
                return Ok(());
            }
            self.wake_up()?;
        }
        prop_assert!(
            self.model.restart_due_by().is_none(),
            "still waiting for a restart: {:?}",
            self.sup.phase()
        );
        Ok(())
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
    fn end_run(&mut self, code: i64, stop_event: bool) -> Result<(), TestCaseError> {
        self.process = Process::Exited(self.exit(code, false));
        self.health = None;
        self.feed(Observation::Killed)?;
        self.feed(Observation::Died(self.exit(code, false)))?;
        if stop_event {
            self.feed(Observation::Stopped)?;
        }
        Ok(())
    }

    fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        // While Docker carries out a restart, the user and the process leave it alone (their
        // events would be the restart's own), and it takes a bounded time.
        let in_restart = self.sent();
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
            Step::Crash { code, oom } if self.running() && !in_restart => {
                let exit = self.die(code, oom);
                self.feed(Observation::Died(exit))?;
            }
            Step::PolicyStart => {
                if let Process::PolicyRestarting(_) = self.process {
                    self.restart_count += 1;
                    self.begin_run()?;
                }
            }
            Step::LostDeath { code } if self.running() && self.order.is_none() => {
                self.die(code, false);
                self.feed(Observation::Snapshot(self.snapshot()))?;
            }
            Step::UserStop if !in_restart && matches!(self.process, Process::Running { .. }) => {
                self.end_run(143, true)?
            }
            Step::UserKill if !in_restart && matches!(self.process, Process::Running { .. }) => {
                self.end_run(137, false)?
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
                self.feed(Observation::ParentStarted { at })?;
            }
            Step::Resync if !in_restart => self.feed(Observation::Snapshot(self.snapshot()))?,
            Step::Send => {
                if let Some(Order::Queued { require_running }) = self.order {
                    if require_running && !self.running() {
                        self.order = None;
                        self.feed(Observation::RestartFinished(RestartOutcome::NotAttempted(
                            NotAttempted::Cancelled,
                        )))?;
                    } else {
                        // A restart is sent seconds after any start it could be taken for.
                        self.now += Duration::from_millis(100);
                        self.order = Some(Order::Sent { at: self.now });
                        self.feed(Observation::RestartSent)?;
                    }
                }
            }
            Step::Unreachable => {
                if let Some(Order::Queued { .. }) = self.order {
                    self.order = None;
                    self.feed(Observation::RestartFinished(RestartOutcome::NotAttempted(
                        NotAttempted::Unreachable,
                    )))?;
                }
            }
            Step::Finish(pick) => self.finish(pick)?,
            _ => {}
        }
        Ok(())
    }

    fn wait(&mut self, d: Duration) {
        let d = match self.order {
            Some(Order::Sent { at }) => {
                d.min((at + RESTART_TAKES_AT_MOST).saturating_duration_since(self.now))
            }
            _ => d,
        };
        self.now += d;
    }

    fn finish(&mut self, pick: u8) -> Result<(), TestCaseError> {
        let Some(Order::Sent { .. }) = self.order else {
            return Ok(());
        };
        self.order = None;
        let failed = RestartOutcome::Failed("Docker said no".into());
        match pick % 5 {
            // Refused before it touched the container.
            0 => self.feed(Observation::RestartFinished(failed))?,
            // Stopped it, then failed to start it.
            1 => {
                self.stop_for_restart()?;
                self.feed(Observation::RestartFinished(failed))?;
            }
            // Docker's answer may come before the restart's start event.
            2 => {
                self.stop_for_restart()?;
                self.new_run();
                self.feed(Observation::RestartFinished(RestartOutcome::Done))?;
                self.feed(Observation::Started { at: self.now })?;
            }
            _ => {
                self.stop_for_restart()?;
                self.begin_run()?;
                self.feed(Observation::RestartFinished(RestartOutcome::Done))?;
            }
        }
        Ok(())
    }

    /// `docker restart` first stops a running container.
    fn stop_for_restart(&mut self) -> Result<(), TestCaseError> {
        self.restart_count = 0;
        if let Process::Running { .. } = self.process {
            self.end_run(143, true)?;
        }
        Ok(())
    }
}

/// The supervisor's effects the model predicts.
fn decision(e: &Effect) -> Option<Decision> {
    Some(match e {
        Effect::IncidentOpened(i) => Decision::Opened(i.trigger),
        Effect::IncidentClosed { outcome, .. } => Decision::Closed(*outcome),
        Effect::Restart(o) => Decision::Restart {
            trigger: o.trigger,
            attempt: o.attempt,
            require_running: o.require_running,
        },
        Effect::Quarantined { restarts_in_window } => Decision::Quarantined {
            restarts_in_window: *restarts_in_window,
        },
        Effect::Released => Decision::Released,
        Effect::Inspect => Decision::Inspect,
        _ => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// After every observation of a random timed sequence, the supervisor agrees with the
    /// reference model, which states the rules:
    /// - Incidents: one opens when the container is first seen failed (Docker's `unhealthy`,
    ///   a run left behind by its parent, `failures` probe failures past the start period, a
    ///   crash) and no other is open; it closes once, as recovered when the container is
    ///   healthy again, quarantined when the budget is spent, abandoned when a user stops it or
    ///   it is removed.
    /// - The start period ends at the first success (probe or Docker `healthy`) or when it
    ///   runs out; failures inside it do not count. Docker's `unhealthy` counts at once.
    /// - A failed container is restarted at once unless a user stopped, killed or paused it,
    ///   a restart is in flight, Docker's restart policy brings it back, a backoff holds it
    ///   (`initial * factor^(n-1)` after n restarts, capped) or its budget is spent (at most
    ///   `restart_max` restarts sent within the sliding window), in which case it is
    ///   quarantined, and released when healthy again.
    /// - Only a restart Docker was asked to carry out spends budget and counts for backoff; an
    ///   order never sent (unreachable, dropped) spends nothing and is looked at again.
    /// - The backoff is forgotten once the container was healthy `reset_after` without a
    ///   break.
    /// - The state shown is the model's.
    /// - Liveness: a container held back only by a backoff or a recheck has the supervisor
    ///   asking to be woken by then; waking it as asked, the restart (or quarantine) comes
    ///   within a few wake-ups.
    #[test]
    fn the_supervisor_follows_the_reference_model(
        spec in policy_spec(),
        steps in prop::collection::vec(step(), 1..200),
    ) {
        let mut sim = Sim::new(spec)?;
        for s in steps {
            sim.step(s)?;
        }
        if sim.order.is_none() {
            sim.drain()?;
        }
        // Removal closes whatever is open: every incident ends exactly once.
        sim.feed(Observation::Removed)?;
        prop_assert!(!sim.model.incident_open());
    }
}
