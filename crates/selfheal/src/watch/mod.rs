//! The watch loop: list the opted-in containers (through `discovery`, shared with `check`),
//! follow Docker's event stream, reconnect and re-list when it drops, and route every event to
//! the container's task.

use crate::config::WatchConfig;
use crate::container::{self, ContainerHandle, Context, Msg};
use crate::dependents::{node_of, Dependents, GateReport};
use crate::discovery::{self, Discovered};
use crate::docker::events::{self, ContainerEvent, DialectMemory, EventKind, HealthReport};
use crate::docker::executor::Executor;
use crate::docker::{self, bounded, ContainerInfo};
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

mod routing;
mod tracked;

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
    /// Containers replaced by a recreate hand over here, for their replacement's task.
    successors: mpsc::Receiver<container::Successor>,
    /// The other nodes' watchdogs on Swarm (`--swarm-peers`).
    peers: Option<crate::swarm::Peers>,
    /// What reading Podman's event dialect needs to remember per container.
    dialect: DialectMemory,
    /// Containers a recreate parked aside, by the name their replacement takes: name -> the
    /// old container's id.
    replacing: HashMap<String, String>,
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
        let executor = Executor::new(
            docker.clone(),
            cfg.max_concurrent_restarts,
            shared.dry_run,
            shared.metrics.restarts_in_flight.clone(),
        );
        let (gates_tx, gates) = mpsc::channel(EVENT_QUEUE);
        let (successors_tx, successors) = mpsc::channel(EVENT_QUEUE);
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
            successors: successors_tx,
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
            successors,
            peers,
            dialect: DialectMemory::default(),
            replacing: HashMap::new(),
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
        filters.insert("event", events::SUBSCRIBED.to_vec());
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
                Some(s) = self.successors.recv() => self.on_successor(&docker, s).await,
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

    /// Feeds the lifecycle events Docker recorded while the connection was down (`from` to
    /// `until`, ns) in order, before the re-list: a crash is then told from a stop by its own
    /// events. Health events are left out: the re-list shows the health as it is now, and an
    /// `unhealthy` from the outage may be long over. Docker keeps a bounded history; what it
    /// no longer has, the re-list reads from the exit code (see the healing core).
    async fn replay(&mut self, docker: &Docker, from: i64, until: i64) {
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container"]);
        let lifecycle: Vec<&str> = events::SUBSCRIBED
            .into_iter()
            .filter(|e| !events::is_health_event(e))
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
