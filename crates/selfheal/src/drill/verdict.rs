//! The drill's verdict: every round within its limit or not, and whether a pass says something
//! about the healing or only that the limit was generous (rounds held by the watchdog's
//! backoff or budget, or a median far above the scenario's fastest round).

use super::report::RoundRecord;
use super::split::{HoldReason, RoundOutcome};
use super::Scenario;
use serde::Serialize;
use std::fmt;

/// A median more than this many times the scenario's fastest unheld round is not the healing's
/// own time: something else (a backoff, a slow engine) made it.
pub const SLOW_MEDIAN_FACTOR: f64 = 4.0;

/// Why a pass is weaker than it looks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Caveat {
    /// Rounds the watchdog held (backoff or budget) before restarting: their times measure
    /// the hold.
    Held {
        scenario: Scenario,
        rounds: Vec<u32>,
        reason: HoldReason,
        /// The longest hold, seconds.
        longest_s: f64,
    },
    /// The scenario's median recovery is more than [`SLOW_MEDIAN_FACTOR`] times its fastest
    /// unheld round.
    SlowMedian {
        scenario: Scenario,
        p50_s: f64,
        fastest_s: f64,
    },
}

impl fmt::Display for Caveat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caveat::Held {
                scenario,
                rounds,
                reason,
                longest_s,
            } => {
                let list: Vec<String> = rounds.iter().map(u32::to_string).collect();
                let what = match reason {
                    HoldReason::Backoff => "the watchdog's backoff from earlier rounds",
                    HoldReason::Budget => "the watchdog's spent restart budget",
                    HoldReason::Unexplained => "the watchdog (its view did not say why)",
                };
                write!(
                    f,
                    "{scenario}: round(s) {} held by {what}, up to {longest_s:.1}s: their times \
                     measure the hold, not the healing",
                    list.join(", ")
                )
            }
            Caveat::SlowMedian {
                scenario,
                p50_s,
                fastest_s,
            } => write!(
                f,
                "{scenario}: median recovery {p50_s:.1}s is {:.1}x its fastest round \
                 ({fastest_s:.1}s)",
                p50_s / fastest_s
            ),
        }
    }
}

/// The drill's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Verdict {
    /// Every measured round recovered within its limit, none was held, and every scenario's
    /// median is near its fastest round.
    Passed,
    /// Every measured round recovered within its limit, but only because the limit is generous.
    PassedOnlyByGenerousLimit { caveats: Vec<Caveat> },
    /// A round missed its limit, failed, or the drill was interrupted.
    Failed { failures: Vec<String> },
}

impl Verdict {
    /// Judges `rounds` (in the order they ran); `failures` names every failed round and an
    /// interruption.
    pub fn of(rounds: &[RoundRecord], failures: Vec<String>) -> Verdict {
        if !failures.is_empty() {
            return Verdict::Failed { failures };
        }
        let mut caveats = Vec::new();
        let mut scenarios: Vec<Scenario> = Vec::new();
        for r in rounds {
            if !scenarios.contains(&r.scenario) {
                scenarios.push(r.scenario);
            }
        }
        for s in scenarios {
            let measured: Vec<&RoundRecord> = rounds
                .iter()
                .filter(|r| r.scenario == s && r.outcome == RoundOutcome::Recovered)
                .collect();
            let held: Vec<&&RoundRecord> = measured.iter().filter(|r| r.hold.is_some()).collect();
            if let Some(first) = held.first() {
                let reason = held
                    .iter()
                    .filter_map(|r| r.hold)
                    .find(|h| *h == HoldReason::Budget)
                    .or(first.hold)
                    .unwrap_or(HoldReason::Unexplained);
                caveats.push(Caveat::Held {
                    scenario: s,
                    rounds: held.iter().map(|r| r.round).collect(),
                    reason,
                    longest_s: held
                        .iter()
                        .filter_map(|r| r.split.map(|p| p.hold_s))
                        .fold(0.0, f64::max),
                });
            }
            let fastest = measured
                .iter()
                .filter(|r| r.hold.is_none())
                .filter_map(|r| r.time_to_recover_seconds)
                .min_by(f64::total_cmp);
            let all: Vec<f64> = measured
                .iter()
                .filter_map(|r| r.time_to_recover_seconds)
                .collect();
            if let (Some(fastest), Some(stats)) = (fastest, super::Stats::of(&all)) {
                if fastest > 0.0 && stats.p50 > SLOW_MEDIAN_FACTOR * fastest {
                    caveats.push(Caveat::SlowMedian {
                        scenario: s,
                        p50_s: stats.p50,
                        fastest_s: fastest,
                    });
                }
            }
        }
        if caveats.is_empty() {
            Verdict::Passed
        } else {
            Verdict::PassedOnlyByGenerousLimit { caveats }
        }
    }

