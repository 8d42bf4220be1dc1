//! The hand-over followed through a real peer: another `Shared` served by the real admin
//! router on loopback, as another node's watchdog serves it on the overlay network.

use super::*;
use crate::journal::{Incident, IncidentJournal, IncidentOutcome, JournalMetrics};
use crate::shared::{ContainerView, Shared, SwarmView};
use crate::timestamp::Timestamp;
use selfheal_core::{Handover, RestartBudget, RestartCondition, SlotCarry, State, Trigger};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// As often as the hand-overs are followed.
const FOLLOW_EVERY: Duration = handover::FOLLOW_EVERY;

fn journal() -> (tempfile::TempDir, Arc<Shared>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (j, _) = IncidentJournal::open(dir.path(), JournalMetrics::default()).expect("journal");
    (dir, Shared::new(Arc::new(j), false))
}

/// Serves `shared` like a watchdog's admin server; returns its `HOST:PORT`.
async fn serve(shared: Arc<Shared>, cancel: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = crate::http::router(shared);
    tokio::spawn(crate::http::server::serve(
        listener,
        app,
        crate::http::server::ConnectionLimits::default(),
        cancel,
    ));
    addr.to_string()
}

fn view(slot: &str, task: &str, healthy_since: Option<Timestamp>) -> ContainerView {
    let name = format!("stack_web.1.{task}");
    let mut v = ContainerView::bare(&format!("c-{task}"), &name, State::Healthy.into());
    v.swarm = Some(SwarmView {
        service: "stack_web".into(),
        slot: slot.into(),
        task: task.into(),
        restart_condition: RestartCondition::Any,
        healthy_since,
    });
    v
}

/// An open incident of task `old` in slot `svc/1`, first failure `ago` back, handed over.
fn handed(shared: &Shared, ago: Duration) -> (u64, Handed) {
    let now = Instant::now();
    let first_failure = now - ago;
    let id = shared.journal.next_id();
    let incident = Incident {
        id,
        container: "stack_web.1.old".into(),
        container_id: "c-old".into(),
        compose_project: None,
        compose_service: None,
        trigger: Trigger::ProbeFailed,
        first_failure: shared.clock.wall(first_failure).into(),
        detected: shared.clock.wall(first_failure).into(),
        action_begun: None,
        last_restart: None,
        healthy_again: None,
        time_to_detect_seconds: None,
        time_to_recover_seconds: None,
        attempts: 1,
        outcome: IncidentOutcome::Open,
        dry_run: false,
        unpersisted: false,
        evidence: None,
        parent: None,
        parent_incident: None,
        steps: Vec::new(),
        failure: None,
    };
    shared.journal.record(incident.clone());
    let handed = Handed {
        carry: SlotCarry {
            incident: None,
            budget: RestartBudget::new(5, Duration::from_secs(600)),
            recent: 1,
            last: Some(now),
            quarantined: false,
        },
        incident: Some(incident),
        handover: Handover {
            slot_key: "svc/1".into(),
            ended_task: "old".into(),
            handed_at: now,
            first_failure: Some(first_failure),
        },
        container: "stack_web.1.old".into(),
        muted: true,
    };
    (id, handed)
}

