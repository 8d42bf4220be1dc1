//! Every transition of the policy, driven with paused time.

use super::*;
use tokio::time::advance;

fn spec() -> PolicySpec {
    PolicySpec {
        failures: 3,
        start_period: Duration::from_secs(10),
        stop_timeout: Some(5),
        restart_max: 3,
        restart_window: Duration::from_secs(600),
        backoff: Backoff::default(),
        has_probe: true,
        has_docker_health: false,
    }
}

struct Harness {
    sup: Supervisor,
}

impl Harness {
    fn new(spec: PolicySpec) -> Self {
        Self {
            sup: Supervisor::new(spec, None),
        }
    }
    /// Running since long ago, probes fine: healthy.
    async fn healthy(spec: PolicySpec) -> Self {
        let mut h = Self::new(spec);
        let long_ago = Instant::now();
        advance(Duration::from_secs(120)).await;
        h.send(Input::Running { since: long_ago });
        h.send(Input::ProbeOk);
        assert_eq!(h.sup.state(), State::Healthy);
        h
    }
    /// Like the daemon: a restart decided is sent right away (the executor reports it).
    fn send(&mut self, input: Input) -> Vec<Effect> {
        let effects = self.sup.handle(input, Instant::now());
        if effects.iter().any(|e| matches!(e, Effect::Restart { .. })) {
            assert!(self
                .sup
                .handle(Input::RestartSent, Instant::now())
                .is_empty());
        }
        effects
    }
    fn fail_probes(&mut self, n: u32) -> Vec<Effect> {
        (0..n)
            .flat_map(|_| self.send(Input::ProbeFailed(ProbeFailure::Timeout)))
            .collect()
    }
}

fn restarts(effects: &[Effect]) -> Vec<(Trigger, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Restart {
                trigger, attempt, ..
            } => Some((*trigger, *attempt)),
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

#[tokio::test(start_paused = true)]
async fn threshold_of_consecutive_failures_triggers_one_restart() {
    let mut h = Harness::healthy(spec()).await;
    let e = h.fail_probes(2);
    assert_eq!(h.sup.state(), State::Failing);
    assert!(restarts(&e).is_empty());
    // A success in between resets the count.
    h.send(Input::ProbeOk);
    assert_eq!(h.sup.state(), State::Healthy);
    let e = h.fail_probes(2);
    assert!(restarts(&e).is_empty());
    advance(Duration::from_secs(1)).await;
    let e = h.send(Input::ProbeFailed(ProbeFailure::Status));
    assert_eq!(restarts(&e), vec![(Trigger::ProbeFailed, 1)]);
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::IncidentOpened {
            trigger: Trigger::ProbeFailed,
            ..
        }
    )));
    assert_eq!(h.sup.state(), State::Restarting);
    // While the restart is in flight, more failures and Docker's own kill/die/stop are ours.
    let mut e = h.fail_probes(5);
    e.extend(h.send(Input::ExternalKill));
    e.extend(h.send(Input::Died {
        oom: false,
        docker_restarts: true,
    }));
    e.extend(h.send(Input::Stopped));
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::Restarting);
}

#[tokio::test(start_paused = true)]
async fn restart_opens_a_start_period_and_recovery_closes_the_incident() {
    let mut h = Harness::healthy(spec()).await;
    h.fail_probes(3);
    advance(Duration::from_millis(300)).await;
    let e = h.send(Input::Running {
        since: Instant::now(),
    });
    assert!(e.is_empty() || h.sup.state() == State::Starting);
    let e = h.send(Input::RestartFinished(RestartOutcome::Done));
    assert!(e.contains(&Effect::Recovery {
        trigger: Trigger::ProbeFailed,
        result: RecoveryResult::Success
    }));
    // Failures in the start period do not count.
    let e = h.fail_probes(10);
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::Starting);
    advance(Duration::from_millis(700)).await;
    let e = h.send(Input::ProbeOk);
    assert_eq!(recovered(&e), Some(Duration::from_secs(1)));
    assert_eq!(h.sup.state(), State::Healthy);
    assert!(h.sup.incident().is_none());
}

