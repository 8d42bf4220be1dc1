//! A `kill` that names no signal (Podman 4.3.1 names none, whatever was sent), as timed
//! sequences: the core tells a user's stop from a freeze or a reload by what follows. It is a
//! stop only if the process dies within `USER_STOP_WITHIN` and before it starts again;
//! otherwise nothing changes (a frozen container is healed by its probe, at once).

use super::tests::{exit, restarts, secs};
use super::*;
use crate::policy::ProbeFailure;
use tokio::time::advance;

/// Checked by the watchdog's own probe (the frozen httpd of `tests/podman/run.sh`).
fn probed() -> Supervisor {
    let spec = PolicySpec {
        failures: 1,
        start_period: Duration::ZERO,
        restart_max: 5,
        ..super::tests::spec()
    };
    let now = Instant::now();
    let mut sup = Supervisor::new(spec, None, now);
    sup.handle(Observation::Started { at: now }, now);
    sup.handle(Observation::Probe(ProbeOutcome::Passed), now);
    assert_eq!(sup.state(), State::Healthy);
    sup
}

fn at_now(sup: &mut Supervisor, obs: Observation) -> Vec<Effect> {
    sup.handle(obs, Instant::now())
}

fn unstated_kill(sup: &mut Supervisor) -> Vec<Effect> {
    at_now(sup, Observation::Killed { signal: None })
}

fn probe_fails(sup: &mut Supervisor) -> Vec<Effect> {
    at_now(
        sup,
        Observation::Probe(ProbeOutcome::Failed(ProbeFailure::Timeout)),
    )
}

/// `podman kill`: the kill, then the death at once. A stop: left alone, and an incident open
/// meanwhile is abandoned.
#[tokio::test(start_paused = true)]
async fn an_unstated_kill_followed_by_the_death_is_a_users_stop() {
    let mut sup = probed();
    assert!(unstated_kill(&mut sup).is_empty());
    let e = at_now(&mut sup, Observation::Died(exit(137)));
    assert!(restarts(&e).is_empty(), "{e:?}");
    assert_eq!(sup.state(), State::Stopped);
    assert!(matches!(sup.phase(), Phase::Stopped));
    assert_eq!(sup.wake_at(), None);

    // With an incident open (its restart not yet sent): abandoned, not restarted.
    let mut sup = probed();
    probe_fails(&mut sup);
    assert_eq!(sup.state(), State::Restarting);
    unstated_kill(&mut sup);
    let e = at_now(&mut sup, Observation::Died(exit(143)));
    let abandoned = |e: &Effect| {
        matches!(
            e,
            Effect::IncidentClosed {
                outcome: Outcome::Abandoned,
                ..
            }
        )
    };
    assert!(e.iter().any(abandoned), "{e:?}");
    assert_eq!(sup.state(), State::Stopped);
}

/// `podman kill --signal STOP`: nothing dies. The kill changes nothing (no stop awaited, no
/// wake-up asked), and the frozen process's failing probe restarts it at once; the restart's
/// start is a new run, after which a death is a crash again.
#[tokio::test(start_paused = true)]
async fn an_unstated_kill_without_a_death_is_no_stop_and_a_frozen_container_is_healed() {
    let mut sup = probed();
    unstated_kill(&mut sup);
    assert_eq!(sup.state(), State::Healthy);
    assert!(matches!(sup.phase(), Phase::Running { .. }));
    assert_eq!(sup.wake_at(), None, "no stop awaited");
    advance(secs(3)).await;
    let e = probe_fails(&mut sup);
    assert_eq!(restarts(&e).len(), 1, "{e:?}");
    let e = at_now(
        &mut sup,
        Observation::Turn {
            running: Some(true),
        },
    );
    assert!(e.contains(&Effect::Turn(Verdict::Send)), "{e:?}");
    // The restart's own events, then its start: a new run.
    at_now(&mut sup, Observation::Killed { signal: None });
    at_now(&mut sup, Observation::Died(exit(137)));
    advance(secs(1)).await;
    at_now(&mut sup, Observation::Started { at: Instant::now() });
    at_now(&mut sup, Observation::OrderEnded(OrderOutcome::Done));
    at_now(&mut sup, Observation::Probe(ProbeOutcome::Passed));
    assert_eq!(sup.state(), State::Healthy);
    // A freeze's kill, a restart's start, then a crash well inside the window: a crash.
    unstated_kill(&mut sup);
    advance(secs(3)).await;
    sup.handle(
        Observation::Started {
            at: Instant::now() - Duration::from_millis(500),
        },
        Instant::now(),
    );
    advance(secs(5)).await;
    let e = at_now(&mut sup, Observation::Died(exit(137)));
    assert_eq!(restarts(&e).len(), 1, "the new run crashed: {e:?}");
    assert_eq!(restarts(&e)[0].trigger, Trigger::Died);
}

