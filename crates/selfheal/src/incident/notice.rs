//! The notification about an incident, for a notice the gate let through.

use crate::journal::Incident;
use crate::notify::Notification;
use selfheal_core::Notice;

/// The message for `notice` about incident `i` (the loop's latest). The host is filled in by
/// the notifier; the evidence is the short form of what the incident holds so far (at
/// detection: health checks, probe failures, the exit; the log lines arrive after the restart).
pub fn notification(notice: Notice, i: &Incident) -> Notification {
    let dry = if i.dry_run { " (dry run)" } else { "" };
    let (event, outcome, faults, ttr) = match notice {
        Notice::Opened => (
            "opened",
            format!("restarting{dry}; incident #{} opened", i.id),
            None,
            None,
        ),
        Notice::RestartFailed => (
            "failed",
            format!("restart failed{dry}; it will be tried again after the backoff"),
            None,
            None,
        ),
        Notice::Quarantined => (
            "quarantined",
            format!(
                "quarantined after {} restart(s): the restart budget is spent, it needs a human",
                i.attempts
            ),
            None,
            None,
        ),
        Notice::Recovered {
            time_to_recover,
            faults,
        } => (
            "recovered",
            format!(
                "recovered in {:.1}s and healthy since",
                time_to_recover.as_secs_f64()
            ),
            Some(faults),
            Some(time_to_recover.as_secs_f64()),
        ),
    };
    Notification {
        event,
        severity: notice.severity(),
        host: String::new(),
        container: i.container.clone(),
        compose_project: i.compose_project.clone(),
        compose_service: i.compose_service.clone(),
        trigger: i.trigger.as_str().into(),
        outcome,
        incident_id: i.id,
        attempts: i.attempts,
        faults,
        time_to_recover_seconds: ttr,
        evidence: i
            .evidence
            .as_deref()
            .map(|e| e.summary())
            .filter(|s| !s.is_empty()),
    }
}
