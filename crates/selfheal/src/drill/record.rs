//! One round as the drill measured it: its times, its split and how it ended.

use super::round::Timeline;
use super::split::{HoldReason, RoundOutcome, Split, StatesSeen};
use super::Scenario;
use crate::journal::{Incident, IncidentOutcome};
use selfheal_core::Trigger;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// One round as measured. Times are seconds after the fault was injected.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRecord {
    pub scenario: Scenario,
    pub round: u32,
    pub outcome: RoundOutcome,
    pub injected_by: String,
    /// RFC 3339.
    pub fault_at: Option<String>,
    #[serde(skip)]
    pub fault_wall: Option<SystemTime>,
    pub detected_s: Option<f64>,
    /// incident (the watchdog's), die (Docker's event) or unhealthy (Docker's health event).
    pub detected_by: Option<String>,
    pub restart_begun_s: Option<f64>,
    /// watchdog, or docker (its restart policy).
    pub restarted_by: Option<String>,
    pub started_s: Option<f64>,
    pub healthy_s: Option<f64>,
    pub time_to_detect_seconds: Option<f64>,
    pub time_to_recover_seconds: Option<f64>,
    /// Detection, hold and restart to healthy (a recovered round).
    pub split: Option<Split>,
    /// Why the watchdog held its restart, when it did.
    pub hold: Option<HoldReason>,
    /// `start` events between the fault and healthy again.
    pub restarts: u32,
    pub incident_id: Option<u64>,
    pub incident_trigger: Option<Trigger>,
    pub incident_outcome: Option<IncidentOutcome>,
    pub slo_seconds: f64,
    pub error: Option<String>,
    /// The container never got ready for this round: later rounds cannot run either.
    #[serde(skip)]
    pub aborts: bool,
}

impl RoundRecord {
    pub fn new(scenario: Scenario, round: u32, slo: Duration) -> Self {
        Self {
            scenario,
            round,
            outcome: RoundOutcome::Recovered,
            injected_by: String::new(),
            fault_at: None,
            fault_wall: None,
            detected_s: None,
            detected_by: None,
            restart_begun_s: None,
            restarted_by: None,
            started_s: None,
            healthy_s: None,
            time_to_detect_seconds: None,
            time_to_recover_seconds: None,
            split: None,
            hold: None,
            restarts: 0,
            incident_id: None,
            incident_trigger: None,
            incident_outcome: None,
            slo_seconds: slo.as_secs_f64(),
            error: None,
            aborts: false,
        }
    }

    pub fn skipped(scenario: Scenario, round: u32, reason: &str) -> Self {
        let mut r = Self::new(scenario, round, Duration::ZERO);
        r.outcome = RoundOutcome::Skipped;
        r.error = Some(reason.into());
        r
    }

    pub fn fail(&mut self, why: impl Into<String>) {
        self.outcome = RoundOutcome::Failed;
        self.error = Some(why.into());
    }

    pub fn ok(&self) -> bool {
        self.outcome != RoundOutcome::Failed
    }

    pub fn aborts_drill(&self) -> bool {
        self.aborts
    }

    pub(super) fn name(&self) -> String {
        format!("{} round {}", self.scenario, self.round)
    }

    /// Fills the times from Docker's events and the watchdog's incident; `seen`: the
    /// watchdog's states for the container during the round.
    pub fn fill(
        &mut self,
        t: &Timeline,
        incident: Option<&Incident>,
        healthy: Option<SystemTime>,
        fault_at: SystemTime,
        seen: StatesSeen,
    ) {
        let off = |at: SystemTime| {
            at.duration_since(fault_at)
                .map_or_else(|e| -e.duration().as_secs_f64(), |d| d.as_secs_f64())
        };
        self.fault_wall = Some(fault_at);
        self.fault_at = Some(humantime::format_rfc3339_millis(fault_at).to_string());
        let detected = match incident.map(|i| i.detected.system_time()) {
            Some(d) => Some((d, "incident")),
            None => t
                .die
                .map(|d| (d, "die"))
                .or(t.unhealthy.map(|u| (u, "unhealthy"))),
        };
        if let Some((d, by)) = detected {
            self.detected_s = Some(off(d).max(0.0));
            self.detected_by = Some(by.into());
        }
        let action = incident.and_then(|i| i.action_begun.map(|a| a.system_time()));
        let (begun, by) = match (t.kill, action) {
            (Some(k), _) => (Some(k), Some("watchdog")),
            (None, Some(a)) => (Some(a), Some("watchdog")),
            (None, None) if t.started.is_some() => (t.die, Some("docker")),
            _ => (None, None),
        };
        self.restart_begun_s = begun.map(off);
        self.restarted_by = by.map(Into::into);
        self.started_s = t.started.map(off);
        self.healthy_s = healthy.map(off);
        self.time_to_detect_seconds = self.detected_s;
        self.time_to_recover_seconds = self.healthy_s;
        self.split = Split::of(self.detected_s, self.restart_begun_s, self.healthy_s);
        let gap = match (self.detected_s, self.restart_begun_s) {
            (Some(d), Some(b)) => Some(b - d),
            _ => None,
        };
        self.hold = seen.hold(gap);
        self.restarts = t.starts;
        if let Some(i) = incident {
            self.incident_id = Some(i.id);
            self.incident_trigger = Some(i.trigger);
            self.incident_outcome = Some(i.outcome);
        }
    }

    /// `held 31.0s (backoff)`, or empty.
    pub(super) fn hold_note(&self) -> String {
        match (self.hold, self.split) {
            (Some(h), Some(s)) => format!("held {:.1}s ({h})", s.hold_s),
            (Some(h), None) => format!("held ({h})"),
            _ => String::new(),
        }
    }
}
