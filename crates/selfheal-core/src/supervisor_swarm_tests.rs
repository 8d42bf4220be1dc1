//! Swarm tasks (see [`crate::swarm`]): scenarios with paused time, and a property over random
//! sequences in one service slot, where every end of a task hands over to a replacement the way
//! Swarm starts a new task in the same slot.

use super::tests::{exit, secs};
use super::*;
use crate::backoff::Backoff;
use crate::policy::ProbeFailure;
use crate::restart_policy::RestartPolicy;
use crate::swarm::{EndMode, RestartCondition, SlotCarry};
use proptest::prelude::*;
use tokio::time::advance;

fn spec(condition: RestartCondition, has_docker_health: bool) -> PolicySpec {
    PolicySpec {
        failures: 2,
        start_period: Duration::from_secs(5),
        stop_timeout: Some(2),
        container_stop_timeout: None,
        restart_max: 3,
        restart_window: Duration::from_secs(600),
        backoff: Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
            factor: 2,
            reset_after: Duration::from_secs(30),
        },
        // Swarm tasks carry no Docker restart policy of their own.
        restart_policy: RestartPolicy::No,
        has_probe: true,
        has_docker_health,
        swarm: Some(condition),
        ladder: crate::policy::Ladder::RESTART_ONLY,
    }
}

fn orders(e: &[Effect]) -> Vec<Order> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Order(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

fn carry(e: &[Effect]) -> Option<SlotCarry> {
    e.iter().find_map(|e| match e {
        Effect::HandOver(c) => Some((**c).clone()),
        _ => None,
    })
}

fn results(e: &[Effect]) -> Vec<RecoveryResult> {
    e.iter()
        .filter_map(|e| match e {
            Effect::Recovery { result, .. } => Some(*result),
            _ => None,
        })
        .collect()
}

/// A snapshot of a task that started just now.
fn started_now(health: Option<DockerHealth>) -> Observation {
    Observation::Snapshot(Snapshot {
        status: RunStatus::Running {
            started_at: Instant::now(),
            paused: false,
        },
        health,
    })
}

/// A task of the slot, running since `now`, its start period over.
fn running_task(sup: &mut Supervisor, spec: &PolicySpec) -> Vec<Effect> {
    let at = Instant::now();
    let mut e = sup.handle(
        started_now(spec.has_docker_health.then_some(DockerHealth::Healthy)),
        at,
    );
    if spec.has_probe {
        e.extend(sup.handle(Observation::Probe(ProbeOutcome::Passed), at));
    }
    e
}

fn fail(sup: &mut Supervisor, n: u32) -> Vec<Effect> {
    (0..n)
        .flat_map(|_| {
            sup.handle(
                Observation::Probe(ProbeOutcome::Failed(ProbeFailure::Timeout)),
                Instant::now(),
            )
        })
        .collect()
}

/// Swarm fails an unhealthy task and starts a new one in its slot: the watchdog records the
/// incident as observed, orders nothing, and the replacement closes it once healthy, with the
/// time to recover from the first failing check.
#[tokio::test(start_paused = true)]
async fn an_unhealthy_task_is_observed_and_its_replacement_closes_the_incident() {
    let spec = PolicySpec {
        has_probe: false,
        ..spec(RestartCondition::Any, true)
    };
    let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
    running_task(&mut sup, &spec);
    assert_eq!(sup.state(), State::Healthy);
    advance(secs(10)).await;
    let e = sup.handle(Observation::Health(DockerHealth::Unhealthy), Instant::now());
    assert!(
        orders(&e).is_empty(),
        "a Swarm task is never restarted: {e:?}"
    );
    assert_eq!(results(&e), vec![RecoveryResult::Observed]);
    assert!(e.contains(&Effect::ReadHealthLog));
    let failing_since = Instant::now() - secs(2);
    sup.handle(
        Observation::HealthFailingSince(failing_since),
        Instant::now(),
    );
    // Swarm kills it: not a user's stop.
    assert!(sup
        .handle(
            Observation::Killed {
                signal: Some(Signal::Term)
            },
            Instant::now()
        )
        .is_empty());
    let e = sup.handle(Observation::Died(exit(137)), Instant::now());
    let carried = carry(&e).expect("handed over");
    assert_eq!(
        carried.incident.as_ref().map(|i| i.trigger),
        Some(Trigger::Unhealthy)
    );
    assert!(
        !e.iter().any(|e| matches!(e, Effect::IncidentClosed { .. })),
        "the replacement closes it"
    );
    // Swarm's restart delay, then the replacement runs and turns healthy.
    advance(secs(5)).await;
    let mut next = Supervisor::replacement(spec.clone(), carried, Instant::now());
    next.handle(started_now(Some(DockerHealth::Starting)), Instant::now());
    advance(secs(1)).await;
    let e = next.handle(Observation::Health(DockerHealth::Healthy), Instant::now());
    let closed = e.iter().find_map(|e| match e {
        Effect::IncidentClosed {
            outcome,
            time_to_recover,
            ..
        } => Some((*outcome, *time_to_recover)),
        _ => None,
    });
    assert_eq!(closed, Some((Outcome::Recovered, Some(secs(8)))));
}

/// `condition: any`: a failed probe of the watchdog's own stops the task (Swarm replaces any
/// ended task); the stop spends the slot's budget and the replacement's health closes it.
#[tokio::test(start_paused = true)]
async fn a_probe_failure_under_any_stops_the_task() {
    let spec = spec(RestartCondition::Any, false);
    let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
    running_task(&mut sup, &spec);
    let e = fail(&mut sup, 2);
    let o = orders(&e);
    assert_eq!(o.len(), 1, "{e:?}");
    assert_eq!(o[0].verb, Verb::End(EndMode::Stop));
    assert_eq!(o[0].trigger, Trigger::ProbeFailed);
    sup.handle(Observation::Turn { running: None }, Instant::now());
    // Its own kill and stop events are not a user's.
    sup.handle(
        Observation::Killed {
            signal: Some(Signal::Term),
        },
        Instant::now(),
    );
    let e = sup.handle(Observation::Died(exit(143)), Instant::now());
    assert_eq!(results(&e), vec![RecoveryResult::Success]);
    let mut carried = carry(&e).expect("handed over");
    assert_eq!(carried.budget.used(Instant::now()), 1);
    assert_eq!(carried.incident.as_ref().map(|i| i.attempts), Some(1));
    // The executor's answer after the die changes nothing.
    assert!(sup
        .handle(Observation::OrderEnded(OrderOutcome::Done), Instant::now())
        .iter()
        .all(|e| !matches!(e, Effect::Order(_) | Effect::HandOver(_))));
    advance(secs(6)).await;
    let mut next = Supervisor::replacement(spec.clone(), carried, Instant::now());
    let e = running_task(&mut next, &spec);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentClosed {
            outcome: Outcome::Recovered,
            ..
        }
    )));
}

