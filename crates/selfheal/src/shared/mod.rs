//! State shared between the watch loop, the container tasks and the admin server.
//!
//! The Swarm slot ledger lives here ([`ledger`]), not in `swarm/`: [`Shared`] holds it for
//! the admin API and the container tasks, and `swarm/` builds on this module, never the other
//! way round (no import cycle).

pub mod ledger;

use crate::dependents::DependencyView;
use crate::journal::{Incident, IncidentJournal};
use crate::metrics::{Degraded, Metrics};
use crate::timestamp::Timestamp;
use prometheus_client::registry::Registry;
use selfheal_core::{DockerHealth, LabelError, RestartCondition, State, Unobservable, WatchSpec};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// What `/api/v1/containers` shows of one container.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
    pub state: ViewState,
    pub docker_health: Option<DockerHealth>,
    pub consecutive_failures: u32,
    pub restarts_in_window: u32,
    pub restart_in_flight: bool,
    /// Why the watchdog's own probe cannot look at the container right now (its own
    /// trouble, never counted against the container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cannot_observe: Option<Unobservable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<WatchSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub label_errors: Vec<LabelError>,
    pub last_incident: Option<Incident>,
    /// Its parents, dependents and dependency error (kept by the watch loop).
    #[serde(flatten)]
    pub dependencies: DependencyView,
    /// The parent that started again and is not ready yet, while this container waits on it.
    pub waiting_on: Option<String>,
    /// A Swarm task: its service, slot and task, and since when it is healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmView>,
    /// When earlier restarts stop delaying the next one (absent for an ignored container):
    /// what `selfheal drill` waits for between rounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffView>,
}

/// The backoff between the watchdog's restarts of one container, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackoffView {
    /// Healthy this long without a break and the restarts before no longer count (`60s`).
    pub reset_after: String,
    /// Healthy without a break since (RFC 3339 in JSON); `null` when it is not healthy now.
    pub healthy_since: Option<Timestamp>,
}

#[cfg(test)]
impl ContainerView {
    /// A view of a container with nothing to show but its id, name and state.
    pub(crate) fn bare(id: &str, name: &str, state: ViewState) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            compose_project: None,
            compose_service: None,
            state,
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
            swarm: None,
            backoff: None,
        }
    }
}

/// Where a container stands on the API and the status page: a policy state, or `ignored` for a
/// container with unusable labels. Serialized as the state's word (`healthy`, `ignored`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViewState {
    Watched(State),
    Ignored,
}

impl ViewState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watched(s) => s.as_str(),
            Self::Ignored => "ignored",
        }
    }
}

impl From<State> for ViewState {
    fn from(s: State) -> Self {
        Self::Watched(s)
    }
}

impl std::fmt::Display for ViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ViewState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What the API shows of a watched Swarm task, and what a peer watchdog reads of it
/// (`GET /api/v1/swarm/tasks`) to follow a slot whose task ended on another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SwarmView {
    /// `com.docker.swarm.service.name`.
    pub service: String,
    /// The slot key: `<service id>/<replica number>`, or `<service id>/<node id>` (global).
    pub slot: String,
    /// `com.docker.swarm.task.id`.
    pub task: String,
    /// The service's `restart_policy.condition` as this watchdog knows it (`unknown`: a worker
    /// no manager's watchdog has told yet, and no label).
    #[serde(default = "unknown_condition", with = "restart_condition_text")]
    pub restart_condition: RestartCondition,
    /// Since when the watchdog has seen it healthy without a break (RFC 3339 in JSON); `null`
    /// when it is not healthy now. Read back tolerantly: a peer's unreadable time is `None`.
    #[serde(default, deserialize_with = "crate::timestamp::lenient")]
    pub healthy_since: Option<Timestamp>,
}

fn unknown_condition() -> RestartCondition {
    RestartCondition::Unknown
}

/// A restart condition as its word (`any`, `on-failure`, `none`, `unknown`); read back
/// tolerantly, since a peer may run another version: Swarm's empty default is `any`, and a
/// word this version does not know is `unknown` (never acted on).
mod restart_condition_text {
    use super::*;

