//! The notification about an incident, for a notice the gate let through.

use crate::journal::Incident;
use crate::notify::{Notification, NotifyOutcome, NotifyTrigger};
use selfheal_core::{Ladder, Notice, OnQuarantine};

/// The message for `notice` about incident `i` (the loop's latest). The host is filled in by
/// the notifier; the evidence is the short form of what the incident holds so far (at
/// detection: health checks, probe failures, the exit; the log lines arrive after the restart).
/// `ladder`: what the container's faults get (the action named when an incident opens, and
/// whether quarantine stops it).
pub fn notification(notice: Notice, i: &Incident, ladder: &Ladder) -> Notification {
    let outcome = match notice {
        Notice::Opened => NotifyOutcome::Restarting {
            incident: i.id,
            dry_run: i.dry_run,
            action: ladder.action,
        },
        Notice::RestartFailed => NotifyOutcome::RestartFailed { dry_run: i.dry_run },
        Notice::Quarantined => NotifyOutcome::Quarantined {
            attempts: i.attempts,
            stopped: ladder.on_quarantine == OnQuarantine::Stop,
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
        steps: i.steps.iter().map(|s| s.verb).collect(),
        evidence: i
            .evidence
            .as_deref()
            .map(|e| e.summary())
            .filter(|s| !s.is_empty()),
    }
}
