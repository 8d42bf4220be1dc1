//! The ladder (`selfheal.action`, `selfheal.recreate-after`, `selfheal.on-quarantine`):
//! restart, then recreate once restarts have not kept the container healthy for the stable
//! period, then quarantine (left running, or stopped); monitor-only actions. Each test fails
//! with its rule broken; `supervisor_props.rs` checks the same rules over random sequences.

use super::tests::{restarts as orders, secs};
use super::*;
use crate::backoff::Backoff;
use crate::policy::Ladder;
use tokio::time::advance;

/// A Docker HEALTHCHECK, a generous budget, backoff 1 s doubling, forgotten after 60 s
/// healthy; the ladder as given.
fn spec(ladder: Ladder) -> PolicySpec {
    PolicySpec {
        failures: 1,
        start_period: Duration::ZERO,
        stop_timeout: Some(5),
        container_stop_timeout: None,
        restart_max: 10,
        restart_window: secs(3600),
        backoff: Backoff::default(),
        restart_policy: RestartPolicy::No,
        has_probe: false,
        has_docker_health: true,
        swarm: None,
        ladder,
    }
}

fn running(at: Instant) -> Observation {
    running_with(at, Some(DockerHealth::Healthy))
}

/// A look at a container running since `at`, with what its HEALTHCHECK says.
fn running_with(at: Instant, health: Option<DockerHealth>) -> Observation {
    Observation::Snapshot(Snapshot {
        status: RunStatus::Running {
            started_at: at,
            paused: false,
        },
        health,
    })
}

/// A container watched since a minute into its run, healthy.
fn healthy(ladder: Ladder) -> Supervisor {
    let now = Instant::now();
    let mut sup = Supervisor::new(spec(ladder), None, now);
    sup.handle(running(now - secs(60)), now);
    assert_eq!(sup.state(), State::Healthy);
    sup
}

fn feed(sup: &mut Supervisor, obs: Observation) -> Vec<Effect> {
    sup.handle(obs, Instant::now())
}

/// Docker's `unhealthy`, and the order that follows once any backoff is over (the supervisor
/// woken when it asks, as the daemon does). `None`: nothing ordered.
async fn fault(sup: &mut Supervisor) -> Option<Order> {
    let mut e = feed(sup, Observation::Health(DockerHealth::Unhealthy));
    for _ in 0..3 {
        if let Some(o) = orders(&e).into_iter().next() {
            return Some(o);
        }
        let at = sup.wake_at()?;
        advance(at.saturating_duration_since(Instant::now())).await;
        e = feed(sup, Observation::Tick);
    }
    None
}

/// A healthy container watched since a minute into its run, with a budget of `restart_max`
/// and `on-quarantine` as given (restarts only).
fn with_budget(restart_max: u32, on_quarantine: OnQuarantine) -> Supervisor {
    let ladder = Ladder {
        on_quarantine,
        ..Ladder::RESTART_ONLY
    };
    let now = Instant::now();
    let mut sup = Supervisor::new(
        PolicySpec {
            restart_max,
            ..spec(ladder)
        },
        None,
        now,
    );
    sup.handle(running(now - secs(60)), now);
    sup
}

/// The executor sends a restart and Docker carries it out: a new run, healthy at once.
fn restart_done(sup: &mut Supervisor) {
    feed(sup, Observation::Turn { running: None });
    feed(sup, Observation::OrderEnded(OrderOutcome::Done));
    feed(sup, Observation::Started { at: Instant::now() });
    feed(sup, Observation::Health(DockerHealth::Healthy));
}

/// The executor sends a recreate; the replacement takes over and is healthy.
fn recreate_done(sup: &mut Supervisor, ladder: Ladder) -> (Supervisor, Vec<Effect>) {
    feed(sup, Observation::Turn { running: None });
    let e = feed(
        sup,
        Observation::OrderEnded(OrderOutcome::Replaced {
            new_id: "fresh".into(),
        }),
    );
    assert!(e.contains(&Effect::Unwatch), "{e:?}");
    let carry = e
        .into_iter()
        .find_map(|e| match e {
            Effect::Recreated { carry, .. } => Some(*carry),
            _ => None,
        })
        .expect("handed over");
    let now = Instant::now();
    let mut new = Supervisor::new(spec(ladder), None, now);
    assert_eq!(Supervisor::carried_incident(Some(&new)), Carried::TakenOver);
    let mut e = new.take_over(carry, now);
    e.extend(new.handle(running(now), now));
    (new, e)
}

