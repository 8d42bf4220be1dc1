//! Scenarios of the supervisor, driven with paused time. Each test names the semantics it
//! checks; `supervisor_props.rs` checks the invariants over random sequences.

use super::*;
use crate::backoff::Backoff;
use crate::policy::{Order, ProbeFailure};
use crate::restart_policy::RestartPolicy;
use tokio::time::advance;

pub(super) fn spec() -> PolicySpec {
    PolicySpec {
        failures: 3,
        start_period: Duration::from_secs(10),
        stop_timeout: Some(5),
        container_stop_timeout: None,
        restart_max: 3,
        restart_window: Duration::from_secs(600),
        backoff: Backoff::default(),
        restart_policy: RestartPolicy::No,
        has_probe: true,
        has_docker_health: false,
        swarm: None,
        ladder: crate::policy::Ladder::RESTART_ONLY,
    }
}

fn docker_health_spec() -> PolicySpec {
    PolicySpec {
        has_probe: false,
        has_docker_health: true,
        ..spec()
    }
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn exit(code: i64) -> Exit {
    Exit {
        code: Some(code),
        oom_killed: false,
        restart_count: 0,
    }
}

struct Harness {
    sup: Supervisor,
    /// Like the daemon's executor: a restart ordered is sent at once.
    auto_send: bool,
}

impl Harness {
    fn new(spec: PolicySpec) -> Self {
        Self {
            sup: Supervisor::new(spec, None, Instant::now()),
            auto_send: true,
        }
    }

    /// Running since long ago, every check passing: healthy.
    async fn healthy(spec: PolicySpec) -> Self {
        let mut h = Self::new(spec);
        let since = Instant::now();
        advance(secs(120)).await;
        h.feed(Observation::Snapshot(Snapshot {
            status: RunStatus::Running {
                started_at: since,
                paused: false,
            },
            health: h
                .sup
                .spec
                .has_docker_health
                .then_some(DockerHealth::Healthy),
        }));
        if h.sup.spec.has_probe {
            h.feed(Observation::Probe(ProbeOutcome::Passed));
        }
        assert_eq!(h.sup.state(), State::Healthy);
        h
    }

    fn feed(&mut self, obs: Observation) -> Vec<Effect> {
        let mut effects = self.sup.handle(obs, Instant::now());
        if self.auto_send && effects.iter().any(|e| matches!(e, Effect::Order(_))) {
            effects.extend(
                self.sup
                    .handle(Observation::Turn { running: None }, Instant::now()),
            );
        }
        effects
    }

    fn fail(&mut self, n: u32) -> Vec<Effect> {
        (0..n)
            .flat_map(|_| {
                self.feed(Observation::Probe(ProbeOutcome::Failed(
                    ProbeFailure::Timeout,
                )))
            })
            .collect()
    }

    fn pass(&mut self) -> Vec<Effect> {
        self.feed(Observation::Probe(ProbeOutcome::Passed))
    }

    /// The restart's own start, then Docker's answer.
    fn restart_completes(&mut self) -> Vec<Effect> {
        let mut e = self.feed(Observation::Killed {
            signal: Some(Signal::Term),
        });
        e.extend(self.feed(Observation::Died(exit(143))));
        e.extend(self.feed(Observation::Stopped));
        e.extend(self.feed(Observation::Started { at: Instant::now() }));
        e.extend(self.feed(Observation::OrderEnded(OrderOutcome::Done)));
        e
    }
}

pub(super) fn restarts(effects: &[Effect]) -> Vec<Order> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Order(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

fn recovered(effects: &[Effect]) -> Option<Duration> {
    effects.iter().find_map(|e| match e {
        Effect::IncidentClosed {
            outcome: Outcome::Recovered,
            time_to_recover,
            ..
        } => *time_to_recover,
        _ => None,
    })
}

fn results(effects: &[Effect]) -> Vec<RecoveryResult> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Recovery { result, .. } => Some(*result),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn failure_threshold_counts_consecutive_failures_like_kubelet() {
    let mut h = Harness::healthy(spec()).await;
    assert!(restarts(&h.fail(2)).is_empty());
    assert_eq!(h.sup.state(), State::Failing);
    h.pass();
    assert_eq!(
        h.sup.state(),
        State::Healthy,
        "one success resets the count"
    );
    assert!(restarts(&h.fail(2)).is_empty());
    let e = h.fail(1);
    let r = restarts(&e);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].trigger, r[0].attempt, r[0].stop_timeout),
        (Trigger::ProbeFailed, 1, 5)
    );
    assert_eq!(r[0].verb, Verb::Restart);
    assert_eq!(h.sup.state(), State::Restarting);
    // The restart's own kill, die and stop, and probes meanwhile, change nothing.
    let mut e = h.fail(5);
    e.extend(h.feed(Observation::Killed {
        signal: Some(Signal::Term),
    }));
    e.extend(h.feed(Observation::Died(exit(143))));
    e.extend(h.feed(Observation::Stopped));
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::Restarting);
}

