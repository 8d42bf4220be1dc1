//! The stuck-service check: on the leader manager's watchdog only (so a service is not counted
//! once per node), a service that runs fewer tasks than it wants for too long is stuck. It also
//! keeps the services' restart conditions for the workers' watchdogs.

use crate::docker::bounded;
use crate::shared::Shared;
use bollard::query_parameters::ListServicesOptionsBuilder;
use bollard::Docker;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use selfheal_core::Shortfall;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
