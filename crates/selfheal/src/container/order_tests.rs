//! The core's orders through the container task, with the fake runtime: a dependent's
//! restart and recreate, the executor's refusal, a user's stop before the executor's turn.

use super::tests::{view, world, World};
use super::*;
use crate::journal::IncidentOutcome;
use selfheal_core::{RecoveryResult, Trigger, Verb};

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
            container: w.info.name.clone(),
            trigger: crate::metrics::Label(Trigger::Dependency),
            result: crate::metrics::Label(result),
        })
        .get()
}

/// The core orders a recreate in the new parent's namespace; the executor replaces the
/// container (a new id) and reports `Replaced`: the incident is recovered, this task ends and
/// the replacement is watched on its own.
#[tokio::test(start_paused = true)]
async fn a_recreate_replaces_the_container_and_the_task_ends_with_its_incident_recovered() {
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
    let incidents = w.shared.journal.list(None, None);
    assert_eq!(incidents[0].outcome, IncidentOutcome::Recovered);
    assert_eq!(incidents[0].attempts, 1);
    assert_eq!(incidents[0].parent_incident, Some(7));
    // (Its series went with it: the task ended.)
    let shown = w.runtime.shown.lock().expect("lock").clone();
    assert_eq!(
        shown.map(|i| i.id),
        Some(format!("{}-recreated", w.info.id))
    );
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
            container: w.info.name.clone(),
            trigger: crate::metrics::Label(Trigger::Dependency),
            result: crate::metrics::Label(RecoveryResult::Failed),
        })
        .get();
    assert_eq!(failed, 1);
}