fn closed(e: &[Effect]) -> Option<(Outcome, Vec<VerbKind>)> {
    e.iter().find_map(|e| match e {
        Effect::IncidentClosed {
            incident, outcome, ..
        } => Some((*outcome, incident.steps.iter().map(|a| a.verb).collect())),
        _ => None,
    })
}

fn verb(o: &Option<Order>) -> Option<VerbKind> {
    o.as_ref().map(|o| o.verb.kind())
}

/// The case: a fault in the writable layer survives restarts. Two restarts that do not
/// keep it healthy for the stable period, then a recreate; the fresh container is healthy and
/// closes the one incident, whose steps name each verb.
#[tokio::test(start_paused = true)]
async fn two_restarts_that_do_not_hold_are_followed_by_a_recreate() {
    let ladder = Ladder::default();
    let mut sup = healthy(ladder);
    let o = fault(&mut sup).await;
    assert_eq!(verb(&o), Some(VerbKind::Restart));
    feed(&mut sup, Observation::Turn { running: None });
    feed(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    feed(&mut sup, Observation::Started { at: Instant::now() });
    // The fault is in the layer: unhealthy again after the restart, same incident.
    advance(secs(3)).await;
    assert_eq!(verb(&fault(&mut sup).await), Some(VerbKind::Restart));
    feed(&mut sup, Observation::Turn { running: None });
    feed(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    feed(&mut sup, Observation::Started { at: Instant::now() });
    advance(secs(3)).await;
    let o = fault(&mut sup).await.expect("ordered");
    assert_eq!(
        o.verb,
        Verb::Recreate {
            network_parent: None
        }
    );
    assert_eq!(o.attempt, 3);
    let (mut new, e) = recreate_done(&mut sup, ladder);
    assert_eq!(
        closed(&e),
        Some((
            Outcome::Recovered,
            vec![VerbKind::Restart, VerbKind::Restart, VerbKind::Recreate]
        ))
    );
    assert_eq!(new.state(), State::Healthy);
    assert_eq!(new.restarts_in_window(Instant::now()), 3, "budget carried");
}

/// Restarts that did keep the container healthy for the stable period (`backoff.reset_after`)
/// are forgotten: a later fault starts the ladder over with a restart.
#[tokio::test(start_paused = true)]
async fn restarts_that_held_for_the_stable_period_do_not_escalate() {
    let mut sup = healthy(Ladder::default());
    for round in 0..4 {
        assert_eq!(
            verb(&fault(&mut sup).await),
            Some(VerbKind::Restart),
            "round {round}"
        );
        restart_done(&mut sup);
        advance(Backoff::default().reset_after).await;
        feed(&mut sup, Observation::Tick);
        assert_eq!(sup.recent_restarts(), 0);
    }
    // Without the stable period in between, the third is a recreate.
    assert_eq!(verb(&fault(&mut sup).await), Some(VerbKind::Restart));
    restart_done(&mut sup);
    advance(secs(5)).await;
    assert_eq!(verb(&fault(&mut sup).await), Some(VerbKind::Restart));
    restart_done(&mut sup);
    advance(secs(5)).await;
    assert_eq!(verb(&fault(&mut sup).await), Some(VerbKind::Recreate));
}

/// `recreate-after`: 0 recreates from the first fault, `never` only restarts; action
/// `recreate` always recreates.
#[tokio::test(start_paused = true)]
async fn recreate_after_and_action_recreate_choose_the_verb() {
    let cases = [
        (
            Ladder {
                recreate_after: Some(0),
                ..Ladder::default()
            },
            [VerbKind::Recreate; 4],
        ),
        (Ladder::RESTART_ONLY, [VerbKind::Restart; 4]),
        (
            Ladder {
                recreate_after: Some(3),
                ..Ladder::default()
            },
            [
                VerbKind::Restart,
                VerbKind::Restart,
                VerbKind::Restart,
                VerbKind::Recreate,
            ],
        ),
        (
            Ladder {
                action: Action::Recreate,
                recreate_after: None,
                ..Ladder::default()
            },
            [VerbKind::Recreate; 4],
        ),
    ];
    for (ladder, want) in cases {
        let mut sup = healthy(ladder);
        let mut got = Vec::new();
        for _ in 0..4 {
            let o = fault(&mut sup).await;
            got.push(verb(&o).expect("ordered"));
            match o.map(|o| o.verb) {
                Some(Verb::Recreate { .. }) => sup = recreate_done(&mut sup, ladder).0,
                _ => restart_done(&mut sup),
            }
            advance(secs(5)).await;
        }
        assert_eq!(got, want, "{ladder:?}");
    }
}

/// A dependent left behind by its parent's start is restarted whatever its count: its own
/// layer is not what failed.
#[tokio::test(start_paused = true)]
async fn a_dependency_restart_is_never_escalated() {
    let mut sup = healthy(Ladder {
        recreate_after: Some(0),
        ..Ladder::default()
    });
    for _ in 0..3 {
        advance(secs(1)).await;
        let at = Instant::now();
        advance(secs(1)).await;
        let e = feed(
            &mut sup,
            Observation::ParentStarted {
                at,
                recreated: None,
            },
        );
        let mut o = orders(&e);
        if o.is_empty() {
            let wake = sup.wake_at().expect("backoff");
            advance(wake - Instant::now()).await;
            o = orders(&feed(&mut sup, Observation::Tick));
        }
        assert_eq!(o[0].verb, Verb::Restart);
        assert_eq!(o[0].trigger, Trigger::Dependency);
        restart_done(&mut sup);
    }
}

/// `notify` and `none`: the incident opens (recorded as observed, nothing done) and closes
/// when the container is healthy by itself; no order ever, so no budget and no quarantine.
#[tokio::test(start_paused = true)]
async fn monitor_only_actions_record_and_never_order() {
    for action in [Action::Notify, Action::None] {
        let mut sup = healthy(Ladder {
            action,
            recreate_after: None,
            ..Ladder::default()
        });
        for _ in 0..20 {
            let e = feed(&mut sup, Observation::Health(DockerHealth::Unhealthy));
            assert!(orders(&e).is_empty(), "{action}: {e:?}");
            assert!(e.contains(&Effect::Recovery {
                trigger: Trigger::Unhealthy,
                result: RecoveryResult::Observed,
                verb: VerbKind::None,
            }));
            assert_eq!(sup.state(), State::Unhealthy);
            assert_eq!(sup.wake_at(), None, "nothing pending");
            advance(secs(30)).await;
            assert!(orders(&feed(&mut sup, Observation::Tick)).is_empty());
            let e = feed(&mut sup, Observation::Health(DockerHealth::Healthy));
            assert_eq!(closed(&e), Some((Outcome::Recovered, vec![])));
        }
        assert_eq!(sup.restarts_in_window(Instant::now()), 0);
    }
}

/// `on-quarantine=stop`: past the budget the running container is stopped (no budget spent
/// on it), shown quarantined while stopped, and quarantined again when a user starts it; once
/// healthy it is released. `leave` leaves it running.
#[tokio::test(start_paused = true)]
async fn quarantine_stops_the_container_when_asked() {
    let mut sup = with_budget(1, OnQuarantine::Stop);
    fault(&mut sup).await;
    restart_done(&mut sup);
    let e = feed(&mut sup, Observation::Health(DockerHealth::Unhealthy));
    assert!(e.iter().any(|e| matches!(e, Effect::Quarantined { .. })));
    // A new incident (the restart had healed the first): nothing ordered in it.
    assert_eq!(closed(&e), Some((Outcome::Quarantined, vec![])));
    let o = orders(&e);
    assert_eq!(o.len(), 1, "{e:?}");
    assert_eq!(o[0].verb, Verb::Stop);
    assert_eq!(sup.state(), State::Quarantined);
    let e = feed(&mut sup, Observation::Turn { running: None });
    assert!(e.contains(&Effect::Turn(Verdict::Send)));
    // The stop's own events, then Docker's answer.
    feed(
        &mut sup,
        Observation::Killed {
            signal: Some(Signal::Term),
        },
    );
    feed(
        &mut sup,
        Observation::Died(Exit {
            code: Some(143),
            oom_killed: false,
            restart_count: 0,
        }),
    );
    feed(&mut sup, Observation::Stopped);
    let e = feed(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    assert!(orders(&e).is_empty());
    assert_eq!(sup.state(), State::Quarantined);
    assert_eq!(
        sup.restarts_in_window(Instant::now()),
        1,
        "the stop spent nothing"
    );
    assert_eq!(sup.wake_at(), None);
    // A user starts it: still quarantined while it fails, never restarted.
    advance(secs(30)).await;
    feed(&mut sup, Observation::Started { at: Instant::now() });
    let e = feed(&mut sup, Observation::Health(DockerHealth::Unhealthy));
    assert!(orders(&e).is_empty(), "{e:?}");
    assert_eq!(sup.state(), State::Quarantined);
    let e = feed(&mut sup, Observation::Health(DockerHealth::Healthy));
    assert!(e.contains(&Effect::Released));
    assert_eq!(sup.state(), State::Healthy);

    // `leave`: no stop.
    let mut sup = with_budget(1, OnQuarantine::Leave);
    fault(&mut sup).await;
    restart_done(&mut sup);
    let e = feed(&mut sup, Observation::Health(DockerHealth::Unhealthy));
    assert!(e.iter().any(|e| matches!(e, Effect::Quarantined { .. })));
    assert!(orders(&e).is_empty());
}

/// A quarantine stop Docker refuses, or one a user's pause overtook, leaves the container
/// quarantined where it is: nothing restarts it.
#[tokio::test(start_paused = true)]
async fn a_quarantine_stop_that_does_not_happen_keeps_the_quarantine() {
    let began = Instant::now() - secs(60);
    let mut sup = with_budget(0, OnQuarantine::Stop);
    let e = feed(&mut sup, Observation::Health(DockerHealth::Unhealthy));
    assert_eq!(orders(&e)[0].verb, Verb::Stop);
    feed(&mut sup, Observation::Turn { running: None });
    let e = feed(
        &mut sup,
        Observation::OrderEnded(OrderOutcome::Failed("no".into())),
    );
    assert!(e.contains(&Effect::OrderFailed {
        why: "quarantined, not stopped: no".into()
    }));
    assert!(e.contains(&Effect::Inspect));
    assert_eq!(sup.state(), State::Quarantined);
    // Looked at: the same run, still failing: quarantined, nothing ordered.
    let e = feed(&mut sup, running_with(began, Some(DockerHealth::Unhealthy)));
    assert!(orders(&e).is_empty(), "{e:?}");
    assert_eq!(sup.state(), State::Quarantined);
    advance(secs(600)).await;
    assert!(orders(&feed(&mut sup, Observation::Tick)).is_empty());
}

/// The replacement may have seen its own failure before the hand-over reaches it: its own
/// incident stays, the carried one is closed `abandoned` (as is one whose replacement is not
/// watched); budget and backoff are merged either way.
#[tokio::test(start_paused = true)]
async fn a_replacement_that_failed_first_keeps_its_own_incident() {
    let ladder = Ladder {
        recreate_after: Some(0),
        ..Ladder::default()
    };
    let mut sup = healthy(ladder);
    fault(&mut sup).await;
    feed(&mut sup, Observation::Turn { running: None });
    let e = feed(
        &mut sup,
        Observation::OrderEnded(OrderOutcome::Replaced {
            new_id: "fresh".into(),
        }),
    );
    let carry = e
        .into_iter()
        .find_map(|e| match e {
            Effect::Recreated { carry, .. } => Some(*carry),
            _ => None,
        })
        .unwrap();
    let now = Instant::now();
    let mut new = Supervisor::new(spec(ladder), None, now);
    new.handle(running(now), now);
    let e = new.handle(Observation::Health(DockerHealth::Unhealthy), now);
    let own = e
        .iter()
        .find_map(|e| match e {
            Effect::IncidentOpened(i) => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    let closed = |why| Carried::Closed {
        outcome: Outcome::Abandoned,
        why,
    };
    assert_eq!(
        Supervisor::carried_incident(Some(&new)),
        closed(Unadopted::OwnIncidentFirst)
    );
    assert_eq!(
        Supervisor::carried_incident(None),
        closed(Unadopted::NotWatched)
    );
    new.take_over(carry, now);
    assert_eq!(new.incident().map(|i| i.detected), Some(own.detected));
    assert_eq!(new.recent_restarts(), 1);
}

/// A recreate the executor refuses (the configuration cannot be copied safely) spends nothing
/// and is not asked for again: the ladder restarts instead, at once, and keeps restarting.
#[tokio::test(start_paused = true)]
async fn a_refused_recreate_falls_back_to_restarts() {
    let ladder = Ladder {
        action: Action::Recreate,
        recreate_after: None,
        ..Ladder::default()
    };
    let mut sup = healthy(ladder);
    assert_eq!(verb(&fault(&mut sup).await), Some(VerbKind::Recreate));
    feed(&mut sup, Observation::Turn { running: None });
    let e = feed(
        &mut sup,
        Observation::OrderEnded(OrderOutcome::Refused("not recreated: --rm".into())),
    );
    assert!(e.contains(&Effect::Inspect), "{e:?}");
    assert_eq!(sup.restarts_in_window(Instant::now()), 0);
    // Looked at: the same run, still unhealthy: a restart now.
    let began = Instant::now() - secs(60);
    let e = feed(&mut sup, running_with(began, Some(DockerHealth::Unhealthy)));
    let o = orders(&e);
    assert_eq!(o.len(), 1, "{e:?}");
    assert_eq!(o[0].verb, Verb::Restart);
    restart_done(&mut sup);
    advance(secs(5)).await;
    assert_eq!(verb(&fault(&mut sup).await), Some(VerbKind::Restart));
}

/// A user's start that comes in while quarantine's stop is under way stands: when Docker
/// answers the stop, the run goes on, quarantined, not taken for stopped.
#[tokio::test(start_paused = true)]
async fn a_start_during_quarantines_stop_stands() {
    let mut sup = with_budget(0, OnQuarantine::Stop);
    let e = feed(&mut sup, Observation::Health(DockerHealth::Unhealthy));
    assert_eq!(orders(&e)[0].verb, Verb::Stop);
    feed(&mut sup, Observation::Turn { running: None });
    advance(secs(2)).await;
    feed(&mut sup, Observation::Started { at: Instant::now() });
    feed(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    assert!(
        matches!(sup.phase(), Phase::Running { .. }),
        "{:?}",
        sup.phase()
    );
    assert_eq!(sup.state(), State::Quarantined);
    let e = feed(&mut sup, Observation::Health(DockerHealth::Unhealthy));
    assert!(orders(&e).is_empty(), "{e:?}");
}

/// A restart's `start` proves Docker carried it out, and may close the incident (a container
/// without checks is healthy once it runs) before Docker's answer arrives: the restart is
/// counted then, in the incident it healed, and not again at the answer.
#[tokio::test(start_paused = true)]
async fn a_restart_is_counted_in_the_incident_its_start_closes() {
    let mut sup = Supervisor::new(
        PolicySpec {
            has_docker_health: false,
            ..spec(Ladder::RESTART_ONLY)
        },
        None,
        Instant::now(),
    );
    feed(&mut sup, running_with(Instant::now() - secs(60), None));
    let died = Exit {
        code: Some(2),
        oom_killed: false,
        restart_count: 0,
    };
    let e = feed(&mut sup, Observation::Died(died));
    assert_eq!(orders(&e).len(), 1);
    feed(&mut sup, Observation::Turn { running: None });
    let e = feed(&mut sup, Observation::Started { at: Instant::now() });
    assert_eq!(
        closed(&e),
        Some((Outcome::Recovered, vec![VerbKind::Restart])),
        "{e:?}"
    );
    feed(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    assert_eq!(sup.restarts_in_window(Instant::now()), 1, "counted once");
    assert_eq!(sup.recent_restarts(), 1);
}
