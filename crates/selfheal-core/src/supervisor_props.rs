//! Property tests: random timed sequences of observations (Docker events, probe results,
//! snapshots, the executor's reports) fed to one supervisor, with a small reference model of
//! what the sequence means. Each invariant is stated in words above its check.

use super::*;
use crate::backoff::Backoff;
use crate::policy::ProbeFailure;
use crate::restart_policy::RestartPolicy;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Start,
    StaleStart,
    Pass,
    Fail,
    CannotObserve,
    Health(DockerHealth),
    Kill,
    Die {
        code: i64,
        oom: bool,
    },
    Stop,
    Pause,
    Unpause,
    SnapshotRunning {
        paused: bool,
        unhealthy: bool,
    },
    SnapshotExited {
        code: i64,
    },
    /// The executor makes progress with the order it holds, if any.
    Execute(u8),
    Tick,
    /// A parent started `ago` ms before now (and is ready now); `at_own_start`: at the same
    /// instant as this container's own run began.
    ParentStarted {
        ago: u64,
        at_own_start: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u64..4_000).prop_map(Step::Wait),
        2 => Just(Step::Start),
        1 => Just(Step::StaleStart),
        6 => Just(Step::Pass),
        8 => Just(Step::Fail),
        1 => Just(Step::CannotObserve),
        2 => Just(Step::Health(DockerHealth::Healthy)),
        3 => Just(Step::Health(DockerHealth::Unhealthy)),
        1 => Just(Step::Health(DockerHealth::Starting)),
        1 => Just(Step::Kill),
        2 => (prop_oneof![Just(0i64), Just(1), Just(137), Just(143)], any::<bool>())
            .prop_map(|(code, oom)| Step::Die { code, oom }),
        1 => Just(Step::Stop),
        1 => Just(Step::Pause),
        1 => Just(Step::Unpause),
        1 => (any::<bool>(), any::<bool>())
            .prop_map(|(paused, unhealthy)| Step::SnapshotRunning { paused, unhealthy }),
        1 => prop_oneof![Just(0i64), Just(1), Just(143)].prop_map(|code| Step::SnapshotExited { code }),
        6 => any::<u8>().prop_map(Step::Execute),
        3 => Just(Step::Tick),
        2 => (0u64..3_000, any::<bool>())
            .prop_map(|(ago, at_own_start)| Step::ParentStarted { ago, at_own_start }),
    ]
}

fn spec(restart_policy: RestartPolicy, has_docker_health: bool) -> PolicySpec {
    PolicySpec {
        failures: 2,
        start_period: Duration::from_secs(5),
        stop_timeout: Some(2),
        container_stop_timeout: None,
        restart_max: 4,
        restart_window: Duration::from_secs(120),
        backoff: Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(16),
            factor: 2,
            reset_after: Duration::from_secs(20),
        },
        restart_policy,
        has_probe: true,
        has_docker_health,
        swarm: None,
    }
}

/// The executor's view of the order it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    Queued {
        require_running: bool,
    },
    Sent,
    /// Its start was seen; Docker's answer is still owed. Events are no longer its own.
    Answering,
}

/// What the sequence means, kept independently of the supervisor.
#[derive(Debug)]
struct Model {
    /// The user stopped or killed the container and has not started it since.
    user_stopped: bool,
    /// The process runs (a start was seen and no kill, death or stop since).
    running: bool,
    paused: bool,
    started: Option<Instant>,
    /// The start period ended (a success, or it ran out).
    grace_over: bool,
    /// Consecutive failed probes counted after the start period.
    streak: u32,
    /// Docker's health as last reported for this run.
    docker: Option<DockerHealth>,
    order: Option<Order>,
    /// Restarts Docker was asked to carry out (their send times).
    attempted: Vec<Instant>,
    /// Restarts counted for backoff since it was last forgotten.
    recent: u32,
    healthy_since: Option<Instant>,
    open_incident: bool,
    quarantined: bool,
    /// The supervisor was told it cannot know (a restart not sent): until it looks again.
    unknown: bool,
    last_exit: i64,
    /// A parent started after the current run began, and the run was not restarted since.
    stale: bool,
}

