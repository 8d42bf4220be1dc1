//! One task per watched container: a thin shell around the container's [`Supervisor`]. It
//! turns Docker events, inspects and probe results into observations, and carries the
//! supervisor's effects out through the [`ContainerRuntime`] (restart, inspect) and the
//! [`IncidentRecorder`] (journal, metrics, notifications). It decides nothing itself.

mod notice;
mod record;

pub use notice::notification as notice_of;
pub use record::close_orphan;

use crate::dependents::GateReport;
use crate::docker::ContainerInfo;
use crate::evidence::capture::Captured;
use crate::evidence::{Evidence, ExitRecord, ProbeFailureLog, ProbeFailureRecord};
use crate::executor::{ContainerRuntime, ExecOutcome};
use crate::journal::Incident;
use crate::metrics::{probe_labels, Metrics};
use crate::notify::Notifier;
use crate::probe::Prober;
use crate::shared::{ContainerView, Shared};
use prometheus_client::metrics::histogram::Histogram;
use record::IncidentRecorder;
use selfheal_core::dependents::ReleaseGate;
use selfheal_core::{
    Backoff, DockerHealth, Effect, Observation, PolicySpec, ProbeKind, ProbeOutcome,
    RecoveryResult, RestartOrder, State, Supervisor, Trigger, WatchSpec,
};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A task's inbox is bounded: the watch loop, the probe and the task's own helpers share it.
/// A full inbox makes the sender wait (events are never dropped).
pub const INBOX: usize = 256;

/// Messages to a container task.
#[derive(Debug)]
pub enum Msg {
    /// An event the core takes as it is (health, kill, stop, pause, probe result, ...).
    Observe(Observation),
    /// A Docker `health_status: unhealthy` event, with when it was received.
    Unhealthy {
        received: Instant,
    },
    /// Look at the container (inspect it in this task, in order with its events); `started`:
    /// after a `start` event.
    Look {
        started: bool,
    },
    /// A `start` event, with inspect data read right after it.
    Started(Box<ContainerInfo>),
    /// Fresh inspect data after a gap (watching began, a reconnect, the core asked).
    Snapshot(Box<ContainerInfo>),
    /// A `die` event.
    Died {
        exit_code: i64,
    },
    Oom,
    Rename(String),
    /// The first failing check of Docker's health log, read for the open incident.
    HealthFailingSince(SystemTime),
    /// The executor's report on a restart order.
    Restart(ExecOutcome),
    /// Evidence read back from Docker for incident `incident`.
    Evidence {
        incident: u64,
        captured: Box<Captured>,
    },
    /// Destroyed, or no longer opted in: close out and end.
    Removed,
    /// A parent this container depends on started again at `at` and is ready: the parent's
    /// name and the incident that restarted it.
    ParentStarted {
        parent: String,
        at: SystemTime,
        incident: Option<u64>,
        /// Its network parent was recreated: `Ok(new parent id)` to recreate it there, or
        /// why that cannot be done safely.
        recreate: Option<Result<String, String>>,
    },
    /// A parent started again at `since` and is not ready yet.
    ParentWaiting {
        parent: String,
        since: SystemTime,
    },
    /// A Swarm task's restart condition, told by a manager's watchdog after watching began.
    RestartCondition(selfheal_core::RestartCondition),
    /// What its slot spent on the node where the last task ended, told by that node's watchdog.
    AdoptSlot {
        sent: Vec<Instant>,
        recent: u32,
        last: Option<Instant>,
    },
}

/// Everything a task needs from the daemon.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub prober: Prober,
    pub notifier: Notifier,
    pub backoff: Backoff,
    pub probe_network: Option<String>,
    pub own_networks: Arc<Vec<String>>,
    /// Capture evidence for incidents (`--evidence`).
    pub evidence: bool,
    /// Where this container, as a parent, reports that its dependents wait or may go on.
    pub gates: mpsc::Sender<GateReport>,
    /// Swarm slots handed over by an ended task, for its replacement.
    pub slots: Arc<crate::swarm::SlotLedger>,
    /// The other nodes' watchdogs on Swarm (`--swarm-peers`).
    pub peers: Option<crate::swarm::Peers>,
}

pub struct ContainerHandle {
    pub tx: mpsc::Sender<Msg>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ContainerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerHandle").finish_non_exhaustive()
    }
}