/// Docker's start_period and kubelet's startupProbe: the start period ends at the first
/// success. A fault soon after a start is acted on after `failures` probes, not after the
/// period runs out.
#[tokio::test(start_paused = true)]
async fn start_period_ends_at_the_first_success() {
    let mut h = Harness::new(spec());
    h.feed(Observation::Started { at: Instant::now() });
    assert_eq!(h.sup.state(), State::Starting);
    advance(secs(1)).await;
    assert!(restarts(&h.fail(5)).is_empty(), "inside the start period");
    h.pass();
    assert_eq!(h.sup.state(), State::Healthy);
    advance(secs(1)).await;
    // Two seconds after the start, still inside the 10 s period: a success ended it.
    assert_eq!(restarts(&h.fail(3)).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn start_period_that_runs_out_without_a_success_ends_too() {
    let mut h = Harness::new(spec());
    h.feed(Observation::Started { at: Instant::now() });
    advance(secs(9)).await;
    assert!(restarts(&h.fail(3)).is_empty());
    assert_eq!(h.sup.wake_at(), Some(Instant::now() + secs(1)));
    advance(secs(1)).await;
    h.feed(Observation::Tick);
    assert_eq!(restarts(&h.fail(3)).len(), 1);
}

/// A restart opens a new start period, and Docker's `healthy` ends it.
#[tokio::test(start_paused = true)]
async fn docker_healthy_ends_the_start_period_for_the_probe() {
    let both = PolicySpec {
        has_docker_health: true,
        ..spec()
    };
    let mut h = Harness::healthy(both).await;
    h.fail(3);
    h.restart_completes();
    advance(secs(2)).await; // past the 1 s backoff step
    assert!(restarts(&h.fail(3)).is_empty(), "a new start period");
    h.feed(Observation::Health(DockerHealth::Healthy));
    assert_eq!(restarts(&h.fail(3)).len(), 1, "Docker's healthy ended it");
}

/// Docker has applied its own start_period and retries: `unhealthy` is acted on at once,
/// whatever the watchdog's own start period, also right after a restart.
#[tokio::test(start_paused = true)]
async fn docker_unhealthy_is_acted_on_at_once_even_right_after_a_restart() {
    let mut h = Harness::healthy(docker_health_spec()).await;
    let e = h.feed(Observation::Health(DockerHealth::Unhealthy));
    assert_eq!(restarts(&e)[0].trigger, Trigger::Unhealthy);
    assert!(e.contains(&Effect::ReadHealthLog));
    let e = h.restart_completes();
    assert_eq!(results(&e), vec![RecoveryResult::Success]);
    h.feed(Observation::Health(DockerHealth::Healthy));
    assert_eq!(h.sup.state(), State::Healthy);
    // One second after healthy again, well inside the 10 s start period, the first restart
    // of the incident before has set no backoff to wait for (gap 1 s since that restart).
    advance(secs(2)).await;
    let e = h.feed(Observation::Health(DockerHealth::Unhealthy));
    assert_eq!(restarts(&e).len(), 1, "{e:?}");
}

/// The API never shows `healthy` for a container Docker reports unhealthy.
#[tokio::test(start_paused = true)]
async fn never_healthy_while_docker_says_unhealthy() {
    let both = PolicySpec {
        has_docker_health: true,
        ..spec()
    };
    let mut h = Harness::healthy(both).await;
    h.feed(Observation::Paused);
    h.feed(Observation::Health(DockerHealth::Unhealthy));
    assert_eq!(h.sup.state(), State::Paused);
    h.feed(Observation::Unpaused);
    h.pass();
    assert_ne!(
        h.sup.state(),
        State::Healthy,
        "Docker has not said healthy yet"
    );
    let mut held = Harness::healthy(PolicySpec {
        has_docker_health: true,
        restart_max: 0,
        ..spec()
    })
    .await;
    held.feed(Observation::Health(DockerHealth::Unhealthy));
    held.pass();
    assert_eq!(held.sup.state(), State::Quarantined);
}

#[tokio::test(start_paused = true)]
async fn unhealthy_is_not_acted_on_while_paused_or_being_stopped() {
    let mut h = Harness::healthy(docker_health_spec()).await;
    h.feed(Observation::Paused);
    assert!(restarts(&h.feed(Observation::Health(DockerHealth::Unhealthy))).is_empty());
    assert_eq!(h.sup.state(), State::Paused);
    assert!(!h.sup.wants_probes());
    let e = h.feed(Observation::Unpaused);
    assert!(
        restarts(&e).is_empty(),
        "the unhealthy seen while paused is stale"
    );
    // A slow `docker stop`: Docker may report unhealthy before the process exits.
    h.feed(Observation::Killed {
        signal: Some(Signal::Term),
    });
    assert!(restarts(&h.feed(Observation::Health(DockerHealth::Unhealthy))).is_empty());
    h.feed(Observation::Died(exit(143)));
    assert_eq!(h.sup.state(), State::Stopped);
}

#[tokio::test(start_paused = true)]
async fn time_to_recover_runs_from_the_first_evidence() {
    let mut h = Harness::healthy(spec()).await;
    h.fail(1);
    advance(secs(1)).await;
    h.fail(1);
    advance(secs(1)).await;
    let e = h.fail(1);
    let opened = e.iter().find_map(|e| match e {
        Effect::IncidentOpened(i) => Some(i.clone()),
        _ => None,
    });
    let opened = opened.expect("opened");
    assert_eq!(opened.detected - opened.first_failure, secs(2));
    advance(Duration::from_millis(300)).await;
    h.restart_completes();
    advance(Duration::from_millis(700)).await;
    let e = h.pass();
    assert_eq!(recovered(&e), Some(secs(3)));
    assert!(h.sup.incident().is_none());
}

#[tokio::test(start_paused = true)]
async fn docker_health_log_dates_the_first_failure() {
    let mut h = Harness::healthy(docker_health_spec()).await;
    let before = Instant::now();
    advance(secs(3)).await;
    h.feed(Observation::Health(DockerHealth::Unhealthy));
    let e = h.feed(Observation::HealthFailingSince(before + secs(1)));
    let Some(Effect::IncidentUpdated(i)) = e.first() else {
        panic!("{e:?}")
    };
    assert_eq!(i.detected - i.first_failure, secs(2));
    // A later reading never moves it forward.
    assert!(h
        .feed(Observation::HealthFailingSince(before + secs(2)))
        .is_empty());
}

/// The log is read after the restart is sent, often after the new run began: it dates the
/// failure of the run that failed, never later than that run's start... and never earlier.
#[tokio::test(start_paused = true)]
async fn docker_health_log_read_after_the_restart_dates_the_old_run() {
    let mut h = Harness::healthy(docker_health_spec()).await;
    let run_began = Instant::now() - secs(120);
    let fault = Instant::now() - secs(2);
    h.feed(Observation::Health(DockerHealth::Unhealthy));
    h.restart_completes();
    let e = h.feed(Observation::HealthFailingSince(fault));
    let Some(Effect::IncidentUpdated(i)) = e.first() else {
        panic!("{e:?}")
    };
    assert_eq!(i.first_failure, fault, "not clamped to the new run's start");
    let e = h.feed(Observation::HealthFailingSince(run_began - secs(60)));
    let Some(Effect::IncidentUpdated(i)) = e.first() else {
        panic!("{e:?}")
    };
    assert_eq!(
        i.first_failure, run_began,
        "never before the run that failed began"
    );
}

/// Backoff: the gap before the n-th restart grows, and is forgotten only after the container
/// stayed healthy for `reset_after`.
#[tokio::test(start_paused = true)]
async fn backoff_resets_after_a_stable_period_and_not_before() {
    let mut h = Harness::healthy(PolicySpec {
        restart_max: 100,
        ..docker_health_spec()
    })
    .await;
    let fault_and_heal = |h: &mut Harness| -> Vec<Effect> {
        let e = h.feed(Observation::Health(DockerHealth::Unhealthy));
        if !restarts(&e).is_empty() {
            h.restart_completes();
            h.feed(Observation::Health(DockerHealth::Healthy));
        }
        e
    };
    // 1st restart immediate.
    assert_eq!(restarts(&fault_and_heal(&mut h)).len(), 1);
    // Healthy 5 s (< 60 s reset): the 2nd waits for the 1 s gap from the 1st: already past.
    advance(secs(5)).await;
    assert_eq!(restarts(&fault_and_heal(&mut h)).len(), 1);
    // 3rd: gap 2 s from the 2nd restart; only 1 s later it is held back.
    advance(secs(1)).await;
    let e = fault_and_heal(&mut h);
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::BackingOff);
    assert_eq!(h.sup.wake_at(), Some(Instant::now() + secs(1)));
    advance(secs(1)).await;
    let e = h.feed(Observation::Tick);
    assert_eq!(restarts(&e).len(), 1, "restarted when the backoff ran out");
    h.restart_completes();
    h.feed(Observation::Health(DockerHealth::Healthy));
    // Healthy 30 s: not reset; the 4th must wait 4 s after the 3rd.
    advance(secs(30)).await;
    assert_eq!(restarts(&fault_and_heal(&mut h)).len(), 1, "4 s long past");
    advance(secs(3)).await;
    assert!(
        restarts(&fault_and_heal(&mut h)).is_empty(),
        "5th: 8 s gap, 3 s passed"
    );
    advance(secs(5)).await;
    assert_eq!(restarts(&h.feed(Observation::Tick)).len(), 1);
    h.restart_completes();
    h.feed(Observation::Health(DockerHealth::Healthy));
    // Healthy 60 s: the count is forgotten. The restart after it is immediate, and so is
    // the next one 2 s later (gap 1 s after a reset; it would be 32 s without it).
    advance(secs(60)).await;
    assert_eq!(restarts(&fault_and_heal(&mut h)).len(), 1);
    advance(secs(2)).await;
    assert_eq!(restarts(&fault_and_heal(&mut h)).len(), 1, "reset");
    // Healthy only 1 s since: no reset, the next gap is 2 s.
    advance(secs(1)).await;
    assert!(restarts(&fault_and_heal(&mut h)).is_empty(), "not reset");
}

#[tokio::test(start_paused = true)]
async fn budget_spent_quarantines_and_healthy_releases() {
    let mut h = Harness::healthy(PolicySpec {
        restart_max: 2,
        ..docker_health_spec()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            restarts(&h.feed(Observation::Health(DockerHealth::Unhealthy))).len(),
            1
        );
        h.restart_completes();
        advance(secs(120)).await;
        h.feed(Observation::Tick);
    }
    let e = h.feed(Observation::Health(DockerHealth::Unhealthy));
    assert!(restarts(&e).is_empty());
    assert!(e.contains(&Effect::Quarantined {
        restarts_in_window: 2
    }));
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::IncidentClosed {
            outcome: Outcome::Quarantined,
            ..
        }
    )));
    assert_eq!(h.sup.state(), State::Quarantined);
    let e = h.feed(Observation::Health(DockerHealth::Healthy));
    assert!(e.contains(&Effect::Released));
    assert_eq!(h.sup.state(), State::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_user_stop_is_never_undone_and_abandons_the_incident() {
    let mut h = Harness::healthy(spec()).await;
    h.fail(2);
    h.feed(Observation::Killed {
        signal: Some(Signal::Term),
    });
    let mut e = h.feed(Observation::Died(exit(143)));
    e.extend(h.feed(Observation::Stopped));
    assert_eq!(h.sup.state(), State::Stopped);
    advance(secs(600)).await;
    e.extend(h.feed(Observation::Tick));
    e.extend(h.fail(10));
    assert!(restarts(&e).is_empty());
    // During an incident: abandoned.
    let mut h = Harness::healthy(spec()).await;
    h.auto_send = false;
    h.fail(3);
    assert!(h.sup.restart_in_flight());
    let mut e = h.feed(Observation::Killed {
        signal: Some(Signal::Term),
    });
    e.extend(h.feed(Observation::Died(exit(0))));
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::IncidentClosed {
            outcome: Outcome::Abandoned,
            ..
        }
    )));
    // The queued restart's turn comes: the core drops it (a user's stop wins), and nothing is
    // spent.
    let e = h.feed(Observation::Turn {
        running: Some(false),
    });
    assert!(e.contains(&Effect::Turn(Verdict::Drop)), "{e:?}");
    assert!(restarts(&e).is_empty());
    assert!(!h.sup.restart_in_flight());
    assert_eq!(h.sup.restarts_in_window(Instant::now()), 0);
}

