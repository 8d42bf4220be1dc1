//! Closing an incident: the journal record's end, the recovery-time metric, the log line.

use crate::journal::{Incident, Timestamp};
use crate::shared::Shared;
use selfheal_core::{IncidentTimes, Outcome};
use std::time::Duration;
use tokio::time::Instant;

/// How an incident ends, as decided by the core (a supervisor, a hand-over's follow-up, or an
/// orphan's close).
#[derive(Debug, Clone, PartialEq)]
pub enum Closing {
    /// Healthy again at `at`, `time_to_recover` after its first failure.
    Recovered {
        time_to_recover: Duration,
        at: Instant,
    },
    /// The restart budget is spent.
    Quarantined,
    /// Stopped by a user, removed, or given up; `why`, when there is more to say.
    Abandoned { why: Option<String> },
}

impl Closing {
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Recovered { .. } => Outcome::Recovered,
            Self::Quarantined => Outcome::Quarantined,
            Self::Abandoned { .. } => Outcome::Abandoned,
        }
    }

    /// How the core says a recreate's carried incident ends when the replacement cannot take
    /// it over ([`selfheal_core::Carried::Closed`]), with the core's reason.
    pub fn carried(outcome: Outcome, why: selfheal_core::Unadopted, now: Instant) -> Self {
        match Self::of(outcome, None, now) {
            Self::Abandoned { .. } => Self::Abandoned {
                why: Some(why.to_string()),
            },
            other => other,
        }
    }

    /// The core's closing effect in the journal's terms.
    pub fn of(outcome: Outcome, time_to_recover: Option<Duration>, now: Instant) -> Self {
        match (outcome, time_to_recover) {
            (Outcome::Recovered, Some(time_to_recover)) => Self::Recovered {
                time_to_recover,
                at: now,
            },
            (Outcome::Quarantined, _) => Self::Quarantined,
            // A recovery the core measured no time for is still a recovery.
            (Outcome::Recovered, None) => Self::Recovered {
                time_to_recover: Duration::ZERO,
                at: now,
            },
            (Outcome::Abandoned, _) => Self::Abandoned { why: None },
        }
    }
}

/// Closes `incident`: its outcome (and for a recovery, when and how fast), the recovery-time
/// histogram under `container` (the metrics' name of the container it belonged to), a log
/// line, and the journal's copy. The one closer for every path that ends an incident.
pub fn close(shared: &Shared, incident: &mut Incident, closing: &Closing, container: &str) {
    incident.outcome = closing.outcome().into();
    match closing {
        Closing::Recovered {
            time_to_recover,
            at,
        } => {
            shared
                .metrics
                .recovery_duration
                .get_or_create(&crate::metrics::TriggerLabels {
                    container: container.into(),
                    trigger: crate::metrics::Label(incident.trigger),
                })
                .observe(time_to_recover.as_secs_f64());
            incident.healthy_again = Some(shared.clock.wall(*at).into());
            incident.time_to_recover_seconds = Some(time_to_recover.as_secs_f64());
        }
        Closing::Quarantined => {}
        Closing::Abandoned { why } => {
            if why.is_some() {
                incident.failure.clone_from(why);
            }
        }
    }
    tracing::info!(
        container, incident = incident.id, outcome = %closing.outcome(),
        time_to_recover = ?incident.time_to_recover_seconds, attempts = incident.attempts,
        "incident closed"
    );
    shared.journal.record(incident.clone());
}

/// The core's view of a journal record a previous run left open.
pub fn times_of(shared: &Shared, i: &Incident) -> Option<IncidentTimes> {
    let at = |t: Timestamp| shared.clock.instant(t.system_time());
    Some(IncidentTimes {
        trigger: i.trigger,
        first_failure: at(i.first_failure),
        detected: at(i.detected),
        action_begun: i.action_begun.map(at),
        last_restart: i.last_restart.or(i.action_begun).map(at),
        attempts: i.attempts,
        run_began: None,
        steps: i
            .steps
            .iter()
            .map(|s| selfheal_core::Attempt {
                verb: s.verb,
                at: at(s.at),
            })
            .collect(),
    })
}

/// Closes an incident a previous run left open for a container that no longer exists, as the
/// core decides.
pub fn close_orphan(shared: &Shared, mut i: Incident) {
    let Some(times) = times_of(shared, &i) else {
        return;
    };
    if let selfheal_core::Effect::IncidentClosed {
        outcome,
        time_to_recover,
        ..
    } = selfheal_core::Supervisor::close_orphan(times)
    {
        let container = i.container.clone();
        let closing = Closing::of(outcome, time_to_recover, Instant::now());
        close(shared, &mut i, &closing, &container);
    }
}
