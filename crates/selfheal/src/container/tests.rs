//! The container task loop with a fake runtime and paused time: what reaches the runtime, the
//! journal and the view for a sequence of messages. The bollard runtime is covered by the
//! tests against the real engine.

use super::probe::{move_series, ProbeSeries};
use super::*;
use crate::docker::executor::{BoxFuture, Turn};
use crate::evidence::Captured;
use crate::journal::{IncidentJournal, IncidentOutcome, JournalMetrics};
use crate::shared::ContainerView;
use selfheal_core::labels::parse_labels;
use selfheal_core::Trigger;
use selfheal_core::{Backoff, DockerHealth, Order, ProbeKind, ProbeOutcome, Verb, WatchDefaults};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// Records every order Docker would have received and answers as told; `inspect` returns
/// `shown`. A recreate really replaces the container: `shown` gets a new id, and the report is
/// `Replaced` with it.
#[derive(Debug)]
pub(super) struct FakeRuntime {
    pub(super) restarts: Mutex<Vec<Order>>,
    pub(super) answer: Mutex<OrderOutcome>,
    /// What the executor reports seeing when its turn comes.
    pub(super) seen_running: Mutex<Option<bool>>,
    pub(super) shown: Mutex<Option<ContainerInfo>>,
    /// What `capture` answers.
    pub(super) captured: Mutex<Captured>,
    /// For each capture: how many restarts had been sent by then.
    pub(super) captures: Mutex<Vec<usize>>,
}

impl FakeRuntime {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            restarts: Mutex::new(Vec::new()),
            answer: Mutex::new(OrderOutcome::Done),
            seen_running: Mutex::new(None),
            shown: Mutex::new(None),
            captured: Mutex::new(Captured::default()),
            captures: Mutex::new(Vec::new()),
        })
    }
    pub(super) fn restarts(&self) -> Vec<Order> {
        self.restarts.lock().expect("lock").clone()
    }
}

impl ContainerRuntime for FakeRuntime {
    fn inspect<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Option<ContainerInfo>> {
        Box::pin(async move { self.shown.lock().expect("lock").clone() })
    }
    fn execute<'a>(
        &'a self,
        id: &'a str,
        order: &'a Order,
        turn: Turn<'a>,
    ) -> BoxFuture<'a, Option<OrderOutcome>> {
        Box::pin(async move {
            let answer = self.answer.lock().expect("lock").clone();
            if matches!(answer, OrderOutcome::Unreachable | OrderOutcome::Refused(_)) {
                return Some(answer);
            }
            let seen = *self.seen_running.lock().expect("lock");
            if turn(seen).await == Verdict::Drop {
                return None;
            }
            self.restarts.lock().expect("lock").push(order.clone());
            match (&order.verb, answer) {
                (Verb::Recreate { .. }, OrderOutcome::Done) => {
                    let new_id = format!("{id}-recreated");
                    if let Some(shown) = self.shown.lock().expect("lock").as_mut() {
                        shown.id = new_id.clone();
                    }
                    Some(OrderOutcome::Replaced { new_id })
                }
                (_, answer) => Some(answer),
            }
        })
    }
    fn capture<'a>(&'a self, _id: &'a str, _detected: SystemTime) -> BoxFuture<'a, Captured> {
        Box::pin(async move {
            let sent = self.restarts.lock().expect("lock").len();
            self.captures.lock().expect("lock").push(sent);
            self.captured.lock().expect("lock").clone()
        })
    }
}

pub(super) struct World {
    pub(super) shared: Arc<Shared>,
    pub(super) runtime: Arc<FakeRuntime>,
    pub(super) handle: ContainerHandle,
    pub(super) info: ContainerInfo,
    /// The task's context (to watch a replacement in the same world).
    pub(super) ctx: Context,
    /// What a container replaced by a recreate hands over (the watch loop's side).
    pub(super) successors: tokio::sync::Mutex<mpsc::Receiver<super::Successor>>,
    _dir: tempfile::TempDir,
    _cancel: CancellationToken,
}