#[tokio::test(start_paused = true)]
async fn a_crash_docker_restarts_is_recorded_not_repeated() {
    let mut h = Harness::healthy(PolicySpec {
        restart_policy: RestartPolicy::UnlessStopped,
        ..spec()
    })
    .await;
    let e = h.feed(Observation::Died(exit(1)));
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::Exited);
    advance(Duration::from_millis(400)).await;
    let e = h.feed(Observation::Started { at: Instant::now() });
    assert_eq!(results(&e), vec![RecoveryResult::Observed]);
    advance(Duration::from_millis(100)).await;
    assert_eq!(recovered(&h.pass()), Some(Duration::from_millis(500)));
}

#[tokio::test(start_paused = true)]
async fn a_crash_without_a_docker_policy_is_restarted_by_the_watchdog() {
    let mut h = Harness::healthy(spec()).await;
    let e = h.feed(Observation::Died(Exit {
        code: Some(137),
        oom_killed: true,
        restart_count: 0,
    }));
    let r = restarts(&e);
    assert_eq!(r[0].trigger, Trigger::Oom);
    assert_eq!(r[0].verb, Verb::Restart);
}

#[tokio::test(start_paused = true)]
async fn a_restart_never_attempted_spends_no_budget_and_is_not_a_failure() {
    let mut h = Harness::healthy(PolicySpec {
        restart_max: 1,
        ..docker_health_spec()
    })
    .await;
    h.auto_send = false;
    h.feed(Observation::Health(DockerHealth::Unhealthy));
    let e = h.feed(Observation::OrderEnded(OrderOutcome::Unreachable));
    assert!(results(&e).is_empty());
    assert_eq!(h.sup.restarts_in_window(Instant::now()), 0);
    // Looked at again; still unhealthy: the budget's one restart is still there.
    advance(secs(1)).await;
    assert_eq!(h.feed(Observation::Tick), vec![Effect::Inspect]);
    let e = h.feed(Observation::Snapshot(Snapshot {
        status: RunStatus::Running {
            started_at: Instant::now() - secs(100),
            paused: false,
        },
        health: Some(DockerHealth::Unhealthy),
    }));
    assert_eq!(restarts(&e).len(), 1, "{e:?}");
    // Docker's own error on an attempted restart is a failure and spends budget.
    h.feed(Observation::Turn { running: None });
    let e = h.feed(Observation::OrderEnded(OrderOutcome::Failed("boom".into())));
    assert_eq!(results(&e), vec![RecoveryResult::Failed]);
    assert!(e.contains(&Effect::Inspect));
    assert_eq!(h.sup.restarts_in_window(Instant::now()), 1);
}

