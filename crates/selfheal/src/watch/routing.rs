//! Routing: each engine event, typed at the edge ([`crate::docker::events`]), goes to the
//! task of its container; a parent's gate report goes to its dependents in release order.

use super::*;

impl Watcher {
    pub(super) async fn on_event(&mut self, docker: &Docker, ev: EventMessage) {
        let received = Instant::now();
        if let Some(t) = ev.time_nano {
            self.seen_until = Some(self.seen_until.unwrap_or(0).max(t));
        }
        let Some(ContainerEvent { id, kind, .. }) = ContainerEvent::from_message(ev) else {
            return;
        };
        tracing::debug!(container = %id, event = ?kind, "event");
        if !matches!(kind, EventKind::Health(_)) {
            self.dialect.lifecycle(&id);
        }
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
                // name the user knows, and the container that takes that name next is its
                // replacement, whose task takes over before it looks at anything.
                match crate::docker::recreate::parked_from(&name) {
                    Some(original) => {
                        self.replacing.insert(original.to_string(), id);
                    }
                    None => {
                        // Given its name back: the recreate was undone.
                        self.replacing.retain(|_, old| *old != id);
                        self.send(&id, Msg::Rename(name)).await;
                    }
                }
                return;
            }
            _ => {}
        }
        if !self.tasks.contains_key(&id) {
            return;
        }
        let msg = match kind {
            // Which kills stop a process, and what one that names no signal (Podman's) means,
            // is the core's call.
            EventKind::Kill { signal } => Msg::Observe(Observation::Killed { signal }),
            EventKind::Oom => Msg::Oom,
            EventKind::Died { exit_code } => Msg::Died { exit_code },
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
    pub(super) async fn on_gate(&mut self, r: GateReport) {
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
    pub(super) async fn release_orphans(&mut self) {
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

    /// A recreate replaced a container: the replacement's task takes over what the old one
    /// carried. The replacement may not be watched yet (its `start` event not handled yet):
    /// it is looked at now. One that is not watched (its labels no longer opt it in) cannot
    /// go on with the incident, which is closed `abandoned`.
    pub(super) async fn on_successor(&mut self, docker: &Docker, s: container::Successor) {
        if !self.tasks.contains_key(&s.new_id) {
            self.refresh(docker, &s.new_id, true).await;
        }
        match self.tasks.get(&s.new_id) {
            Some(task) => task.send(Msg::TakeOver(Box::new(s))).await,
            None => {
                let container::Successor {
                    incident,
                    container,
                    ..
                } = s;
                let verdict = selfheal_core::Supervisor::carried_incident(None);
                if let (Some(mut record), selfheal_core::Carried::Closed { outcome, why }) =
                    (incident, verdict)
                {
                    let now = tokio::time::Instant::now();
                    let closing = crate::incident::Closing::carried(outcome, why, now);
                    crate::incident::close(&self.shared, &mut record, &closing, &container);
                }
            }
        }
    }

    pub(super) async fn send(&self, id: &str, msg: Msg) {
        if let Some(t) = self.tasks.get(id) {
            t.send(msg).await;
        }
    }
}