impl Model {
    fn new() -> Self {
        Self {
            user_stopped: false,
            running: false,
            paused: false,
            started: None,
            grace_over: false,
            streak: 0,
            docker: None,
            order: None,
            attempted: Vec::new(),
            recent: 0,
            healthy_since: None,
            open_incident: false,
            quarantined: false,
            unknown: false,
            last_exit: 143,
            stale: false,
        }
    }

    fn new_run(&mut self, at: Instant) {
        self.running = true;
        self.paused = false;
        self.user_stopped = false;
        self.started = Some(at);
        self.grace_over = false;
        self.streak = 0;
        self.docker = None;
        self.stale = false;
    }

    /// A restart is ordered or under way and its start not seen yet.
    fn restarting(&self) -> bool {
        matches!(self.order, Some(Order::Queued { .. } | Order::Sent))
    }

    /// The user stopped, killed or paused the container and has not started or resumed it.
    fn user_hold(&self) -> bool {
        self.user_stopped || self.paused
    }

    fn down(&mut self) {
        self.running = false;
        self.paused = false;
        self.streak = 0;
        self.docker = None;
    }
}

struct Run {
    sup: Supervisor,
    spec: PolicySpec,
    model: Model,
    now: Instant,
    /// The order's send time, once sent.
    sent_at: Option<Instant>,
}

impl Run {
    fn feed(&mut self, obs: Observation) -> Result<Vec<Effect>, TestCaseError> {
        let mut effects = self.sup.handle(obs.clone(), self.now);
        self.check(&obs, &effects)?;
        if effects.contains(&Effect::Inspect) {
            // Like the daemon: inspect and report what Docker shows.
            self.model.unknown = false;
            let status = match self.model.started.filter(|_| self.model.running) {
                Some(started_at) => RunStatus::Running {
                    started_at,
                    paused: self.model.paused,
                },
                None => RunStatus::Exited {
                    exit: Exit {
                        code: Some(self.model.last_exit),
                        oom_killed: false,
                        restart_count: 0,
                    },
                },
            };
            let health = self.model.docker.filter(|_| self.model.running);
            effects.extend(self.feed(Observation::Snapshot(Snapshot { status, health }))?);
        }
        Ok(effects)
    }

    /// The invariants that hold after every single observation.
    fn check(&mut self, obs: &Observation, effects: &[Effect]) -> Result<(), TestCaseError> {
        let now = self.now;
        let spec = &self.spec;
        for e in effects {
            match e {
                Effect::IncidentOpened(i) => {
                    // Every incident opens once and closes once: never two open at a time.
                    prop_assert!(!self.model.open_incident, "opened twice: {obs:?}");
                    // A `dependency` incident only for a run a parent's start left behind.
                    if i.trigger == Trigger::Dependency {
                        prop_assert!(self.model.stale, "dependency incident, nothing stale");
                    }
                    self.model.open_incident = true;
                }
                Effect::IncidentUpdated(_) => {
                    prop_assert!(self.model.open_incident, "updated while none open")
                }
                Effect::IncidentClosed { .. } => {
                    prop_assert!(self.model.open_incident, "closed while none open");
                    self.model.open_incident = false;
                }
                Effect::Quarantined { restarts_in_window } => {
                    // Quarantine only when the budget is really spent.
                    prop_assert!(*restarts_in_window >= spec.restart_max);
                    self.model.quarantined = true;
                }
                Effect::Released => self.model.quarantined = false,
                Effect::StateChanged { from, to } => {
                    if *to == State::Healthy {
                        self.model.healthy_since = Some(now);
                        self.model.quarantined = false;
                    } else if *from == State::Healthy {
                        if self
                            .model
                            .healthy_since
                            .is_some_and(|h| now - h >= spec.backoff.reset_after)
                        {
                            self.model.recent = 0;
                        }
                        self.model.healthy_since = None;
                    }
                }
                Effect::Order(_) => {
                    // A container the user stopped, killed or paused is never restarted.
                    prop_assert!(!self.model.user_hold(), "restart after a user's action");
                    // At most one restart in flight.
                    prop_assert!(self.model.order.is_none(), "second restart in flight");
                    // Never past the budget.
                    let in_window = self
                        .model
                        .attempted
                        .iter()
                        .filter(|t| now - **t < spec.restart_window)
                        .count();
                    prop_assert!(
                        in_window < spec.restart_max as usize,
                        "restart past the budget"
                    );
                    // Never inside a backoff: the gap since the last attempted restart is at
                    // least the backoff step for the restarts counted since the last reset.
                    if let Some(last) = self.model.attempted.last() {
                        let gap = spec.backoff.gap(self.model.recent);
                        prop_assert!(
                            now >= *last + gap,
                            "restart {:?} after the last, backoff {:?}",
                            now - *last,
                            gap
                        );
                    }
                    self.model.order = Some(Order::Queued {
                        require_running: matches!(self.sup.phase(), Phase::Ordered { of: Some(_) }),
                    });
                }
                _ => {}
            }
        }
        // The API never shows a container healthy while a parent's start has left its run
        // behind (it serves nobody).
        if self.model.stale && self.model.running && !self.model.paused {
            prop_assert_ne!(self.sup.state(), State::Healthy, "stale run shown healthy");
        }
        // The API never shows a container healthy while Docker says it is unhealthy.
        if self.model.docker == Some(DockerHealth::Unhealthy) && !self.model.paused {
            prop_assert_ne!(self.sup.state(), State::Healthy);
        }
        Ok(())
    }

