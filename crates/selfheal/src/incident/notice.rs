//! The notification about an incident, for a notice the gate let through.

use crate::journal::Incident;
use crate::notify::{Notification, NotifyOutcome, NotifyTrigger};
use selfheal_core::Notice;

/// The message for `notice` about incident `i` (the loop's latest). The host is filled in by
/// the notifier; the evidence is the short form of what the incident holds so far (at
/// detection: health checks, probe failures, the exit; the log lines arrive after the restart).
pub fn notification(notice: Notice, i: &Incident) -> Notification {
    let outcome = match notice {
        Notice::Opened => NotifyOutcome::Restarting {
            incident: i.id,
            dry_run: i.dry_run,
        },
        Notice::RestartFailed => NotifyOutcome::RestartFailed { dry_run: i.dry_run },
        Notice::Quarantined => NotifyOutcome::Quarantined {
            attempts: i.attempts,
        },
        Notice::Recovered {
            time_to_recover,
            faults,
        } => NotifyOutcome::Recovered {
            time_to_recover,
            faults,
        },
    };
    Notification {
        severity: notice.severity(),
        host: String::new(),
        container: i.container.clone(),
        compose_project: i.compose_project.clone(),
        compose_service: i.compose_service.clone(),
        trigger: NotifyTrigger::Incident(i.trigger),
        outcome,
        incident_id: i.id,
        attempts: i.attempts,
        evidence: i
            .evidence
            .as_deref()
            .map(|e| e.summary())
            .filter(|s| !s.is_empty()),
    }
}