#[tokio::test(start_paused = true)]
async fn restart_finished_before_its_events_still_ignores_them() {
    let mut h = Harness::healthy(spec()).await;
    h.fail_probes(3);
    let e = h.send(Input::RestartFinished(RestartOutcome::Done));
    assert_eq!(
        h.sup.state(),
        State::Restarting,
        "until its start event arrives"
    );
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::Recovery {
            result: RecoveryResult::Success,
            ..
        }
    )));
    // Late events from our own restart arrive after the API returned.
    let mut e = h.send(Input::ExternalKill);
    e.extend(h.send(Input::Died {
        oom: false,
        docker_restarts: false,
    }));
    e.extend(h.send(Input::Stopped));
    e.extend(h.send(Input::Running {
        since: Instant::now(),
    }));
    assert!(restarts(&e).is_empty(), "{e:?}");
    assert_eq!(h.sup.state(), State::Starting);
    // A die after that is a real crash again.
    let e = h.send(Input::Died {
        oom: false,
        docker_restarts: false,
    });
    assert_eq!(h.sup.state(), State::BackingOff, "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn docker_unhealthy_event_restarts_at_once() {
    let mut s = spec();
    s.has_probe = false;
    s.has_docker_health = true;
    let mut h = Harness::new(s);
    let long_ago = Instant::now();
    advance(Duration::from_secs(60)).await;
    h.send(Input::Running { since: long_ago });
    h.send(Input::Health(DockerHealth::Healthy));
    assert_eq!(h.sup.state(), State::Healthy);
    let e = h.send(Input::Health(DockerHealth::Unhealthy));
    assert_eq!(restarts(&e), vec![(Trigger::Unhealthy, 1)]);
    h.send(Input::RestartFinished(RestartOutcome::Done));
    h.send(Input::Running {
        since: Instant::now(),
    });
    advance(Duration::from_secs(3)).await;
    // Running alone is not healthy when Docker has a HEALTHCHECK to report.
    assert_eq!(h.sup.state(), State::Starting);
    let e = h.send(Input::Health(DockerHealth::Healthy));
    assert_eq!(recovered(&e), Some(Duration::from_secs(3)));
}

