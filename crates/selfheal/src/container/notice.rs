//! The text of a notification about an incident.

use crate::journal::Incident;
use crate::notify::Notification;

/// What happened to an incident, as notifications name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Opened,
    Recovered,
    Failed,
    Quarantined,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Recovered => "recovered",
            Event::Failed => "failed",
            Event::Quarantined => "quarantined",
        }
    }
}

/// One notification; `text` makes Slack and Mattermost incoming webhooks work as they are.
pub fn notification(event: Event, i: &Incident) -> Notification {
    let text = match event {
        Event::Opened => format!(
            "selfheal: {} is failing ({}); incident #{} opened",
            i.container, i.trigger, i.id
        ),
        Event::Recovered => format!(
            "selfheal: {} recovered in {:.1}s after {} attempt(s) (incident #{})",
            i.container,
            i.time_to_recover_seconds.unwrap_or_default(),
            i.attempts,
            i.id
        ),
        Event::Quarantined => format!(
            "selfheal: {} quarantined after {} restarts; it needs a human (incident #{})",
            i.container, i.attempts, i.id
        ),
        Event::Failed => format!(
            "selfheal: restart of {} failed (incident #{})",
            i.container, i.id
        ),
    };
    Notification {
        text,
        event: event.as_str(),
        container: i.container.clone(),
        trigger: i.trigger.as_str().into(),
        incident_id: i.id,
        time_to_recover_seconds: i.time_to_recover_seconds,
        attempts: i.attempts,
    }
}