    /// Did this decision restart, or hold the restart back for a reason the model shares?
    /// When budget and backoff allow (by the model's own count, resets included), only a
    /// restart will do.
    fn acted(&self, effects: &[Effect], free_before: bool) -> bool {
        if effects.iter().any(|e| matches!(e, Effect::Order(_))) {
            return true;
        }
        let budget_left = self
            .model
            .attempted
            .iter()
            .filter(|t| self.now - **t < self.spec.restart_window)
            .count()
            < self.spec.restart_max as usize;
        let backoff_over = self
            .model
            .attempted
            .last()
            .is_none_or(|last| self.now >= *last + self.spec.backoff.gap(self.model.recent));
        if free_before && budget_left && backoff_over {
            return false;
        }
        matches!(
            self.sup.state(),
            State::BackingOff | State::Quarantined | State::Restarting
        )
    }

    /// Probe results count while the process runs, unpaused, with no restart ordered and
    /// the supervisor not waiting to look again.
    fn probes_count(&self) -> bool {
        self.model.running && !self.model.paused && !self.model.restarting() && !self.model.unknown
    }

    /// The model says nothing may hold a restart back except backoff and budget.
    fn free_to_act(&self) -> bool {
        self.model.running
            && !self.model.paused
            && !self.model.user_hold()
            && self.model.order.is_none()
            && !self.model.quarantined
            && !self.model.unknown
    }

    fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Wait(ms) => self.now += Duration::from_millis(ms),
            Step::Tick => {
                self.feed(Observation::Tick)?;
            }
            Step::Start => {
                // Docker starts only a container that is not running.
                if self.model.running {
                    return Ok(());
                }
                let at = self.now;
                let ours = self.model.order == Some(Order::Sent);
                self.feed(Observation::Started { at })?;
                if ours {
                    // The restart's own start; the executor still owes its answer.
                    self.model.order = Some(Order::Answering);
                }
                self.model.new_run(at);
            }
            Step::StaleStart => {
                // A report of the start already known.
                if let Some(at) = self.model.started {
                    if self.model.running {
                        self.feed(Observation::Started { at })?;
                    }
                }
            }
            Step::Pass => {
                self.feed(Observation::Probe(ProbeOutcome::Passed))?;
                if self.probes_count() {
                    self.model.grace_over = true;
                    self.model.streak = 0;
                }
            }
            Step::CannotObserve => {
                self.feed(Observation::Probe(ProbeOutcome::Unobservable(
                    Unobservable::Resources,
                )))?;
            }
            Step::Fail => {
                let counts = self.probes_count()
                    && (self.model.grace_over
                        || self
                            .model
                            .started
                            .is_some_and(|s| self.now >= s + self.spec.start_period));
                if counts {
                    self.model.grace_over = true;
                    self.model.streak += 1;
                }
                let free = self.free_to_act();
                let effects = self.feed(Observation::Probe(ProbeOutcome::Failed(
                    ProbeFailure::Timeout,
                )))?;
                // Once past the start period, `failures` consecutive failures lead to a
                // restart at the next decision, unless backoff or budget holds it back.
                if counts && free && self.model.streak >= self.spec.failures {
                    prop_assert!(
                        self.acted(&effects, free),
                        "{} failures past the start period and no restart: {:?}",
                        self.model.streak,
                        self.sup.phase()
                    );
                }
            }
            Step::Health(h) => {
                let free = self.free_to_act();
                let live = self.model.running && !self.model.paused && !self.model.restarting();
                if live {
                    self.model.docker = Some(h);
                    if h == DockerHealth::Healthy {
                        self.model.grace_over = true;
                    }
                }
                let effects = self.feed(Observation::Health(h))?;
                // Docker's unhealthy leads to a restart at once, whatever the watchdog's own
                // start period, unless a user action, a restart in flight, backoff or budget
                // holds it back.
                if h == DockerHealth::Unhealthy && free {
                    prop_assert!(
                        self.acted(&effects, free),
                        "unhealthy not acted on: {:?}",
                        self.sup.phase()
                    );
                }
            }
            Step::Kill => {
                let ours = self.model.order == Some(Order::Sent);
                self.feed(Observation::Killed {
                    signal: Some(Signal::Term),
                })?;
                if !ours && self.model.running {
                    self.model.user_stopped = true;
                }
            }
            Step::Die { code, oom } => {
                let ours = self.model.order == Some(Order::Sent);
                self.feed(Observation::Died(Exit {
                    code: Some(code),
                    oom_killed: oom,
                    restart_count: 0,
                }))?;
                if !ours && self.model.paused {
                    self.model.user_stopped = true;
                }
                if !ours {
                    self.model.last_exit = code;
                }
                self.model.down();
            }
            Step::Stop => {
                let ours = self.model.order == Some(Order::Sent);
                self.feed(Observation::Stopped)?;
                if !ours {
                    self.model.user_stopped = true;
                    self.model.down();
                }
            }
            Step::Pause => {
                let was_running = self.model.running && !self.model.paused;
                self.feed(Observation::Paused)?;
                if was_running && self.model.order != Some(Order::Sent) {
                    self.model.paused = true;
                }
            }
            Step::Unpause => {
                let was_paused = self.model.paused;
                self.feed(Observation::Unpaused)?;
                if was_paused {
                    self.model.paused = false;
                    self.model.docker = None;
                    self.model.streak = 0;
                    self.model.stale = false;
                }
            }
            Step::SnapshotRunning { paused, unhealthy } => {
                // Only a truthful snapshot: of the run the model knows, if it knows one.
                let Some(at) = self.model.started.filter(|_| self.model.running) else {
                    return Ok(());
                };
                if self.model.order.is_some() || self.model.user_hold() {
                    return Ok(());
                }
                let health = unhealthy.then_some(DockerHealth::Unhealthy);
                self.feed(Observation::Snapshot(Snapshot {
                    status: RunStatus::Running {
                        started_at: at,
                        paused,
                    },
                    health,
                }))?;
                if paused && !self.model.paused {
                    self.model.paused = true;
                }
                if let Some(h) = health {
                    if !self.model.paused {
                        self.model.docker = Some(h);
                    }
                }
            }
            Step::SnapshotExited { code } => {
                if self.model.running || self.model.order.is_some() {
                    return Ok(());
                }
                self.feed(Observation::Snapshot(Snapshot {
                    status: RunStatus::Exited {
                        exit: Exit {
                            code: Some(code),
                            oom_killed: false,
                            restart_count: 0,
                        },
                    },
                    health: None,
                }))?;
            }
            Step::Execute(pick) => self.execute(pick)?,
            Step::ParentStarted { ago, at_own_start } => {
                let at = match self.model.started.filter(|_| at_own_start) {
                    Some(s) => s,
                    None => self
                        .now
                        .checked_sub(Duration::from_millis(ago))
                        .unwrap_or(self.now),
                };
                let free = self.free_to_act();
                let behind = self.model.started.is_some_and(|s| s < at);
                let held =
                    !self.model.running || self.model.user_hold() || self.model.order.is_some();
                let stale_before = self.model.stale;
                // A dependent that is down with its own incident open is restarted for that
                // incident once its backoff runs out, at whatever observation comes next; the
                // order carries the incident's trigger, which may be `dependency`.
                let own_restart_due =
                    self.model.open_incident && !self.model.running && !self.model.user_hold();
                if behind && !held {
                    self.model.stale = true;
                }
                let left_behind = behind && free;
                let effects = self.feed(Observation::ParentStarted {
                    at,
                    recreated: None,
                })?;
                let dependency_restart = effects
                    .iter()
                    .any(|e| matches!(e, Effect::Order(o) if o.trigger == Trigger::Dependency));
                // A run that began at or after the parent's start already joined it, and a
                // dependent that is paused, stopped, exited or being restarted is left alone
                // (its next start joins the parent anyway): neither is restarted for it. (A
                // restart held back before may fall due at any observation.)
                if (!behind || held) && !stale_before && !own_restart_due {
                    prop_assert!(
                        !dependency_restart,
                        "restarted for a parent it follows already"
                    );
                }
                // A run left behind is restarted at once, unless its own backoff or budget
                // holds it back.
                if left_behind {
                    prop_assert!(
                        self.acted(&effects, free),
                        "left behind by its parent and not restarted: {:?}",
                        self.sup.phase()
                    );
                }
            }
        }
        Ok(())
    }

    /// The executor: sends a queued order (or drops it when the container it had to find
    /// running is held by the user), then reports an outcome.
    fn execute(&mut self, pick: u8) -> Result<(), TestCaseError> {
        match self.model.order {
            None => Ok(()),
            Some(Order::Queued { require_running }) => {
                if self.model.user_hold() || (require_running && !self.model.running) {
                    self.model.order = None;
                    let effects = self.feed(Observation::Turn {
                        running: Some(self.model.running),
                    })?;
                    prop_assert!(effects.contains(&Effect::Turn(Verdict::Drop)));
                    return Ok(());
                }
                match pick % 8 {
                    0 => {
                        self.model.order = None;
                        self.model.unknown = true;
                        self.feed(Observation::OrderEnded(OrderOutcome::Unreachable))?;
                    }
                    1 => {
                        self.model.order = None;
                        self.model.attempted.push(self.now);
                        self.model.recent += 1;
                        self.feed(Observation::OrderEnded(OrderOutcome::Skipped))?;
                    }
                    _ => {
                        // A start and a restart sent within Docker's clock rounding cannot
                        // be told apart; real ones are seconds apart.
                        self.now += Duration::from_millis(100);
                        // Dropped if the container is no longer what it was decided for (and
                        // then maybe decided again).
                        self.model.order = None;
                        let effects = self.feed(Observation::Turn {
                            running: Some(self.model.running),
                        })?;
                        if effects.contains(&Effect::Turn(Verdict::Send)) {
                            self.model.order = Some(Order::Sent);
                            self.sent_at = Some(self.now);
                        }
                    }
                }
                Ok(())
            }
            Some(Order::Answering) => {
                let sent = self.sent_at.take().unwrap_or(self.now);
                self.model.order = None;
                self.model.attempted.push(sent);
                self.model.recent += 1;
                self.feed(Observation::OrderEnded(OrderOutcome::Done))?;
                Ok(())
            }
            Some(Order::Sent) => {
                let sent = self.sent_at.take().unwrap_or(self.now);
                self.model.order = None;
                self.model.attempted.push(sent);
                self.model.recent += 1;
                if pick.is_multiple_of(5) {
                    self.model.down();
                    self.feed(Observation::OrderEnded(OrderOutcome::Failed(
                        "Docker said no".into(),
                    )))?;
                } else {
                    self.feed(Observation::Started { at: self.now })?;
                    self.model.new_run(self.now);
                    self.feed(Observation::OrderEnded(OrderOutcome::Done))?;
                }
                Ok(())
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_timed_sequences(
        steps in prop::collection::vec(step(), 1..120),
        policy in prop_oneof![
            Just(RestartPolicy::No),
            Just(RestartPolicy::UnlessStopped),
            Just(RestartPolicy::OnFailure { max_retries: 2 }),
        ],
        docker_health in any::<bool>(),
    ) {
        let spec = spec(policy, docker_health);
        let now = Instant::now();
        let mut run = Run {
            sup: Supervisor::new(spec.clone(), None, now),
            spec,
            model: Model::new(),
            now,
            sent_at: None,
        };
        run.feed(Observation::Started { at: now })?;
        run.model.new_run(now);
        for s in steps {
            run.step(s)?;
        }
        // Removal closes whatever is open: every incident ends exactly once.
        run.feed(Observation::Removed)?;
        prop_assert!(!run.model.open_incident, "an incident never closed");
    }
}
