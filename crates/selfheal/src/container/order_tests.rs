//! The core's orders through the container task, with the fake runtime: a dependent's
//! restart and recreate, the executor's refusal, a user's stop before the executor's turn.

use super::tests::{view, world, World};
use super::*;
use crate::journal::IncidentOutcome;
use selfheal_core::labels::parse_labels;
use selfheal_core::{DockerHealth, RecoveryResult, Trigger, Verb, WatchDefaults};
use std::collections::HashMap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A dependent left in the namespace of a parent that was recreated, told by the watch loop.
async fn left_behind(w: &World, recreate: ParentRecreated) {
    w.until("healthy", |w| w.state() == "healthy").await;
    w.handle
        .send(Msg::ParentStarted {
            parent: "vpn".into(),
            at: SystemTime::now(),
            incident: Some(7),
            recreate: Some(recreate),
        })
        .await;
}

fn follow() -> ParentRecreated {
    ParentRecreated::Follow {
        new_parent: "vpn2".into(),
    }
}

fn recoveries(w: &World, result: RecoveryResult) -> u64 {
    w.shared
        .metrics
        .recovery_events
        .get_or_create(&crate::metrics::RecoveryLabels {
            container: w.info.name.as_str().into(),
            trigger: crate::metrics::Label(Trigger::Dependency),
            result: crate::metrics::Label(result),
            verb: crate::metrics::Label(selfheal_core::VerbKind::Recreate),
        })
        .get()
}

/// A dependent recreated in its new parent's namespace (the fake runtime replaces it with
/// `<id>-recreated`): the old task ends and hands over; the replacement's task is spawned as
/// the watch loop spawns it (waiting for the hand-over). Returns the world, the hand-over, and
/// the replacement's task.
async fn recreated_dependent(cancel: &CancellationToken) -> (World, Successor, ContainerHandle) {
    let w = world();
    *w.runtime.shown.lock().expect("lock") = Some(w.info.clone());
    left_behind(&w, follow()).await;
    w.until("gone from the views", |w| w.shared.views().is_empty())
        .await;
    let orders = w.runtime.restarts();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        orders[0].verb,
        Verb::Recreate {
            network_parent: Some("vpn2".into())
        }
    );
    let successor = w.successors.lock().await.recv().await.expect("handed over");
    let new_id = format!("{}-recreated", w.info.id);
    assert_eq!(successor.new_id, new_id);
    let info = ContainerInfo {
        id: new_id,
        started_at: Some(w.shared.clock.wall(Instant::now())),
        health: Some(DockerHealth::Starting),
        ..w.info.clone()
    };
    *w.runtime.shown.lock().expect("lock") = Some(info.clone());
    let labels = HashMap::from([("selfheal.enable".to_string(), "true".to_string())]);
    let spec = parse_labels(&labels, &WatchDefaults::default(), false)
        .expect("labels")
        .expect("opted in");
    let new = spawn(w.ctx.clone(), info, spec, None, None, true, cancel);
    (w, successor, new)
}

/// The core orders a recreate in the new parent's namespace; the executor replaces the
/// container (a new id) and reports `Replaced`: this task ends and hands the open incident to
/// the replacement's task, which closes it as recovered once the new container is healthy.
#[tokio::test(start_paused = true)]
async fn a_recreate_hands_the_incident_to_the_replacement_which_closes_it_recovered() {
    let cancel = CancellationToken::new();
    let (w, successor, new) = recreated_dependent(&cancel).await;
    let record = successor.incident.clone().expect("the open incident");
    assert_eq!(record.outcome, IncidentOutcome::Open);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.parent_incident, Some(7));
    assert_eq!(
        w.shared.journal.list(None, None)[0].outcome,
        IncidentOutcome::Open
    );
    let new_id = successor.new_id.clone();
    new.send(Msg::TakeOver(Box::new(successor))).await;
    new.send(Msg::Observe(Observation::Health(DockerHealth::Healthy)))
        .await;
    w.until("the incident recovered", |w| {
        w.shared.journal.list(None, None)[0].outcome == IncidentOutcome::Recovered
    })
    .await;
    let i = &w.shared.journal.list(None, None)[0];
    assert_eq!(i.id, record.id, "one incident, not two");
    assert_eq!(i.container_id, new_id, "followed to the new container");
    assert_eq!(i.attempts, 1);
    let verbs: Vec<_> = i.steps.iter().map(|s| s.verb).collect();
    assert_eq!(verbs, vec![selfheal_core::VerbKind::Recreate]);
    assert!(i.time_to_recover_seconds.is_some());
    cancel.cancel();
}

/// The replacement dies right after its start, before the hand-over reaches its task (the
/// watch loop spawns the task at the new container's `start`, the old task hands over once
/// the executor is done): its task holds the death until it has taken over, so the death is a
/// crash under the carried incident and is healed, not a stop nobody explains.
#[tokio::test(start_paused = true)]
async fn a_replacement_that_dies_before_the_hand_over_is_healed_under_the_carried_incident() {
    let cancel = CancellationToken::new();
    let (w, successor, new) = recreated_dependent(&cancel).await;
    let record = successor.incident.clone().expect("the open incident");
    new.send(Msg::Died { exit_code: Some(2) }).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        w.runtime.restarts().len(),
        1,
        "nothing judged before the hand-over"
    );
    new.send(Msg::TakeOver(Box::new(successor))).await;
    w.until("the death healed", |w| w.runtime.restarts().len() == 2)
        .await;
    let orders = w.runtime.restarts();
    assert_eq!(
        orders[1].verb,
        Verb::Restart,
        "a dependency's restart, not escalated"
    );
    assert_eq!(
        orders[1].attempt, 2,
        "the carried incident's second attempt"
    );
    let incidents = w.shared.journal.list(None, None);
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].id, record.id);
    cancel.cancel();
}

