//! Which containers are watched: a container is taken on (or told to look again) when it
//! starts or is listed, and let go when it is destroyed or no longer opted in.

use super::*;

impl Watcher {
    /// Starts watching a container not known yet (it is inspected here, once, for its labels
    /// and configuration), or has a known one's task look at it (inspected in that task).
    pub(super) async fn refresh(&mut self, docker: &Docker, id: &str, start_event: bool) {
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
                // A recreate's replacement: its task waits for what the old one hands over.
                let replaces = self.replacing.remove(&info.name);
                if let Some(old) = &replaces {
                    tracing::info!(container = %info.name, replaces = %old,
                        "a recreate's replacement; taking over from the old container first");
                }
                let handle = container::spawn(
                    self.ctx.clone(),
                    info,
                    spec,
                    resumed,
                    swarm,
                    replaces.is_some(),
                    &self.cancel,
                );
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

    pub(super) fn clear_ignored(&mut self, info: &ContainerInfo) {
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

    pub(super) async fn forget(&mut self, id: &str) {
        self.replacing.retain(|_, old| old != id);
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
}
