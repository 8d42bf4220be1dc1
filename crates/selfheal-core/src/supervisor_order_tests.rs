//! The core's side of an order: which verb it carries, how the executor's turn is judged, what
//! each outcome spends, and the decisions that used to live in the daemon's shell (which kill
//! signals are a user's stop, a death without an exit code, the backoff reset).

use super::tests::{exit, restarts as orders, secs};
use super::*;
use crate::backoff::Backoff;
use crate::swarm::RestartCondition;
use tokio::time::advance;

fn spec() -> PolicySpec {
    PolicySpec {
        failures: 1,
        start_period: Duration::ZERO,
        stop_timeout: Some(5),
        container_stop_timeout: None,
        restart_max: 3,
        restart_window: secs(600),
        backoff: Backoff::default(),
        restart_policy: RestartPolicy::No,
        has_probe: false,
        has_docker_health: true,
        swarm: None,
        ladder: crate::policy::Ladder::RESTART_ONLY,
    }
}

/// Running since a minute ago and healthy.
fn healthy(spec: PolicySpec) -> Supervisor {
    let now = Instant::now();
    let mut sup = Supervisor::new(spec, None, now);
    sup.handle(
        Observation::Snapshot(Snapshot {
            status: RunStatus::Running {
                started_at: now - secs(60),
                paused: false,
            },
            health: Some(DockerHealth::Healthy),
        }),
        now,
    );
    assert_eq!(sup.state(), State::Healthy);
    sup
}

fn feed(sup: &mut Supervisor, obs: Observation) -> Vec<Effect> {
    sup.handle(obs, Instant::now())
}

fn unhealthy(sup: &mut Supervisor) -> Vec<Effect> {
    feed(sup, Observation::Health(DockerHealth::Unhealthy))
}

fn failed_results(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Recovery {
                    result: RecoveryResult::Failed,
                    ..
                }
            )
        })
        .count()
}

/// A dependent left in the namespace of a parent that was recreated, with what the parent's
/// new container means for it.
fn left_behind(recreated: ParentRecreated) -> (Supervisor, Vec<Effect>) {
    let mut sup = healthy(spec());
    let at = Instant::now() - secs(1);
    let e = feed(
        &mut sup,
        Observation::ParentStarted {
            at,
            recreated: Some(recreated),
        },
    );
    (sup, e)
}

#[tokio::test(start_paused = true)]
async fn a_refused_recreate_spends_no_budget_and_is_not_retried_for_that_run() {
    let (mut sup, e) = left_behind(ParentRecreated::Follow {
        new_parent: "p2".into(),
    });
    let o = orders(&e);
    assert_eq!(
        o[0].verb,
        Verb::Recreate {
            network_parent: Some("p2".into())
        }
    );
    let e = feed(
        &mut sup,
        Observation::Turn {
            running: Some(true),
        },
    );
    assert!(e.contains(&Effect::Turn(Verdict::Send)));
    let e = feed(
        &mut sup,
        Observation::OrderEnded(OrderOutcome::Refused("anonymous volume".into())),
    );
    assert_eq!(failed_results(&e), 1, "told as a failed recovery: {e:?}");
    assert!(e.contains(&Effect::OrderFailed {
        why: "anonymous volume".into()
    }));
    assert_eq!(sup.restarts_in_window(Instant::now()), 0, "no budget spent");
    assert_eq!(sup.incident().map(|i| i.attempts), Some(0));
    assert!(e.contains(&Effect::Inspect));
    // Looked at: the same run goes on. Nothing more is ordered, and nothing told twice.
    advance(secs(30)).await;
    let started_at = sup.incident().unwrap().run_began.unwrap();
    let e = feed(
        &mut sup,
        Observation::Snapshot(Snapshot {
            status: RunStatus::Running {
                started_at,
                paused: false,
            },
            health: Some(DockerHealth::Healthy),
        }),
    );
    assert!(orders(&e).is_empty(), "{e:?}");
    assert_eq!(failed_results(&e), 0);
    assert_eq!(sup.state(), State::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn a_dependent_that_cannot_follow_its_parent_is_reported_once_and_left_alone() {
    let (mut sup, e) = left_behind(ParentRecreated::CannotFollow {
        why: "its parent's new container is not known".into(),
    });
    assert!(
        orders(&e).is_empty(),
        "a restart would fail on the gone parent"
    );
    assert_eq!(failed_results(&e), 1);
    assert!(e.iter().any(|e| matches!(e, Effect::OrderFailed { why }
        if why == "not recreated: its parent's new container is not known")));
    assert_eq!(sup.restarts_in_window(Instant::now()), 0);
    advance(secs(120)).await;
    let e = feed(&mut sup, Observation::Tick);
    assert!(orders(&e).is_empty() && failed_results(&e) == 0, "{e:?}");
    // Started again (by a user): a new run, healthy, the incident recovered.
    let e = feed(&mut sup, Observation::Started { at: Instant::now() });
    assert!(orders(&e).is_empty());
    let e = feed(&mut sup, Observation::Health(DockerHealth::Healthy));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentClosed {
            outcome: Outcome::Recovered,
            ..
        }
    )));
}