    pub fn passed(&self) -> bool {
        !matches!(self, Verdict::Failed { .. })
    }

    /// The verdict's lines for the terminal and the Markdown report.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Verdict::Passed => {
                vec!["every round recovered within its limit, none was held by the watchdog".into()]
            }
            Verdict::PassedOnlyByGenerousLimit { caveats } => {
                let mut l = vec![
                    "every round recovered within its limit, but only because the limit is \
                     generous:"
                        .to_string(),
                ];
                l.extend(caveats.iter().map(|c| format!("  {c}")));
                l
            }
            Verdict::Failed { failures } => {
                let mut l = vec!["FAILED".to_string()];
                l.extend(failures.iter().map(|f| format!("  {f}")));
                l
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::split::Split;
    use std::time::Duration;

    /// A recovered round of `scenario`: detection 1 s, `hold` s held, 2 s restart to healthy.
    fn round(scenario: Scenario, n: u32, hold: Option<(HoldReason, f64)>) -> RoundRecord {
        let mut r = RoundRecord::new(scenario, n, Duration::from_secs(60));
        let held = hold.map_or(0.0, |h| h.1);
        r.split = Split::of(Some(1.0), Some(1.0 + held), Some(3.0 + held));
        r.hold = hold.map(|h| h.0);
        r.time_to_recover_seconds = Some(3.0 + held);
        r
    }

    #[test]
    fn unheld_rounds_near_their_floor_pass() {
        let rounds: Vec<_> = (1..=3).map(|n| round(Scenario::Freeze, n, None)).collect();
        assert_eq!(Verdict::of(&rounds, vec![]), Verdict::Passed);
    }

    /// The finding of issue 22 as a sequence: freeze round 1 fresh, rounds 2 and 3 held by the
    /// backoff (16 s, 32 s), all inside a 60 s limit.
    #[test]
    fn held_rounds_and_a_slow_median_pass_only_by_a_generous_limit() {
        let rounds = vec![
            round(Scenario::Crash, 1, None),
            round(Scenario::Freeze, 1, None),
            round(Scenario::Freeze, 2, Some((HoldReason::Backoff, 16.0))),
            round(Scenario::Freeze, 3, Some((HoldReason::Backoff, 32.0))),
        ];
        let v = Verdict::of(&rounds, vec![]);
        let Verdict::PassedOnlyByGenerousLimit { caveats } = &v else {
            panic!("{v:?}")
        };
        assert_eq!(
            caveats[0],
            Caveat::Held {
                scenario: Scenario::Freeze,
                rounds: vec![2, 3],
                reason: HoldReason::Backoff,
                longest_s: 32.0
            }
        );
        // p50 19 s against a fastest round of 3 s.
        assert_eq!(
            caveats[1],
            Caveat::SlowMedian {
                scenario: Scenario::Freeze,
                p50_s: 19.0,
                fastest_s: 3.0
            }
        );
        assert!(v.passed());
        let text = v.lines().join("\n");
        assert!(
            text.contains("only because the limit is generous"),
            "{text}"
        );
        assert!(
            text.contains("freeze: round(s) 2, 3 held by the watchdog's backoff"),
            "{text}"
        );
        assert!(text.contains("6.3x its fastest round"), "{text}");
    }

    #[test]
    fn one_held_round_is_a_caveat_even_with_a_fine_median() {
        let rounds = vec![
            round(Scenario::Hang, 1, None),
            round(Scenario::Hang, 2, Some((HoldReason::Backoff, 1.0))),
            round(Scenario::Hang, 3, None),
        ];
        let v = Verdict::of(&rounds, vec![]);
        assert!(
            matches!(&v, Verdict::PassedOnlyByGenerousLimit { caveats } if caveats.len() == 1),
            "{v:?}"
        );
    }

    #[test]
    fn a_failure_fails_whatever_else() {
        let rounds = vec![round(Scenario::Hang, 1, Some((HoldReason::Budget, 5.0)))];
        let v = Verdict::of(&rounds, vec!["hang round 2: quarantined".into()]);
        assert!(!v.passed());
        assert_eq!(v.lines()[0], "FAILED");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["result"], "failed");
    }
}