async fn closed(shared: &Shared, id: u64) -> Incident {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = shared.journal.get(id).filter(|i| !i.is_open()) {
            return i;
        }
        assert!(Instant::now() < deadline, "incident {id} still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_replacement_healthy_on_another_node_closes_the_incident_with_its_time_to_recover() {
    let cancel = CancellationToken::new();
    let (_d1, here) = journal();
    let (_d2, there) = journal();
    let ledger = Arc::new(SlotLedger::default());
    let (id, h) = handed(&here, Duration::from_secs(8));
    let first_failure = h.handover.first_failure.unwrap();
    // Evidence read back after the hand-over lands in the journal's copy, not the ledger's.
    let mut later = h.incident.clone().unwrap();
    later.evidence = Some(Arc::new(crate::evidence::Evidence::default()));
    ledger.put("svc/1".into(), h);
    here.journal.record(later);
    // The other node: the ended task itself (still listed there, healthy before it ended:
    // never its own replacement), another slot, then the replacement, not healthy yet.
    there.put_view(view(
        "svc/1",
        "old",
        Some(Timestamp::millis(here.clock.wall(first_failure))),
    ));
    there.put_view(view(
        "svc/2",
        "other",
        Some(Timestamp::millis(here.clock.wall(Instant::now()))),
    ));
    there.put_view(view("svc/1", "new", None));
    let peer = serve(there.clone(), cancel.clone()).await;
    let peers = Peers::new(&peer, None).unwrap();
    tokio::spawn(follow_handovers(
        ledger.clone(),
        here.clone(),
        crate::notify::Notifier::disabled(),
        Some(peers),
        Duration::from_secs(600),
        cancel.clone(),
    ));
    // Two follow rounds see nothing to close.
    tokio::time::sleep(FOLLOW_EVERY * 2).await;
    assert!(
        here.journal.get(id).unwrap().is_open(),
        "closed by the ended task or another slot"
    );
    assert_eq!(ledger.len(), 1);
    // Healthy 10 s after the first failure, on the other node.
    let healthy = first_failure + Duration::from_secs(10);
    there.put_view(view(
        "svc/1",
        "new",
        Some(Timestamp::millis(here.clock.wall(healthy))),
    ));
    let i = closed(&here, id).await;
    assert_eq!(i.outcome, IncidentOutcome::Recovered);
    let ttr = i.time_to_recover_seconds.unwrap();
    assert!((ttr - 10.0).abs() < 0.01, "time to recover {ttr}");
    assert!(ledger.is_empty(), "the slot is closed, not kept");
    assert!(
        i.evidence.is_some(),
        "the journal's copy, with its evidence, was closed"
    );
    let text = {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &here.registry).unwrap();
        body
    };
    assert!(
        text.contains("selfheal_recovery_duration_seconds_count{container=\"stack_web.1.old\",trigger=\"probe_failed\"} 1"),
        "{text}"
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_slot_nobody_takes_is_given_up_after_the_wait_and_a_full_ledger_drops_the_oldest() {
    let cancel = CancellationToken::new();
    let (_d, here) = journal();
    let ledger = Arc::new(SlotLedger::default());
    let (id, h) = handed(&here, Duration::from_secs(1));
    ledger.put("svc/1".into(), h);
    tokio::spawn(follow_handovers(
        ledger.clone(),
        here.clone(),
        crate::notify::Notifier::disabled(),
        None,
        Duration::from_secs(3),
        cancel.clone(),
    ));
    let i = closed(&here, id).await;
    assert_eq!(i.outcome, IncidentOutcome::Abandoned);
    assert!(i.failure.unwrap().contains("not seen healthy"));
    assert!(ledger.is_empty());
    cancel.cancel();

    // Full: the oldest goes out, and only it.
    let ledger = SlotLedger::default();
    let mut out = Vec::new();
    for n in 0..=MAX_HANDED {
        let (_, mut h) = handed(&here, Duration::from_secs(1));
        h.handover.slot_key = format!("svc/{n}");
        h.handover.handed_at = Instant::now() + Duration::from_millis(n as u64);
        out.extend(ledger.put(format!("svc/{n}"), h));
    }
    assert_eq!(ledger.len(), MAX_HANDED);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].handover.slot_key, "svc/0");
}

