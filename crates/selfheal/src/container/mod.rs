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
use crate::executor::{ContainerRuntime, Turn};
use crate::journal::Incident;
use crate::metrics::{probe_labels, Metrics};
use crate::notify::Notifier;
use crate::probe::Prober;
use crate::shared::{ContainerView, Shared};
use prometheus_client::metrics::histogram::Histogram;
use record::IncidentRecorder;
use selfheal_core::dependents::ReleaseGate;
use selfheal_core::{
    Backoff, DockerHealth, Effect, Observation, Order, OrderOutcome, ParentRecreated, PolicySpec,
    ProbeKind, ProbeOutcome, RecoveryResult, State, Supervisor, Trigger, Verb, Verdict, WatchSpec,
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
    /// A `die` event, with the exit code it names.
    Died {
        exit_code: Option<i64>,
    },
    Oom,
    Rename(String),
    /// The first failing check of Docker's health log, read for the open incident.
    HealthFailingSince(SystemTime),
    /// The executor's turn for the order came: what it saw, and where the core's verdict goes.
    Turn {
        running: Option<bool>,
        reply: oneshot::Sender<Verdict>,
    },
    /// How the executor's order ended.
    Ended(OrderOutcome),
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
        /// Its network parent was recreated: what that means for it.
        recreate: Option<ParentRecreated>,
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

    /// As a parent: when its dependents are released after it started again.
    gate: ReleaseGate,
    /// The run last seen, and the incident whose restart began it.
    run_seen: Option<Instant>,
    run_incident: Option<u64>,
    /// As a dependent: the parent it waits on, and the parent (and incident) that told it
    /// to restart, for the incident this opens.
    waiting_on: Option<String>,
    parent_link: Option<(String, Option<u64>)>,

    /// Set when the container is a Swarm task.
    swarm: Option<crate::swarm::SwarmBinding>,
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
        gate: ReleaseGate::default(),
        run_seen: None,
        run_incident: None,
        waiting_on: None,
        parent_link: None,
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
            if self.on_msg(msg).await == Watching::Done {
                self.ctx.shared.remove_view(&self.info.id);
                self.ctx.shared.metrics.remove_container(&self.info.name);
                tracing::info!(container = %self.info.name, "no longer watched");
                return;
            }
            self.publish();
        }
    }

    async fn on_msg(&mut self, msg: Msg) -> Watching {
        let now = Instant::now();
        match msg {
            // Inspected here and now, so what it shows comes in order with the events before
            // and after it (a start's inspect before that run's die).
            Msg::Look { started } => {
                let Some(info) = self.ctx.runtime.inspect(&self.info.id).await else {
                    return Watching::On;
                };
                let msg = if started {
                    Msg::Started(Box::new(info))
                } else {
                    Msg::Snapshot(Box::new(info))
                };
                return Box::pin(self.on_msg(msg)).await;
            }
            Msg::Observe(obs) => return self.feed(obs, now).watching,
            // Received before it waited in the inbox: the reaction is measured from there.
            Msg::Unhealthy { received } => {
                return self
                    .feed(Observation::Health(DockerHealth::Unhealthy), received)
                    .watching
            }
            Msg::Oom => {
                self.oom_pending = true;
                // Docker may send `oom` just after `die`: the death's evidence still learns it.
                self.incidents.oom_after_death();
            }
            Msg::Died { exit_code } => {
                let exit = selfheal_core::Exit {
                    code: exit_code,
                    oom_killed: std::mem::take(&mut self.oom_pending),
                    restart_count: self.info.restart_count,
                };
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
            Msg::Turn { running, reply } => {
                let fed = self.feed(Observation::Turn { running }, now);
                let _ = reply.send(fed.verdict.unwrap_or(Verdict::Drop));
            }
            Msg::Ended(outcome) => {
                if let OrderOutcome::Replaced { new_id } = &outcome {
                    tracing::info!(container = %self.info.name, %new_id, "replaced by a recreate");
                }
                return self.feed(Observation::OrderEnded(outcome), now).watching;
            }
            Msg::Removed => return self.feed(Observation::Removed, now).watching,
            Msg::Evidence { incident, captured } => self.incidents.attach(incident, *captured),
            Msg::ParentWaiting { parent, since } => {
                let since = self.ctx.shared.clock.instant(since);
                self.waiting_on = Some(parent);
                self.feed(Observation::ParentWaiting { since }, now);
            }
            Msg::ParentStarted {
                parent,
                at,
                incident,
                recreate,
            } => {
                let at = self.ctx.shared.clock.instant(at);
                tracing::info!(container = %self.info.name, %parent, "parent is ready again");
                self.parent_link = Some((parent, incident));
                let recreated = recreate;
                self.feed(Observation::ParentStarted { at, recreated }, now);
            }
        }
        Watching::On
    }

    /// As a parent: note the incident that began a new run, and tell the watch loop when the
    /// run's dependents wait on it or may go on.
    fn report_gate(&mut self, open_before: Option<u64>) {
        let since = self.sup.run_since();
        if since != self.run_seen {
            self.run_seen = since;
            self.run_incident = open_before.or(self.incidents.open.as_ref().map(|i| i.id));
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
    fn feed(&mut self, obs: Observation, at: Instant) -> Fed {
        let now = at.max(self.last_now);
        self.last_now = now;
        let open_before = self.incidents.open.as_ref().map(|i| i.id);
        let effects = self.sup.handle(obs, now);
        // Fires once the order is sent (or dropped): evidence is read from Docker only after.
        let mut sent = None;
        for e in &effects {
            if let Effect::Order(order) = e {
                sent = Some(self.dispatch(order.clone()));
            }
        }
        let mut fed = Fed {
            verdict: None,
            watching: Watching::On,
        };
        for e in effects {
            match e {
                Effect::Turn(v) => fed.verdict = Some(v),
                Effect::Unwatch => fed.watching = Watching::Done,
                e => self.carry_out(e, now, &mut sent),
            }
        }
        self.probing
            .store(self.sup.wants_probes(), Ordering::Relaxed);
        self.report_gate(open_before);
        fed
    }

    /// Hands `order` to the executor off the task's path; returns what fires once it is sent.
    fn dispatch(&mut self, order: Order) -> oneshot::Receiver<()> {
        let reaction = Instant::now().saturating_duration_since(order.detected);
        self.ctx
            .shared
            .metrics
            .event_to_action
            .observe(reaction.as_secs_f64());
        let verb = match (self.ctx.shared.dry_run, &order.verb) {
            (true, _) => "would restart or end (dry run)",
            (false, Verb::Restart) => "restarting",
            (false, Verb::Recreate { .. }) => "recreating",
            (false, Verb::End(selfheal_core::EndMode::Stop)) => {
                "stopping the Swarm task for Swarm to replace"
            }
            (false, Verb::End(selfheal_core::EndMode::Kill)) => {
                "killing the Swarm task for Swarm to replace"
            }
        };
        tracing::warn!(container = %self.info.name, trigger = %order.trigger, attempt = order.attempt,
            stop_timeout = order.stop_timeout, reaction = ?reaction, "{verb}");
        let runtime = self.ctx.runtime.clone();
        let id = self.info.id.clone();
        let tx = self.tx.clone();
        let (sent_tx, sent_rx) = oneshot::channel();
        tokio::spawn(async move {
            let asks = tx.clone();
            // Answered by the core in order with the container's events: the ones after the
            // answer are the order's own.
            let turn: Turn = Box::new(move |running| {
                Box::pin(async move {
                    let (reply, verdict) = oneshot::channel();
                    let _ = asks.send(Msg::Turn { running, reply }).await;
                    let verdict = verdict.await.unwrap_or(Verdict::Drop);
                    let _ = sent_tx.send(());
                    verdict
                })
            });
            if let Some(outcome) = runtime.execute(&id, &order, turn).await {
                let _ = tx.send(Msg::Ended(outcome)).await;
            }
        });
        sent_rx
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

    fn carry_out(
        &mut self,
        effect: Effect,
        now: Instant,
        sent: &mut Option<oneshot::Receiver<()>>,
    ) {
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
                self.start_capture(sent.take());
            }
            Effect::IncidentUpdated(t) => self.incidents.updated(&t),
            Effect::IncidentClosed {
                incident,
                outcome,
                time_to_recover,
            } => self
                .incidents
                .closed(&incident, outcome, time_to_recover, &name, now),
            Effect::Order(_) | Effect::Turn(_) | Effect::Unwatch => {}
            Effect::OrderFailed { why } => self.incidents.restart_failed(now, Some(why)),
            Effect::BackoffReset => {
                tracing::debug!(container = %name, "healthy long enough: backoff forgotten")
            }
            Effect::Recovery { trigger, result } => {
                shared.metrics.recovery(&name, trigger, result);
                match result {
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
                // A `die` that named no code leaves none to record (never a made-up one).
                .and_then(|e| e.code.map(|code| ExitRecord::new(code, e.oom_killed))),
            ..Evidence::default()
        })
    }

    /// Reads the rest of the evidence from Docker off the task's path, once the restart this
    /// observation ordered (if any) is sent: healing never waits for it.
    fn start_capture(&mut self, restart_sent: Option<oneshot::Receiver<()>>) {
        let Some(incident) = self.incidents.open.as_ref().map(|i| i.id) else {
            return;
        };
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
        let incident = self.incidents.current();
        let key = ViewKey {
            state: self.sup.state(),
            docker_health: self.sup.docker_health(),
            failures: self.sup.consecutive_failures(),
            restarts: self.sup.restarts_in_window(now),
            in_flight: self.sup.restart_in_flight(),
            unobservable: self.sup.unobservable().map(|u| u.as_str()),
            incident: incident.map(|i| (i.id, i.attempts, i.outcome, i.action_begun.is_some())),
            name: self.info.name.clone(),
            waiting_on: self
                .waiting_on
                .clone()
                .filter(|_| self.sup.parent_waiting()),
            healthy_since: self.sup.healthy_since(),
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
            state: key.state.as_str().into(),
            docker_health: key.docker_health.map(|h| h.as_str().into()),
            consecutive_failures: key.failures,
            restarts_in_window: key.restarts,
            restart_in_flight: key.in_flight,
            cannot_observe: key.unobservable.map(Into::into),
            spec: Some(self.spec.clone()),
            label_errors: Vec::new(),
            last_incident: incident.map(Incident::without_evidence),
            dependencies: Default::default(),
            waiting_on: key.waiting_on.clone(),
            swarm: self.swarm.as_ref().map(|b| crate::shared::SwarmView {
                service: b.task.service_name.clone(),
                slot: b.task.slot_key(),
                task: b.task.task_id.clone(),
                restart_condition: b.condition.as_str().into(),
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
    unobservable: Option<&'static str>,
    incident: Option<(u64, u32, crate::journal::IncidentOutcome, bool)>,
    name: String,
    waiting_on: Option<String>,
    healthy_since: Option<Instant>,
    condition: Option<selfheal_core::RestartCondition>,
}

/// Whether the task goes on watching after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watching {
    On,
    /// Removed, or replaced by a recreate: the task ends.
    Done,
}

/// What feeding one observation returned to the caller.
struct Fed {
    /// The core's answer to the executor's turn.
    verdict: Option<Verdict>,
    watching: Watching,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