#[tokio::test(start_paused = true)]
async fn dry_run_decides_records_and_paces_like_restarts() {
    let mut h = Harness::healthy(docker_health_spec()).await;
    h.auto_send = false;
    h.feed(Observation::Health(DockerHealth::Unhealthy));
    let e = h.feed(Observation::OrderEnded(OrderOutcome::Skipped));
    assert_eq!(results(&e), vec![RecoveryResult::DryRun]);
    // The container was not touched: looked at again, still unhealthy, next one backs off.
    let e = h.feed(Observation::Snapshot(Snapshot {
        status: RunStatus::Running {
            started_at: Instant::now() - secs(120),
            paused: false,
        },
        health: Some(DockerHealth::Unhealthy),
    }));
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::BackingOff);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_restart_finishes_and_its_events_are_not_a_user_stop() {
    let sent = Instant::now();
    advance(secs(2)).await;
    let resumed = IncidentTimes {
        trigger: Trigger::ProbeFailed,
        first_failure: sent - secs(2),
        detected: sent,
        action_begun: Some(sent),
        last_restart: Some(sent),
        attempts: 1,
        run_began: None,
        steps: Vec::new(),
    };
    let mut h = Harness {
        sup: Supervisor::new(spec(), Some(resumed.clone()), Instant::now()),
        auto_send: true,
    };
    let mut e = h.feed(Observation::Died(exit(143)));
    e.extend(h.feed(Observation::Stopped));
    assert_eq!(h.sup.state(), State::Restarting);
    e.extend(h.feed(Observation::Started { at: Instant::now() }));
    assert_eq!(results(&e), vec![RecoveryResult::Success]);
    advance(secs(1)).await;
    assert_eq!(recovered(&h.pass()), Some(secs(5)));
    // Found down after the restart's deadline: finished by the watchdog.
    let mut h = Harness {
        sup: Supervisor::new(spec(), Some(resumed), Instant::now()),
        auto_send: true,
    };
    let down = Observation::Snapshot(Snapshot {
        status: RunStatus::Exited { exit: exit(143) },
        health: None,
    });
    assert!(
        restarts(&h.feed(down.clone())).is_empty(),
        "first looks again"
    );
    let wake = h.sup.wake_at().expect("a deadline");
    advance(wake - Instant::now()).await;
    assert_eq!(h.feed(Observation::Tick), vec![Effect::Inspect]);
    assert_eq!(restarts(&h.feed(down)).len(), 1);
}