/// A journal in a temp dir, the fake runtime, and a task context over them.
#[allow(clippy::type_complexity)]
fn fake_context() -> (
    tempfile::TempDir,
    Arc<Shared>,
    Arc<FakeRuntime>,
    Context,
    mpsc::Receiver<super::Successor>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (journal, _) =
        IncidentJournal::open(dir.path(), JournalMetrics::default()).expect("journal");
    let shared = Shared::new(Arc::new(journal), false);
    let runtime = FakeRuntime::new();
    let (successors_tx, successors) = mpsc::channel(16);
    let ctx = Context {
        shared: shared.clone(),
        runtime: runtime.clone(),
        prober: Prober::default(),
        notifier: Notifier::disabled(),
        backoff: Backoff::default(),
        probe_network: None,
        own_networks: Arc::new(Vec::new()),
        evidence: true,
        gates: mpsc::channel(16).0,
        successors: successors_tx,
        slots: Arc::default(),
        peers: None,
    };
    (dir, shared, runtime, ctx, successors)
}

/// A running container with a Docker HEALTHCHECK that says healthy, watched with defaults.
pub(super) fn world() -> World {
    let (dir, shared, runtime, ctx, successors) = fake_context();
    let info = ContainerInfo {
        id: "c0ffee".into(),
        name: "web".into(),
        running: true,
        started_at: Some(SystemTime::now() - Duration::from_secs(120)),
        has_healthcheck: true,
        health: Some(DockerHealth::Healthy),
        ..ContainerInfo::default()
    };
    let labels = HashMap::from([("selfheal.enable".to_string(), "true".to_string())]);
    let spec = parse_labels(&labels, &WatchDefaults::default(), false)
        .expect("labels")
        .expect("opted in");
    let cancel = CancellationToken::new();
    let handle = spawn(ctx.clone(), info.clone(), spec, None, None, false, &cancel);
    World {
        shared,
        runtime,
        handle,
        info,
        ctx,
        successors: tokio::sync::Mutex::new(successors),
        _dir: dir,
        _cancel: cancel,
    }
}

impl World {
    pub(super) fn state(&self) -> String {
        self.shared
            .views()
            .first()
            .map(|v| v.state.to_string())
            .unwrap_or_default()
    }