impl ContainerHandle {
    pub fn stop(self) {
        self.cancel.cancel();
        drop(self.task);
    }

    /// Hands `msg` to the task, waiting while its inbox is full.
    pub async fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg).await;
    }
}

struct ContainerTask {
    ctx: Context,
    info: ContainerInfo,
    spec: WatchSpec,
    sup: Supervisor,
    incidents: IncidentRecorder,
    oom_pending: bool,
    /// What the shared view last showed.
    published: Option<ViewKey>,
    addr: watch::Sender<Option<IpAddr>>,
    /// The container's current name, shared with the probe task for its series.
    name: watch::Sender<String>,
    probing: Arc<AtomicBool>,
    tx: mpsc::Sender<Msg>,
    /// The time of the last observation: observations are fed in order.
    last_now: Instant,
    /// The probe's current run of failures, for an incident's evidence.
    probe_failures: ProbeFailureLog,
    /// How the process last ended, until an incident takes it as evidence.
    last_exit: Option<selfheal_core::Exit>,
    /// Fires once the restart ordered by the observation being handled is sent (or dropped):
    /// evidence is read from Docker only after that.
    restart_sent: Option<oneshot::Receiver<()>>,
    /// As a parent: when its dependents are released after it started again.
    gate: ReleaseGate,
    /// The run last seen, and the incident whose restart began it.
    run_seen: Option<Instant>,
    run_incident: Option<u64>,
    /// As a dependent: the parent it waits on, and the parent (and incident) that told it
    /// to restart, for the incident this opens.
    waiting_on: Option<String>,
    parent_link: Option<(String, Option<u64>)>,
    /// Its network parent was recreated: restarts of this run are carried out as recreates
    /// (or refused, with the reason).
    recreate: Option<Result<String, String>>,
    /// Why the last restart failed, for the incident.
    last_failure: Option<String>,
    /// Destroyed while its recreate was in flight: ended once the executor reports.
    removed_pending: bool,
    /// Set when the container is a Swarm task.
    swarm: Option<crate::swarm::SwarmBinding>,
    /// Since when the policy state is `healthy` without a break (shown to peers on Swarm).
    healthy_since: Option<Instant>,
}

/// The probe task's metric series, kept under the container's current name, which the
/// container task shares through `names` and changes with [`move_series`]. The histogram
/// handle is looked up when the name changes, not per probe.
struct ProbeSeries {
    shared: Arc<Shared>,
    kind: ProbeKind,
    names: watch::Receiver<String>,
    duration: Histogram,
}

impl ProbeSeries {
    fn new(shared: Arc<Shared>, kind: ProbeKind, mut names: watch::Receiver<String>) -> Self {
        let duration = Self::duration_of(&shared, &names.borrow_and_update(), kind);
        Self {
            shared,
            kind,
            names,
            duration,
        }
    }

    fn duration_of(shared: &Shared, name: &str, kind: ProbeKind) -> Histogram {
        shared
            .metrics
            .probe_duration
            .get_or_create(&probe_labels(name, kind))
            .clone()
    }

    fn record(&mut self, outcome: ProbeOutcome, took: std::time::Duration) {
        // Held while writing: a rename waits for it, so nothing is written under a name
        // after its series were removed. A cheap read lock when nothing changed.
        let name = self.names.borrow_and_update();
        if name.has_changed() {
            // Also for the same name (renamed away and back): its series were removed.
            self.duration = Self::duration_of(&self.shared, &name, self.kind);
        }
        self.duration.observe(took.as_secs_f64());
        let metrics = &self.shared.metrics;
        match outcome {
            ProbeOutcome::Failed(f) => {
                let labels = crate::metrics::FailureLabels {
                    container: name.clone(),
                    reason: crate::metrics::Label(f),
                };
                metrics.probe_failures.get_or_create(&labels).inc();
            }
            ProbeOutcome::Unobservable(u) => {
                let labels = crate::metrics::UnobservableLabels {
                    container: name.clone(),
                    reason: crate::metrics::Label(u),
                };
                metrics.probe_unobservable.get_or_create(&labels).inc();
            }
            ProbeOutcome::Passed => {}
        }
    }
}