#[tokio::test(start_paused = true)]
async fn unhealthy_during_grace_is_acted_on_when_grace_ends() {
    let mut s = spec();
    s.has_probe = false;
    s.has_docker_health = true;
    let mut h = Harness::new(s);
    h.send(Input::Running {
        since: Instant::now(),
    });
    let e = h.send(Input::Health(DockerHealth::Unhealthy));
    assert!(restarts(&e).is_empty());
    let wake = h
        .sup
        .wake_at()
        .expect("a timer for the end of the start period");
    assert_eq!(wake, Instant::now() + Duration::from_secs(10));
    advance(Duration::from_secs(10)).await;
    let e = h.send(Input::Tick);
    assert_eq!(restarts(&e), vec![(Trigger::Unhealthy, 1)]);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_and_resets_after_a_stable_period() {
    let mut s = spec();
    s.restart_max = 100;
    let mut h = Harness::healthy(s).await;
    let mut gaps = Vec::new();
    let mut last = None::<Instant>;
    for _ in 0..5 {
        // Fail until a restart is issued, ticking through any backoff.
        let mut issued = false;
        for _ in 0..200 {
            let mut e = h.send(Input::ProbeFailed(ProbeFailure::Connect));
            if h.sup.state() == State::BackingOff {
                let until = h.sup.wake_at().expect("backoff deadline");
                tokio::time::advance(until - Instant::now()).await;
                e.extend(h.send(Input::Tick));
            }
            if !restarts(&e).is_empty() {
                issued = true;
                break;
            }
            advance(Duration::from_millis(100)).await;
        }
        assert!(issued);
        let now = Instant::now();
        if let Some(l) = last {
            gaps.push((now - l).as_secs());
        }
        last = Some(now);
        h.send(Input::RestartFinished(RestartOutcome::Done));
        h.send(Input::Running { since: now });
        advance(Duration::from_secs(10)).await; // past the start period
    }
    // The 10 s start period after each restart is longer than the first backoff gaps.
    assert_eq!(gaps, vec![10, 10, 10, 10]);
    // With the start period shorter, the backoff itself is what spaces them.
    let mut s = spec();
    s.restart_max = 100;
    s.start_period = Duration::ZERO;
    let mut h = Harness::healthy(s).await;
    let mut waits = Vec::new();
    for _ in 0..6 {
        let mut e = h.fail_probes(3);
        if h.sup.state() == State::BackingOff {
            let wait = h.sup.wake_at().expect("deadline") - Instant::now();
            waits.push(wait.as_secs());
            advance(wait).await;
            e.extend(h.send(Input::Tick));
        } else {
            waits.push(0);
        }
        assert_eq!(restarts(&e).len(), 1, "{e:?}");
        h.send(Input::RestartFinished(RestartOutcome::Done));
        h.send(Input::Running {
            since: Instant::now(),
        });
    }
    assert_eq!(waits, vec![0, 1, 2, 4, 8, 16]);
    // Healthy for the reset period: the next restart is immediate again.
    h.send(Input::ProbeOk);
    assert_eq!(h.sup.state(), State::Healthy);
    advance(Backoff::default().reset_after).await;
    let e = h.fail_probes(3);
    assert_eq!(restarts(&e).len(), 1, "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn budget_exhausted_quarantines_and_healthy_releases() {
    let mut s = spec();
    s.start_period = Duration::ZERO;
    s.restart_max = 2;
    let mut h = Harness::healthy(s).await;
    for _ in 0..2 {
        let mut e = h.fail_probes(3);
        if let Some(t) = h.sup.wake_at() {
            advance(t - Instant::now()).await;
            e.extend(h.send(Input::Tick));
        }
        assert_eq!(restarts(&e).len(), 1);
        h.send(Input::RestartFinished(RestartOutcome::Done));
        h.send(Input::Running {
            since: Instant::now(),
        });
    }
    let e = h.fail_probes(3);
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::Quarantined);
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
    // Left alone: more failures and ticks do nothing.
    let mut e = h.fail_probes(10);
    advance(Duration::from_secs(3600)).await;
    e.extend(h.send(Input::Tick));
    assert!(restarts(&e).is_empty());
    // Released when it becomes healthy by itself.
    let e = h.send(Input::ProbeOk);
    assert!(e.contains(&Effect::Released));
    assert_eq!(h.sup.state(), State::Healthy);
    // The window has passed: healing works again.
    let e = h.fail_probes(3);
    assert_eq!(restarts(&e).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn user_stop_is_never_undone() {
    let mut h = Harness::healthy(spec()).await;
    let mut e = h.send(Input::ExternalKill);
    e.extend(h.send(Input::Died {
        oom: false,
        docker_restarts: false,
    }));
    e.extend(h.send(Input::Stopped));
    assert_eq!(h.sup.state(), State::Stopped);
    e.extend(h.fail_probes(10));
    advance(Duration::from_secs(600)).await;
    e.extend(h.send(Input::Tick));
    assert!(restarts(&e).is_empty());
    // The user starts it again: watched again.
    h.send(Input::Running {
        since: Instant::now(),
    });
    assert_eq!(h.sup.state(), State::Starting);
}

#[tokio::test(start_paused = true)]
async fn user_stop_during_an_incident_abandons_it() {
    let mut h = Harness::healthy(spec()).await;
    h.fail_probes(3);
    h.send(Input::RestartFinished(RestartOutcome::Failed(
        "boom".into(),
    )));
    assert_eq!(h.sup.state(), State::BackingOff);
    assert!(h.sup.incident().is_some());
    let e = h.send(Input::Stopped);
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::IncidentClosed {
            outcome: Outcome::Abandoned,
            ..
        }
    )));
    assert_eq!(h.sup.state(), State::Stopped);
}

