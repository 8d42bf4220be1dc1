//! One task per watched container: it owns the container's [`Supervisor`], runs its probe
//! schedule, carries out the supervisor's effects and keeps its incident record.

use crate::docker::ContainerInfo;
use crate::executor::{ExecOutcome, Executor, DEFAULT_STOP_TIMEOUT};
use crate::journal::{Incident, IncidentOutcome};
use crate::metrics::probe_labels;
use crate::notify::{Notification, Notifier};
use crate::probe::Prober;
use crate::shared::{ContainerView, Shared};
use selfheal_core::policy::{OpenIncident, PolicySpec, RestartOutcome};
use selfheal_core::{
    Backoff, DockerHealth, Effect, Input, Outcome, RecoveryResult, State, Supervisor, Trigger,
    WatchSpec,
};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a container found down in the middle of an incident is given to come back by
/// itself (a restart already under way) before the watchdog starts it.
const DOWN_RECHECK: std::time::Duration = std::time::Duration::from_secs(3);

/// Messages to a container task.
#[derive(Debug)]
pub enum Msg {
    Input(Input),
    /// A Docker `health_status: unhealthy` event, with when it was received (reaction metric).
    Unhealthy {
        received: Instant,
    },
    /// Fresh inspect data: after a start event, or a re-list after reconnecting.
    Sync(Box<ContainerInfo>),
    /// A `start` event, with inspect data read right after it.
    Started(Box<ContainerInfo>),
    /// Died, with the exit code to judge Docker's restart policy.
    Died {
        exit_code: i64,
    },
    Oom,
    Rename(String),
}

/// Everything a task needs from the daemon.
#[derive(Debug, Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    pub executor: Executor,
    pub prober: Prober,
    pub notifier: Notifier,
    pub backoff: Backoff,
    pub probe_network: Option<String>,
    pub own_networks: Arc<Vec<String>>,
}

pub struct ContainerHandle {
    pub tx: mpsc::UnboundedSender<Msg>,
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
}

struct ContainerTask {
    ctx: Context,
    info: ContainerInfo,
    spec: WatchSpec,
    sup: Supervisor,
    incident: Option<Incident>,
    last_incident: Option<Incident>,
    oom_pending: bool,
    /// Found down mid-incident; looking again before acting (a restart may be under way).
    down_deferred: bool,
    /// What the shared view last showed.
    published: Option<ViewKey>,
    /// Resumed an incident whose restart the previous run had sent, and not seen it running
    /// since.
    resumed_restart: bool,
    unhealthy_received: Option<Instant>,
    addr: watch::Sender<Option<IpAddr>>,
    probe_paused: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Msg>,
}

