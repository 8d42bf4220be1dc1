//! A container's view for the API, the status page and the peers: built from the core's state
//! and the task's records, and put into the shared views only when something shown changed
//! (most messages are probe successes that change nothing).

use crate::docker::ContainerInfo;
use crate::journal::Incident;
use crate::shared::{ContainerView, Shared, SwarmView};
use crate::swarm::SwarmBinding;
use crate::timestamp::Timestamp;
use selfheal_core::{DockerHealth, State, Supervisor, WatchSpec};
use tokio::time::Instant;

/// What the view is made of, as the task holds it.
pub(super) struct Shown<'a> {
    pub sup: &'a mut Supervisor,
    pub info: &'a ContainerInfo,
    pub spec: &'a WatchSpec,
    pub incident: Option<&'a Incident>,
    pub waiting_on: Option<String>,
    pub swarm: Option<&'a SwarmBinding>,
    /// Healthy this long without a break and the backoff is forgotten.
    pub reset_after: std::time::Duration,
}

#[derive(Debug, Default)]
pub(super) struct ViewPublisher {
    /// What the shared view last showed.
    published: Option<ViewKey>,
}

impl ViewPublisher {
    pub(super) fn publish(&mut self, shared: &Shared, shown: Shown<'_>) {
        let now = Instant::now();
        let Shown {
            sup,
            info,
            spec,
            incident,
            waiting_on,
            swarm,
            reset_after,
        } = shown;
        let key = ViewKey {
            state: sup.state(),
            docker_health: sup.docker_health(),
            failures: sup.consecutive_failures(),
            restarts: sup.restarts_in_window(now),
            in_flight: sup.restart_in_flight(),
            unobservable: sup.unobservable(),
            incident: incident.map(|i| (i.id, i.attempts, i.outcome, i.action_begun.is_some())),
            name: info.name.clone(),
            waiting_on,
            healthy_since: sup.healthy_since(),
            condition: swarm.map(|b| b.condition),
        };
        if self.published.as_ref() == Some(&key) {
            return;
        }
        // To the millisecond, as the API has always shown it.
        let healthy_since = key
            .healthy_since
            .map(|t| Timestamp::millis(shared.clock.wall(t)));
        let view = ContainerView {
            id: info.id.clone(),
            name: info.name.clone(),
            compose_project: info.compose_project(),
            compose_service: info.compose_service(),
            state: key.state.into(),
            docker_health: key.docker_health,
            consecutive_failures: key.failures,
            restarts_in_window: key.restarts,
            restart_in_flight: key.in_flight,
            cannot_observe: key.unobservable,
            spec: Some(spec.clone()),
            label_errors: Vec::new(),
            last_incident: incident.map(Incident::without_evidence),
            dependencies: Default::default(),
            waiting_on: key.waiting_on.clone(),
            swarm: swarm.map(|b| SwarmView {
                service: b.task.service_name.clone(),
                slot: b.task.slot_key(),
                task: b.task.task_id.clone(),
                restart_condition: b.condition,
                healthy_since,
            }),
            backoff: Some(crate::shared::BackoffView {
                reset_after: selfheal_core::format_duration(reset_after),
                healthy_since,
            }),
        };
        self.published = Some(key);
        shared.put_view(view);
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