    /// Polls `f` on paused time (each wait lets every task run) until it holds.
    pub(super) async fn until(&self, what: &str, mut f: impl FnMut(&Self) -> bool) {
        for _ in 0..600 {
            if f(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "not reached within 60 s of paused time: {what} (state {})",
            self.state()
        );
    }

    /// The evidence of the newest incident, as the journal holds it.
    fn newest_evidence(&self) -> Option<Arc<crate::evidence::Evidence>> {
        let newest = self.shared.journal.list(None, None).first()?.id;
        self.shared.journal.get(newest)?.evidence
    }

    /// The restart's own start, reported as the watch loop does after a `start` event.
    async fn started_again(&self) {
        // Docker's clock, as the watchdog maps it (time here is paused, the wall clock not).
        let info = ContainerInfo {
            started_at: Some(self.shared.clock.wall(Instant::now())),
            health: Some(DockerHealth::Starting),
            ..self.info.clone()
        };
        self.handle.send(Msg::Started(Box::new(info))).await;
    }
}

/// The view shows the backoff's reset period and since when the container is healthy (what
/// `selfheal drill` spaces its rounds by); once it is not healthy, no `healthy_since`.
#[tokio::test(start_paused = true)]
async fn the_view_shows_the_backoff_reset_and_since_when_healthy() {
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    let b = view(&w)
        .backoff
        .expect("a watched container shows its backoff");
    assert_eq!(b.reset_after, "1m");
    assert!(b.healthy_since.is_some());
    w.handle
        .send(Msg::Unhealthy {
            received: Instant::now(),
        })
        .await;
    w.until("not healthy", |w| w.state() != "healthy").await;
    assert_eq!(view(&w).backoff.and_then(|b| b.healthy_since), None);
}

#[tokio::test(start_paused = true)]
async fn unhealthy_becomes_one_restart_and_the_start_then_healthy_closes_the_incident() {
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    w.handle
        .send(Msg::Unhealthy {
            received: Instant::now(),
        })
        .await;
    w.until("one restart", |w| w.runtime.restarts().len() == 1)
        .await;
    let order = &w.runtime.restarts()[0];
    assert_eq!(order.trigger, Trigger::Unhealthy);
    assert_eq!((order.attempt, order.stop_timeout), (1, 10));
    assert_eq!(order.verb, Verb::Restart);
    // The restart's own kill, die and stop change nothing; its start and Docker's healthy
    // close the incident.
    w.handle
        .send(Msg::Observe(Observation::Killed {
            signal: Some(selfheal_core::Signal::Term),
        }))
        .await;
    w.handle
        .send(Msg::Died {
            exit_code: Some(143),
        })
        .await;
    w.handle.send(Msg::Observe(Observation::Stopped)).await;
    w.started_again().await;
    w.handle
        .send(Msg::Observe(Observation::Health(DockerHealth::Healthy)))
        .await;
    w.until("recovered", |w| {
        w.shared
            .journal
            .list(None, None)
            .first()
            .is_some_and(|i| i.outcome == IncidentOutcome::Recovered)
    })
    .await;
    let incident = &w.shared.journal.list(None, None)[0];
    assert_eq!(
        (incident.attempts, incident.trigger),
        (1, Trigger::Unhealthy)
    );
    assert!(incident.action_begun.is_some() && incident.healthy_again.is_some());
    assert_eq!(
        w.runtime.restarts().len(),
        1,
        "the restart's own events caused none"
    );
    assert_eq!(w.state(), "healthy");
}

#[tokio::test(start_paused = true)]
async fn a_paused_container_is_never_restarted() {
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    w.handle.send(Msg::Observe(Observation::Paused)).await;
    w.handle
        .send(Msg::Unhealthy {
            received: Instant::now(),
        })
        .await;
    w.until("paused", |w| w.state() == "paused").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(w.runtime.restarts().is_empty());
    assert!(w.shared.journal.list(None, None).is_empty());
}

/// Docker unreachable when the restart was due: no budget spent, nothing counted as failed,
/// and the task looks again (inspect) and restarts once Docker answers.
#[tokio::test(start_paused = true)]
async fn a_restart_docker_never_got_is_retried_after_looking_again() {
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    *w.runtime.answer.lock().expect("lock") = OrderOutcome::Unreachable;
    *w.runtime.shown.lock().expect("lock") = Some(ContainerInfo {
        health: Some(DockerHealth::Unhealthy),
        ..w.info.clone()
    });
    w.handle
        .send(Msg::Unhealthy {
            received: Instant::now(),
        })
        .await;
    w.until("unhealthy, waiting to look again", |w| {
        w.state() == "unhealthy"
    })
    .await;
    assert!(w.runtime.restarts().is_empty());
    let views = w.shared.views();
    assert_eq!(views[0].restarts_in_window, 0, "no budget spent");
    *w.runtime.answer.lock().expect("lock") = OrderOutcome::Done;
    w.until("restarted once Docker answers", |w| {
        w.runtime.restarts().len() == 1
    })
    .await;
}

/// The probe task's series across renames (`move_series`, as `ContainerTask::rename` calls
/// it): nothing stays under an old name, failures included, and the histogram written is
/// the one served, also after renaming back to a name whose series were removed in between.
#[test]
fn probe_series_follow_renames_and_leave_nothing_under_an_old_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (journal, _) =
        IncidentJournal::open(dir.path(), JournalMetrics::default()).expect("journal");
    let shared = Shared::new(Arc::new(journal), false);
    let metrics = &shared.metrics;
    let kind = Some(ProbeKind::Http);
    let failed = ProbeOutcome::Failed(selfheal_core::ProbeFailure::Timeout);
    let took = Duration::from_millis(5);
    let text = || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &shared.registry).expect("encode");
        out
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(series))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    let count =
        |name: &str| format!("selfheal_probe_duration_seconds_count{{container=\"{name}\",");
    let failures = |name: &str| {
        format!("selfheal_probe_failures_total{{container=\"{name}\",reason=\"timeout\"}}")
    };

    metrics.add_container("a", kind);
    let (names, rx) = watch::channel("a".to_string());
    let mut series = ProbeSeries::new(shared.clone(), ProbeKind::Http, rx);
    series.record(failed, took);
    assert_eq!(value(&text(), &count("a")), Some(1.0), "{}", text());

    move_series(metrics, &names, "b", kind);
    series.record(failed, took);
    let now = text();
    assert!(!now.contains(r#"container="a""#), "{now}");
    assert_eq!(value(&now, &count("b")), Some(1.0), "{now}");
    assert_eq!(value(&now, &failures("b")), Some(1.0), "{now}");

    move_series(metrics, &names, "a", kind);
    series.record(ProbeOutcome::Passed, took);
    let now = text();
    assert!(!now.contains(r#"container="b""#), "{now}");
    assert_eq!(value(&now, &count("a")), Some(1.0), "{now}");
    assert_eq!(value(&now, &failures("a")), Some(0.0), "{now}");
}

pub(super) fn view(w: &World) -> ContainerView {
    w.shared.views().first().cloned().expect("a view")
}

/// Evidence: the restart is sent before Docker is asked for logs (healing never waits for the
/// capture), and what the capture returns lands on the incident in the journal, while the
/// list and the view leave it out.
#[tokio::test(start_paused = true)]
async fn evidence_is_read_after_the_restart_is_sent_and_lands_on_the_incident() {
    use crate::evidence::{LogLine, LogStream, Logs};
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    let line = LogLine {
        stream: LogStream::Stderr,
        time: None,
        text: "database unreachable".into(),
    };
    *w.runtime.captured.lock().expect("lock") = Captured {
        health_log: Vec::new(),
        logs: Some(Logs::bounded(vec![line.clone()], false)),
    };
    w.handle
        .send(Msg::Unhealthy {
            received: Instant::now(),
        })
        .await;
    w.until("logs on the incident", |w| {
        w.newest_evidence().is_some_and(|e| e.logs.is_some())
    })
    .await;
    assert_eq!(*w.runtime.captures.lock().expect("lock"), vec![1]);
    let logs = w.newest_evidence().and_then(|e| e.logs.clone());
    assert_eq!(logs.map(|l| l.lines), Some(vec![line]));
    assert!(w.shared.journal.list(None, None)[0].evidence.is_none());
    assert!(w.shared.views()[0]
        .last_incident
        .as_ref()
        .is_some_and(|i| i.evidence.is_none()));
}

/// A death's exit code, OOM flag and signal are evidence taken at detection.
#[tokio::test(start_paused = true)]
async fn a_death_records_its_exit_as_evidence() {
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    w.handle.send(Msg::Oom).await;
    w.handle
        .send(Msg::Died {
            exit_code: Some(137),
        })
        .await;
    w.until("an incident with its exit", |w| {
        w.newest_evidence().is_some_and(|e| e.exit.is_some())
    })
    .await;
    assert_eq!(w.shared.journal.list(None, None)[0].trigger, Trigger::Oom);
    let exit = w
        .newest_evidence()
        .and_then(|e| e.exit.clone())
        .expect("exit");
    assert_eq!(
        (exit.exit_code, exit.oom_killed, exit.signal.as_deref()),
        (137, true, Some("SIGKILL"))
    );
}

/// Docker may send `oom` just after the `die` it explains: the open incident's evidence still
/// records the OOM kill.
#[tokio::test(start_paused = true)]
async fn an_oom_event_after_the_death_marks_its_evidence() {
    let w = world();
    w.until("healthy", |w| w.state() == "healthy").await;
    w.handle
        .send(Msg::Died {
            exit_code: Some(137),
        })
        .await;
    w.until("an incident with its exit", |w| {
        w.newest_evidence().is_some_and(|e| e.exit.is_some())
    })
    .await;
    let exit = w.newest_evidence().and_then(|e| e.exit.clone());
    assert_eq!(exit.map(|e| e.oom_killed), Some(false));
    w.handle.send(Msg::Oom).await;
    w.until("the exit marked OOM-killed", |w| {
        w.newest_evidence()
            .and_then(|e| e.exit.clone())
            .is_some_and(|e| e.oom_killed)
    })
    .await;
}

/// A Swarm task through the real task loop: Docker's unhealthy orders nothing (Swarm replaces
/// the task), the task's end hands the open incident to the slot, and the task Swarm starts in
/// the same slot closes it once healthy, with its time to recover, in one journal record.
#[tokio::test(start_paused = true)]
async fn a_swarm_tasks_incident_is_closed_by_its_replacement_and_nothing_is_restarted() {
    let (_dir, shared, runtime, ctx, _successors) = fake_context();
    let labels = HashMap::from([
        ("selfheal.enable".to_string(), "true".to_string()),
        (
            selfheal_core::swarm::SERVICE_ID.to_string(),
            "svc".to_string(),
        ),
        (
            selfheal_core::swarm::SERVICE_NAME.to_string(),
            "web".to_string(),
        ),
        (selfheal_core::swarm::TASK_ID.to_string(), "t1".to_string()),
        (
            selfheal_core::swarm::TASK_NAME.to_string(),
            "web.1.t1".to_string(),
        ),
    ]);
    let spec = parse_labels(&labels, &WatchDefaults::default(), false)
        .expect("labels")
        .expect("opted in");
    let binding = crate::swarm::SwarmBinding {
        task: selfheal_core::SwarmTask::from_labels(&labels).expect("a task"),
        condition: selfheal_core::RestartCondition::Any,
    };
    let task = |id: &str, name: &str, health| ContainerInfo {
        id: id.into(),
        name: name.into(),
        running: true,
        started_at: Some(shared.clock.wall(Instant::now())),
        has_healthcheck: true,
        health: Some(health),
        labels: labels.clone(),
        ..ContainerInfo::default()
    };
    let cancel = CancellationToken::new();
    let first = task("t1c", "web.1.t1", DockerHealth::Healthy);
    let old = spawn(
        ctx.clone(),
        first,
        spec.clone(),
        None,
        Some(binding.clone()),
        false,
        &cancel,
    );
    let journal = || shared.journal.list(None, None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    old.send(Msg::Unhealthy {
        received: Instant::now(),
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        journal()
            .first()
            .is_some_and(|i| i.outcome == IncidentOutcome::Open),
        "an incident open"
    );
    // Swarm kills it; 5 s later its replacement runs in the same slot and turns healthy.
    old.send(Msg::Observe(Observation::Killed {
        signal: Some(selfheal_core::Signal::Term),
    }))
    .await;
    old.send(Msg::Died {
        exit_code: Some(137),
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = task("t2c", "web.1.t2", DockerHealth::Starting);
    let new = spawn(
        ctx.clone(),
        second,
        spec,
        None,
        Some(binding),
        false,
        &cancel,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    new.send(Msg::Observe(Observation::Health(DockerHealth::Healthy)))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let incidents = journal();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i.outcome, IncidentOutcome::Recovered);
    assert_eq!(
        (i.trigger, i.container.as_str()),
        (Trigger::Unhealthy, "web.1.t1")
    );
    let ttr = i.time_to_recover_seconds.expect("time to recover");
    assert!((6.0..=8.0).contains(&ttr), "{ttr}");
    assert!(
        runtime.restarts().is_empty(),
        "a Swarm task is never restarted"
    );
    let observed = shared
        .metrics
        .recovery_events
        .get_or_create(&crate::metrics::RecoveryLabels {
            container: "web.1.t1".into(),
            trigger: crate::metrics::Label(Trigger::Unhealthy),
            result: crate::metrics::Label(selfheal_core::RecoveryResult::Observed),
            verb: crate::metrics::Label(selfheal_core::VerbKind::None),
        })
        .get();
    assert_eq!(observed, 1);
}
