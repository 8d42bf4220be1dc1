//! The engine's container events, typed at the edge. Docker and Podman's Docker-compatible API
//! speak two dialects of the same events; [`ContainerEvent::from_message`] turns either into
//! one [`EventKind`], so nothing further in matches an event's strings.
//!
//! The dialects, as seen on Docker 20.10 and Podman 4.3.1 (and in Podman's compat handler):
//! - health: Docker's action is `health_status: unhealthy`, sent on a change only. Podman's
//!   is a bare `health_status` on every check (containers/podman#24003), its value in a
//!   top-level `HealthStatus` field that Docker's event type has no place for, so it arrives
//!   here as [`HealthReport::Unstated`] (the watch loop reads the health by inspect).
//! - death: Docker's `die`; Podman's own name is `died` (its compat stream renames it, but an
//!   `event=die` filter finds none of them, containers/podman#16857). Both are
//!   [`EventKind::Died`].
//! - removal: Docker's `destroy`, Podman's `remove`.
//! - kill: Docker names the signal by number in `signal`; Podman 4.3.1 sends no signal at all
//!   (`EventKind::Kill { signal: None }`), and the healing core tells a stop from a freeze by
//!   what follows.

use bollard::models::EventMessage;
use selfheal_core::{DockerHealth, Signal};
use std::collections::HashMap;

/// The event names the watch loop subscribes to: every dialect's name for each
/// [`EventKind`]. Exec and attach chatter is left out by the engine.
pub const SUBSCRIBED: [&str; 12] = [
    "start",
    "die",
    "died",
    "kill",
    "oom",
    "stop",
    "pause",
    "unpause",
    "health_status",
    "destroy",
    // Podman's name for a container's removal.
    "remove",
    "rename",
];

/// The names of the health events, left out when an outage is replayed.
pub fn is_health_event(name: &str) -> bool {
    name == "health_status"
}

/// One container event, in either dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    /// The engine's time of the event, ns since the epoch.
    pub time_nano: Option<i64>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Start,
    Destroy,
    /// Renamed to `name` (without Docker's leading `/`).
    Rename {
        name: String,
    },
    /// `signal`: as the event names it; `None` when it names none (Podman 4.3.1). Which
    /// signals end a process is the healing core's call ([`Signal`]).
    Kill {
        signal: Option<Signal>,
    },
    Oom,
    /// The process ended; `exit_code` is `None` when the event gives none.
    Died {
        exit_code: Option<i64>,
    },
    Stopped,
    Paused,
    Unpaused,
    /// A health check result (Docker: a change; Podman: every check).
    Health(HealthReport),
}

/// What a health event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthReport {
    Status(DockerHealth),
    /// A check ran, and the event does not carry its result (Podman's compat stream).
    Unstated,
}

impl ContainerEvent {
    /// The typed event, or `None` for one the watchdog has no use for (or without an id).
    pub fn from_message(ev: EventMessage) -> Option<Self> {
        let time_nano = ev.time_nano;
        let actor = ev.actor?;
        let id = actor.id.filter(|id| !id.is_empty())?;
        let attrs = actor.attributes.unwrap_or_default();
        let action = ev.action.unwrap_or_default();
        let kind = match action.as_str() {
            "start" => EventKind::Start,
            "destroy" | "remove" => EventKind::Destroy,
            "rename" => EventKind::Rename {
                name: attrs.get("name")?.trim_start_matches('/').to_string(),
            },
            "kill" => EventKind::Kill {
                signal: attrs
                    .get("signal")
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .map(Signal::parse),
            },
            "oom" => EventKind::Oom,
            "die" | "died" => EventKind::Died {
                exit_code: attrs
                    .get("exitCode")
                    .or_else(|| attrs.get("containerExitCode"))
                    .and_then(|c| c.parse().ok()),
            },
            "stop" => EventKind::Stopped,
            "pause" => EventKind::Paused,
            "unpause" => EventKind::Unpaused,
            other => {
                let (name, value) = match other.split_once(':') {
                    Some((name, value)) => (name, Some(value.trim())),
                    None => (other, attrs.get("health_status").map(String::as_str)),
                };
                if !is_health_event(name) {
                    return None;
                }
                EventKind::Health(match value.and_then(parse_health) {
                    Some(h) => HealthReport::Status(h),
                    None => HealthReport::Unstated,
                })
            }
        };
        Some(Self {
            id,
            time_nano,
            kind,
        })
    }
}

/// What the watch loop remembers of the events of each container to read Podman's dialect:
/// the health last passed on (Podman reports every check; only a change is a change). A `kill`
/// that names no signal goes to the healing core as it comes: what it means is the core's
/// call.
#[derive(Debug, Default)]
pub struct DialectMemory {
    last_health: HashMap<String, DockerHealth>,
}

impl DialectMemory {
    /// Whether `health` is news for container `id`; remembered either way.
    pub fn health_changed(&mut self, id: &str, health: DockerHealth) -> bool {
        self.last_health.insert(id.to_string(), health) != Some(health)
    }

    /// A lifecycle event of `id` (anything but health): a new run, or the end of one, makes
    /// the next health result news again.
    pub fn lifecycle(&mut self, id: &str) {
        self.last_health.remove(id);
    }
}

