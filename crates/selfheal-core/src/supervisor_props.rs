//! Property test of the healing core: random timed sequences of what a user, Docker and the
//! executor do to one container ([`Step`]), turned into the observations the daemon would feed,
//! given to the supervisor and, independently, to a reference model ([`model::Model`]) that
//! computes from the stated rules what must follow. The spec varies too: with or without the
//! watchdog's probe, 1 to 3 failures, a start period or none, a Docker HEALTHCHECK or none,
//! Docker's restart policies, budgets, backoffs and ladders (every action, `recreate-after`
//! never or 0 to 2, `on-quarantine` leave or stop).
//!
//! The world is truthful (what Docker reports is what happened, in Docker's order) so that
//! the model can be exact; lost events are covered by resyncs after a death nobody reported.

use crate::backoff::Backoff;
use crate::policy::{Action, Ladder, Observation, OnQuarantine, PolicySpec};
use crate::restart_policy::RestartPolicy;
use proptest::prelude::*;
use std::time::Duration;

#[path = "supervisor_props/model.rs"]
mod model;
#[path = "supervisor_props/world.rs"]
mod world;

use world::Sim;

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
    /// The process dies by itself; `named`: the `die` event names the exit code.
    Crash {
        code: i64,
        oom: bool,
        named: bool,
    },
    /// A `kill` with a signal that does not end the process (a reload, a freeze). On Podman,
    /// now and then a TERM whose process dies at the end of the window for a stop, or just
    /// inside it.
    Signal(u8),
    /// Docker's restart policy starts it again.
    PolicyStart,
    /// The process died and the event was lost: a resync finds it at once (`resync`), or
    /// later (a resync, an inspect, the executor's look at its turn).
    LostDeath {
        code: i64,
        resync: bool,
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
    /// The executor's turn for its order: it asks the supervisor, telling whether it found
    /// the container running (`looks`) or not looking, and sends or drops it as told.
    Turn {
        looks: bool,
    },
    /// The executor could not reach Docker with its order (before its turn or after).
    Unreachable,
    /// Docker carries out the order sent: restarted (start event before or after the
    /// answer), or refused with the container left running or left down. Before its turn, the
    /// executor may refuse a recreate (the configuration cannot be copied). Now and then a
    /// user removed the container meanwhile, and the executor finds it gone.
    Finish(u8),
}

/// A failure, or the end of what held a restart back, after which a restart is due.
#[derive(Debug, Clone)]
enum Fault {
    /// The process dies by itself.
    Die { code: i64 },
    /// The probe fails `failures` times past the start period.
    ProbeFails,
    /// Docker's HEALTHCHECK says unhealthy.
    Unhealthy,
    /// A parent starts again: the run is left behind.
    ParentStarted,
    /// The order held is sent and Docker refuses it (left running, or left down).
    FailedRestart { left_down: bool },
    /// A backoff ends: the supervisor is woken when it asked.
    BackoffEnds,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        prop_oneof![Just(1i64), Just(0), Just(137)].prop_map(|code| Fault::Die { code }),
        Just(Fault::ProbeFails),
        Just(Fault::Unhealthy),
        Just(Fault::ParentStarted),
        any::<bool>().prop_map(|left_down| Fault::FailedRestart { left_down }),
        Just(Fault::BackoffEnds),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Every time on a 250 ms grid, so that times meet the rules' boundaries exactly now
        // and then.
        6 => (0u64..16).prop_map(|n| Step::Wait(n * 250)),
        // Often exactly a `reset_after` or a budget window: the rules' boundaries.
        2 => prop_oneof![Just(5u64), Just(20), Just(60), 5u64..90].prop_map(Step::LongWait),
        2 => Just(Step::Tick),
        3 => Just(Step::WakeUp),
        24 => any::<u8>().prop_map(Step::Probe),
        6 => any::<u8>().prop_map(Step::Health),
        3 => Just(Step::Break),
        1 => Just(Step::Mend),
        2 => (
            prop_oneof![Just(1i64), Just(0), Just(2), Just(137), Just(143)],
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.8),
        )
            .prop_map(|(code, oom, named)| Step::Crash { code, oom, named }),
        1 => any::<u8>().prop_map(Step::Signal),
        6 => Just(Step::PolicyStart),
        2 => (prop_oneof![Just(1i64), Just(0), Just(143)], any::<bool>())
            .prop_map(|(code, resync)| Step::LostDeath { code, resync }),
        1 => Just(Step::UserStop),
        1 => Just(Step::UserKill),
        8 => Just(Step::UserStart),
        1 => Just(Step::Pause),
        4 => Just(Step::Unpause),
        2 => (0u64..12).prop_map(|n| Step::ParentStarted { ago: n * 250 }),
        1 => Just(Step::Resync),
        14 => prop::bool::weighted(0.75).prop_map(|looks| Step::Turn { looks }),
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
    let ladder = (
        prop_oneof![
            6 => Just(Action::Restart),
            2 => Just(Action::Recreate),
            1 => Just(Action::Notify),
            1 => Just(Action::None),
        ],
        prop_oneof![Just(None), Just(Some(0u32)), Just(Some(1)), Just(Some(2))],
        prop_oneof![Just(OnQuarantine::Leave), Just(OnQuarantine::Stop)],
    )
        .prop_map(|(action, recreate_after, on_quarantine)| Ladder {
            action,
            recreate_after,
            on_quarantine,
        });
    (checks, restart_policy, budget, backoff, ladder).prop_map(
        |(
            (has_probe, has_docker_health, failures, start_period),
            restart_policy,
            budget,
            backoff,
            ladder,
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
                ladder,
            }
        },
    )
}