/// `condition: on-failure`: a clean exit would leave the task Complete (moby #38322), so the
/// task is killed.
#[tokio::test(start_paused = true)]
async fn a_probe_failure_under_on_failure_kills_the_task() {
    let spec = spec(RestartCondition::OnFailure, false);
    let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
    running_task(&mut sup, &spec);
    let o = orders(&fail(&mut sup, 2));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].verb, Verb::End(EndMode::Kill));
}

/// `condition: none` (or not known): Swarm would not replace the task, so a failed probe is
/// reported and nothing is done.
#[tokio::test(start_paused = true)]
async fn a_probe_failure_under_none_is_reported_only() {
    for condition in [RestartCondition::None, RestartCondition::Unknown] {
        let spec = spec(condition, false);
        let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
        running_task(&mut sup, &spec);
        let e = fail(&mut sup, 5);
        assert!(orders(&e).is_empty(), "{condition:?}: {e:?}");
        assert!(e.iter().any(|e| matches!(e, Effect::IncidentOpened(_))));
        assert_eq!(sup.state(), State::Unhealthy);
    }
}

/// A worker learns the condition from a manager's watchdog after watching began: `Unknown`
/// becomes `on-failure` and the next failed probe kills the task; a known condition is never
/// replaced by a later answer.
#[tokio::test(start_paused = true)]
async fn a_condition_learnt_later_replaces_unknown_only() {
    let spec = spec(RestartCondition::Unknown, false);
    let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
    running_task(&mut sup, &spec);
    sup.learn_restart_condition(RestartCondition::OnFailure);
    let o = orders(&fail(&mut sup, 2));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].verb, Verb::End(EndMode::Kill));

    let spec = spec_none();
    let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
    running_task(&mut sup, &spec);
    sup.learn_restart_condition(RestartCondition::Any);
    assert!(orders(&fail(&mut sup, 5)).is_empty(), "none stays none");
}

fn spec_none() -> PolicySpec {
    spec(RestartCondition::None, false)
}

