//! When the next round may start. The watchdog waits between its restarts of one container
//! (1 s, doubling up to 60 s by default) and forgets the restarts once the container has been
//! healthy for the backoff's reset period without a break. A round that starts before then is
//! held by the backoff the previous rounds built up, and its time measures that backoff, not
//! the healing. So by default a round starts only when no earlier restart can delay it;
//! `--back-to-back` starts each round as soon as the container is healthy (to test the backoff
//! on purpose).

use std::time::{Duration, SystemTime};

/// The watchdog's backoff for the target, as its API (or, failing that, the drill) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSeen {
    /// Restarts the watchdog made within its budget window: none means no restart it counts
    /// for backoff is recent enough to delay the next (the window is longer than the largest
    /// backoff step).
    pub restarts_in_window: u32,
    /// Healthy without a break since; `None` when it is not healthy now.
    pub healthy_since: Option<SystemTime>,
    /// The watchdog's backoff reset period.
    pub reset_after: Duration,
}

/// Rounds start as soon as the container is ready (`BackToBack`), or only once the watchdog's
/// backoff can no longer hold them (`Spaced`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    Spaced,
    BackToBack,
}

/// Slack for the watchdog publishing its view a little after its own clock said healthy.
pub const MARGIN: Duration = Duration::from_secs(1);

/// What the drill does before injecting the next fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// Inject now.
    Go,
    /// Recent restarts count for backoff and the container is not healthy now: wait for it.
    WaitHealthy,
    /// Healthy since `healthy_since`; at `at` the backoff forgets the restarts before.
    WaitUntil {
        at: SystemTime,
        healthy_since: SystemTime,
    },
}

/// The spacing decision for one moment.
pub fn decide(pacing: Pacing, seen: &BackoffSeen, now: SystemTime) -> Spacing {
    if pacing == Pacing::BackToBack || seen.restarts_in_window == 0 {
        return Spacing::Go;
    }
    let Some(since) = seen.healthy_since else {
        return Spacing::WaitHealthy;
    };
    let at = since + seen.reset_after + MARGIN;
    if now >= at {
        Spacing::Go
    } else {
        Spacing::WaitUntil {
            at,
            healthy_since: since,
        }
    }
}