#[tokio::test(start_paused = true)]
async fn crash_restarted_by_docker_is_recorded_not_repeated() {
    let mut h = Harness::healthy(spec()).await;
    let e = h.send(Input::Died {
        oom: true,
        docker_restarts: true,
    });
    assert!(e.iter().any(|x| matches!(
        x,
        Effect::IncidentOpened {
            trigger: Trigger::Oom,
            ..
        }
    )));
    assert!(restarts(&e).is_empty());
    assert_eq!(h.sup.state(), State::Exited);
    advance(Duration::from_millis(200)).await;
    let e = h.send(Input::Running {
        since: Instant::now(),
    });
    assert!(e.contains(&Effect::Recovery {
        trigger: Trigger::Oom,
        result: RecoveryResult::Observed
    }));
    assert!(restarts(&e).is_empty());
    advance(Duration::from_millis(800)).await;
    let e = h.send(Input::ProbeOk);
    assert_eq!(recovered(&e), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn crash_without_a_docker_policy_is_restarted_by_the_watchdog() {
    let mut h = Harness::healthy(spec()).await;
    let e = h.send(Input::Died {
        oom: false,
        docker_restarts: false,
    });
    assert_eq!(restarts(&e), vec![(Trigger::Died, 1)]);
}

#[tokio::test(start_paused = true)]
async fn failed_restart_is_retried_under_backoff() {
    let mut h = Harness::healthy(spec()).await;
    h.fail_probes(3);
    let e = h.send(Input::RestartFinished(RestartOutcome::Failed(
        "engine busy".into(),
    )));
    assert!(e.contains(&Effect::Recovery {
        trigger: Trigger::ProbeFailed,
        result: RecoveryResult::Failed
    }));
    assert_eq!(h.sup.state(), State::BackingOff);
    assert_eq!(
        h.sup.wake_at(),
        Some(Instant::now() + Duration::from_secs(1))
    );
    advance(Duration::from_secs(1)).await;
    let e = h.send(Input::Tick);
    assert_eq!(restarts(&e), vec![(Trigger::ProbeFailed, 2)]);
}

#[tokio::test(start_paused = true)]
async fn dry_run_decides_and_records_but_waits_like_a_restart() {
    let mut h = Harness::healthy(spec()).await;
    let e = h.fail_probes(3);
    assert_eq!(restarts(&e).len(), 1);
    let e = h.send(Input::RestartFinished(RestartOutcome::Skipped));
    assert!(e.contains(&Effect::Recovery {
        trigger: Trigger::ProbeFailed,
        result: RecoveryResult::DryRun
    }));
    assert_eq!(h.sup.state(), State::BackingOff);
}

#[tokio::test(start_paused = true)]
async fn resumed_incident_completes_with_time_from_its_first_failure() {
    let first = Instant::now();
    advance(Duration::from_secs(4)).await;
    let resumed = OpenIncident {
        trigger: Trigger::Unhealthy,
        first_failure: first,
        detected: first,
        attempts: 1,
        restart_sent: None,
    };
    let mut s = spec();
    s.has_probe = false;
    s.has_docker_health = true;
    let mut sup = Supervisor::new(s, Some(resumed));
    sup.handle(
        Input::Running {
            since: Instant::now(),
        },
        Instant::now(),
    );
    let e = sup.handle(Input::Health(DockerHealth::Healthy), Instant::now());
    assert_eq!(recovered(&e), Some(Duration::from_secs(4)));
}

#[tokio::test(start_paused = true)]
async fn resumed_restart_events_are_not_taken_for_a_user_stop() {
    let now = Instant::now();
    let resumed = OpenIncident {
        trigger: Trigger::Unhealthy,
        first_failure: now,
        detected: now,
        attempts: 1,
        restart_sent: Some(now),
    };
    let mut sup = Supervisor::new(spec(), Some(resumed.clone()));
    // The previous run's restart finishes after this run started.
    let mut e = sup.handle(Input::ExternalKill, now);
    e.extend(sup.handle(
        Input::Died {
            oom: false,
            docker_restarts: true,
        },
        now,
    ));
    e.extend(sup.handle(Input::Stopped, now));
    assert_ne!(sup.state(), State::Stopped, "{e:?}");
    sup.handle(Input::Running { since: now }, now);
    let e = sup.handle(Input::ProbeOk, now);
    assert!(recovered(&e).is_some(), "{e:?}");

    // That restart never completed: the container stays down and the watchdog takes over.
    let mut sup = Supervisor::new(spec(), Some(resumed));
    sup.forget_resumed_restart();
    let e = sup.handle(
        Input::Died {
            oom: false,
            docker_restarts: false,
        },
        now,
    );
    assert_eq!(restarts(&e).len(), 1, "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stop_while_the_restart_waits_for_its_turn_wins() {
    let mut h = Harness::healthy(spec()).await;
    // Decided but not yet sent (the global bound on restarts in flight is full).
    let e = h
        .sup
        .handle(Input::ProbeFailed(ProbeFailure::Timeout), Instant::now());
    assert!(restarts(&e).is_empty());
    h.sup
        .handle(Input::ProbeFailed(ProbeFailure::Timeout), Instant::now());
    let e = h
        .sup
        .handle(Input::ProbeFailed(ProbeFailure::Timeout), Instant::now());
    assert_eq!(restarts(&e).len(), 1);
    // The user stops it meanwhile: these events are not the restart's.
    h.sup.handle(Input::ExternalKill, Instant::now());
    h.sup.handle(
        Input::Died {
            oom: false,
            docker_restarts: false,
        },
        Instant::now(),
    );
    assert_eq!(h.sup.state(), State::Stopped);
    // The executor finds it stopped and does not send the restart.
    h.sup.handle(
        Input::RestartFinished(RestartOutcome::Cancelled),
        Instant::now(),
    );
    assert_eq!(h.sup.state(), State::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_death_during_the_restart_answer_is_not_lost() {
    let mut s = spec();
    s.has_probe = false;
    let mut h = Harness::healthy(s).await;
    let e = h.send(Input::Died {
        oom: false,
        docker_restarts: false,
    });
    assert_eq!(restarts(&e).len(), 1);
    // Our start arrives, then it dies again before the API has answered.
    h.send(Input::Running {
        since: Instant::now(),
    });
    h.send(Input::Died {
        oom: false,
        docker_restarts: false,
    });
    advance(Duration::from_millis(50)).await;
    h.send(Input::RestartFinished(RestartOutcome::Done));
    assert_eq!(
        h.sup.state(),
        State::BackingOff,
        "the next restart is scheduled"
    );
    let until = h.sup.wake_at().expect("a timer");
    advance(until - Instant::now()).await;
    let e = h.send(Input::Tick);
    assert_eq!(restarts(&e).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_resets_after_a_stable_period_even_after_a_blip() {
    let mut s = spec();
    s.start_period = Duration::ZERO;
    let mut h = Harness::healthy(s).await;
    h.fail_probes(3);
    h.send(Input::RestartFinished(RestartOutcome::Done));
    h.send(Input::Running {
        since: Instant::now(),
    });
    h.send(Input::ProbeOk);
    // One failed probe, then fine again: the healthy period restarts from here.
    h.fail_probes(1);
    h.send(Input::ProbeOk);
    advance(Backoff::default().reset_after).await;
    let e = h.fail_probes(3);
    assert_eq!(
        restarts(&e).len(),
        1,
        "no backoff wait after a stable minute: {e:?}"
    );
}