/// Starts watching one container. `resumed` is an incident left open by a previous run.
pub fn spawn(
    ctx: Context,
    info: ContainerInfo,
    spec: WatchSpec,
    resumed: Option<Incident>,
    parent: &CancellationToken,
) -> ContainerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = parent.child_token();
    let policy = PolicySpec {
        failures: spec.failures,
        start_period: spec.start_period,
        stop_timeout: spec.stop_timeout,
        restart_max: spec.restart_max,
        restart_window: spec.restart_window,
        backoff: ctx.backoff,
        has_probe: spec.probe.is_some(),
        has_docker_health: info.has_healthcheck,
    };
    let open = resumed.as_ref().and_then(|i| {
        let first = humantime::parse_rfc3339_weak(&i.first_failure).ok()?;
        let detected = humantime::parse_rfc3339_weak(&i.detected).ok()?;
        Some(OpenIncident {
            trigger: i.trigger,
            first_failure: ctx.shared.clock.instant(first),
            detected: ctx.shared.clock.instant(detected),
            attempts: i.attempts,
            restart_sent: i
                .action_begun
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .map(|t| ctx.shared.clock.instant(t)),
        })
    });
    if let Some(i) = &resumed {
        tracing::info!(container = %info.name, incident = i.id, "resuming open incident");
    }
    ctx.shared
        .metrics
        .add_container(&info.name, spec.probe.as_ref().map(|p| p.kind));
    ctx.shared.metrics.set_state(&info.name, State::Starting);
    let (addr, addr_rx) =
        watch::channel(info.probe_address(ctx.probe_network.as_deref(), &ctx.own_networks));
    let probe_paused = Arc::new(AtomicBool::new(false));
    let paused_probe = probe_paused.clone();
    let probe_task = spec.probe.clone().map(|target| {
        let prober = ctx.prober.clone();
        let tx = tx.clone();
        let (interval, timeout) = (spec.interval, spec.timeout);
        let shared = ctx.shared.clone();
        let name = info.name.clone();
        let cancel = cancel.clone();
        let target_kind = target.kind;
        // The histogram handle is looked up once, not per probe.
        let duration = shared
            .metrics
            .probe_duration
            .get_or_create(&probe_labels(&name, target_kind))
            .clone();
        tokio::spawn(async move {
            let report = |result: Result<(), selfheal_core::ProbeFailure>,
                          took: std::time::Duration,
                          _lag| {
                if paused_probe.load(Ordering::Relaxed) {
                    // Stopped, exited or mid-restart: a failure now is expected, not news.
                    return true;
                }
                duration.observe(took.as_secs_f64());
                let input = match result {
                    Ok(()) => Input::ProbeOk,
                    Err(reason) => {
                        shared
                            .metrics
                            .probe_failures
                            .get_or_create(&crate::metrics::ReasonLabels {
                                container: name.clone(),
                                reason: reason.as_str().into(),
                            })
                            .inc();
                        Input::ProbeFailed(reason)
                    }
                };
                tx.send(Msg::Input(input)).is_ok()
            };
            crate::probe::schedule(prober, target, interval, timeout, addr_rx, cancel, report)
                .await;
        })
    });
    let resumed_restart = resumed.as_ref().is_some_and(|i| i.action_begun.is_some());
    let mut task = ContainerTask {
        sup: Supervisor::new(policy, open),
        ctx,
        spec,
        incident: resumed,
        last_incident: None,
        oom_pending: false,
        down_deferred: false,
        resumed_restart,
        published: None,
        unhealthy_received: None,
        addr,
        probe_paused,
        tx: tx.clone(),
        info,
    };
    let token = cancel.clone();
    let handle = tokio::spawn(async move {
        task.publish();
        task.run(rx, token).await;
        if let Some(p) = probe_task {
            p.abort();
        }
    });
    ContainerHandle {
        tx,
        cancel,
        task: handle,
    }
}