fn parse_health(s: &str) -> Option<DockerHealth> {
    match s {
        "healthy" => Some(DockerHealth::Healthy),
        "unhealthy" => Some(DockerHealth::Unhealthy),
        "starting" => Some(DockerHealth::Starting),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events as the engines wrote them (Docker 20.10, Podman 4.3.1 on its compat socket),
    /// trimmed of image labels.
    const DOCKER_UNHEALTHY: &str = r#"{"status":"health_status: unhealthy","id":"abc","from":"selfheal/busybox","Type":"container","Action":"health_status: unhealthy","Actor":{"ID":"abc","Attributes":{"image":"selfheal/busybox","name":"web"}},"scope":"local","time":1796441312,"timeNano":1796441312216743909}"#;
    const PODMAN_HEALTH: &str = r#"{"status":"health_status","id":"d5df","from":"localhost/selfheal/busybox:latest","Type":"container","Action":"health_status","Actor":{"ID":"d5df","Attributes":{"containerExitCode":"0","image":"localhost/selfheal/busybox:latest","name":"h2","podId":""}},"scope":"local","time":1796441313,"timeNano":1796441313287115568,"HealthStatus":"unhealthy"}"#;
    const PODMAN_KILL: &str = r#"{"status":"kill","id":"4206","from":"localhost/selfheal/busybox:latest","Type":"container","Action":"kill","Actor":{"ID":"4206","Attributes":{"containerExitCode":"0","image":"localhost/selfheal/busybox:latest","name":"h1","podId":""}},"scope":"local","time":1796440606,"timeNano":1796440606214539358}"#;
    const PODMAN_DIE: &str = r#"{"status":"die","id":"k1","from":"localhost/selfheal/busybox:latest","Type":"container","Action":"die","Actor":{"ID":"k1","Attributes":{"containerExitCode":"137","exitCode":"137","image":"localhost/selfheal/busybox:latest","name":"k1","podId":""}},"scope":"local","time":1796441416,"timeNano":1796441416971000000}"#;

    fn parse(json: &str) -> EventKind {
        let ev: EventMessage = serde_json::from_str(json).unwrap();
        ContainerEvent::from_message(ev).unwrap().kind
    }

    fn with(action: &str, attrs: &[(&str, &str)]) -> Option<EventKind> {
        let ev = EventMessage {
            action: Some(action.into()),
            actor: Some(bollard::models::EventActor {
                id: Some("c1".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        };
        ContainerEvent::from_message(ev).map(|e| e.kind)
    }

    #[test]
    fn docker_health_carries_its_value_in_the_action_and_podman_health_carries_none_we_can_read() {
        assert_eq!(
            parse(DOCKER_UNHEALTHY),
            EventKind::Health(HealthReport::Status(DockerHealth::Unhealthy))
        );
        assert_eq!(
            parse(PODMAN_HEALTH),
            EventKind::Health(HealthReport::Unstated)
        );
        // A Podman that puts the value in the attributes is read from there.
        assert_eq!(
            with("health_status", &[("health_status", "healthy")]),
            Some(EventKind::Health(HealthReport::Status(
                DockerHealth::Healthy
            )))
        );
        assert_eq!(
            with("health_status: starting", &[]),
            Some(EventKind::Health(HealthReport::Status(
                DockerHealth::Starting
            )))
        );
    }

    #[test]
    fn die_and_died_are_one_death_with_the_exit_code_of_either_attribute() {
        assert_eq!(
            parse(PODMAN_DIE),
            EventKind::Died {
                exit_code: Some(137)
            }
        );
        assert_eq!(
            with("died", &[("containerExitCode", "3")]),
            Some(EventKind::Died { exit_code: Some(3) })
        );
        assert_eq!(
            with("die", &[("exitCode", "0")]),
            Some(EventKind::Died { exit_code: Some(0) })
        );
        assert_eq!(with("die", &[]), Some(EventKind::Died { exit_code: None }));
        assert!(SUBSCRIBED.contains(&"die") && SUBSCRIBED.contains(&"died"));
    }

    #[test]
    fn a_kill_names_its_signal_by_number_or_name_and_podman_names_none() {
        assert_eq!(parse(PODMAN_KILL), EventKind::Kill { signal: None });
        for (given, signal) in [
            ("15", Signal::Term),
            ("SIGTERM", Signal::Term),
            ("SIGSTOP", Signal::Stop),
            ("sigkill", Signal::Kill),
            ("SIGHUP", Signal::Hup),
        ] {
            assert_eq!(
                with("kill", &[("signal", given)]),
                Some(EventKind::Kill {
                    signal: Some(signal)
                }),
                "{given}"
            );
        }
        assert_eq!(
            with("kill", &[("signal", "")]),
            Some(EventKind::Kill { signal: None })
        );
    }

    /// Podman sends a health event on every check: the same health twice is one change, and
    /// any lifecycle event (a restart's start, a death) makes the next result news again.
    #[test]
    fn a_repeated_health_is_passed_on_once_until_the_container_starts_or_ends_again() {
        let mut m = DialectMemory::default();
        assert!(m.health_changed("a", DockerHealth::Healthy));
        assert!(!m.health_changed("a", DockerHealth::Healthy));
        assert!(m.health_changed("a", DockerHealth::Unhealthy));
        assert!(!m.health_changed("a", DockerHealth::Unhealthy));
        assert!(
            m.health_changed("b", DockerHealth::Unhealthy),
            "per container"
        );
        m.lifecycle("a");
        assert!(m.health_changed("a", DockerHealth::Unhealthy));
        m.lifecycle("a");
        assert!(m.health_changed("a", DockerHealth::Unhealthy));
        assert!(!m.health_changed("b", DockerHealth::Unhealthy));
    }

    #[test]
    fn other_actions_and_events_without_an_id_are_dropped() {
        assert_eq!(with("exec_died", &[]), None);
        assert_eq!(with("cleanup", &[]), None);
        assert_eq!(with("rename", &[]), None, "a rename without a name");
        assert_eq!(
            with("rename", &[("name", "/new")]),
            Some(EventKind::Rename { name: "new".into() })
        );
        let no_id = EventMessage {
            action: Some("start".into()),
            ..Default::default()
        };
        assert_eq!(ContainerEvent::from_message(no_id), None);
    }
}