#[tokio::test]
async fn a_replacement_on_another_node_takes_over_what_its_slot_spent() {
    let cancel = CancellationToken::new();
    let (_d1, here) = journal();
    let (_d2, there) = journal();
    // The other node: slot svc/1 ended there after two ends the watchdog ordered.
    let (_, mut h) = handed(&there, Duration::from_secs(8));
    let t1 = Instant::now() - Duration::from_secs(30);
    let t2 = Instant::now() - Duration::from_secs(10);
    h.carry.budget.record(t1);
    h.carry.budget.record(t2);
    h.carry.recent = 2;
    h.carry.last = Some(t2);
    there.slots.put("svc/1".into(), h);
    let peers = Peers::new(&serve(there.clone(), cancel.clone()).await, None).unwrap();
    assert!(peers.slot("svc/2").await.is_none(), "no such slot there");
    let spent = tokio::time::timeout(
        Duration::from_secs(10),
        slot_spent_elsewhere(&peers, "svc/1", &here, &cancel),
    )
    .await
    .expect("told in time")
    .expect("an answer");
    let SlotSpent { sent, recent, last } = spent;
    // Wall-clock milliseconds on the way: the same moments within 1 ms.
    let close =
        |a: Instant, b: Instant| a.max(b).duration_since(a.min(b)) <= Duration::from_millis(1);
    assert_eq!(sent.len(), 2);
    assert!(close(sent[0], t1) && close(sent[1], t2), "{sent:?}");
    assert_eq!(recent, 2);
    assert!(close(last.unwrap(), t2));
    assert_eq!(
        there.slots.len(),
        1,
        "the slot stays there until its incident is closed"
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_worker_learns_a_services_restart_condition_from_a_managers_watchdog() {
    let cancel = CancellationToken::new();
    let (_d, manager) = journal();
    let peer = serve(manager.clone(), cancel.clone()).await;
    let peers = Peers::new(&peer, None).unwrap();
    assert_eq!(peers.restart_condition("svc").await, None, "not known yet");
    manager.set_swarm_services(HashMap::from([
        ("svc".to_string(), "on-failure".to_string()),
        ("dflt".to_string(), String::new()),
    ]));
    assert_eq!(
        peers.restart_condition("svc").await,
        Some(RestartCondition::OnFailure)
    );
    assert_eq!(
        peers.restart_condition("dflt").await,
        Some(RestartCondition::Any)
    );
    assert_eq!(peers.restart_condition("nope").await, None);
    assert!(Peers::new("tasks.watchdog", None).is_err());
    cancel.cancel();
}

/// One closer for every path that ends an incident: an orphan a previous run left, a slot
/// displaced from the ledger (given up), and a recovery all end their record through
/// `incident::close`, with the same outcome, times, reason and histogram rules.
#[tokio::test]
async fn every_path_closes_an_incident_through_the_one_closer() {
    let (_d, shared) = journal();
    let notifier = crate::notify::Notifier::disabled();
    let (orphan, _) = handed(&shared, Duration::from_secs(5));
    crate::incident::close_orphan(&shared, shared.journal.get(orphan).unwrap());
    let i = shared.journal.get(orphan).unwrap();
    assert_eq!(i.outcome, IncidentOutcome::Abandoned);
    assert!(i.healthy_again.is_none() && i.time_to_recover_seconds.is_none());

    // The same slot handed over twice before a replacement took it: the first is given up.
    let ledger = SlotLedger::default();
    let (first, h1) = handed(&shared, Duration::from_secs(5));
    let (second, h2) = handed(&shared, Duration::from_secs(1));
    keep_for_replacement(&ledger, &shared, &notifier, h1, Instant::now());
    keep_for_replacement(&ledger, &shared, &notifier, h2, Instant::now());
    let i = shared.journal.get(first).unwrap();
    assert_eq!(i.outcome, IncidentOutcome::Abandoned);
    assert!(i.failure.unwrap().contains("not seen healthy"));
    assert!(shared.journal.get(second).unwrap().is_open());
    assert_eq!(ledger.len(), 1);

    let mut i = shared.journal.get(second).unwrap();
    let closing = crate::incident::Closing::Recovered {
        time_to_recover: Duration::from_secs(3),
        at: Instant::now(),
    };
    crate::incident::close(&shared, &mut i, &closing, "web");
    let i = shared.journal.get(second).unwrap();
    assert_eq!(i.outcome, IncidentOutcome::Recovered);
    assert_eq!(i.time_to_recover_seconds, Some(3.0));
    assert!(i.healthy_again.is_some());
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &shared.registry).unwrap();
    assert!(
        body.contains(
            "selfheal_recovery_duration_seconds_count{container=\"web\",trigger=\"probe_failed\"} 1"
        ),
        "{body}"
    );
}
