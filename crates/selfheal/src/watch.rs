//! The watch loop: list the opted-in containers (through `discovery`, shared with `check`),
//! follow Docker's event stream, reconnect and re-list when it drops, and route every event to
//! the container's task.

use crate::config::WatchConfig;
use crate::container::{self, ContainerHandle, Context, Msg};
use crate::dependents::{node_of, Dependents, GateReport};
use crate::discovery::{self, Discovered};
use crate::docker::{self, bounded, ContainerInfo};
use crate::engine_events::{self, ContainerEvent, DialectMemory, EventKind, HealthReport};
use crate::executor::Executor;
use crate::notify::Notifier;
use crate::probe::Prober;
use crate::shared::{ContainerView, Shared};
use bollard::models::EventMessage;
use bollard::query_parameters::{EventsOptionsBuilder, InspectContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;
use selfheal_core::dependents::Gate;
use selfheal_core::{DockerHealth, LabelError, Observation};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, RwLock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const PING_EVERY: Duration = Duration::from_secs(5);
/// Events read from Docker and not yet routed.
const EVENT_QUEUE: usize = 1024;
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// The wait before each reconnect: doubles from [`RECONNECT_MIN`] up to [`RECONNECT_MAX`]
/// while sessions fail before connecting; a session that had connected starts it over, so
/// the first retry after a working connection drops is a quick one.
#[derive(Debug)]
struct ReconnectBackoff {
    next: Duration,
}

impl Default for ReconnectBackoff {
    fn default() -> Self {
        Self {
            next: RECONNECT_MIN,
        }
    }
}

impl ReconnectBackoff {
    /// The wait after a session failed; `connected` says whether it had got connected.
    fn wait_after(&mut self, connected: bool) -> Duration {
        if connected {
            self.next = RECONNECT_MIN;
        }
        let wait = self.next;
        self.next = (wait * 2).min(RECONNECT_MAX);
        wait
    }
}

/// The watch loop and what it owns.
pub struct Watcher {
    cfg: WatchConfig,
    shared: Arc<Shared>,
    docker: Arc<RwLock<Option<Docker>>>,
    ctx: Context,
    tasks: HashMap<String, ContainerHandle>,
    /// Containers with unusable labels: id -> errors (logged once per change).
    ignored: HashMap<String, Vec<LabelError>>,
    first_sync_done: bool,
    cancel: CancellationToken,
    session_connected: bool,
    /// The watchdog's own container, when it runs in one: never its own patient.
    own_id: Option<String>,
    /// Docker's time (ns since the epoch) up to which every event has been handled: the last
    /// event's, or when the session subscribed. An outage is replayed from here.
    seen_until: Option<i64>,
    /// The dependency graph of the watched containers.
    dependents: Dependents,
    /// Parents' tasks report here when their dependents wait or may go on.
    gates: mpsc::Receiver<GateReport>,
    /// The other nodes' watchdogs on Swarm (`--swarm-peers`).
    peers: Option<crate::swarm::Peers>,
    /// What reading Podman's event dialect needs to remember per container.
    dialect: DialectMemory,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    pub fn new(cfg: WatchConfig, shared: Arc<Shared>, notifier: Notifier) -> anyhow::Result<Self> {
        let docker = Arc::new(RwLock::new(None));
        let executor = Executor::new(docker.clone(), cfg.max_concurrent_restarts, shared.clone());
        let (gates_tx, gates) = mpsc::channel(EVENT_QUEUE);
        let peers = match &cfg.swarm_peers {
            Some(target) => Some(crate::swarm::Peers::new(
                target,
                cfg.admin_guard.admin.clone(),
            )?),
            None => None,
        };
        let ctx = Context {
            shared: shared.clone(),
            runtime: Arc::new(executor),
            prober: Prober::new()?,
            notifier,
            backoff: cfg.backoff,
            probe_network: cfg.probe_network.clone(),
            own_networks: Arc::new(Vec::new()),
            evidence: cfg.evidence,
            gates: gates_tx,
            slots: shared.slots.clone(),
            peers: peers.clone(),
        };
        Ok(Self {
            cfg,
            shared,
            docker,
            ctx,
            tasks: HashMap::new(),
            ignored: HashMap::new(),
            first_sync_done: false,
            cancel: CancellationToken::new(),
            session_connected: false,
            own_id: None,
            seen_until: None,
            dependents: Dependents::default(),
            gates,
            peers,
            dialect: DialectMemory::default(),
        })
    }

    /// Runs until `cancel`: connect, subscribe, list, follow; on any loss, back off and again.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.cancel = cancel.child_token();
        tokio::spawn(crate::swarm::follow_handovers(
            self.ctx.slots.clone(),
            self.shared.clone(),
            self.ctx.notifier.clone(),
            self.peers.clone(),
            self.cfg.swarm_handover_wait,
            self.cancel.clone(),
        ));
        let mut backoff = ReconnectBackoff::default();
        let mut connected_before = false;
        loop {
            self.shared.beat();
            let delay = match self.session(&cancel, connected_before).await {
                Ok(()) => break,
                Err(e) => {
                    let delay = backoff.wait_after(std::mem::take(&mut self.session_connected));
                    self.shared.set_docker_up(false);
                    *self.docker.write().await = None;
                    tracing::warn!(error = %e, retry_in = ?delay, "Docker connection lost");
                    delay
                }
            };
            connected_before = true;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = heartbeat_sleep(&self.shared, delay) => {}
            }
        }
        for (_, t) in self.tasks.drain() {
            t.stop();
        }
    }

    /// One connected session. Returns `Ok` only when cancelled.
    async fn session(&mut self, cancel: &CancellationToken, reconnect: bool) -> anyhow::Result<()> {
        let docker = docker::connect(self.cfg.docker_host.as_deref()).await?;
        // Subscribe before listing, so nothing that happens in between is missed.
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container"]);
        filters.insert("event", engine_events::SUBSCRIBED.to_vec());
        if let Some(f) = &self.cfg.filter_label {
            filters.insert("label", vec![f.as_str()]);
        }
        let replay_from = self.seen_until.filter(|_| reconnect);
        let subscribed_at = now_nanos();
        let mut stream = docker.events(Some(
            EventsOptionsBuilder::default().filters(&filters).build(),
        ));
        // Bounded: a busy loop slows reading the stream (Docker buffers it), it never grows
        // memory without end.
        let (ev_tx, mut ev_rx) = mpsc::channel::<Result<EventMessage, String>>(EVENT_QUEUE);
        let forward = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if ev_tx.send(item.map_err(|e| e.to_string())).await.is_err() || failed {
                    return;
                }
            }
            let _ = ev_tx.send(Err("event stream ended".into())).await;
        });
        let _guard = AbortOnDrop(forward);
        bounded(docker.ping()).await?;
        let engine = docker::identify(&docker).await.map_or_else(
            |e| format!("an engine that did not say what it is ({e})"),
            |e| e.to_string(),
        );
        if let Ok(info) = bounded(docker.info()).await {
            // Notifications name the engine's host, never the watchdog's own container.
            self.ctx
                .notifier
                .learn_host(info.name.as_deref().unwrap_or_default());
        }
        *self.docker.write().await = Some(docker.clone());
        self.discover_own_networks(&docker).await;
        if let Some(from) = replay_from {
            self.replay(&docker, from, subscribed_at).await;
        }
        self.seen_until = Some(self.seen_until.unwrap_or(0).max(subscribed_at));
        self.resync(&docker).await?;
        self.shared.set_docker_up(true);
        self.session_connected = true;
        if reconnect {
            self.shared.metrics.docker_reconnects.inc();
        }
        tracing::info!(
            watched = self.tasks.len(),
            ignored = self.ignored.len(),
            %engine,
            "connected to Docker; following events"
        );
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            self.shared.beat();
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                ev = ev_rx.recv() => match ev {
                    Some(Ok(ev)) => self.on_event(&docker, ev).await,
                    Some(Err(e)) => anyhow::bail!("event stream: {e}"),
                    None => anyhow::bail!("event stream closed"),
                },
                _ = ping.tick() => {
                    bounded(docker.ping()).await.map_err(|e| anyhow::anyhow!("ping: {e}"))?;
                }
                Some(report) = self.gates.recv() => self.on_gate(report).await,
            }
        }
    }

    async fn discover_own_networks(&mut self, docker: &Docker) {
        let host = std::env::var("HOSTNAME").ok().or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        });
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            return;
        };
        if let Ok(me) =
            bounded(docker.inspect_container(&host, None::<InspectContainerOptions>)).await
        {
            let info = ContainerInfo::from_inspect(me);
            self.own_id = Some(info.id.clone());
            let nets: Vec<String> = info.addresses.into_iter().map(|(n, _)| n).collect();
            tracing::info!(networks = ?nets, "running in a container; probing over its networks");
            self.ctx.own_networks = Arc::new(nets);
        }
    }

    /// Lists every container and brings each task in line with it.
    async fn resync(&mut self, docker: &Docker) -> anyhow::Result<()> {
        let mut seen = HashSet::new();
        for c in discovery::list(docker, &self.cfg).await? {
            seen.insert(c.id.clone());
            if c.considered || self.tasks.contains_key(&c.id) {
                self.refresh(docker, &c.id, false).await;
            }
        }
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.forget(&id).await;
        }
        let vanished: Vec<String> = self
            .ignored
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in vanished {
            self.forget(&id).await;
        }
        if !self.first_sync_done {
            self.first_sync_done = true;
            // Incidents left open by a previous run for containers that no longer exist.
            for i in self.shared.journal.open_incidents() {
                if !seen.contains(&i.container_id) {
                    container::close_orphan(&self.shared, i);
                }
            }
        }
        Ok(())
    }

    /// Starts watching a container not known yet (it is inspected here, once, for its labels
    /// and configuration), or has a known one's task look at it (inspected in that task).
    async fn refresh(&mut self, docker: &Docker, id: &str, start_event: bool) {
        if self.own_id.as_deref() == Some(id) {
            return;
        }
        if let Some(task) = self.tasks.get(id) {
            task.send(Msg::Look {
                started: start_event,
            })
            .await;
            return;
        }
        match discovery::inspect(docker, id, &self.cfg).await {
            Discovered::Gone | Discovered::NotOptedIn => self.forget(id).await,
            Discovered::NotInspectable(e) => {
                tracing::warn!(container = id, error = %e, "inspect failed");
            }
            Discovered::Watched { info, spec } => {
                self.clear_ignored(&info);
                tracing::info!(container = %info.name, spec = %spec.describe(), "watching");
                let views = self.dependents.upsert(node_of(&info, &spec));
                self.shared.set_dependencies(views);
                let resumed = self
                    .shared
                    .journal
                    .open_incidents()
                    .into_iter()
                    .find(|i| i.container_id == info.id);
                let swarm = match selfheal_core::SwarmTask::from_labels(&info.labels) {
                    Some(task) => {
                        let condition = crate::swarm::restart_condition(
                            docker,
                            &info.labels,
                            &task,
                            self.peers.as_ref(),
                        )
                        .await;
                        tracing::info!(container = %info.name, service = %task.service_name,
                            slot = %task.slot_key(), condition = condition.as_str(),
                            "a Swarm task: never restarted in place");
                        Some(crate::swarm::SwarmBinding { task, condition })
                    }
                    None => None,
                };
                let handle =
                    container::spawn(self.ctx.clone(), info, spec, resumed, swarm, &self.cancel);
                self.tasks.insert(id.to_string(), handle);
            }
            Discovered::LabelErrors { info, errors } => {
                if let Some(t) = self.tasks.remove(id) {
                    t.stop();
                }
                if let Some(views) = self.dependents.remove(id) {
                    self.shared.set_dependencies(views);
                }
                if self.ignored.get(id) != Some(&errors) {
                    for e in &errors {
                        tracing::error!(container = %info.name, label = %e.label, value = %e.value, reason = %e.reason,
                            "bad selfheal label; this container is left alone until it is fixed");
                        self.shared
                            .metrics
                            .label_errors
                            .get_or_create(&crate::metrics::LabelErrorLabels {
                                container: info.name.clone(),
                                label: e.label.clone(),
                            })
                            .set(1);
                    }
                }
                self.shared.put_view(ContainerView {
                    id: info.id.clone(),
                    name: info.name.clone(),
                    compose_project: info.compose_project(),
                    compose_service: info.compose_service(),
                    state: crate::shared::ViewState::Ignored,
                    docker_health: info.health,
                    consecutive_failures: 0,
                    restarts_in_window: 0,
                    restart_in_flight: false,
                    cannot_observe: None,
                    spec: None,
                    label_errors: errors.clone(),
                    last_incident: None,
                    dependencies: Default::default(),
                    waiting_on: None,
                    swarm: None,
                    backoff: None,
                });
                self.ignored.insert(id.to_string(), errors);
            }
        }
    }

    fn clear_ignored(&mut self, info: &ContainerInfo) {
        if let Some(errors) = self.ignored.remove(&info.id) {
            for e in errors {
                self.shared
                    .metrics
                    .label_errors
                    .remove(&crate::metrics::LabelErrorLabels {
                        container: info.name.clone(),
                        label: e.label,
                    });
            }
            self.shared.remove_view(&info.id);
        }
    }

    async fn forget(&mut self, id: &str) {
        if let Some(views) = self.dependents.remove(id) {
            self.shared.set_dependencies(views);
            self.release_orphans().await;
        }
        if let Some(t) = self.tasks.remove(id) {
            // The task closes any open incident, removes its view and metrics, and ends.
            t.send(Msg::Removed).await;
        }
        if let Some(errors) = self.ignored.remove(id) {
            if let Some(v) = self
                .shared
                .containers
                .read()
                .ok()
                .and_then(|m| m.get(id).cloned())
            {
                for e in errors {
                    self.shared
                        .metrics
                        .label_errors
                        .remove(&crate::metrics::LabelErrorLabels {
                            container: v.name.clone(),
                            label: e.label,
                        });
                }
            }
        }
        self.shared.remove_view(id);
    }

    /// Feeds the lifecycle events Docker recorded while the connection was down (`from` to
    /// `until`, ns) in order, before the re-list: a crash is then told from a stop by its own
    /// events. Health events are left out: the re-list shows the health as it is now, and an
    /// `unhealthy` from the outage may be long over. Docker keeps a bounded history; what it
    /// no longer has, the re-list reads from the exit code (see the healing core).
    async fn replay(&mut self, docker: &Docker, from: i64, until: i64) {
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container"]);
        let lifecycle: Vec<&str> = engine_events::SUBSCRIBED
            .into_iter()
            .filter(|e| !engine_events::is_health_event(e))
            .collect();
        filters.insert("event", lifecycle);
        if let Some(f) = &self.cfg.filter_label {
            filters.insert("label", vec![f.as_str()]);
        }
        let (since, until) = (docker_time(from.saturating_add(1)), docker_time(until));
        let opts = EventsOptionsBuilder::default()
            .since(&since)
            .until(&until)
            .filters(&filters)
            .build();
        let events: Vec<EventMessage> = match tokio::time::timeout(
            docker::API_TIMEOUT,
            docker.events(Some(opts)).collect::<Vec<_>>(),
        )
        .await
        {
            Ok(items) => items.into_iter().filter_map(Result::ok).collect(),
            Err(_) => {
                tracing::warn!("replaying the outage's events timed out; reading exits instead");
                return;
            }
        };
        tracing::info!(
            events = events.len(),
            "replaying Docker events from the outage"
        );
        for ev in events {
            self.on_event(docker, ev).await;
        }
    }

    async fn on_event(&mut self, docker: &Docker, ev: EventMessage) {
        let received = Instant::now();
        if let Some(t) = ev.time_nano {
            self.seen_until = Some(self.seen_until.unwrap_or(0).max(t));
        }
        let Some(ContainerEvent { id, kind, .. }) = ContainerEvent::from_message(ev) else {
            return;
        };
        tracing::debug!(container = %id, event = ?kind, "event");
        let killed_unstated =
            !matches!(kind, EventKind::Health(_)) && self.dialect.lifecycle(&id, &kind, received);
        match kind {
            EventKind::Start => {
                // New containers are picked up here; known ones learn their new start time and
                // address through the sync.
                self.refresh(docker, &id, true).await;
                return;
            }
            EventKind::Destroy => {
                self.forget(&id).await;
                return;
            }
            EventKind::Rename { name } => {
                // Parked aside by a recreate for a moment: its incident and series keep the
                // name the user knows.
                if !crate::recreate::is_parked_name(&name) {
                    self.send(&id, Msg::Rename(name)).await;
                }
                return;
            }
            _ => {}
        }
        if !self.tasks.contains_key(&id) {
            return;
        }
        let msg = match kind {
            // Which signals stop a process is the core's call.
            EventKind::Kill {
                signal: Some(signal),
            } => Msg::Observe(Observation::Killed {
                signal: Some(signal),
            }),
            // Podman names no signal: told to the core only when the process then dies (below),
            // so that a SIGSTOP freeze is not taken for a user's stop.
            EventKind::Kill { signal: None } => return,
            EventKind::Oom => Msg::Oom,
            EventKind::Died { exit_code } => {
                if killed_unstated {
                    let killed = Observation::Killed { signal: None };
                    self.send(&id, Msg::Observe(killed)).await;
                }
                Msg::Died { exit_code }
            }
            EventKind::Stopped => Msg::Observe(Observation::Stopped),
            EventKind::Paused => Msg::Observe(Observation::Paused),
            EventKind::Unpaused => Msg::Observe(Observation::Unpaused),
            EventKind::Health(report) => {
                let health = match report {
                    HealthReport::Status(h) => h,
                    // Podman's event carries no value we can read: the health is inspected.
                    HealthReport::Unstated => match running_health(docker, &id).await {
                        Some(h) => h,
                        None => return,
                    },
                };
                if !self.dialect.health_changed(&id, health) {
                    return;
                }
                match health {
                    DockerHealth::Unhealthy => Msg::Unhealthy { received },
                    h => Msg::Observe(Observation::Health(h)),
                }
            }
            EventKind::Start | EventKind::Destroy | EventKind::Rename { .. } => return,
        };
        self.send(&id, msg).await;
    }

    /// A parent started again: its dependents wait, or are told, in the graph's release order.
    async fn on_gate(&mut self, r: GateReport) {
        for id in self.dependents.release_order(&r.parent_id) {
            let msg = match r.gate {
                Gate::Waiting { .. } => Msg::ParentWaiting {
                    parent: r.parent_name.clone(),
                    since: r.since,
                },
                Gate::Release { .. } => Msg::ParentStarted {
                    parent: r.parent_name.clone(),
                    at: r.since,
                    incident: r.incident,
                    recreate: None,
                },
            };
            self.send(&id, msg).await;
        }
        if let Gate::Release { .. } = r.gate {
            for (id, recreate) in self.dependents.orphans_of(&r.parent_id) {
                let msg = Msg::ParentStarted {
                    parent: r.parent_name.clone(),
                    at: r.since,
                    incident: r.incident,
                    recreate: Some(recreate),
                };
                self.send(&id, msg).await;
            }
        }
    }

    /// A recreated parent can be started, and even released, before its old container is
    /// removed (Compose v1 creates and starts the new one, then removes the old one): then no
    /// release finds the dependents left in the removed parent's namespace. Once the old one is
    /// gone they are told here, by a replacement that is healthy already.
    async fn release_orphans(&mut self) {
        let ready: Vec<ContainerView> = self
            .shared
            .views()
            .into_iter()
            .filter(|v| v.state == selfheal_core::State::Healthy.into())
            .collect();
        for parent in ready {
            for (id, recreate) in self.dependents.orphans_of(&parent.id) {
                tracing::info!(container = %id, parent = %parent.name,
                    "network parent was replaced before the old one was removed; recreating in the new one");
                let msg = Msg::ParentStarted {
                    parent: parent.name.clone(),
                    at: std::time::SystemTime::now(),
                    incident: None,
                    recreate: Some(recreate),
                };
                self.send(&id, msg).await;
            }
        }
    }

    async fn send(&self, id: &str, msg: Msg) {
        if let Some(t) = self.tasks.get(id) {
            t.send(msg).await;
        }
    }
}