/// Moves a container's series from its current name in `names` to `to`. Done under the
/// channel's write lock, so a probe recording meanwhile writes wholly before (then its series
/// are removed with the rest) or wholly after (under the new name).
fn move_series(
    metrics: &Metrics,
    names: &watch::Sender<String>,
    to: &str,
    probe: Option<ProbeKind>,
) {
    names.send_modify(|name| {
        metrics.remove_container(name);
        to.clone_into(name);
        metrics.add_container(name, probe);
    });
}

/// The healing core's settings for a container.
fn policy_spec(spec: &WatchSpec, info: &ContainerInfo, backoff: Backoff) -> PolicySpec {
    PolicySpec {
        failures: spec.failures,
        start_period: spec.start_period,
        stop_timeout: spec.stop_timeout,
        container_stop_timeout: info.stop_timeout,
        restart_max: spec.restart_max,
        restart_window: spec.restart_window,
        backoff,
        restart_policy: info.restart_policy(),
        has_probe: spec.probe.is_some(),
        has_docker_health: info.has_healthcheck,
        swarm: None,
    }
}

/// Starts watching one container. `resumed` is an incident left open by a previous run. The
/// first message the task handles is a [`Msg::Snapshot`] of `info`.
pub fn spawn(
    ctx: Context,
    info: ContainerInfo,
    spec: WatchSpec,
    resumed: Option<Incident>,
    swarm: Option<crate::swarm::SwarmBinding>,
    parent: &CancellationToken,
) -> ContainerHandle {
    let (tx, rx) = mpsc::channel(INBOX);
    let cancel = parent.child_token();
    // A Swarm task takes over what the task it replaces left in its slot.
    let handed = swarm
        .as_ref()
        .and_then(|b| ctx.slots.take(&b.task.slot_key()));
    let resumed = match &handed {
        // The journal's copy: evidence read back after the hand-over was added there.
        Some(h) => h.incident.as_ref().map(|i| {
            ctx.shared
                .journal
                .get(i.id)
                .filter(Incident::is_open)
                .unwrap_or_else(|| i.clone())
        }),
        None => resumed,
    };
    let times = resumed
        .as_ref()
        .and_then(|i| IncidentRecorder::times_of(&ctx.shared, i));
    if let Some(i) = &resumed {
        tracing::info!(container = %info.name, incident = i.id, "resuming open incident");
    }
    ctx.shared
        .metrics
        .add_container(&info.name, spec.probe.as_ref().map(|p| p.kind));
    ctx.shared.metrics.set_state(&info.name, State::Starting);
    let (addr, addr_rx) =
        watch::channel(info.probe_address(ctx.probe_network.as_deref(), &ctx.own_networks));
    let probing = Arc::new(AtomicBool::new(false));
    let probe_failures = ProbeFailureLog::default();
    let (name, name_rx) = watch::channel(info.name.clone());
    let probe_task = spec.probe.clone().map(|target| {
        let prober = ctx.prober.clone();
        let tx = tx.clone();
        let (interval, timeout) = (spec.interval, spec.timeout);
        let mut series = ProbeSeries::new(ctx.shared.clone(), target.kind, name_rx);
        let cancel = cancel.clone();
        let probing = probing.clone();
        let failures = ctx.evidence.then(|| probe_failures.clone());
        let clock = ctx.shared.clock;
        tokio::spawn(async move {
            let report = |outcome: ProbeOutcome,
                          took: std::time::Duration,
                          _lag,
                          detail: crate::probe::ProbeDetail| {
                if !probing.load(Ordering::Relaxed) {
                    // The core does not count probes now (not running, paused, restarting).
                    return true;
                }
                series.record(outcome, took);
                if let Some(log) = &failures {
                    match outcome {
                        ProbeOutcome::Failed(f) => log.push(ProbeFailureRecord {
                            at: clock.rfc3339(Instant::now()),
                            reason: f.as_str().into(),
                            duration_ms: took.as_secs_f64() * 1000.0,
                            http_status: detail.http_status,
                            body_excerpt: detail.body_excerpt,
                        }),
                        ProbeOutcome::Passed => log.clear(),
                        ProbeOutcome::Unobservable(_) => {}
                    }
                }
                // Never block the probe schedule on a busy task: a probe result dropped is
                // one the next probe replaces.
                !matches!(
                    tx.try_send(Msg::Observe(Observation::Probe(outcome))),
                    Err(mpsc::error::TrySendError::Closed(_))
                )
            };
            crate::probe::schedule(prober, target, interval, timeout, addr_rx, cancel, report)
                .await;
        })
    });
    if let (Some(b), Some(peers), None) = (&swarm, &ctx.peers, &handed) {
        // A replicated slot's last task may have ended on another node.
        if matches!(b.task.slot, selfheal_core::SwarmSlot::Replica(_)) {
            tokio::spawn(crate::swarm::ask_slot(
                peers.clone(),
                b.task.slot_key(),
                ctx.shared.clone(),
                tx.clone(),
                cancel.clone(),
            ));
        }
    }
    if let (Some(b), Some(peers)) = (&swarm, &ctx.peers) {
        if b.condition == selfheal_core::RestartCondition::Unknown {
            tokio::spawn(crate::swarm::ask_restart_condition(
                peers.clone(),
                b.task.service_id.clone(),
                tx.clone(),
                cancel.clone(),
            ));
        }
    }
    let now = Instant::now();
    let resumed_since = times.as_ref().map(|t| t.first_failure);
    let mut policy = policy_spec(&spec, &info, ctx.backoff);
    policy.swarm = swarm.as_ref().map(|b| b.condition);
    let sup = match handed {
        Some(h) => {
            tracing::info!(container = %info.name, incident = ?h.incident.as_ref().map(|i| i.id),
                "Swarm task replaces an ended one in its slot; taking over the slot");
            Supervisor::replacement(policy, h.carry, now)
        }
        None => Supervisor::new(policy, times, now),
    };
    let mut task = ContainerTask {
        sup,
        swarm,
        incidents: IncidentRecorder::new(
            ctx.shared.clone(),
            ctx.notifier.clone(),
            resumed,
            ctx.backoff.reset_after,
            !spec.notify,
        ),
        ctx,
        spec,
        oom_pending: false,
        published: None,
        addr,
        name,
        probing,
        tx: tx.clone(),
        info: info.clone(),
        last_now: now,
        probe_failures,
        last_exit: None,
        restart_sent: None,
        gate: ReleaseGate::default(),
        run_seen: None,
        run_incident: None,
        waiting_on: None,
        parent_link: None,
        recreate: None,
        last_failure: None,
        removed_pending: false,
        healthy_since: None,
    };
    if let Some(since) = resumed_since {
        task.incidents.resume_story(since);
    }
    let token = cancel.clone();
    let handle = tokio::spawn(async move {
        task.publish();
        task.run(rx, token.clone()).await;
        // Ended (removed, or stopped): whatever else works for it (the probe, a question to
        // the peers) ends too.
        token.cancel();
        if let Some(p) = probe_task {
            p.abort();
        }
    });
    let _ = tx.try_send(Msg::Snapshot(Box::new(info)));
    ContainerHandle {
        tx,
        cancel,
        task: handle,
    }
}