/// The rule for a container found down after a gap (a reconnect): a crash is healed once, a
/// stop is respected, and a container never seen running is left alone.
#[tokio::test(start_paused = true)]
async fn found_down_after_a_gap_crash_is_healed_stop_is_respected() {
    let down = |code, oom| {
        Observation::Snapshot(Snapshot {
            status: RunStatus::Exited {
                exit: Exit {
                    code: Some(code),
                    oom_killed: oom,
                    restart_count: 0,
                },
            },
            health: None,
        })
    };
    for (code, oom, healed) in [
        (1, false, true),
        (139, false, true),
        (137, true, true),
        (0, false, false),
        (137, false, false),
        (143, false, false),
    ] {
        let mut h = Harness::healthy(spec()).await;
        let e = h.feed(down(code, oom));
        assert_eq!(
            restarts(&e).len(),
            usize::from(healed),
            "exit {code} oom {oom}"
        );
        let again = h.feed(down(code, oom));
        assert!(restarts(&again).is_empty(), "once");
    }
    let mut never = Harness::new(spec());
    assert!(restarts(&never.feed(down(1, false))).is_empty());
    assert_eq!(never.sup.state(), State::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_cannot_observe_counts_neither_way() {
    let mut h = Harness::healthy(spec()).await;
    let e: Vec<Effect> = (0..10)
        .flat_map(|_| {
            h.feed(Observation::Probe(ProbeOutcome::Unobservable(
                Unobservable::Resolve,
            )))
        })
        .collect();
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::Healthy);
    assert_eq!(h.sup.unobservable(), Some(Unobservable::Resolve));
}

#[tokio::test(start_paused = true)]
async fn stop_timeout_comes_from_the_label_then_the_container_then_docker() {
    let mut s = spec();
    assert_eq!(s.effective_stop_timeout(), 5);
    s.stop_timeout = None;
    s.container_stop_timeout = Some(30);
    assert_eq!(s.effective_stop_timeout(), 30);
    s.container_stop_timeout = None;
    assert_eq!(s.effective_stop_timeout(), 10);
}

fn no_checks() -> PolicySpec {
    PolicySpec {
        has_probe: false,
        has_docker_health: false,
        ..spec()
    }
}

/// Docker joins a `container:<id>` namespace when the dependent starts: a run older than the
/// parent's new start is restarted once, with trigger `dependency`, the incident dated from
/// the parent's start, and closed when the restarted run is up.
#[tokio::test(start_paused = true)]
async fn a_run_older_than_its_parents_start_is_restarted_once_as_a_dependency() {
    let mut h = Harness::healthy(no_checks()).await;
    let parent_start = Instant::now();
    advance(secs(2)).await;
    let e = h.feed(Observation::ParentStarted {
        at: parent_start,
        recreated: None,
    });
    let opened = e.iter().find_map(|e| match e {
        Effect::IncidentOpened(i) => Some(i.clone()),
        _ => None,
    });
    let opened = opened.expect("incident");
    assert_eq!(opened.trigger, Trigger::Dependency);
    assert_eq!(opened.first_failure, parent_start);
    let r = restarts(&e);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].trigger, Trigger::Dependency);
    assert_eq!(h.sup.state(), State::Restarting);
    let e = h.restart_completes();
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentClosed {
            outcome: Outcome::Recovered,
            ..
        }
    )));
    assert_eq!(h.sup.state(), State::Healthy);
    // The same parent start told again: the new run already joined it.
    assert!(restarts(&h.feed(Observation::ParentStarted {
        at: parent_start,
        recreated: None
    }))
    .is_empty());
    assert_eq!(h.sup.state(), State::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_paused_or_stopped_dependent_is_left_alone_and_a_newer_run_is_not_restarted() {
    let mut paused = Harness::healthy(no_checks()).await;
    paused.feed(Observation::Paused);
    let at = Instant::now();
    assert!(restarts(&paused.feed(Observation::ParentStarted {
        at,
        recreated: None
    }))
    .is_empty());
    assert_eq!(paused.sup.state(), State::Paused);

    let mut stopped = Harness::healthy(no_checks()).await;
    stopped.feed(Observation::Killed {
        signal: Some(Signal::Term),
    });
    stopped.feed(Observation::Died(exit(143)));
    stopped.feed(Observation::Stopped);
    let at = Instant::now();
    assert!(restarts(&stopped.feed(Observation::ParentStarted {
        at,
        recreated: None
    }))
    .is_empty());
    assert_eq!(stopped.sup.state(), State::Stopped);

    // Started after the parent: already in the new namespace.
    let mut newer = Harness::new(no_checks());
    let parent_start = Instant::now();
    advance(secs(1)).await;
    newer.feed(Observation::Started { at: Instant::now() });
    assert!(restarts(&newer.feed(Observation::ParentStarted {
        at: parent_start,
        recreated: None
    }))
    .is_empty());
    assert_eq!(newer.sup.state(), State::Healthy);
}

/// A dependent whose parent was recreated is recreated: this container is done, and its
/// replacement takes over the open incident, which it closes as recovered once healthy, with
/// the time to recover counted from the first failure.
#[tokio::test(start_paused = true)]
async fn a_replaced_dependent_hands_its_incident_to_the_replacement() {
    let mut h = Harness::healthy(no_checks()).await;
    let at = Instant::now();
    advance(secs(1)).await;
    let recreated = Some(ParentRecreated::Follow {
        new_parent: "p2".into(),
    });
    let r = restarts(&h.feed(Observation::ParentStarted { at, recreated }));
    assert_eq!(
        r[0].verb,
        Verb::Recreate {
            network_parent: Some("p2".into())
        }
    );
    let e = h.feed(Observation::OrderEnded(OrderOutcome::Replaced {
        new_id: "c2".into(),
    }));
    assert_eq!(results(&e), vec![RecoveryResult::Success]);
    assert!(recovered(&e).is_none(), "closed by the replacement: {e:?}");
    let carry = e
        .iter()
        .find_map(|e| match e {
            Effect::Recreated { new_id, carry } if new_id == "c2" => Some(carry.clone()),
            _ => None,
        })
        .expect("handed to c2");
    let incident = carry.incident.clone().expect("the open incident");
    assert_eq!(incident.trigger, Trigger::Dependency);
    assert_eq!(incident.attempts, 1);
    assert!(e.contains(&Effect::Unwatch));
    assert_eq!(h.sup.state(), State::Stopped);
    assert!(matches!(h.sup.phase(), Phase::Gone));
    // The replacement: watching begins, it takes over, it runs and is healthy.
    advance(secs(2)).await;
    let mut new = Supervisor::new(no_checks(), None, Instant::now());
    let e = new.take_over(*carry, Instant::now());
    assert!(recovered(&e).is_none(), "not seen running yet: {e:?}");
    assert_eq!(new.state(), State::Unhealthy);
    assert_eq!(
        new.restarts_in_window(Instant::now()),
        1,
        "the budget came along"
    );
    assert_eq!(new.recent_restarts(), 1, "and the backoff count");
    let e = new.handle(
        Observation::Snapshot(Snapshot {
            status: RunStatus::Running {
                started_at: Instant::now(),
                paused: false,
            },
            health: None,
        }),
        Instant::now(),
    );
    assert_eq!(recovered(&e), Some(Instant::now() - incident.first_failure));
}

/// Each dependent is restarted under its own backoff and budget: with the budget spent, a
/// dependent left behind is quarantined, not restarted.
#[tokio::test(start_paused = true)]
async fn a_dependency_restart_spends_the_dependents_own_budget() {
    let mut h = Harness::healthy(PolicySpec {
        restart_max: 1,
        ..no_checks()
    })
    .await;
    let at = Instant::now();
    advance(secs(1)).await;
    assert_eq!(
        restarts(&h.feed(Observation::ParentStarted {
            at,
            recreated: None
        }))
        .len(),
        1
    );
    h.restart_completes();
    assert_eq!(h.sup.state(), State::Healthy);
    advance(secs(60)).await;
    let at = Instant::now();
    advance(secs(1)).await;
    let e = h.feed(Observation::ParentStarted {
        at,
        recreated: None,
    });
    assert!(restarts(&e).is_empty());
    assert!(e.iter().any(|e| matches!(e, Effect::Quarantined { .. })));
    assert_eq!(h.sup.state(), State::Quarantined);
}
