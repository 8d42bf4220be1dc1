//! Swarm in the daemon: which restart condition applies to a task's service, the ledger
//! through which a task's supervisor hands its slot over to the supervisor of the task that
//! replaces it (see `selfheal_core::swarm` for Swarm's semantics), the other nodes' watchdogs
//! (peers) that tell where a slot's replacement went, and the stuck-service check the leader
//! manager's watchdog runs.

use crate::docker::bounded;
use crate::journal::Incident;
use crate::shared::{Shared, SwarmView};
use bollard::query_parameters::{InspectServiceOptions, ListServicesOptionsBuilder};
use bollard::Docker;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use selfheal_core::swarm::RESTART_CONDITION_LABEL;
use selfheal_core::{
    Followed, Handover, PeerTask, RestartCondition, Shortfall, SlotCarry, SwarmTask,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A watched container that is a Swarm task.
#[derive(Debug, Clone)]
pub struct SwarmBinding {
    pub task: SwarmTask,
    pub condition: RestartCondition,
}

/// What an ended task left for its slot: the core's carry, the open incident's record, and
/// the hand-over the core follows until a replacement takes the slot.
#[derive(Debug)]
pub struct Handed {
    pub carry: SlotCarry,
    pub incident: Option<Incident>,
    pub handover: Handover,
    /// The ended task's container name (the metrics' `container` label if the incident closes
    /// here, its replacement being elsewhere).
    pub container: String,
    /// `selfheal.notify=false` on the ended task.
    pub muted: bool,
}

/// At most this many slots wait at once; past it the oldest is given up (its incident closed
/// `abandoned`), so a node whose tasks keep moving away cannot grow the ledger without bound.
pub const MAX_HANDED: usize = 1024;

/// Slots whose task ended and whose replacement has not been seen yet, by slot key.
#[derive(Debug, Default)]
pub struct SlotLedger {
    slots: Mutex<HashMap<String, Handed>>,
}

impl SlotLedger {
    /// Keeps `handed` for its slot; returns what had to make room (a slot handed over again
    /// before it was taken, or the oldest slot when the ledger is full), for the caller to
    /// close.
    pub fn put(&self, slot: String, handed: Handed) -> Vec<Handed> {
        let Ok(mut m) = self.slots.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Handed> = m.insert(slot, handed).into_iter().collect();
        while m.len() > MAX_HANDED {
            let oldest = m
                .iter()
                .min_by_key(|(_, h)| h.handover.handed_at)
                .map(|(k, _)| k.clone());
            match oldest.and_then(|k| m.remove(&k)) {
                Some(h) => out.push(h),
                None => break,
            }
        }
        out
    }

    pub fn take(&self, slot: &str) -> Option<Handed> {
        self.slots.lock().ok()?.remove(slot)
    }

    /// Takes the slot only if it still holds `handover` (not a later hand-over of the same
    /// slot, made while this one was being decided).
    pub fn take_if_still(&self, handover: &Handover) -> Option<Handed> {
        let mut m = self.slots.lock().ok()?;
        let same = m.get(&handover.slot_key).is_some_and(|h| {
            h.handover.ended_task == handover.ended_task
                && h.handover.handed_at == handover.handed_at
        });
        if same {
            m.remove(&handover.slot_key)
        } else {
            None
        }
    }

    /// What the slot spent, for its replacement on another node: the budget's send times,
    /// the backoff count and the last end's send time.
    pub fn spent(&self, slot: &str) -> Option<(Vec<Instant>, u32, Option<Instant>)> {
        let m = self.slots.lock().ok()?;
        let c = &m.get(slot)?.carry;
        Some((c.budget.sent().collect(), c.recent, c.last))
    }

    /// The hand-overs waiting now.
    pub fn waiting(&self) -> Vec<Handover> {
        self.slots
            .lock()
            .map(|m| m.values().map(|h| h.handover.clone()).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.slots.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The other nodes' watchdogs, found by one DNS name that resolves to all of them: on Swarm,
/// `tasks.<service>` on the stack's overlay network (`--swarm-peers tasks.watchdog:9100`).
/// Asked, read-only, where a slot's replacement runs (`GET /api/v1/swarm/tasks`) and, by a
/// worker that cannot read services, a service's restart condition (from a manager's
/// watchdog: `GET /api/v1/swarm/services/{id}`).
#[derive(Debug, Clone)]
pub struct Peers {
    target: String,
    client: reqwest::Client,
    /// `--admin-token`: the peers' `/api/` wants the same one.
    token: Option<crate::admin_auth::Token>,
}

/// How long one peer, or the DNS lookup, may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /api/v1/swarm/tasks`: the Swarm tasks a watchdog watches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TasksReply {
    pub tasks: Vec<SwarmView>,
}

/// `GET /api/v1/swarm/slots/{service}/{slot}`: what a slot whose task ended on that node
/// spent, RFC 3339 times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotReply {
    pub sent: Vec<String>,
    pub recent: u32,
    pub last: Option<String>,
}

impl SlotReply {
    pub fn of(shared: &Shared, slot: &str) -> Option<Self> {
        let (sent, recent, last) = shared.slots.spent(slot)?;
        Some(Self {
            sent: sent.into_iter().map(|t| shared.clock.rfc3339(t)).collect(),
            recent,
            last: last.map(|t| shared.clock.rfc3339(t)),
        })
    }
}

/// `GET /api/v1/swarm/services/{id}`, answered by a manager's watchdog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReply {
    pub restart_condition: String,
}

impl Peers {
    /// `target`: `host:port`, the host a DNS name (checked when it is used, since the name
    /// exists only on the overlay network).
    pub fn new(target: &str, token: Option<crate::admin_auth::Token>) -> anyhow::Result<Self> {
        let (host, port) = target
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("--swarm-peers {target:?}: expected HOST:PORT"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            anyhow::bail!("--swarm-peers {target:?}: expected HOST:PORT, e.g. tasks.watchdog:9100");
        }
        let client = reqwest::Client::builder()
            .timeout(PEER_TIMEOUT)
            .connect_timeout(PEER_TIMEOUT)
            .build()?;
        Ok(Self {
            target: target.to_string(),
            client,
            token,
        })
    }

    async fn addresses(&self) -> Vec<SocketAddr> {
        match tokio::time::timeout(PEER_TIMEOUT, tokio::net::lookup_host(&self.target)).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => {
                tracing::debug!(peers = %self.target, error = %e, "peers not resolved");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, addr: SocketAddr, path: &str) -> Option<T> {
        let mut req = self.client.get(format!("http://{addr}{path}"));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.secret());
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Every peer's Swarm tasks (this watchdog's own among them: harmless, its ended task is
    /// never its own replacement). Peers that do not answer are left out.
    pub async fn tasks(&self) -> Vec<SwarmView> {
        let addrs = self.addresses().await;
        let replies = futures_util::future::join_all(
            addrs
                .iter()
                .map(|a| self.get::<TasksReply>(*a, "/api/v1/swarm/tasks")),
        )
        .await;
        replies
            .into_iter()
            .flatten()
            .flat_map(|r| r.tasks)
            .collect()
    }

    /// What a slot spent on the node where its last task ended, from that node's watchdog.
    pub async fn slot(&self, slot: &str) -> Option<SlotReply> {
        let addrs = self.addresses().await;
        let path = format!("/api/v1/swarm/slots/{slot}");
        let replies =
            futures_util::future::join_all(addrs.iter().map(|a| self.get::<SlotReply>(*a, &path)))
                .await;
        replies.into_iter().flatten().next()
    }

    /// A service's restart condition, from the first manager's watchdog that knows it.
    pub async fn restart_condition(&self, service_id: &str) -> Option<RestartCondition> {
        let addrs = self.addresses().await;
        let path = format!("/api/v1/swarm/services/{service_id}");
        let replies = futures_util::future::join_all(
            addrs.iter().map(|a| self.get::<ServiceReply>(*a, &path)),
        )
        .await;
        replies
            .into_iter()
            .flatten()
            .find_map(|r| RestartCondition::from_swarm(&r.restart_condition))
    }
}

/// The task's service's `restart_policy.condition`: the container's
/// `selfheal.swarm.restart-condition` label (already validated), else the service itself
/// (`GET /services/{id}`, which only a manager answers), else not known yet: on a worker the
/// task then asks a manager's watchdog among the peers ([`ask_restart_condition`]), and until
/// one answers a failed probe is only reported.
pub async fn restart_condition(
    docker: &Docker,
    labels: &HashMap<String, String>,
    task: &SwarmTask,
    peers: Option<&Peers>,
) -> RestartCondition {
    if let Some(c) = labels
        .get(RESTART_CONDITION_LABEL)
        .and_then(|v| RestartCondition::from_swarm(v.trim()))
    {
        return c;
    }
    let service =
        bounded(docker.inspect_service(&task.service_id, None::<InspectServiceOptions>)).await;
    match service {
        Ok(s) => {
            let condition = s
                .spec
                .and_then(|s| s.task_template)
                .and_then(|t| t.restart_policy)
                .and_then(|r| r.condition)
                .map(|c| c.to_string())
                .unwrap_or_default();
            RestartCondition::from_swarm(&condition).unwrap_or(RestartCondition::Unknown)
        }
        Err(e) if peers.is_some() => {
            tracing::info!(service = %task.service_name, error = %e,
                "cannot read the service here (not a manager): asking a manager's watchdog");
            RestartCondition::Unknown
        }
        Err(e) => {
            tracing::warn!(service = %task.service_name, error = %e,
                "cannot read the service's restart condition (not a manager, and no \
                 --swarm-peers to ask a manager's watchdog); label the task with \
                 {RESTART_CONDITION_LABEL} to let the watchdog end it on a failed probe; until \
                 then failed probes are only reported");
            RestartCondition::Unknown
        }
    }
}

/// How often a worker's watchdog asks again for a restart condition no manager's watchdog
/// knew yet (they start in any order).
const ASK_AGAIN: Duration = Duration::from_secs(5);

/// Asks the peers for a service's restart condition until one knows it, and tells the task.
pub async fn ask_restart_condition(
    peers: Peers,
    service_id: String,
    tx: tokio::sync::mpsc::Sender<crate::container::Msg>,
    cancel: CancellationToken,
) {
    loop {
        if let Some(c) = peers.restart_condition(&service_id).await {
            let _ = tx.send(crate::container::Msg::RestartCondition(c)).await;
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(ASK_AGAIN) => {}
        }
    }
}

/// Asks the peers what a slot spent before its task here started (its last task ended on
/// another node) and tells the task. A few tries: the other node hands the slot over when it
/// sees its task end, which comes before Swarm starts the replacement but may be handled a
/// moment later. No answer: the slot's budget starts afresh here.
pub async fn ask_slot(
    peers: Peers,
    slot: String,
    shared: Arc<Shared>,
    tx: tokio::sync::mpsc::Sender<crate::container::Msg>,
    cancel: CancellationToken,
) {
    let at = |t: &str| {
        humantime::parse_rfc3339_weak(t)
            .ok()
            .map(|t| shared.clock.instant(t))
    };
    for _ in 0..3 {
        if let Some(r) = peers.slot(&slot).await {
            let msg = crate::container::Msg::AdoptSlot {
                sent: r.sent.iter().filter_map(|t| at(t)).collect(),
                recent: r.recent,
                last: r.last.as_deref().and_then(at),
            };
            let _ = tx.send(msg).await;
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
}

/// How often the hand-overs are followed through the peers.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Follows the slots handed over on this node whose replacement has not started here: asks
/// the peers where each slot's tasks run and lets the core decide ([`Handover::follow`]). A
/// replacement healthy on another node closes the incident `recovered`, with the time to
/// recover to the moment that node's watchdog saw it healthy (the nodes' clocks are assumed
/// in step, as Swarm's certificates already require); a slot nobody took within `wait` is
/// given up and its incident closed `abandoned`. Without peers, only the wait applies.
pub async fn follow_handovers(
    ledger: Arc<SlotLedger>,
    shared: Arc<Shared>,
    notifier: crate::notify::Notifier,
    peers: Option<Peers>,
    wait: Duration,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let waiting = ledger.waiting();
        if waiting.is_empty() {
            continue;
        }
        let reports: Vec<PeerTask> = match &peers {
            Some(p) if waiting.iter().any(|h| h.first_failure.is_some()) => p
                .tasks()
                .await
                .into_iter()
                .map(|v| PeerTask {
                    slot_key: v.slot,
                    task_id: v.task,
                    healthy_since: v
                        .healthy_since
                        .as_deref()
                        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                        .map(|t| shared.clock.instant(t)),
                })
                .collect(),
            _ => Vec::new(),
        };
        let now = Instant::now();
        for h in waiting {
            let verdict = h.follow(&reports, now, wait);
            if verdict == Followed::Wait {
                continue;
            }
            // Taken here, or by a replacement that started here meanwhile: one of the two.
            if let Some(handed) = ledger.take_if_still(&h) {
                close_handed(&shared, &notifier, handed, verdict, now);
            }
        }
    }
}

/// Closes the incident of a slot whose replacement is elsewhere (`RecoveredElsewhere`) or
/// never came (`GaveUp`, or pushed out of a full ledger: pass `Followed::GaveUp`).
pub fn close_handed(
    shared: &Shared,
    notifier: &crate::notify::Notifier,
    handed: Handed,
    verdict: Followed,
    now: Instant,
) {
    let Some(held) = handed.incident else {
        return;
    };
    // The journal's copy: evidence read back after the hand-over was added there.
    let mut incident = shared
        .journal
        .get(held.id)
        .filter(Incident::is_open)
        .unwrap_or(held);
    match verdict {
        Followed::RecoveredElsewhere { time_to_recover } => {
            let trigger = incident.trigger;
            shared
                .metrics
                .recovery_duration
                .get_or_create(&crate::metrics::TriggerLabels {
                    container: handed.container.clone(),
                    trigger: crate::metrics::Label(trigger),
                })
                .observe(time_to_recover.as_secs_f64());
            let healthy_at = handed
                .handover
                .first_failure
                .map_or(now, |f| f + time_to_recover);
            incident.outcome = crate::journal::IncidentOutcome::Recovered;
            incident.healthy_again = Some(shared.clock.wall(healthy_at).into());
            incident.time_to_recover_seconds = Some(time_to_recover.as_secs_f64());
            tracing::info!(container = %handed.container, incident = incident.id,
                time_to_recover = ?time_to_recover,
                "Swarm task's replacement healthy on another node: incident closed");
            if !handed.muted {
                notifier.send(crate::container::notice_of(
                    selfheal_core::Notice::Recovered {
                        time_to_recover,
                        faults: 1,
                    },
                    &incident,
                ));
            }
        }
        Followed::GaveUp | Followed::Wait => {
            incident.outcome = crate::journal::IncidentOutcome::Abandoned;
            incident.failure = Some(
                "Swarm's replacement for this task's slot was not seen healthy on this node \
                 or by any peer"
                    .into(),
            );
            tracing::warn!(container = %handed.container, incident = incident.id,
                "no replacement seen for the ended Swarm task's slot: incident closed abandoned");
        }
    }
    shared.journal.record(incident);
}

/// The stuck-service metrics, reported only by the watchdog on the leader manager (so a
/// service is not counted once per node).
#[derive(Debug, Clone, Default)]
pub struct SwarmMetrics {
    pub leader: Gauge,
    pub missing: Family<ServiceLabels, Gauge>,
    pub stuck: Family<ServiceLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

impl SwarmMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "selfheal_swarm_leader",
            "1 on the watchdog of the Swarm leader manager, which alone reports services",
            m.leader.clone(),
        );
        registry.register(
            "selfheal_swarm_service_tasks_missing",
            "Tasks a Swarm service wants and does not run (desired - running), from the leader",
            m.missing.clone(),
        );
        registry.register(
            "selfheal_swarm_service_stuck",
            "1 while a Swarm service has run fewer tasks than desired for longer than --swarm-stuck-after",
            m.stuck.clone(),
        );
        m
    }
}

/// How often the leader's watchdog looks at the services.
const SERVICES_EVERY: Duration = Duration::from_secs(5);

/// Follows the Swarm's services while this node is a manager (`GET /info`, `GET /nodes/{id}`,
/// `GET /services?status=true`): their restart conditions are kept for the workers' watchdogs
/// (`GET /api/v1/swarm/services/{id}`), and on the leader a service short of tasks for
/// `stuck_after` is stuck. On a worker, or outside a swarm, it reports nothing.
pub async fn watch_services(
    docker_host: Option<String>,
    stuck_after: Duration,
    metrics: SwarmMetrics,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut shortfalls: HashMap<String, Shortfall> = HashMap::new();
    let mut client: Option<Docker> = None;
    let mut every = tokio::time::interval(SERVICES_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        if client.is_none() {
            client = crate::docker::connect(docker_host.as_deref()).await.ok();
        }
        let looked = match &client {
            Some(docker) => look_at_services(docker).await,
            None => None,
        };
        if looked.is_none() {
            // Reconnect at the next look: cheap, and it heals a connection that broke.
            client = None;
        }
        shared.set_swarm_services(
            looked
                .as_ref()
                .map(|l| {
                    l.services
                        .iter()
                        .map(|s| (s.id.clone(), s.condition.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        );
        let Some(Looked {
            leader: true,
            services,
        }) = looked
        else {
            // Not the leader (or not a manager, or Docker unreachable): another node reports.
            metrics.leader.set(0);
            metrics.missing.clear();
            metrics.stuck.clear();
            shortfalls.clear();
            continue;
        };
        metrics.leader.set(1);
        let now = Instant::now();
        let services: Vec<_> = services.into_iter().filter(|s| !s.job).collect();
        shortfalls.retain(|name, _| services.iter().any(|s| &s.name == name));
        metrics.missing.clear();
        metrics.stuck.clear();
        for s in services {
            let f = shortfalls.entry(s.name.clone()).or_default();
            f.observe(s.running, s.desired, now);
            let labels = ServiceLabels { service: s.name };
            metrics
                .missing
                .get_or_create(&labels)
                .set(i64::try_from(s.desired.saturating_sub(s.running)).unwrap_or(i64::MAX));
            let stuck = f.stuck(now, stuck_after);
            metrics.stuck.get_or_create(&labels).set(i64::from(stuck));
        }
    }
}

/// What a manager sees of the services.
struct Looked {
    leader: bool,
    services: Vec<ServiceSeen>,
}

struct ServiceSeen {
    id: String,
    name: String,
    /// `restart_policy.condition` as Swarm spells it (`""`: Swarm's default, `any`).
    condition: String,
    running: u64,
    desired: u64,
    /// A job's tasks are meant to end: never stuck.
    job: bool,
}

/// The services, when this node is a manager; whether it is the leader.
async fn look_at_services(docker: &Docker) -> Option<Looked> {
    let info = bounded(docker.info()).await.ok()?;
    let swarm = info.swarm?;
    if swarm.control_available != Some(true) {
        return None;
    }
    let node = bounded(docker.inspect_node(swarm.node_id.as_deref()?))
        .await
        .ok()?;
    let leader = node.manager_status.and_then(|m| m.leader) == Some(true);
    let opts = ListServicesOptionsBuilder::default().status(true).build();
    let services = bounded(docker.list_services(Some(opts))).await.ok()?;
    Some(Looked {
        leader,
        services: services
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                let job = spec
                    .mode
                    .as_ref()
                    .is_some_and(|m| m.replicated_job.is_some() || m.global_job.is_some());
                let condition = spec
                    .task_template
                    .as_ref()
                    .and_then(|t| t.restart_policy.as_ref())
                    .and_then(|r| r.condition)
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                let status = s.service_status.unwrap_or_default();
                Some(ServiceSeen {
                    id: s.id?,
                    name: spec.name?,
                    condition,
                    running: status.running_tasks.unwrap_or(0),
                    desired: status.desired_tasks.unwrap_or(0),
                    job,
                })
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    //! The hand-over followed through a real peer: another `Shared` served by the real admin
    //! router on loopback, as another node's watchdog serves it on the overlay network.
    use super::*;
    use crate::journal::{IncidentJournal, IncidentOutcome, JournalMetrics};
    use crate::shared::ContainerView;
    use selfheal_core::{RestartBudget, Trigger};

    fn journal() -> (tempfile::TempDir, Arc<Shared>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (j, _) = IncidentJournal::open(dir.path(), JournalMetrics::default()).expect("journal");
        (dir, Shared::new(Arc::new(j), false))
    }

    /// Serves `shared` like a watchdog's admin server; returns its `HOST:PORT`.
    async fn serve(shared: Arc<Shared>, cancel: CancellationToken) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = crate::admin::router(shared);
        tokio::spawn(crate::admin_server::serve(
            listener,
            app,
            crate::admin_server::ConnectionLimits::default(),
            cancel,
        ));
        addr.to_string()
    }

    fn view(slot: &str, task: &str, healthy_since: Option<String>) -> ContainerView {
        ContainerView {
            id: format!("c-{task}"),
            name: format!("stack_web.1.{task}"),
            compose_project: None,
            compose_service: None,
            state: "healthy".into(),
            docker_health: None,
            consecutive_failures: 0,
            restarts_in_window: 0,
            restart_in_flight: false,
            cannot_observe: None,
            spec: None,
            label_errors: Vec::new(),
            last_incident: None,
            dependencies: Default::default(),
            waiting_on: None,
            swarm: Some(SwarmView {
                service: "stack_web".into(),
                slot: slot.into(),
                task: task.into(),
                restart_condition: "any".into(),
                healthy_since,
            }),
        }
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
            Some(here.clock.rfc3339(first_failure)),
        ));
        there.put_view(view(
            "svc/2",
            "other",
            Some(here.clock.rfc3339(Instant::now())),
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
        there.put_view(view("svc/1", "new", Some(here.clock.rfc3339(healthy))));
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(ask_slot(
            peers,
            "svc/1".into(),
            here.clone(),
            tx,
            cancel.clone(),
        ));
        let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("told in time")
            .expect("a message");
        let crate::container::Msg::AdoptSlot { sent, recent, last } = msg else {
            panic!("not AdoptSlot: {msg:?}");
        };
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
}