/// The health of a running container, read by inspect; `None` when it is not running, has no
/// health, or cannot be read now.
async fn running_health(docker: &Docker, id: &str) -> Option<DockerHealth> {
    match bounded(docker.inspect_container(id, None::<InspectContainerOptions>)).await {
        Ok(c) => Some(ContainerInfo::from_inspect(c))
            .filter(|info| info.running)
            .and_then(|info| info.health),
        Err(e) => {
            tracing::debug!(container = %id, error = %e, "health not read");
            None
        }
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Docker's `since`/`until` syntax for a time in ns since the epoch: `SECONDS.NANOSECONDS`.
fn docker_time(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn heartbeat_sleep(shared: &Shared, total: Duration) {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        shared.beat();
        tokio::time::sleep((deadline - Instant::now()).min(Duration::from_secs(1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reconnect_waits_double_up_to_the_max_while_failing() {
        let mut backoff = ReconnectBackoff::default();
        let waits: Vec<_> = (0..10).map(|_| backoff.wait_after(false)).collect();
        let mut want = vec![ms(200), ms(400), ms(800), ms(1600), ms(3200), ms(6400)];
        want.resize(10, RECONNECT_MAX);
        assert_eq!(waits, want);
    }

    /// The bug: the first retry after a session that had connected waited the old delay (up
    /// to the max); the reset came one wait late.
    #[test]
    fn a_session_that_had_connected_makes_the_next_wait_the_minimum() {
        let mut backoff = ReconnectBackoff::default();
        for _ in 0..10 {
            backoff.wait_after(false);
        }
        assert_eq!(backoff.wait_after(true), RECONNECT_MIN);
        // Failing again after that doubles from the minimum.
        assert_eq!(backoff.wait_after(false), RECONNECT_MIN * 2);
        assert_eq!(backoff.wait_after(false), RECONNECT_MIN * 4);
        assert_eq!(backoff.wait_after(true), RECONNECT_MIN);
        assert_eq!(backoff.wait_after(true), RECONNECT_MIN);
    }
}