impl Spacing {
    /// What the progress line says while the drill waits.
    pub fn describe(&self, reset_after: Duration, now: SystemTime) -> String {
        match self {
            Spacing::Go => "ready".into(),
            Spacing::WaitHealthy => {
                "waiting for the watchdog to see it healthy (its backoff resets after that)".into()
            }
            Spacing::WaitUntil { at, healthy_since } => {
                let healthy = now.duration_since(*healthy_since).unwrap_or_default();
                let left = at.duration_since(now).unwrap_or_default();
                format!(
                    "spacing rounds: {:.0}s until the watchdog's backoff resets (healthy {:.0}s \
                     of {:.0}s; --back-to-back skips this)",
                    left.as_secs_f64(),
                    healthy.as_secs_f64(),
                    reset_after.as_secs_f64()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use selfheal_core::Backoff;
    use std::time::UNIX_EPOCH;

    fn t(s: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(1_000_000.0 + s)
    }

    #[test]
    fn back_to_back_and_no_recent_restart_go_at_once() {
        let seen = BackoffSeen {
            restarts_in_window: 3,
            healthy_since: None,
            reset_after: Duration::from_secs(60),
        };
        assert_eq!(decide(Pacing::BackToBack, &seen, t(0.0)), Spacing::Go);
        assert_eq!(decide(Pacing::Spaced, &seen, t(0.0)), Spacing::WaitHealthy);
        let fresh = BackoffSeen {
            restarts_in_window: 0,
            ..seen
        };
        assert_eq!(decide(Pacing::Spaced, &fresh, t(0.0)), Spacing::Go);
        let healthy = BackoffSeen {
            healthy_since: Some(t(10.0)),
            ..seen
        };
        let wait = decide(Pacing::Spaced, &healthy, t(30.0));
        assert_eq!(
            wait,
            Spacing::WaitUntil {
                at: t(71.0),
                healthy_since: t(10.0)
            }
        );
        assert!(wait
            .describe(Duration::from_secs(60), t(30.0))
            .contains("41s until the watchdog's backoff resets (healthy 20s of 60s"));
        assert_eq!(decide(Pacing::Spaced, &healthy, t(71.0)), Spacing::Go);
    }

    /// A reference model of the watchdog's backoff (selfheal-core's rule, restated here):
    /// the n-th restart since the last reset waits `gap(n-1)` after the one before; the count
    /// is forgotten when the container leaves healthy after being healthy `reset_after`.
    #[derive(Debug, Default)]
    struct WatchdogModel {
        recent: u32,
        last_restart: Option<f64>,
        restarts: Vec<f64>,
        healthy_since: Option<f64>,
    }

    impl WatchdogModel {
        fn healthy(&mut self, at: f64) {
            self.healthy_since = Some(at);
        }
        /// The fault at `at`: leaves healthy, then the watchdog restarts it after detection;
        /// returns how long the backoff held the restart.
        fn fault(&mut self, at: f64, detect: f64, b: &Backoff) -> f64 {
            let reset = b.reset_after.as_secs_f64();
            if self.healthy_since.is_some_and(|h| at - h >= reset) {
                self.recent = 0;
            }
            self.healthy_since = None;
            let detected = at + detect;
            let allowed = self
                .last_restart
                .map_or(detected, |l| l + b.gap(self.recent).as_secs_f64());
            let restart = detected.max(allowed);
            self.recent += 1;
            self.last_restart = Some(restart);
            self.restarts.push(restart);
            restart - detected
        }
        fn restarts_in_window(&self, now: f64, window: f64) -> u32 {
            self.restarts.iter().filter(|r| now - **r < window).count() as u32
        }
    }

    /// Runs `rounds` (detection and restart-to-healthy seconds each) the way the drill does:
    /// after each round the container is healthy, then the drill polls every second until
    /// `decide` says go. Returns each round's hold.
    fn drill(pacing: Pacing, rounds: &[(f64, f64)], b: &Backoff, rule: Rule) -> Vec<f64> {
        let mut w = WatchdogModel::default();
        let mut now = 0.0;
        w.healthy(now);
        let mut holds = Vec::new();
        for &(detect, heal) in rounds {
            loop {
                let seen = BackoffSeen {
                    restarts_in_window: w.restarts_in_window(now, 600.0),
                    healthy_since: w.healthy_since.map(t),
                    reset_after: b.reset_after,
                };
                if rule(pacing, &seen, t(now)) == Spacing::Go {
                    break;
                }
                now += 1.0;
            }
            let hold = w.fault(now, detect, b);
            holds.push(hold);
            now += detect + hold + heal;
            w.healthy(now);
        }
        holds
    }

    type Rule = fn(Pacing, &BackoffSeen, SystemTime) -> Spacing;

    /// A broken copy: waits only for healthy, not for the reset period.
    fn healthy_is_enough(p: Pacing, s: &BackoffSeen, now: SystemTime) -> Spacing {
        decide(
            p,
            &BackoffSeen {
                reset_after: Duration::ZERO,
                ..*s
            },
            now,
        )
    }

    fn rounds() -> impl Strategy<Value = Vec<(f64, f64)>> {
        prop::collection::vec((0.5f64..10.0, 0.5f64..10.0), 2..10)
    }

    proptest! {
        /// Spaced rounds are never held by the backoff, whatever the detection and healing
        /// times and the reset period.
        #[test]
        fn spaced_rounds_are_never_held(rounds in rounds(), reset in 2u64..90) {
            let b = Backoff { reset_after: Duration::from_secs(reset), ..Backoff::default() };
            let spaced = drill(Pacing::Spaced, &rounds, &b, decide);
            prop_assert!(spaced.iter().all(|h| *h == 0.0), "held: {spaced:?}");
        }
    }

    /// Back to back, the backoff catches up with rounds a few seconds apart (what
    /// `--back-to-back` is for); a rule that waits only for healthy lets it hold them too.
    #[test]
    fn back_to_back_or_a_broken_rule_lets_the_backoff_hold_rounds() {
        let b = Backoff::default();
        let rounds = vec![(2.0, 2.0); 6];
        assert!(drill(Pacing::Spaced, &rounds, &b, decide)
            .iter()
            .all(|h| *h == 0.0));
        let back = drill(Pacing::BackToBack, &rounds, &b, decide);
        assert_eq!(back, vec![0.0, 0.0, 0.0, 0.0, 4.0, 12.0]);
        let broken = drill(Pacing::Spaced, &rounds, &b, healthy_is_enough);
        assert!(broken.iter().any(|h| *h > 0.0), "{broken:?}");
    }
}