/// A user's stop between the decision and the executor's turn wins, whatever the verb: the
/// turn is answered `Drop` and nothing is spent.
#[tokio::test(start_paused = true)]
async fn a_users_stop_before_the_turn_drops_a_restart_and_a_recreate_alike() {
    let (mut recreate, e) = left_behind(ParentRecreated::Follow {
        new_parent: "p2".into(),
    });
    assert!(matches!(orders(&e)[0].verb, Verb::Recreate { .. }));
    let mut restart = healthy(spec());
    assert_eq!(orders(&unhealthy(&mut restart))[0].verb, Verb::Restart);
    for sup in [&mut recreate, &mut restart] {
        feed(
            sup,
            Observation::Killed {
                signal: Some(Signal::Term),
            },
        );
        let e = feed(
            sup,
            Observation::Turn {
                running: Some(true),
            },
        );
        assert!(e.contains(&Effect::Turn(Verdict::Drop)), "{e:?}");
        assert!(!sup.restart_in_flight());
        let e = feed(sup, Observation::Died(exit(143)));
        assert!(orders(&e).is_empty());
        assert_eq!(sup.state(), State::Stopped);
        assert_eq!(sup.restarts_in_window(Instant::now()), 0);
    }
    // Found stopped at the turn without its events seen yet: dropped, then looked at.
    let mut sup = healthy(spec());
    unhealthy(&mut sup);
    let e = feed(
        &mut sup,
        Observation::Turn {
            running: Some(false),
        },
    );
    assert!(e.contains(&Effect::Turn(Verdict::Drop)));
    assert!(e.contains(&Effect::Inspect));
    // A container that was down when the order was decided needs no running one.
    let mut sup = healthy(spec());
    let e = feed(&mut sup, Observation::Died(exit(1)));
    assert_eq!(orders(&e).len(), 1);
    let e = feed(
        &mut sup,
        Observation::Turn {
            running: Some(false),
        },
    );
    assert!(e.contains(&Effect::Turn(Verdict::Send)));
}

/// Only signals that end a process announce a user's stop: TERM does; HUP (a reload) and STOP
/// (a freeze, which the watchdog must heal) do not.
#[tokio::test(start_paused = true)]
async fn kill_signals_the_core_reads_as_a_stop_and_those_it_does_not() {
    let killed = |signal: Option<Signal>| {
        let mut sup = healthy(spec());
        feed(&mut sup, Observation::Killed { signal });
        let e = feed(&mut sup, Observation::Died(exit(137)));
        (sup, e)
    };
    for signal in [
        Some(Signal::Term),
        Some(Signal::Kill),
        Some(Signal::Int),
        None,
    ] {
        let (sup, e) = killed(signal);
        assert!(orders(&e).is_empty(), "{signal:?}");
        assert_eq!(sup.state(), State::Stopped, "{signal:?}");
    }
    for signal in [Signal::Hup, Signal::Stop, Signal::Usr1] {
        let (sup, e) = killed(Some(signal));
        assert_eq!(orders(&e).len(), 1, "{signal:?}: the death is a crash");
        assert_eq!(orders(&e)[0].trigger, Trigger::Died);
        assert_eq!(sup.state(), State::Restarting);
    }
    // SIGSTOP freezes it: Docker's health check then fails, and the watchdog heals it.
    let mut sup = healthy(spec());
    feed(
        &mut sup,
        Observation::Killed {
            signal: Some(Signal::Stop),
        },
    );
    assert_eq!(orders(&unhealthy(&mut sup)).len(), 1);
    assert_eq!(Signal::parse("19"), Signal::Stop);
    assert_eq!(Signal::parse("SIGTERM"), Signal::Term);
    assert_eq!(Signal::parse("hup"), Signal::Hup);
    assert_eq!(Signal::parse("64"), Signal::Other(64));
    assert_eq!(Signal::parse("SIGWHAT"), Signal::Unrecognized);
    assert!(!stops_process(Signal::Unrecognized));
}