/// The window: a death less than `USER_STOP_WITHIN` after the kill is the kill's doing (a
/// process that ignored SIGTERM until Podman's stop timeout, or a slow shutdown); from then
/// on it is the process's own, a crash. One kill explains one death.
#[tokio::test(start_paused = true)]
async fn only_a_death_within_the_window_is_the_unstated_kills_doing() {
    let just_inside = USER_STOP_WITHIN - Duration::from_millis(1);
    let mut sup = probed();
    unstated_kill(&mut sup);
    advance(just_inside).await;
    assert_eq!(sup.state(), State::Healthy, "still running meanwhile");
    let e = at_now(&mut sup, Observation::Died(exit(0)));
    assert!(restarts(&e).is_empty(), "{e:?}");
    assert_eq!(sup.state(), State::Stopped);

    let mut sup = probed();
    unstated_kill(&mut sup);
    advance(USER_STOP_WITHIN).await;
    let e = at_now(&mut sup, Observation::Died(exit(0)));
    assert_eq!(restarts(&e).len(), 1, "at the window's end, a crash: {e:?}");

    // A later kill restarts the window.
    let mut sup = probed();
    unstated_kill(&mut sup);
    advance(secs(100)).await;
    unstated_kill(&mut sup);
    advance(secs(100)).await;
    let e = at_now(&mut sup, Observation::Died(exit(137)));
    assert!(restarts(&e).is_empty(), "{e:?}");
    assert_eq!(sup.state(), State::Stopped);

    // The death during the watchdog's own restart is the restart's, and uses the kill up.
    let mut sup = probed();
    unstated_kill(&mut sup);
    probe_fails(&mut sup);
    at_now(
        &mut sup,
        Observation::Turn {
            running: Some(true),
        },
    );
    at_now(&mut sup, Observation::Died(exit(137)));
    assert_eq!(sup.unstated_kill, None, "one kill explains one death");
}

/// A kill that names no signal while a restart waits for the executor's turn does not
/// overtake it (a freeze is no user's stop): the order is sent. Only its death would.
#[tokio::test(start_paused = true)]
async fn an_unstated_kill_does_not_drop_an_order_but_its_death_does() {
    let mut sup = probed();
    probe_fails(&mut sup);
    unstated_kill(&mut sup);
    let e = at_now(
        &mut sup,
        Observation::Turn {
            running: Some(true),
        },
    );
    assert!(e.contains(&Effect::Turn(Verdict::Send)), "{e:?}");

    let mut sup = probed();
    probe_fails(&mut sup);
    unstated_kill(&mut sup);
    at_now(&mut sup, Observation::Died(exit(137)));
    let e = at_now(
        &mut sup,
        Observation::Turn {
            running: Some(false),
        },
    );
    assert!(e.contains(&Effect::Turn(Verdict::Drop)), "{e:?}");
    assert_eq!(sup.state(), State::Stopped);
    assert_eq!(sup.restarts_in_window(Instant::now()), 0);
}

/// A Swarm task's end is the task's end, whoever caused it, with or without a signal named.
#[tokio::test(start_paused = true)]
async fn an_unstated_kill_is_nothing_to_a_swarm_task() {
    let mut sup = probed();
    sup.spec.swarm = Some(crate::swarm::RestartCondition::Any);
    unstated_kill(&mut sup);
    assert_eq!(sup.unstated_kill, None);
}