impl ContainerTask {
    async fn run(&mut self, mut rx: mpsc::Receiver<Msg>, cancel: CancellationToken) {
        loop {
            let wake = self.sup.wake_at();
            let tell_at = self.incidents.wake_at();
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
                _ = sleep_until(wake) => Msg::Observe(Observation::Tick),
                _ = sleep_until(tell_at) => {
                    self.incidents.tick(Instant::now());
                    continue;
                }
            };
            // A recreate removes the old container as its last step: its `destroy` may come
            // before the executor's report, which says how the incident ended.
            if matches!(msg, Msg::Removed)
                && matches!(self.recreate, Some(Ok(_)))
                && self.sup.restart_in_flight()
            {
                self.removed_pending = true;
                continue;
            }
            let removed = matches!(
                msg,
                Msg::Removed | Msg::Restart(ExecOutcome::Gone | ExecOutcome::Replaced { .. })
            ) || (self.removed_pending && matches!(msg, Msg::Restart(_)));
            self.on_msg(msg).await;
            if removed {
                if self.removed_pending {
                    self.feed(Observation::Removed, Instant::now());
                }
                self.ctx.shared.remove_view(&self.info.id);
                self.ctx.shared.metrics.remove_container(&self.info.name);
                tracing::info!(container = %self.info.name, "no longer watched");
                return;
            }
            self.publish();
        }
    }

    async fn on_msg(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            // Inspected here and now, so what it shows comes in order with the events before
            // and after it (a start's inspect before that run's die).
            Msg::Look { started } => {
                let Some(info) = self.ctx.runtime.inspect(&self.info.id).await else {
                    return;
                };
                let msg = if started {
                    Msg::Started(Box::new(info))
                } else {
                    Msg::Snapshot(Box::new(info))
                };
                Box::pin(self.on_msg(msg)).await;
            }
            Msg::Observe(obs) => self.feed(obs, now),
            // Received before it waited in the inbox: the reaction is measured from there.
            Msg::Unhealthy { received } => {
                self.feed(Observation::Health(DockerHealth::Unhealthy), received)
            }
            Msg::Oom => {
                self.oom_pending = true;
                // Docker may send `oom` just after `die`: the death's evidence still learns it.
                self.incidents.oom_after_death();
            }
            Msg::Died { exit_code } => {
                let oom = std::mem::take(&mut self.oom_pending);
                let exit = self.info.exit(exit_code, oom);
                self.last_exit = Some(exit);
                self.feed(Observation::Died(exit), now);
            }
            Msg::Rename(name) => self.rename(name),
            Msg::AdoptSlot { sent, recent, last } => {
                tracing::info!(container = %self.info.name, restarts = sent.len(), recent,
                    "Swarm slot's budget and backoff taken over from the node where its last task ended");
                self.sup.adopt_slot(sent, recent, last, Instant::now());
            }
            Msg::RestartCondition(c) => {
                self.sup.learn_restart_condition(c);
                if let Some(b) = &mut self.swarm {
                    if b.condition == selfheal_core::RestartCondition::Unknown {
                        tracing::info!(container = %self.info.name, condition = c.as_str(),
                            "restart condition told by a manager's watchdog");
                        b.condition = c;
                    }
                }
            }
            Msg::Started(info) => {
                self.update_info(*info);
                // A start happened even if the process already exited again: its die event
                // follows in the stream.
                if let Some(at) = self.info.started_at {
                    let at = self.ctx.shared.clock.instant(at);
                    self.feed(Observation::Started { at }, now);
                }
                if let Some(h) = self.info.health.filter(|_| self.info.running) {
                    if self.sup.docker_health() != Some(h) {
                        self.feed(Observation::Health(h), now);
                    }
                }
            }
            Msg::Snapshot(info) => {
                self.update_info(*info);
                let clock = self.ctx.shared.clock;
                let snapshot = self.info.snapshot(|t| clock.instant(t));
                self.feed(Observation::Snapshot(snapshot), now);
            }
            Msg::HealthFailingSince(at) => {
                let at = self.ctx.shared.clock.instant(at);
                self.feed(Observation::HealthFailingSince(at), now);
            }
            Msg::Restart(ExecOutcome::Finished(outcome)) => {
                if let selfheal_core::RestartOutcome::Failed(why) = &outcome {
                    self.last_failure = Some(why.clone());
                }
                self.feed(Observation::RestartFinished(outcome), now)
            }
            Msg::Restart(ExecOutcome::Replaced { new_id }) => {
                tracing::info!(container = %self.info.name, %new_id, "replaced by a recreate");
                self.feed(Observation::Replaced, now)
            }
            Msg::Restart(ExecOutcome::Gone) | Msg::Removed => self.feed(Observation::Removed, now),
            Msg::Evidence { incident, captured } => self.incidents.attach(incident, *captured),
            Msg::ParentWaiting { parent, since } => {
                let since = self.ctx.shared.clock.instant(since);
                if self.sup.run_since().is_some_and(|r| r < since) {
                    self.waiting_on = Some(parent);
                }
            }
            Msg::ParentStarted {
                parent,
                at,
                incident,
                recreate,
            } => {
                self.waiting_on = None;
                if recreate.is_some() {
                    self.recreate = recreate;
                }
                let at = self.ctx.shared.clock.instant(at);
                tracing::info!(container = %self.info.name, %parent, "parent is ready again");
                self.parent_link = Some((parent, incident));
                self.feed(Observation::ParentStarted { at }, now);
            }
        }
    }

    /// As a parent: note the incident that began a new run, and tell the watch loop when the
    /// run's dependents wait on it or may go on.
    fn report_gate(&mut self, open_before: Option<u64>) {
        let since = self.sup.run_since();
        if since != self.run_seen {
            self.run_seen = since;
            self.run_incident = open_before.or(self.incidents.open.as_ref().map(|i| i.id));
            if since.is_some() {
                self.waiting_on = None;
                self.recreate = None;
            }
        }
        let (Some(gate), Some(at)) = (self.gate.observe(since, self.sup.state()), since) else {
            return;
        };
        let report = GateReport {
            parent_id: self.info.id.clone(),
            parent_name: self.info.name.clone(),
            gate,
            since: self.ctx.shared.clock.wall(at),
            incident: self.run_incident,
        };
        if let Err(mpsc::error::TrySendError::Full(report)) = self.ctx.gates.try_send(report) {
            let gates = self.ctx.gates.clone();
            tokio::spawn(async move {
                let _ = gates.send(report).await;
            });
        }
    }

    fn rename(&mut self, name: String) {
        let metrics = &self.ctx.shared.metrics;
        let probe = self.spec.probe.as_ref().map(|p| p.kind);
        move_series(metrics, &self.name, &name, probe);
        tracing::info!(from = %self.info.name, to = %name, "container renamed");
        self.info.name = name;
        metrics.set_state(&self.info.name, self.sup.state());
    }

    fn update_info(&mut self, info: ContainerInfo) {
        self.info = ContainerInfo {
            name: self.info.name.clone(),
            ..info
        };
        let _ = self.addr.send(
            self.info
                .probe_address(self.ctx.probe_network.as_deref(), &self.ctx.own_networks),
        );
    }

    /// Feeds one observation to the core and carries out what it returns: a restart first,
    /// before anything is written down.
    fn feed(&mut self, obs: Observation, at: Instant) {
        let now = at.max(self.last_now);
        self.last_now = now;
        let open_before = self.incidents.open.as_ref().map(|i| i.id);
        let effects = self.sup.handle(obs, now);
        for e in &effects {
            if let Effect::Restart(order) = e {
                self.dispatch_restart(order.clone());
            }
        }
        for e in effects {
            self.carry_out(e, now);
        }
        self.restart_sent = None;
        self.probing
            .store(self.sup.wants_probes(), Ordering::Relaxed);
        self.report_gate(open_before);
    }

    fn dispatch_restart(&mut self, order: RestartOrder) {
        let reaction = Instant::now().saturating_duration_since(order.detected);
        self.ctx
            .shared
            .metrics
            .event_to_action
            .observe(reaction.as_secs_f64());
        let verb = match (self.ctx.shared.dry_run, order.end) {
            (true, _) => "would restart or end (dry run)",
            (false, None) => "restarting",
            (false, Some(selfheal_core::EndMode::Stop)) => {
                "stopping the Swarm task for Swarm to replace"
            }
            (false, Some(selfheal_core::EndMode::Kill)) => {
                "killing the Swarm task for Swarm to replace"
            }
        };
        tracing::warn!(container = %self.info.name, trigger = %order.trigger, attempt = order.attempt,
            stop_timeout = order.stop_timeout, reaction = ?reaction, "{verb}");
        let runtime = self.ctx.runtime.clone();
        let id = self.info.id.clone();
        let tx = self.tx.clone();
        let (sent_tx, sent_rx) = oneshot::channel();
        self.restart_sent = Some(sent_rx);
        let recreate = self.recreate.clone();
        tokio::spawn(async move {
            let sent = tx.clone();
            // Queued ahead of the restart's own events: from here on they are the restart's.
            let on_sent = Box::pin(async move {
                let _ = sent.send(Msg::Observe(Observation::RestartSent)).await;
                let _ = sent_tx.send(());
            });
            let outcome = match &recreate {
                None => runtime.restart(&id, &order, on_sent).await,
                Some(Ok(new_parent)) => runtime.recreate(&id, &order, new_parent, on_sent).await,
                // Refused: Docker is not asked (a plain restart would fail on the gone parent
                // and leave the container stopped).
                Some(Err(why)) => ExecOutcome::Finished(selfheal_core::RestartOutcome::Failed(
                    format!("not recreated: {why}"),
                )),
            };
            let _ = tx.send(Msg::Restart(outcome)).await;
        });
    }

    /// Queues a message to this task without waiting on its own inbox.
    fn send_self(&self, msg: Msg) {
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.tx.try_send(msg) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
    }

    /// Asks the runtime for fresh data off the task's path; `then` turns it into a message.
    fn look(&self, then: fn(ContainerInfo) -> Option<Msg>) {
        let runtime = self.ctx.runtime.clone();
        let id = self.info.id.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Some(msg) = runtime.inspect(&id).await.and_then(then) {
                let _ = tx.send(msg).await;
            }
        });
    }

    fn carry_out(&mut self, effect: Effect, now: Instant) {
        let name = self.info.name.clone();
        let shared = self.ctx.shared.clone();
        match effect {
            Effect::StateChanged { from, to } => {
                tracing::info!(container = %name, %from, %to, "state");
                shared.metrics.set_state(&name, to);
            }
            Effect::IncidentOpened(t) => {
                let evidence = self.evidence_at_detection(t.trigger);
                let parent = self
                    .parent_link
                    .take()
                    .filter(|_| t.trigger == Trigger::Dependency);
                self.incidents.opened(&t, &self.info, evidence, parent);
                self.start_capture();
            }
            Effect::IncidentUpdated(t) => self.incidents.updated(&t),
            Effect::IncidentClosed {
                incident,
                outcome,
                time_to_recover,
            } => self
                .incidents
                .closed(&incident, outcome, time_to_recover, &name, now),
            Effect::Restart(_) => {}
            Effect::Recovery { trigger, result } => {
                shared.metrics.recovery(&name, trigger, result);
                match result {
                    RecoveryResult::Failed => {
                        self.incidents.restart_failed(now, self.last_failure.take())
                    }
                    RecoveryResult::Observed if self.swarm.is_some() => tracing::info!(
                        container = %name, %trigger,
                        "Swarm task failed; Swarm replaces it, recorded, not acted on"),
                    RecoveryResult::Observed => tracing::info!(container = %name, %trigger,
                        "restarted by Docker's restart policy; recorded, not repeated"),
                    _ => {}
                }
            }
            Effect::Quarantined { restarts_in_window } => tracing::error!(
                container = %name, restarts_in_window,
                "restart budget spent: quarantined, left alone until it is healthy again"
            ),
            Effect::Released => {
                tracing::info!(container = %name, "healthy again by itself: released from quarantine");
                self.incidents.released(now);
            }
            Effect::HandOver(carry) => {
                let Some(b) = &self.swarm else { return };
                let incident = self.incidents.open.take();
                tracing::info!(container = %name, service = %b.task.service_name,
                    incident = ?incident.as_ref().map(|i| i.id),
                    "Swarm task ended; its slot goes to the task Swarm starts next");
                let handover = selfheal_core::Handover {
                    slot_key: b.task.slot_key(),
                    ended_task: b.task.task_id.clone(),
                    handed_at: now,
                    first_failure: carry.incident.as_ref().map(|t| t.first_failure),
                };
                let displaced = self.ctx.slots.put(
                    b.task.slot_key(),
                    crate::swarm::Handed {
                        carry: *carry,
                        incident,
                        handover,
                        container: name.clone(),
                        muted: !self.spec.notify,
                    },
                );
                for d in displaced {
                    crate::swarm::close_handed(
                        &self.ctx.shared,
                        &self.ctx.notifier,
                        d,
                        selfheal_core::Followed::GaveUp,
                        now,
                    );
                }
            }
            // Behind whatever is already in the inbox: looked at in order.
            Effect::Inspect => self.send_self(Msg::Look { started: false }),
            Effect::ReadHealthLog => {
                self.look(|info| info.health_failing_since.map(Msg::HealthFailingSince))
            }
        }
    }

    /// What is known at detection, without asking Docker: the probe's failures, the exit.
    fn evidence_at_detection(&mut self, trigger: selfheal_core::Trigger) -> Option<Evidence> {
        // The `die` event's exit, else (a death seen in an inspect after a gap) the inspect's.
        let exit = self.last_exit.take().or_else(|| {
            (!self.info.running).then(|| self.info.exit(self.info.exit_code, self.info.oom_killed))
        });
        if !self.ctx.evidence {
            return None;
        }
        let probe_failures = self.probe_failures.snapshot();
        // Taken: a later incident gets only failures seen after this one.
        self.probe_failures.clear();
        let died = matches!(
            trigger,
            selfheal_core::Trigger::Died | selfheal_core::Trigger::Oom
        );
        Some(Evidence {
            probe_failures,
            exit: exit
                .filter(|_| died)
                .map(|e| ExitRecord::new(e.code, e.oom_killed)),
            ..Evidence::default()
        })
    }

    /// Reads the rest of the evidence from Docker off the task's path, once the restart this
    /// observation ordered (if any) is sent: healing never waits for it.
    fn start_capture(&mut self) {
        let Some(incident) = self.incidents.open.as_ref().map(|i| i.id) else {
            return;
        };
        let restart_sent = self.restart_sent.take();
        if !self.ctx.evidence {
            return;
        }
        let detected = std::time::SystemTime::now();
        let runtime = self.ctx.runtime.clone();
        let id = self.info.id.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Some(sent) = restart_sent {
                // Sent, or dropped without being sent: either way the restart is under way.
                let _ = sent.await;
            }
            let captured = Box::new(runtime.capture(&id, detected).await);
            let _ = tx.send(Msg::Evidence { incident, captured }).await;
        });
    }

    /// Updates the shared view, but only when something shown there changed: most messages
    /// are probe successes that change nothing.
    fn publish(&mut self) {
        let now = Instant::now();
        if self.sup.state() == State::Healthy {
            self.healthy_since.get_or_insert(now);
        } else {
            self.healthy_since = None;
        }
        let incident = self.incidents.current();
        let key = ViewKey {
            state: self.sup.state(),
            docker_health: self.sup.docker_health(),
            failures: self.sup.consecutive_failures(),
            restarts: self.sup.restarts_in_window(now),
            in_flight: self.sup.restart_in_flight(),
            unobservable: self.sup.unobservable(),
            incident: incident.map(|i| (i.id, i.attempts, i.outcome, i.action_begun.is_some())),
            name: self.info.name.clone(),
            waiting_on: self.waiting_on.clone(),
            healthy_since: self.healthy_since,
            condition: self.swarm.as_ref().map(|b| b.condition),
        };
        if self.published.as_ref() == Some(&key) {
            return;
        }
        let view = ContainerView {
            id: self.info.id.clone(),
            name: self.info.name.clone(),
            compose_project: self.info.compose_project(),
            compose_service: self.info.compose_service(),
            state: key.state.into(),
            docker_health: key.docker_health,
            consecutive_failures: key.failures,
            restarts_in_window: key.restarts,
            restart_in_flight: key.in_flight,
            cannot_observe: key.unobservable,
            spec: Some(self.spec.clone()),
            label_errors: Vec::new(),
            last_incident: incident.map(Incident::without_evidence),
            dependencies: Default::default(),
            waiting_on: key.waiting_on.clone(),
            swarm: self.swarm.as_ref().map(|b| crate::shared::SwarmView {
                service: b.task.service_name.clone(),
                slot: b.task.slot_key(),
                task: b.task.task_id.clone(),
                restart_condition: b.condition,
                healthy_since: key.healthy_since.map(|t| self.ctx.shared.clock.rfc3339(t)),
            }),
            backoff: Some(crate::shared::BackoffView {
                reset_after: selfheal_core::format_duration(self.ctx.backoff.reset_after),
                healthy_since: key.healthy_since.map(|t| self.ctx.shared.clock.rfc3339(t)),
            }),
        };
        self.published = Some(key);
        self.ctx.shared.put_view(view);
    }
}

/// The parts of a container's view that change.
#[derive(Debug, PartialEq)]
struct ViewKey {
    state: State,
    docker_health: Option<DockerHealth>,
    failures: u32,
    restarts: u32,
    in_flight: bool,
    unobservable: Option<selfheal_core::Unobservable>,
    incident: Option<(u64, u32, crate::journal::IncidentOutcome, bool)>,
    name: String,
    waiting_on: Option<String>,
    healthy_since: Option<Instant>,
    condition: Option<selfheal_core::RestartCondition>,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