impl ContainerTask {
    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Msg>, cancel: CancellationToken) {
        loop {
            let wake = self.sup.wake_at();
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
                _ = sleep_until(wake) => Msg::Input(Input::Tick),
            };
            let removed = matches!(msg, Msg::Input(Input::Removed));
            self.on_msg(msg).await;
            if removed {
                // Gone (destroyed, or no longer opted in): close out and stop.
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
            Msg::Input(input) => self.feed(input, now).await,
            Msg::Unhealthy { received } => {
                self.unhealthy_received = Some(received);
                self.feed(Input::Health(DockerHealth::Unhealthy), now).await;
                self.unhealthy_received = None;
            }
            Msg::Oom => self.oom_pending = true,
            Msg::Died { exit_code } => {
                let oom = std::mem::take(&mut self.oom_pending);
                let docker_restarts = self.info.docker_restarts(exit_code);
                self.feed(
                    Input::Died {
                        oom,
                        docker_restarts,
                    },
                    now,
                )
                .await;
            }
            Msg::Rename(name) => {
                self.ctx.shared.metrics.remove_container(&self.info.name);
                tracing::info!(from = %self.info.name, to = %name, "container renamed");
                self.info.name = name;
                self.ctx
                    .shared
                    .metrics
                    .add_container(&self.info.name, self.spec.probe.as_ref().map(|p| p.kind));
                self.ctx
                    .shared
                    .metrics
                    .set_state(&self.info.name, self.sup.state());
            }
            Msg::Sync(info) => self.sync(*info, now).await,
            Msg::Started(info) => {
                self.update_info(*info);
                // A start happened even if the process already exited again: its die event
                // follows in the stream.
                self.feed_running(now).await;
                self.feed_health(now).await;
            }
        }
    }

    /// Tells the policy the container runs, since its StartedAt.
    async fn feed_running(&mut self, now: Instant) {
        let since = self
            .info
            .started_at
            .map_or(now, |t| self.ctx.shared.clock.instant(t));
        self.feed(
            Input::Running {
                since: since.min(now),
            },
            now,
        )
        .await;
    }

    /// Tells the policy Docker's health status when it is news.
    async fn feed_health(&mut self, now: Instant) {
        if let Some(h) = self.info.health.filter(|_| self.info.running) {
            if self.sup.docker_health() != Some(h) {
                self.feed(Input::Health(h), now).await;
            }
        }
    }

    /// Brings the policy in line with fresh inspect data without repeating what it knows.
    async fn sync(&mut self, info: ContainerInfo, now: Instant) {
        let restarted = info.started_at != self.info.started_at;
        self.update_info(info);
        let state = self.sup.state();
        if self.info.running {
            if restarted || matches!(state, State::Exited | State::Stopped) {
                self.feed_running(now).await;
            }
            self.feed_health(now).await;
        } else if !matches!(
            state,
            State::Stopped | State::Exited | State::Restarting | State::Quarantined
        ) {
            let oom = self.info.oom_killed;
            if self.info.restarting {
                // Docker's policy is bringing it back.
                self.feed(
                    Input::Died {
                        oom,
                        docker_restarts: true,
                    },
                    now,
                )
                .await;
            } else if self.resumed_restart && !self.down_deferred {
                // Down in the middle of an incident: typically a restart that a previous run
                // of the watchdog began and Docker is still carrying out. Look again shortly
                // instead of starting a second one on top of it.
                self.down_deferred = true;
                let (executor, id, tx) = (
                    self.ctx.executor.clone(),
                    self.info.id.clone(),
                    self.tx.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(DOWN_RECHECK).await;
                    if let Some(info) = executor.inspect(&id).await {
                        let _ = tx.send(Msg::Sync(Box::new(info)));
                    }
                });
            } else if self.resumed_restart {
                // Still down: finish the recovery.
                self.resumed_restart = false;
                self.sup.forget_resumed_restart();
                self.feed(
                    Input::Died {
                        oom,
                        docker_restarts: false,
                    },
                    now,
                )
                .await;
            } else {
                // Found stopped after a gap in the event stream: it may have been the user, so
                // the conservative reading is a stop, never a restart the user did not want.
                self.feed(Input::Stopped, now).await;
            }
        }
    }

    fn update_info(&mut self, info: ContainerInfo) {
        if info.running {
            self.down_deferred = false;
            self.resumed_restart = false;
        }
        self.info = ContainerInfo {
            name: self.info.name.clone(),
            ..info
        };
        let _ = self.addr.send(
            self.info
                .probe_address(self.ctx.probe_network.as_deref(), &self.ctx.own_networks),
        );
    }

    async fn feed(&mut self, input: Input, now: Instant) {
        let effects = self.sup.handle(input, now);
        // Act first: a restart is dispatched before anything is written down.
        let mut dispatched = None;
        for e in &effects {
            if let Effect::Restart {
                trigger,
                attempt,
                stop_timeout,
            } = e
            {
                self.dispatch_restart(*trigger, *attempt, *stop_timeout, now);
                dispatched = Some(*attempt);
            }
        }
        for e in effects {
            self.record(e, now);
        }
        if let (Some(attempt), Some(i)) = (dispatched, &mut self.incident) {
            i.action_begun = Some(self.ctx.shared.clock.rfc3339(now));
            i.attempts = attempt;
            self.write_incident();
        }
    }

    fn dispatch_restart(
        &mut self,
        trigger: Trigger,
        attempt: u32,
        stop_timeout: Option<u32>,
        now: Instant,
    ) {
        let t = stop_timeout
            .or(self.info.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        if let Some(received) = self.unhealthy_received {
            self.ctx
                .shared
                .metrics
                .event_to_action
                .observe(now.duration_since(received).as_secs_f64());
        }
        let verb = if self.ctx.shared.dry_run {
            "would restart (dry run)"
        } else {
            "restarting"
        };
        tracing::warn!(container = %self.info.name, %trigger, attempt, stop_timeout = t, "{verb}");
        let executor = self.ctx.executor.clone();
        let id = self.info.id.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let sent = tx.clone();
            let on_sent = move || {
                let _ = sent.send(Msg::Input(Input::RestartSent));
            };
            let must_be_running = !matches!(trigger, Trigger::Died | Trigger::Oom);
            let outcome = executor.restart(&id, t, must_be_running, on_sent).await;
            let input = match outcome {
                ExecOutcome::Cancelled => Input::RestartFinished(RestartOutcome::Cancelled),
                ExecOutcome::Restarted => Input::RestartFinished(RestartOutcome::Done),
                ExecOutcome::DryRun => Input::RestartFinished(RestartOutcome::Skipped),
                ExecOutcome::Failed(e) => Input::RestartFinished(RestartOutcome::Failed(e)),
                ExecOutcome::Gone => Input::Removed,
            };
            let _ = tx.send(Msg::Input(input));
        });
    }

    fn record(&mut self, effect: Effect, now: Instant) {
        let name = self.info.name.clone();
        let shared = self.ctx.shared.clone();
        match effect {
            Effect::StateChanged { from, to } => {
                tracing::info!(container = %name, %from, %to, "state");
                shared.metrics.set_state(&name, to);
                let paused = matches!(to, State::Stopped | State::Exited | State::Restarting);
                self.probe_paused.store(paused, Ordering::Relaxed);
            }
            Effect::IncidentOpened {
                trigger,
                first_failure,
                detected,
            } => {
                let clock = shared.clock;
                let incident = Incident {
                    id: shared.journal.next_id(),
                    container: name.clone(),
                    container_id: self.info.id.clone(),
                    compose_project: self.info.compose_project(),
                    compose_service: self.info.compose_service(),
                    trigger,
                    first_failure: clock.rfc3339(first_failure),
                    detected: clock.rfc3339(detected),
                    action_begun: None,
                    healthy_again: None,
                    time_to_detect_seconds: Some(
                        detected.duration_since(first_failure).as_secs_f64(),
                    ),
                    time_to_recover_seconds: None,
                    attempts: 0,
                    outcome: IncidentOutcome::Open,
                    dry_run: shared.dry_run,
                    unpersisted: false,
                };
                tracing::warn!(container = %name, %trigger, incident = incident.id, "incident opened");
                self.notify("opened", &incident);
                self.incident = Some(incident);
                self.write_incident();
            }
            Effect::Restart { .. } => {}
            Effect::Recovery { trigger, result } => {
                shared.metrics.recovery(&name, trigger, result);
                if result == RecoveryResult::Failed {
                    if let Some(i) = self.incident.clone() {
                        self.notify("failed", &i);
                    }
                }
                if result == RecoveryResult::Observed {
                    tracing::info!(container = %name, %trigger, "restarted by Docker's restart policy; recorded, not repeated");
                }
            }
            Effect::IncidentClosed {
                trigger,
                outcome,
                time_to_recover,
                attempts,
            } => {
                if let Some(ttr) = time_to_recover {
                    shared
                        .metrics
                        .recovery_duration
                        .get_or_create(&crate::metrics::TriggerLabels {
                            container: name.clone(),
                            trigger: trigger.as_str().into(),
                        })
                        .observe(ttr.as_secs_f64());
                }
                if let Some(mut i) = self.incident.take() {
                    i.outcome = outcome.into();
                    i.attempts = attempts;
                    if outcome == Outcome::Recovered {
                        i.healthy_again = Some(shared.clock.rfc3339(now));
                        i.time_to_recover_seconds = time_to_recover.map(|d| d.as_secs_f64());
                    }
                    tracing::info!(
                        container = %name, incident = i.id, %outcome,
                        time_to_recover = ?time_to_recover, attempts, "incident closed"
                    );
                    match outcome {
                        Outcome::Recovered => self.notify("recovered", &i),
                        Outcome::Quarantined => self.notify("quarantined", &i),
                        Outcome::Abandoned => {}
                    }
                    self.incident = Some(i);
                    self.write_incident();
                    self.last_incident = self.incident.take();
                }
            }
            Effect::Quarantined { restarts_in_window } => {
                tracing::error!(
                    container = %name, restarts_in_window,
                    "restart budget spent: quarantined, left alone until it is healthy again"
                );
            }
            Effect::Released => {
                tracing::info!(container = %name, "healthy again by itself: released from quarantine");
            }
        }
    }

    fn write_incident(&self) {
        if let Some(i) = &self.incident {
            // Never waits on the disk: the journal's writer thread appends it.
            self.ctx.shared.journal.record(i.clone());
        }
    }

    fn notify(&self, event: &'static str, i: &Incident) {
        let text = match event {
            "opened" => format!(
                "selfheal: {} is failing ({}); incident #{} opened",
                i.container, i.trigger, i.id
            ),
            "recovered" => format!(
                "selfheal: {} recovered in {:.1}s after {} attempt(s) (incident #{})",
                i.container,
                i.time_to_recover_seconds.unwrap_or_default(),
                i.attempts,
                i.id
            ),
            "quarantined" => format!(
                "selfheal: {} quarantined after {} restarts; it needs a human (incident #{})",
                i.container, i.attempts, i.id
            ),
            _ => format!(
                "selfheal: restart of {} failed (incident #{})",
                i.container, i.id
            ),
        };
        self.ctx.notifier.send(Notification {
            text,
            event,
            container: i.container.clone(),
            trigger: i.trigger.to_string(),
            incident_id: i.id,
            time_to_recover_seconds: i.time_to_recover_seconds,
            attempts: i.attempts,
        });
    }

    /// Updates the shared view, but only when something shown there changed: most messages
    /// are probe successes that change nothing.
    fn publish(&mut self) {
        let now = Instant::now();
        let incident = self.incident.as_ref().or(self.last_incident.as_ref());
        let key = ViewKey {
            state: self.sup.state(),
            docker_health: self.sup.docker_health(),
            failures: self.sup.probe_failures(),
            restarts: self.sup.restarts_in_window(now),
            in_flight: self.sup.restart_in_flight(),
            incident: incident.map(|i| {
                (
                    i.id,
                    i.attempts,
                    i.outcome.to_string(),
                    i.action_begun.is_some(),
                )
            }),
            name: self.info.name.clone(),
        };
        if self.published.as_ref() == Some(&key) {
            return;
        }
        self.published = Some(key);
        let view = ContainerView {
            id: self.info.id.clone(),
            name: self.info.name.clone(),
            compose_project: self.info.compose_project(),
            compose_service: self.info.compose_service(),
            state: self.sup.state().as_str().into(),
            docker_health: self.sup.docker_health().map(|h| h.as_str().into()),
            consecutive_failures: self.sup.probe_failures(),
            restarts_in_window: self.sup.restarts_in_window(now),
            restart_in_flight: self.sup.restart_in_flight(),
            spec: Some(self.spec.clone()),
            label_errors: Vec::new(),
            last_incident: self.incident.clone().or_else(|| self.last_incident.clone()),
        };
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
    incident: Option<(u64, u32, String, bool)>,
    name: String,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