    pub fn serialize<S: Serializer>(c: &RestartCondition, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RestartCondition, D::Error> {
        let word = String::deserialize(d)?;
        Ok(RestartCondition::from_swarm(&word).unwrap_or(RestartCondition::Unknown))
    }
}

/// Maps the monotonic clock the policy runs on to wall-clock time for records.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    wall: SystemTime,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            wall: SystemTime::now(),
        }
    }
    pub fn wall(&self, at: Instant) -> SystemTime {
        if at >= self.base {
            self.wall + (at - self.base)
        } else {
            self.wall - (self.base - at)
        }
    }
    pub fn instant(&self, at: SystemTime) -> Instant {
        match at.duration_since(self.wall) {
            Ok(d) => self.base + d,
            Err(e) => self.base.checked_sub(e.duration()).unwrap_or(self.base),
        }
    }
    pub fn rfc3339(&self, at: Instant) -> String {
        humantime::format_rfc3339_millis(self.wall(at)).to_string()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
pub struct Shared {
    pub metrics: Metrics,
    pub registry: Registry,
    pub journal: Arc<IncidentJournal>,
    pub containers: RwLock<BTreeMap<String, ContainerView>>,
    /// The dependency view of each container, merged into its view.
    dependencies: RwLock<std::collections::HashMap<String, DependencyView>>,
    pub docker_up: AtomicBool,
    heartbeat_ms: AtomicU64,
    pub clock: Clock,
    pub dry_run: bool,
    /// On a Swarm manager: each service's `restart_policy.condition`, by service id, for the
    /// workers' watchdogs that cannot read services (`GET /api/v1/swarm/services/{id}`).
    swarm_services: RwLock<std::collections::HashMap<String, String>>,
    /// Swarm slots handed over by an ended task on this node, for its replacement (here, or
    /// on another node, whose watchdog asks: `GET /api/v1/swarm/slots/{service}/{slot}`).
    pub slots: Arc<ledger::SlotLedger>,
}

impl Shared {
    pub fn new(journal: Arc<IncidentJournal>, dry_run: bool) -> Arc<Self> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        Self::with_metrics(journal, registry, metrics, dry_run)
    }

    /// With metrics registered before the journal was opened (it is given their handles).
    pub fn with_metrics(
        journal: Arc<IncidentJournal>,
        registry: Registry,
        metrics: Metrics,
        dry_run: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics: metrics.dry_run(dry_run),
            registry,
            journal,
            containers: RwLock::new(BTreeMap::new()),
            dependencies: RwLock::default(),
            docker_up: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            clock: Clock::new(),
            dry_run,
            swarm_services: RwLock::default(),
            slots: Arc::default(),
        })
    }

    /// The services' restart conditions, as a manager sees them now (empty elsewhere).
    pub fn set_swarm_services(&self, services: std::collections::HashMap<String, String>) {
        if let Ok(mut m) = self.swarm_services.write() {
            *m = services;
        }
    }

    /// A service's restart condition (`""`: Swarm's default), if this node is a manager.
    pub fn swarm_service_condition(&self, id: &str) -> Option<String> {
        self.swarm_services.read().ok()?.get(id).cloned()
    }

    pub fn beat(&self) {
        let ms = u64::try_from(Instant::now().duration_since(self.clock.base).as_millis())
            .unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    pub fn since_heartbeat(&self) -> Duration {
        let now = Instant::now().duration_since(self.clock.base);
        now.saturating_sub(Duration::from_millis(
            self.heartbeat_ms.load(Ordering::Relaxed),
        ))
    }

    pub fn set_docker_up(&self, up: bool) {
        self.docker_up.store(up, Ordering::Relaxed);
        self.metrics.docker_up.set(i64::from(up));
    }

    /// Why the watchdog cannot see or record as it should right now; each reason is also set
    /// on `selfheal_degraded`. None of them is counted against a container, and only Docker
    /// being unreachable makes `/healthz` fail.
    pub fn degraded(&self) -> Vec<Degraded> {
        let views = self.containers.read().unwrap_or_else(|p| p.into_inner());
        let now = [
            (
                Degraded::DockerUnreachable,
                !self.docker_up.load(Ordering::Relaxed),
            ),
            (
                Degraded::JournalUnpersisted,
                self.metrics.incidents_unpersisted.get() > 0,
            ),
            (
                Degraded::CannotObserve,
                views.values().any(|v| v.cannot_observe.is_some()),
            ),
        ];
        now.into_iter()
            .map(|(reason, on)| {
                self.metrics.set_degraded(reason, on);
                (reason, on)
            })
            .filter_map(|(reason, on)| on.then_some(reason))
            .collect()
    }

    pub fn put_view(&self, mut view: ContainerView) {
        let deps = self.dependencies.read().unwrap_or_else(|p| p.into_inner());
        view.dependencies = deps.get(&view.id).cloned().unwrap_or_default();
        drop(deps);
        let mut map = self.containers.write().unwrap_or_else(|p| p.into_inner());
        map.insert(view.id.clone(), view);
        self.refresh_gauges(&map);
    }

    /// Replaces every container's dependency view, and patches the views shown.
    pub fn set_dependencies(&self, views: std::collections::HashMap<String, DependencyView>) {
        let mut deps = self.dependencies.write().unwrap_or_else(|p| p.into_inner());
        let mut map = self.containers.write().unwrap_or_else(|p| p.into_inner());
        for (id, v) in map.iter_mut() {
            v.dependencies = views.get(id).cloned().unwrap_or_default();
        }
        *deps = views;
    }

    pub fn remove_view(&self, id: &str) {
        let mut map = self.containers.write().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
        self.refresh_gauges(&map);
    }

    pub fn views(&self) -> Vec<ContainerView> {
        let map = self.containers.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<ContainerView> = map.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn refresh_gauges(&self, map: &BTreeMap<String, ContainerView>) {
        let watched = map
            .values()
            .filter(|v| v.state != ViewState::Ignored)
            .count();
        let quarantined = map
            .values()
            .filter(|v| v.state == ViewState::Watched(State::Quarantined))
            .count();
        self.metrics
            .watched
            .set(i64::try_from(watched).unwrap_or(i64::MAX));
        self.metrics
            .quarantined
            .set(i64::try_from(quarantined).unwrap_or(i64::MAX));
        let open = map
            .values()
            .filter(|v| v.last_incident.as_ref().is_some_and(Incident::is_open))
            .count();
        self.metrics
            .incidents_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: ViewState) -> ContainerView {
        ContainerView {
            docker_health: Some(DockerHealth::Unhealthy),
            consecutive_failures: 2,
            restarts_in_window: 1,
            cannot_observe: Some(Unobservable::NoAddress),
            swarm: Some(SwarmView {
                service: "stack_web".into(),
                slot: "svc/1".into(),
                task: "t1".into(),
                restart_condition: RestartCondition::OnFailure,
                healthy_since: None,
            }),
            ..ContainerView::bare("c1", "web", state)
        }
    }

    /// The typed fields serialize to the words the API has always served.
    #[test]
    fn typed_fields_serialize_as_the_words_of_the_api() {
        let json = serde_json::to_value(view(State::BackingOff.into())).unwrap();
        assert_eq!(json["state"], "backing_off");
        assert_eq!(json["docker_health"], "unhealthy");
        assert_eq!(json["cannot_observe"], "no_address");
        assert_eq!(json["swarm"]["restart_condition"], "on-failure");
        let json = serde_json::to_value(view(ViewState::Ignored)).unwrap();
        assert_eq!(json["state"], "ignored");
        for s in State::ALL {
            assert_eq!(ViewState::from(*s).to_string(), s.as_str());
        }
    }

    /// A peer's task list is read tolerantly: Swarm's empty default is `any`, a condition this
    /// version does not know or a missing one is `unknown`, and each word reads back as itself.
    #[test]
    fn a_peers_restart_condition_reads_back_tolerantly() {
        let read = |condition: Option<&str>| {
            let mut v = serde_json::json!({"service": "s", "slot": "x/1", "task": "t",
                "healthy_since": null});
            if let Some(c) = condition {
                v["restart_condition"] = c.into();
            }
            serde_json::from_value::<SwarmView>(v)
                .unwrap()
                .restart_condition
        };
        for c in [
            RestartCondition::Any,
            RestartCondition::OnFailure,
            RestartCondition::None,
            RestartCondition::Unknown,
        ] {
            assert_eq!(read(Some(c.as_str())), c);
        }
        assert_eq!(read(Some("")), RestartCondition::Any);
        assert_eq!(read(Some("on-tuesdays")), RestartCondition::Unknown);
        assert_eq!(read(None), RestartCondition::Unknown);
    }

    /// `healthy_since` is served as before: RFC 3339 to the millisecond (what `Clock::rfc3339`
    /// wrote), `null` when not healthy; a peer's time reads back, an unreadable one as `None`.
    #[test]
    fn healthy_since_is_rfc_3339_in_json_and_read_back_tolerantly() {
        let clock = Clock::new();
        let at = Instant::now();
        let since = Timestamp::millis(clock.wall(at));
        let mut v = view(State::Healthy.into());
        v.backoff = Some(BackoffView {
            reset_after: "60s".into(),
            healthy_since: Some(since),
        });
        if let Some(s) = v.swarm.as_mut() {
            s.healthy_since = Some(since);
        }
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["backoff"]["healthy_since"], clock.rfc3339(at));
        assert_eq!(json["swarm"]["healthy_since"], clock.rfc3339(at));
        let swarm: SwarmView = serde_json::from_value(json["swarm"].clone()).unwrap();
        assert_eq!(swarm.healthy_since, Some(since));
        v.backoff = Some(BackoffView {
            reset_after: "60s".into(),
            healthy_since: None,
        });
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["backoff"]["healthy_since"], serde_json::Value::Null);
        for odd in [serde_json::json!("soon"), serde_json::json!(3)] {
            let peer = serde_json::json!({"service": "s", "slot": "x/1", "task": "t",
                "restart_condition": "any", "healthy_since": odd});
            let read: SwarmView = serde_json::from_value(peer).unwrap();
            assert_eq!(read.healthy_since, None);
        }
    }

    /// The gauges count by the typed state: `ignored` is not watched, `quarantined` is.
    #[test]
    fn gauges_count_typed_states() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) =
            IncidentJournal::open(dir.path(), crate::journal::JournalMetrics::default()).unwrap();
        let shared = Shared::new(Arc::new(journal), false);
        for (id, state) in [
            ("a", ViewState::Ignored),
            ("b", State::Quarantined.into()),
            ("c", State::Healthy.into()),
        ] {
            shared.put_view(ContainerView {
                id: id.into(),
                ..view(state)
            });
        }
        assert_eq!(shared.metrics.watched.get(), 2);
        assert_eq!(shared.metrics.quarantined.get(), 1);
    }
}