/// The executor refuses a recreate it cannot do safely: Docker was never asked, so the
/// refusal spends no budget; the incident says why and counts a failed recovery, once.
#[tokio::test(start_paused = true)]
async fn a_recreate_the_executor_refuses_spends_no_budget() {
    let w = world();
    *w.runtime.answer.lock().expect("lock") =
        OrderOutcome::Refused("not recreated: a volume mount without a name".into());
    *w.runtime.shown.lock().expect("lock") = Some(w.info.clone());
    left_behind(&w, follow()).await;
    w.until("the failure recorded", |w| {
        w.shared
            .journal
            .list(None, None)
            .first()
            .is_some_and(|i| i.failure.is_some())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    let incident = w.shared.journal.list(None, None)[0].clone();
    assert!(incident
        .failure
        .unwrap_or_default()
        .contains("without a name"));
    assert_eq!(incident.attempts, 0);
    assert!(w.runtime.restarts().is_empty(), "Docker was asked");
    assert_eq!(view(&w).restarts_in_window, 0, "budget spent on a refusal");
    assert_eq!(recoveries(&w, RecoveryResult::Failed), 1);
}

/// A user stopped the container while the recreate waited for its turn (the executor finds
/// it not running): the core drops the order, as it does a restart; nothing is spent.
#[tokio::test(start_paused = true)]
async fn a_users_stop_before_the_executors_turn_drops_a_recreate() {
    let w = world();
    *w.runtime.seen_running.lock().expect("lock") = Some(false);
    *w.runtime.shown.lock().expect("lock") = Some(ContainerInfo {
        running: false,
        exit_code: 143,
        ..w.info.clone()
    });
    left_behind(&w, follow()).await;
    w.until("stopped", |w| w.state() == "stopped").await;
    assert!(w.runtime.restarts().is_empty(), "carried out after a stop");
    assert_eq!(view(&w).restarts_in_window, 0);
    let incidents = w.shared.journal.list(None, None);
    assert_eq!(incidents[0].outcome, IncidentOutcome::Abandoned);
}

/// As a dependent: a parent that started after this run makes it wait (shown), and its
/// release restarts it once with trigger `dependency`, the incident naming the parent and
/// the parent's incident.
#[tokio::test(start_paused = true)]
async fn a_dependent_waits_on_its_parent_then_restarts_once_linked_to_it() {
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    let since = SystemTime::now();
    w.handle
        .send(Msg::ParentWaiting {
            parent: "vpn".into(),
            since,
        })
        .await;
    w.until("waiting on vpn", |w| {
        view(w).waiting_on.as_deref() == Some("vpn")
    })
    .await;
    assert!(
        w.runtime.restarts().is_empty(),
        "restarted before the parent was ready"
    );
    w.handle
        .send(Msg::ParentStarted {
            parent: "vpn".into(),
            at: since,
            incident: Some(41),
            recreate: None,
        })
        .await;
    w.until("one restart", |w| w.runtime.restarts().len() == 1)
        .await;
    assert_eq!(w.runtime.restarts()[0].trigger, Trigger::Dependency);
    assert_eq!(view(&w).waiting_on, None);
    let incidents = w.shared.journal.list(None, None);
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].trigger, Trigger::Dependency);
    assert_eq!(incidents[0].parent.as_deref(), Some("vpn"));
    assert_eq!(incidents[0].parent_incident, Some(41));
}

/// A recreate that would be a guess is refused without asking Docker: the incident says why
/// and counts a failed recovery; the container is left as it is.
#[tokio::test(start_paused = true)]
async fn a_refused_recreate_is_a_failed_recovery_with_its_reason() {
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    w.handle
        .send(Msg::ParentStarted {
            parent: "vpn".into(),
            at: SystemTime::now(),
            incident: None,
            recreate: Some(ParentRecreated::CannotFollow {
                why: "the name vpn of the removed parent is ambiguous".into(),
            }),
        })
        .await;
    w.until("the failure recorded", |w| {
        w.shared
            .journal
            .list(None, None)
            .first()
            .is_some_and(|i| i.failure.is_some())
    })
    .await;
    let incident = w.shared.journal.list(None, None)[0].clone();
    assert!(incident.failure.unwrap_or_default().contains("ambiguous"));
    assert!(w.runtime.restarts().is_empty(), "Docker was asked");
    let failed = w
        .shared
        .metrics
        .recovery_events
        .get_or_create(&crate::metrics::RecoveryLabels {
            container: w.info.name.as_str().into(),
            trigger: crate::metrics::Label(Trigger::Dependency),
            result: crate::metrics::Label(RecoveryResult::Failed),
            verb: crate::metrics::Label(selfheal_core::VerbKind::Recreate),
        })
        .get();
    assert_eq!(failed, 1);
}