fn died_unknown() -> Observation {
    Observation::Died(Exit {
        code: None,
        oom_killed: false,
        restart_count: 0,
    })
}

/// A `die` without an exit code: a death nobody asked for is a crash whatever its code; only
/// Docker's `on-failure` depends on the code, so the core looks before it acts.
#[tokio::test(start_paused = true)]
async fn a_death_without_an_exit_code_is_a_crash_and_on_failure_is_looked_at() {
    let mut sup = healthy(spec());
    let e = feed(&mut sup, died_unknown());
    assert_eq!(orders(&e).len(), 1);
    assert_eq!(sup.incident().map(|i| i.trigger), Some(Trigger::Died));

    let on_failure = PolicySpec {
        restart_policy: RestartPolicy::OnFailure { max_retries: 0 },
        ..spec()
    };
    let mut sup = healthy(on_failure.clone());
    let e = feed(&mut sup, died_unknown());
    assert!(orders(&e).is_empty(), "Docker may bring it back");
    assert!(e.contains(&Effect::Inspect));
    // It exited 0: Docker's on-failure leaves it; the watchdog heals it.
    let e = feed(
        &mut sup,
        Observation::Snapshot(Snapshot {
            status: RunStatus::Exited { exit: exit(0) },
            health: None,
        }),
    );
    assert_eq!(orders(&e).len(), 1, "{e:?}");
    // It failed: Docker's policy is restarting it; recorded, not repeated.
    let mut sup = healthy(on_failure);
    feed(&mut sup, died_unknown());
    let e = feed(
        &mut sup,
        Observation::Snapshot(Snapshot {
            status: RunStatus::Restarting { exit: exit(1) },
            health: None,
        }),
    );
    assert!(orders(&e).is_empty());
    assert_eq!(sup.state(), State::Exited);

    // A Swarm task's end without a code is not taken as a crash: no incident is opened.
    let mut sup = healthy(PolicySpec {
        swarm: Some(RestartCondition::Any),
        ladder: crate::policy::Ladder::RESTART_ONLY,
        ..spec()
    });
    let e = feed(&mut sup, died_unknown());
    assert!(!e.iter().any(|e| matches!(e, Effect::IncidentOpened(_))));
    assert!(e
        .iter()
        .any(|e| matches!(e, Effect::HandOver(c) if c.incident.is_none())));
}