/// Budget and quarantine are the slot's: the third task in a row that fails its probe, with a
/// budget of 3 spent by its two predecessors plus one, is left alone and an alert raised; the
/// next task starts quarantined and is released once healthy.
#[tokio::test(start_paused = true)]
async fn the_budget_is_per_slot_and_quarantine_carries_over() {
    let spec = spec(RestartCondition::Any, false);
    let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
    let mut stops = 0;
    let mut quarantined = false;
    for _ in 0..6 {
        running_task(&mut sup, &spec);
        advance(secs(10)).await; // past the backoff step
        let e = fail(&mut sup, 2);
        quarantined |= e.iter().any(|e| matches!(e, Effect::Quarantined { .. }));
        if orders(&e).is_empty() {
            break;
        }
        stops += 1;
        sup.handle(Observation::Turn { running: None }, Instant::now());
        let carried = carry(&sup.handle(Observation::Died(exit(143)), Instant::now())).unwrap();
        advance(secs(5)).await;
        sup = Supervisor::replacement(spec.clone(), carried, Instant::now());
    }
    assert_eq!(stops, 3, "the slot's budget");
    assert!(quarantined);
    assert_eq!(sup.state(), State::Quarantined);
    // Swarm replaces it anyway (say its HEALTHCHECK failed it); the next task is held too.
    let carried = carry(&sup.handle(Observation::Died(exit(137)), Instant::now())).unwrap();
    assert!(carried.quarantined);
    let mut next = Supervisor::replacement(spec.clone(), carried, Instant::now());
    next.handle(started_now(None), Instant::now());
    assert_eq!(next.state(), State::Quarantined);
    let e = next.handle(Observation::Probe(ProbeOutcome::Passed), Instant::now());
    assert!(e.contains(&Effect::Released));
}

/// A task that ends cleanly (a scale-down, an update) is no incident; a crash is one, observed.
#[tokio::test(start_paused = true)]
async fn a_task_crash_is_observed_and_a_clean_end_is_not_an_incident() {
    let spec = spec(RestartCondition::Any, false);
    let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
    running_task(&mut sup, &spec);
    sup.handle(Observation::Stopped, Instant::now());
    let e = sup.handle(Observation::Died(exit(0)), Instant::now());
    assert_eq!(carry(&e).and_then(|c| c.incident), None);
    let mut sup = Supervisor::new(spec.clone(), None, Instant::now());
    running_task(&mut sup, &spec);
    let e = sup.handle(Observation::Died(exit(2)), Instant::now());
    assert_eq!(results(&e), vec![RecoveryResult::Observed]);
    assert_eq!(
        carry(&e).and_then(|c| c.incident).map(|i| i.trigger),
        Some(Trigger::Died)
    );
}

#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Pass,
    Fail,
    Health(DockerHealth),
    /// The task's container dies (exit code): Swarm, a user or the watchdog's order.
    Die(i64),
    /// The executor sends the order it holds, if any, and the container dies of it.
    Execute {
        answer_first: bool,
    },
    /// Swarm starts the slot's next task, if the current one ended.
    Replace,
    /// Swarm starts it on another node: a new supervisor there, told what the slot spent
    /// once it runs (the incident stays with the first node, which closes it).
    ReplaceElsewhere,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u64..4_000).prop_map(Step::Wait),
        5 => Just(Step::Pass),
        8 => Just(Step::Fail),
        2 => Just(Step::Health(DockerHealth::Healthy)),
        2 => Just(Step::Health(DockerHealth::Unhealthy)),
        1 => prop_oneof![Just(0i64), Just(1), Just(137), Just(143)].prop_map(Step::Die),
        5 => any::<bool>().prop_map(|answer_first| Step::Execute { answer_first }),
        4 => Just(Step::Replace),
        3 => Just(Step::ReplaceElsewhere),
    ]
}

/// One service slot over time: the current task's supervisor, and what the sequence did.
struct Slot {
    spec: PolicySpec,
    sup: Supervisor,
    now: Instant,
    ended: Option<SlotCarry>,
    order: Option<Order>,
    /// Send times of every end the watchdog ordered in this slot, over all its tasks.
    sent: Vec<Instant>,
    open: bool,
    /// Docker's health of the current task, as last reported.
    docker: Option<DockerHealth>,
}

