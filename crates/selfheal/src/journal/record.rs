//! One incident as stored and served: the record every line of the journal holds.

use selfheal_core::{Outcome, Trigger, VerbKind};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use super::IncidentQuery;
pub use crate::timestamp::Timestamp;

/// How an incident stands or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentOutcome {
    Open,
    Recovered,
    Quarantined,
    Abandoned,
}

impl IncidentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Recovered => "recovered",
            Self::Quarantined => "quarantined",
            Self::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for IncidentOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`: the CLI's table aligns this column with a width.
        f.pad(self.as_str())
    }
}

impl From<Outcome> for IncidentOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Recovered => Self::Recovered,
            Outcome::Quarantined => Self::Quarantined,
            Outcome::Abandoned => Self::Abandoned,
        }
    }
}

/// One of an incident's steps: an order of the watchdog's that Docker received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub verb: VerbKind,
    /// When it was sent.
    pub at: Timestamp,
}

/// One incident as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub container: String,
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
    pub trigger: Trigger,
    pub first_failure: Timestamp,
    pub detected: Timestamp,
    #[serde(default)]
    pub action_begun: Option<Timestamp>,
    /// When the latest restart was sent (a restart a crash of the watchdog interrupted is
    /// finished from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<Timestamp>,
    #[serde(default)]
    pub healthy_again: Option<Timestamp>,
    #[serde(default)]
    pub time_to_detect_seconds: Option<f64>,
    #[serde(default)]
    pub time_to_recover_seconds: Option<f64>,
    pub attempts: u32,
    pub outcome: IncidentOutcome,
    #[serde(default)]
    pub dry_run: bool,
    /// Trigger `dependency`: the parent whose new start this container was restarted to
    /// join, and the parent's incident that restarted it (none when a user or something
    /// else restarted the parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_incident: Option<u64>,
    /// The watchdog's orders Docker received for this incident, in order: what the ladder
    /// did (restart, recreate; a Swarm task's stop or kill).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Why the latest restart (or recreate) failed, as Docker or the executor said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Set by the journal, only in what it serves: the latest copy could not be written (the
    /// writer keeps retrying). Never written to the file; ignored in what callers record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpersisted: bool,
    /// What the container and its checks said around the fault ([`crate::evidence`]), at most
    /// about 32 KiB. Absent in records of older versions; evidence this version cannot read is
    /// dropped and the incident kept.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::evidence::tolerant"
    )]
    pub evidence: Option<Arc<crate::evidence::Evidence>>,
}

impl Incident {
    /// A copy without its evidence (cheap: the evidence is shared, not copied).
    pub fn without_evidence(&self) -> Incident {
        Incident {
            evidence: None,
            ..self.clone()
        }
    }

    pub fn is_open(&self) -> bool {
        self.outcome == IncidentOutcome::Open
    }

    /// Detected at or after `since` (compared as time) and of `container` (its name, or a
    /// prefix of its id): the filter of the API and the CLI.
    pub fn matches(&self, since: Option<SystemTime>, container: Option<&str>) -> bool {
        let q = IncidentQuery {
            since,
            container,
            ..Default::default()
        };
        matches_keys(
            &self.container,
            &self.container_id,
            self.detected.system_time(),
            &q,
        )
    }
}

/// The filter of [`Incident::matches`] on an incident's keys (the journal keeps only those
/// for incidents it does not hold whole).
pub(super) fn matches_keys(
    container: &str,
    container_id: &str,
    detected: SystemTime,
    q: &IncidentQuery<'_>,
) -> bool {
    q.container
        .is_none_or(|c| container == c || container_id.starts_with(c))
        && q.since.is_none_or(|s| detected >= s)
}

/// One record: the incident as JSON (never with the `unpersisted` flag) and a newline.
pub(super) fn write_record(out: &mut impl Write, i: &Incident) -> std::io::Result<()> {
    if i.unpersisted {
        let clean = Incident {
            unpersisted: false,
            ..i.clone()
        };
        serde_json::to_writer(&mut *out, &clean)?;
    } else {
        serde_json::to_writer(&mut *out, i)?;
    }
    out.write_all(b"\n")
}