/// kube-runtime's reset timer: `reset_after` healthy without a break forgets the restarts
/// counted for backoff, at that moment (a wake-up is asked for it), and not before.
#[tokio::test(start_paused = true)]
async fn the_backoff_is_reset_after_a_healthy_stretch_as_its_own_transition() {
    let mut sup = healthy(spec());
    unhealthy(&mut sup);
    feed(&mut sup, Observation::Turn { running: None });
    feed(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    feed(&mut sup, Observation::Started { at: Instant::now() });
    assert_eq!(sup.recent_restarts(), 1);
    assert_eq!(sup.healthy_since(), None);
    advance(secs(2)).await;
    let e = feed(&mut sup, Observation::Health(DockerHealth::Healthy));
    let since = Instant::now();
    assert_eq!(sup.healthy_since(), Some(since));
    assert!(!e.contains(&Effect::BackoffReset));
    let reset_at = since + Backoff::default().reset_after;
    assert_eq!(sup.wake_at(), Some(reset_at));
    advance(Backoff::default().reset_after - secs(1)).await;
    assert!(!feed(&mut sup, Observation::Tick).contains(&Effect::BackoffReset));
    assert_eq!(sup.recent_restarts(), 1);
    advance(secs(1)).await;
    assert!(feed(&mut sup, Observation::Tick).contains(&Effect::BackoffReset));
    assert_eq!(sup.recent_restarts(), 0);
    assert_eq!(sup.wake_at(), None, "nothing left to forget");
    assert_eq!(sup.healthy_since(), Some(since), "still healthy since then");
    // A break before the stretch is over keeps the count.
    unhealthy(&mut sup);
    feed(&mut sup, Observation::Turn { running: None });
    feed(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    feed(&mut sup, Observation::Started { at: Instant::now() });
    feed(&mut sup, Observation::Health(DockerHealth::Healthy));
    advance(secs(30)).await;
    unhealthy(&mut sup);
    assert_eq!(sup.healthy_since(), None);
    advance(secs(60)).await;
    feed(&mut sup, Observation::Tick);
    assert_eq!(sup.recent_restarts(), 1);
}

/// A recreate removes the old container as its last step: a `destroy` before the executor's
/// report waits for it, and the report hands the open incident to the replacement.
#[tokio::test(start_paused = true)]
async fn a_destroy_during_a_recreate_waits_for_the_executors_report() {
    let (mut sup, _) = left_behind(ParentRecreated::Follow {
        new_parent: "p2".into(),
    });
    feed(
        &mut sup,
        Observation::Turn {
            running: Some(true),
        },
    );
    let e = feed(&mut sup, Observation::Removed);
    assert!(!e.contains(&Effect::Unwatch), "{e:?}");
    assert!(sup.incident().is_some());
    let e = feed(
        &mut sup,
        Observation::OrderEnded(OrderOutcome::Replaced {
            new_id: "c2".into(),
        }),
    );
    assert!(e.contains(&Effect::Unwatch));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Recreated { new_id, carry } if new_id == "c2" && carry.incident.is_some()
    )));
    assert!(!e.iter().any(|e| matches!(e, Effect::IncidentClosed { .. })));
    // A plain restart's `destroy` (a user removed it) ends it at once.
    let mut sup = healthy(spec());
    unhealthy(&mut sup);
    feed(&mut sup, Observation::Turn { running: None });
    let e = feed(&mut sup, Observation::Removed);
    assert!(e.contains(&Effect::Unwatch));
    // The executor's 404: gone.
    let mut sup = healthy(spec());
    unhealthy(&mut sup);
    feed(&mut sup, Observation::Turn { running: None });
    let e = feed(&mut sup, Observation::OrderEnded(OrderOutcome::Gone));
    assert!(e.contains(&Effect::Unwatch));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentClosed {
            outcome: Outcome::Abandoned,
            ..
        }
    )));
}

/// A restart is dated when it was sent, even when Docker answers after the phase moved on: its
/// events did not come in time, a look found the old run still going, and then Docker's answer
/// came. This is why the order in flight keeps its own send time next to the phase's.
#[tokio::test(start_paused = true)]
async fn a_restart_answered_after_a_look_is_dated_when_it_was_sent() {
    let mut sup = healthy(spec());
    let began = Instant::now() - secs(60);
    unhealthy(&mut sup);
    let sent = Instant::now();
    let e = feed(&mut sup, Observation::Turn { running: None });
    assert!(e.contains(&Effect::Turn(Verdict::Send)));
    // Past the wait for its events (stop timeout + 60 s): looked at, the old run goes on.
    advance(secs(5) + RESTART_EVENTS_WITHIN + secs(1)).await;
    let e = feed(&mut sup, Observation::Tick);
    assert!(e.contains(&Effect::Inspect), "{e:?}");
    feed(
        &mut sup,
        Observation::Snapshot(Snapshot {
            status: RunStatus::Running {
                started_at: began,
                paused: false,
            },
            health: None,
        }),
    );
    assert!(
        matches!(sup.phase(), Phase::Running { .. }),
        "{:?}",
        sup.phase()
    );
    advance(secs(10)).await;
    feed(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    let steps = &sup.incident().expect("still open").steps;
    assert_eq!(steps.iter().map(|s| s.at).collect::<Vec<_>>(), [sent]);
}
