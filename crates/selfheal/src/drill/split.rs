//! What one round's time is made of: detection, the watchdog holding its restart (and why),
//! and restart to healthy. The parts add up to fault -> healthy again, so a slow round says
//! which part was slow.

use serde::Serialize;

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundOutcome {
    Recovered,
    Failed,
    Skipped,
}

impl RoundOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recovered => "recovered",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for RoundOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the watchdog did not restart the container as soon as it saw the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// Its backoff after earlier restarts (its view said `backing_off` during the round).
    Backoff,
    /// Its restart budget was spent (its view said `quarantined`).
    Budget,
    /// It waited at least [`HOLD_NOTICED`] and its view did not say why (the drill reads the
    /// view every 250 ms, so a backoff shorter than that can pass unseen).
    Unexplained,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backoff => "backoff",
            Self::Budget => "budget",
            Self::Unexplained => "unexplained",
        }
    }
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gap between detection and restart shorter than this is the watchdog's own work (the
/// order through its executor to Docker), not a hold.
pub const HOLD_NOTICED: f64 = 0.5;

/// The watchdog's states the drill saw for the container between the fault and the end of
/// the round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatesSeen {
    pub backing_off: bool,
    pub quarantined: bool,
}

impl StatesSeen {
    /// Notes one state as the API names it.
    pub fn note(&mut self, state: &str) {
        match state {
            "backing_off" => self.backing_off = true,
            "quarantined" => self.quarantined = true,
            _ => {}
        }
    }

    /// The hold, if any: what the view said, else a gap too long to be the watchdog's own work.
    pub fn hold(&self, gap_s: Option<f64>) -> Option<HoldReason> {
        if self.quarantined {
            Some(HoldReason::Budget)
        } else if self.backing_off {
            Some(HoldReason::Backoff)
        } else if gap_s.is_some_and(|g| g >= HOLD_NOTICED) {
            Some(HoldReason::Unexplained)
        } else {
            None
        }
    }
}

/// A recovered round's time in three parts, seconds; they add up to fault -> healthy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Split {
    /// Fault -> detected (the watchdog's incident, else Docker's event).
    pub detection_s: f64,
    /// Detected -> restart begun: the watchdog holding its restart.
    pub hold_s: f64,
    /// Restart begun -> healthy again (Docker's restart policy: detected -> healthy).
    pub restart_to_healthy_s: f64,
}

impl Split {
    /// From a round's times after the fault. `None` until it is healthy again. A restart that
    /// began before detection (Docker's restart policy is quicker than the incident) holds
    /// nothing; each part is clamped so that the three add up to `healthy_s`.
    pub fn of(
        detected_s: Option<f64>,
        restart_begun_s: Option<f64>,
        healthy_s: Option<f64>,
    ) -> Option<Split> {
        let healthy = healthy_s?.max(0.0);
        let detection = detected_s
            .or(restart_begun_s)
            .unwrap_or(healthy)
            .clamp(0.0, healthy);
        let hold = restart_begun_s
            .map_or(0.0, |b| b - detection)
            .clamp(0.0, healthy - detection);
        Some(Split {
            detection_s: detection,
            hold_s: hold,
            restart_to_healthy_s: healthy - detection - hold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_backoff_held_round_splits_into_detect_hold_restart() {
        // The finding of issue 22: a freeze detected after 4 s, held 50 s by the backoff,
        // healthy 3 s after the restart.
        let s = Split::of(Some(4.0), Some(54.0), Some(57.0)).unwrap();
        assert_eq!(
            (s.detection_s, s.hold_s, s.restart_to_healthy_s),
            (4.0, 50.0, 3.0)
        );
        let seen = StatesSeen {
            backing_off: true,
            ..StatesSeen::default()
        };
        assert_eq!(seen.hold(Some(s.hold_s)), Some(HoldReason::Backoff));
        assert_eq!(
            StatesSeen::default().hold(Some(s.hold_s)),
            Some(HoldReason::Unexplained)
        );
        assert_eq!(StatesSeen::default().hold(Some(0.02)), None);
        let mut q = StatesSeen::default();
        q.note("backing_off");
        q.note("quarantined");
        assert_eq!(q.hold(None), Some(HoldReason::Budget));
    }

    #[test]
    fn docker_restarting_first_holds_nothing() {
        // Docker's restart policy began the restart (die) before the incident was recorded.
        let s = Split::of(Some(0.3), Some(0.1), Some(2.7)).unwrap();
        assert_eq!(s.hold_s, 0.0);
        assert!((s.restart_to_healthy_s - 2.4).abs() < 1e-9);
        assert_eq!(Split::of(Some(1.0), Some(2.0), None), None);
        let no_detection = Split::of(None, Some(1.5), Some(4.0)).unwrap();
        assert_eq!(no_detection.detection_s, 1.5);
    }

    proptest! {
        /// Whatever the order of the times, the parts are never negative and add up to the
        /// round's fault -> healthy.
        #[test]
        fn parts_add_up(d in proptest::option::of(-1.0f64..100.0),
                        b in proptest::option::of(-1.0f64..100.0),
                        h in 0.0f64..100.0) {
            let s = Split::of(d, b, Some(h)).unwrap();
            prop_assert!(s.detection_s >= 0.0 && s.hold_s >= 0.0 && s.restart_to_healthy_s >= 0.0, "{s:?}");
            prop_assert!((s.detection_s + s.hold_s + s.restart_to_healthy_s - h).abs() < 1e-9, "{s:?}");
        }
    }
}