impl Slot {
    fn feed(&mut self, obs: Observation) -> Result<(), TestCaseError> {
        let effects = self.sup.handle(obs.clone(), self.now);
        let spec = &self.spec;
        for e in &effects {
            match e {
                Effect::Order(o) => {
                    // A Swarm task is never restarted in place: every order ends the task, the
                    // way its service's restart condition needs, and only when Swarm will
                    // replace it.
                    prop_assert_eq!(
                        Some(o.verb.clone()),
                        spec.swarm
                            .and_then(RestartCondition::end_mode)
                            .map(Verb::End)
                    );
                    prop_assert!(
                        matches!(o.verb, Verb::End(_)),
                        "an order Swarm would not follow up"
                    );
                    // Docker's unhealthy is Swarm's to act on: no order while Docker says so.
                    prop_assert_ne!(self.docker, Some(DockerHealth::Unhealthy));
                    // One order at a time in the slot.
                    prop_assert!(self.order.is_none());
                    // The budget is the slot's: never more ends within the window, whichever
                    // task they were ordered for.
                    let in_window = self
                        .sent
                        .iter()
                        .filter(|t| self.now - **t < spec.restart_window)
                        .count();
                    prop_assert!(in_window < spec.restart_max as usize, "past the budget");
                    self.order = Some(o.clone());
                }
                Effect::IncidentOpened(_) => {
                    // At most one open incident per slot, carried from task to task.
                    prop_assert!(!self.open, "two incidents open in one slot: {obs:?}");
                    self.open = true;
                }
                Effect::IncidentClosed { .. } => {
                    prop_assert!(self.open);
                    self.open = false;
                }
                Effect::HandOver(c) => {
                    // The open incident goes with the slot, not lost, not closed.
                    prop_assert_eq!(c.incident.is_some(), self.open);
                    self.ended = Some((**c).clone());
                    self.order = None;
                }
                _ => {}
            }
        }
        if self.ended.is_some() {
            // A task that ended is no longer acted on.
            prop_assert!(orders(&effects).is_empty());
        }
        Ok(())
    }

    /// Swarm starts the slot's next task after its restart delay, under `sup`.
    fn next_task(
        &mut self,
        sup: impl FnOnce(PolicySpec, Instant) -> Supervisor,
    ) -> Result<(), TestCaseError> {
        self.now += Duration::from_secs(5);
        self.sup = sup(self.spec.clone(), self.now);
        self.order = None;
        self.docker = None;
        self.feed(Observation::Started { at: self.now })
    }

    fn step(&mut self, s: Step) -> Result<(), TestCaseError> {
        match s {
            Step::Wait(ms) => {
                self.now += Duration::from_millis(ms);
                self.feed(Observation::Tick)?;
            }
            Step::Pass => self.feed(Observation::Probe(ProbeOutcome::Passed))?,
            Step::Fail => self.feed(Observation::Probe(ProbeOutcome::Failed(
                ProbeFailure::Status,
            )))?,
            Step::Health(h) => {
                if self.ended.is_none() && self.order.is_none() {
                    self.docker = Some(h);
                }
                self.feed(Observation::Health(h))?
            }
            Step::Die(code) => {
                if self.ended.is_none() {
                    self.feed(Observation::Died(exit(code)))?;
                    prop_assert!(self.ended.is_some(), "a task's end is always handed over");
                }
            }
            Step::Execute { answer_first } => {
                if self.order.is_some() && self.ended.is_none() {
                    self.feed(Observation::Turn { running: None })?;
                    self.sent.push(self.now);
                    let code = match self.order.as_ref().and_then(|o| match o.verb {
                        Verb::End(mode) => Some(mode),
                        _ => None,
                    }) {
                        Some(EndMode::Kill) => 137,
                        _ => 143,
                    };
                    if answer_first {
                        self.feed(Observation::OrderEnded(OrderOutcome::Done))?;
                        self.feed(Observation::Died(exit(code)))?;
                    } else {
                        self.feed(Observation::Died(exit(code)))?;
                        self.feed(Observation::OrderEnded(OrderOutcome::Done))?;
                    }
                    prop_assert!(self.ended.is_some());
                }
            }
            Step::Replace => {
                if let Some(c) = self.ended.take() {
                    self.next_task(|spec, now| Supervisor::replacement(spec, c, now))?;
                }
            }
            Step::ReplaceElsewhere => {
                if let Some(c) = self.ended.take() {
                    // The first node's watchdog closes the incident when this one is healthy.
                    self.open = false;
                    self.next_task(|spec, now| Supervisor::new(spec, None, now))?;
                    let sent: Vec<Instant> = c.budget.sent().collect();
                    self.sup.adopt_slot(sent, c.recent, c.last, self.now);
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_swarm_slot_keeps_its_invariants_over_random_sequences(
        steps in prop::collection::vec(step(), 1..150),
        condition in prop_oneof![
            Just(RestartCondition::Any),
            Just(RestartCondition::OnFailure),
            Just(RestartCondition::None),
            Just(RestartCondition::Unknown),
        ],
        docker_health in any::<bool>(),
    ) {
        let spec = spec(condition, docker_health);
        let now = Instant::now();
        let mut slot = Slot {
            sup: Supervisor::new(spec.clone(), None, now),
            spec,
            now,
            ended: None,
            order: None,
            sent: Vec::new(),
            open: false,
            docker: None,
        };
        slot.feed(Observation::Started { at: now })?;
        for s in steps {
            slot.step(s)?;
        }
    }
}