/// Plays `steps` in `sim` (every observation checked against the model), then liveness. The
/// order in flight ends (a recreate's own removal of the old container is the executor's to
/// report), then removal closes whatever is open: every incident ends exactly once.
fn play(mut sim: Sim, steps: Vec<Step>) -> Result<(), TestCaseError> {
    for s in steps {
        sim.step(s)?;
    }
    sim.restarted_in_bounded_time()?;
    sim.step(Step::Turn { looks: true })?;
    sim.step(Step::Finish(3))?;
    sim.feed(Observation::Removed)?;
    prop_assert!(!sim.incident_open());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// After every observation of a random timed sequence, the supervisor says what the
    /// reference model says must follow, and shows the state the model derives. The rules:
    /// - Incidents: one opens when the container is first seen failed (Docker's `unhealthy`,
    ///   a run left behind by its parent, `failures` probe failures past the start period, a
    ///   crash) and no other is open; it closes once, as recovered when the container is
    ///   healthy again, quarantined when the budget is spent, abandoned when a user stops it or
    ///   it is removed.
    /// - The start period ends at the first success (probe or Docker `healthy`) or when it
    ///   runs out; failures inside it do not count. Docker's `unhealthy` counts at once.
    /// - A failed container is ordered a restart at once unless a user stopped, killed or
    ///   paused it, an order is in flight, Docker's restart policy brings it back, a backoff
    ///   holds it (`initial * factor^(n-1)` after n restarts, capped) or its budget is spent (at
    ///   most `restart_max` restarts sent within the sliding window), in which case it is
    ///   quarantined, and released when healthy again. A kill that does not end the process
    ///   (a reload, a freeze) is no user's stop.
    /// - At the executor's turn the order is sent, unless a user's stop or pause overtook it or
    ///   the container it was decided for is found not running: then it is dropped and looked
    ///   at again.
    /// - Only a restart Docker received spends budget and counts for backoff; an order dropped
    ///   or never delivered (Docker unreachable) spends nothing and is looked at again.
    /// - An order the executor refused (a recreate whose configuration cannot be copied) spends
    ///   nothing either: no budget, no backoff step, no attempt in the incident. It is told as
    ///   a failed order and looked at again, and this container is never ordered a recreate
    ///   again: its ladder restarts it instead (its replacement, if any, starts afresh).
    /// - An order that finds the container removed spends nothing; the incident is abandoned
    ///   and the container no longer watched, whether Docker's `destroy` came first or not.
    /// - The ladder: unless a recreate of this container was refused, the order is a recreate
    ///   when the action is `recreate`, or when it is `restart` and `recreate-after` restarts
    ///   (counted since the backoff was last forgotten) have been sent, unless the failure is
    ///   a parent's start; otherwise a restart. A
    ///   recreate's replacement goes on with the same incident, budget and backoff. `notify`
    ///   and `none` open and close incidents and never order anything (so never quarantine).
    ///   With `on-quarantine=stop`, quarantining a running container orders its stop (spending
    ///   nothing); stopped, or when it runs next, it is shown and held quarantined.
    /// - The backoff is forgotten (`BackoffReset`) at the first observation once the container
    ///   was healthy `reset_after` without a break.
    /// - Liveness: a container held back only by a backoff or a recheck has the supervisor
    ///   asking to be woken by then; waking it as asked, the restart (or quarantine) comes
    ///   within a few wake-ups.
    #[test]
    fn the_supervisor_follows_the_reference_model(
        spec in policy_spec(),
        steps in prop::collection::vec(step(), 1..200),
    ) {
        play(Sim::new(spec)?, steps)?;
    }

    /// The same rules with the daemon in `--dry-run`: the executor answers every order
    /// `Skipped` at once. A skipped order is never sent, yet spends budget and counts for
    /// backoff and as an attempt (dated when skipped), so that a dry run's log paces itself
    /// like real restarts; the container is then looked at again. Quarantine (and its stop,
    /// skipped too) follows as it would.
    #[test]
    fn a_dry_run_follows_the_reference_model(
        spec in policy_spec(),
        steps in prop::collection::vec(step(), 1..200),
    ) {
        play(Sim::dry_run(spec)?, steps)?;
    }

    /// The same rules on Podman, whose `kill` events name no signal (a stop, a freeze and a
    /// reload look alike) and whose `podman stop` sends no `stop` event: such a kill is a
    /// user's stop only if the process dies less than 120 s later, before it starts again (one
    /// kill, one death); a freeze's or a reload's kill changes nothing, so a frozen container
    /// is healed as on Docker, and a crash long after it is a crash.
    #[test]
    fn on_podman_the_supervisor_follows_the_reference_model(
        spec in policy_spec(),
        steps in prop::collection::vec(step(), 1..200),
    ) {
        play(Sim::podman(spec)?, steps)?;
    }

    /// Liveness after each kind of failure (a death, probe failures, Docker's `unhealthy`, a
    /// parent's start, a refused restart, a backoff ending), whatever came before: a container
    /// that failed, is not stopped or paused by a user, not Docker's to restart, not
    /// quarantined, whose action acts (`restart` or `recreate`) and has no order in flight gets
    /// a restart or recreate order (or, its budget spent, is quarantined) with nothing but the wake-ups it asks for, within 6 of them and within the
    /// longest backoff (plus the recheck of an order Docker could not be reached with).
    #[test]
    fn a_failed_container_is_restarted_in_bounded_time(
        spec in policy_spec(),
        before in prop::collection::vec(step(), 0..60),
        faults in prop::collection::vec(fault(), 1..5),
    ) {
        let mut sim = Sim::new(spec)?;
        for s in before {
            sim.step(s)?;
        }
        for f in faults {
            sim.prepare(&f)?;
            sim.fault(f)?;
            sim.restarted_in_bounded_time()?;
        }
    }
}
