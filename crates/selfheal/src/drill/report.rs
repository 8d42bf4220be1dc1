//! Rounds into numbers: per-scenario statistics, the terminal table, JSON, the Markdown report
//! and its SVG timeline.

use super::split::{RoundOutcome, Split};
use super::verdict::Verdict;
use super::Scenario;
use crate::journal::IncidentOutcome;
use crate::timeline::{
    Phase, Theme, TimelineChart, TimelineRow, DETECTED_TO_RESTART_BEGUN, FAULT_TO_DETECTED,
    HEALTHY_COLOR,
};
use selfheal_core::Trigger;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

pub use super::record::RoundRecord;

/// min / p50 / p95 / max of a sample (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Self {
            n: v.len(),
            min: v[0],
            p50: percentile(&v, 0.50),
            p95: percentile(&v, 0.95),
            max: v[v.len() - 1],
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `v`.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    pub scenario: Scenario,
    pub rounds: usize,
    pub recovered: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Measured rounds the watchdog held (backoff or budget) before restarting.
    pub held: usize,
    pub slo_seconds: f64,
    pub time_to_detect: Option<Stats>,
    pub time_to_recover: Option<Stats>,
    pub restarts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub target: String,
    pub started: String,
    /// Rounds were spaced so that none started inside the watchdog's backoff (`false`:
    /// `--back-to-back`).
    pub spaced: bool,
    pub ok: bool,
    pub verdict: Verdict,
    pub summary: Vec<ScenarioSummary>,
    pub rounds: Vec<RoundRecord>,
    /// One line per round that failed, naming it.
    pub failures: Vec<String>,
}

/// Seconds with two decimals, or `-`.
fn secs(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |s| format!("{s:.2}"))
}

impl DrillReport {
    pub fn new(
        target: &str,
        started: SystemTime,
        rounds: Vec<RoundRecord>,
        slo: impl Fn(Scenario) -> Duration,
        spaced: bool,
        interrupted: bool,
    ) -> Self {
        let mut scenarios: Vec<Scenario> = Vec::new();
        for r in &rounds {
            if !scenarios.contains(&r.scenario) {
                scenarios.push(r.scenario);
            }
        }
        let summary = scenarios
            .into_iter()
            .map(|s| {
                let of: Vec<&RoundRecord> = rounds.iter().filter(|r| r.scenario == s).collect();
                let measured = || of.iter().filter(|r| r.outcome != RoundOutcome::Skipped);
                let count = |o: RoundOutcome| of.iter().filter(|r| r.outcome == o).count();
                ScenarioSummary {
                    scenario: s,
                    rounds: of.len(),
                    recovered: count(RoundOutcome::Recovered),
                    failed: count(RoundOutcome::Failed),
                    skipped: count(RoundOutcome::Skipped),
                    held: measured().filter(|r| r.hold.is_some()).count(),
                    slo_seconds: slo(s).as_secs_f64(),
                    time_to_detect: Stats::of(
                        &measured()
                            .filter_map(|r| r.time_to_detect_seconds)
                            .collect::<Vec<_>>(),
                    ),
                    time_to_recover: Stats::of(
                        &measured()
                            .filter_map(|r| r.time_to_recover_seconds)
                            .collect::<Vec<_>>(),
                    ),
                    restarts: measured().map(|r| r.restarts).sum(),
                }
            })
            .collect();
        let mut failures: Vec<String> = rounds
            .iter()
            .filter(|r| !r.ok())
            .map(|r| format!("{}: {}", r.name(), r.error.as_deref().unwrap_or("failed")))
            .collect();
        if interrupted {
            failures.push("interrupted: the remaining rounds were not run".into());
        }
        let verdict = Verdict::of(&rounds, failures.clone());
        Self {
            target: target.into(),
            started: humantime::format_rfc3339_seconds(started).to_string(),
            spaced,
            ok: failures.is_empty(),
            verdict,
            summary,
            rounds,
            failures,
        }
    }

    fn summary_rows(&self) -> Vec<[String; 9]> {
        let st = |s: &Option<Stats>| {
            s.map_or("-".to_string(), |s| {
                format!("{:.2} / {:.2} / {:.2} / {:.2}", s.min, s.p50, s.p95, s.max)
            })
        };
        self.summary
            .iter()
            .map(|s| {
                [
                    s.scenario.to_string(),
                    format!("{}/{}", s.recovered, s.rounds - s.skipped),
                    s.failed.to_string(),
                    s.skipped.to_string(),
                    s.held.to_string(),
                    format!("{:.0}s", s.slo_seconds),
                    st(&s.time_to_detect),
                    st(&s.time_to_recover),
                    s.restarts.to_string(),
                ]
            })
            .collect()
    }

    const HEADERS: [&'static str; 9] = [
        "SCENARIO",
        "RECOVERED",
        "FAILED",
        "SKIPPED",
        "HELD",
        "LIMIT",
        "DETECT s min/p50/p95/max",
        "RECOVER s min/p50/p95/max",
        "RESTARTS",
    ];

    /// One row per measured round: the split of its time.
    fn round_rows(&self) -> Vec<[String; 6]> {
        self.rounds
            .iter()
            .filter(|r| r.outcome != RoundOutcome::Skipped)
            .map(|r| {
                let split = |f: fn(&Split) -> f64| secs(r.split.as_ref().map(f));
                let hold = match (r.split, r.hold) {
                    (Some(s), Some(h)) => format!("{:.2} {h} *", s.hold_s),
                    (None, Some(h)) => format!("- {h} *"),
                    (s, None) => secs(s.map(|s| s.hold_s)),
                };
                [
                    r.name(),
                    split(|s| s.detection_s),
                    hold,
                    split(|s| s.restart_to_healthy_s),
                    secs(r.healthy_s),
                    r.outcome.to_string(),
                ]
            })
            .collect()
    }

    const ROUND_HEADERS: [&'static str; 6] = [
        "ROUND",
        "DETECT s",
        "HOLD s",
        "RESTART->HEALTHY s",
        "TOTAL s",
        "OUTCOME",
    ];

    /// The terminal table: summary, each round's split, skips, then the verdict.
    pub fn table(&self) -> String {
        let mut out = format!(
            "drill of {} ({})\n",
            self.target,
            if self.spaced {
                "rounds spaced past the watchdog's backoff"
            } else {
                "rounds back to back: later rounds may be held by the watchdog's backoff"
            }
        );
        out += &aligned(&Self::HEADERS, &self.summary_rows());
        out += "\n";
        out += &aligned(&Self::ROUND_HEADERS, &self.round_rows());
        if self.rounds.iter().any(|r| r.hold.is_some()) {
            out += "* held: the watchdog waited (its backoff after earlier restarts, or its \
                    budget) between detecting the fault and restarting\n";
        }
        for r in self
            .rounds
            .iter()
            .filter(|r| r.outcome == RoundOutcome::Skipped && r.round == 1)
        {
            let _ = writeln!(
                out,
                "skipped {}: {}",
                r.scenario,
                r.error.as_deref().unwrap_or("")
            );
        }
        let mut lines = self.verdict.lines().into_iter();
        let _ = writeln!(out, "result: {}", lines.next().unwrap_or_default());
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        out
    }

    /// The Markdown report; `svg` is the timeline's file name beside it.
    pub fn markdown(&self, svg: &str) -> String {
        let mut verdict = self.verdict.lines().into_iter();
        let mut out = format!(
            "# selfheal drill: {}\n\nStarted {}; rounds {}. Result: **{}**.\n\n",
            self.target,
            self.started,
            if self.spaced {
                "spaced so that none starts inside the watchdog's backoff"
            } else {
                "back to back (later rounds may be held by the watchdog's backoff)"
            },
            verdict.next().unwrap_or_default()
        );
        for l in verdict {
            let _ = writeln!(out, "- {}", l.trim_start());
        }
        out += "\n| scenario | recovered | failed | skipped | held | limit | detect s (min / p50 / p95 / max) | recover s (min / p50 / p95 / max) | restarts |\n";
        out += "|---|---|---|---|---|---|---|---|---|\n";
        for r in self.summary_rows() {
            out += &format!("| {} |\n", r.join(" | "));
        }
        let _ = write!(out, "\n![timeline of the rounds]({svg})\n\n## Rounds\n\n");
        out += "| round | injected by | detected s (by) | restart begun s (by) | started s | healthy s | detect / hold / restart->healthy s | restarts | incident | outcome |\n";
        out += "|---|---|---|---|---|---|---|---|---|---|\n";
        for r in &self.rounds {
            let incident = r.incident_id.map_or("-".to_string(), |id| {
                format!(
                    "#{id} {} {}",
                    r.incident_trigger.map_or("", Trigger::as_str),
                    r.incident_outcome.map_or("", IncidentOutcome::as_str)
                )
            });
            let outcome = match &r.error {
                Some(e) => format!("{}: {}", r.outcome, e.replace('|', "/")),
                None => r.outcome.to_string(),
            };
            let split = r.split.map_or("-".to_string(), |s| {
                let held = r.hold.map_or(String::new(), |h| format!(" **held: {h}**"));
                format!(
                    "{:.2} / {:.2}{held} / {:.2}",
                    s.detection_s, s.hold_s, s.restart_to_healthy_s
                )
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} ({}) | {} ({}) | {} | {} | {} | {} | {} | {} |",
                r.name(),
                if r.injected_by.is_empty() {
                    "-"
                } else {
                    &r.injected_by
                },
                secs(r.detected_s),
                r.detected_by.as_deref().unwrap_or("-"),
                secs(r.restart_begun_s),
                r.restarted_by.as_deref().unwrap_or("-"),
                secs(r.started_s),
                secs(r.healthy_s),
                split,
                r.restarts,
                incident,
                outcome
            );
        }
        out += "\nTimes are seconds after the fault was injected. Detected: the watchdog's \
                incident opened (else Docker's die or unhealthy event). Restart begun: Docker's \
                kill event of the restart (else the incident's action, or the die event when \
                Docker's restart policy restarts it). Healthy: Docker's health_status healthy \
                event after the start (else the app's health endpoint answering). Hold: \
                detected -> restart begun; a round is held when the watchdog's view said \
                backing_off (backoff) or quarantined (budget) during it, or the gap was 0.5 s or \
                more (unexplained).\n";
        out
    }

    /// The timeline: one row per round, phases fault -> detected -> held (if it was) ->
    /// restart begun -> started -> healthy, and the round's limit. A held round says so in
    /// its label.
    pub fn svg(&self) -> String {
        const PHASES: [Phase; 5] = [
            FAULT_TO_DETECTED,
            Phase {
                label: "held by the watchdog (backoff / budget)",
                color: "#9c36b5",
            },
            DETECTED_TO_RESTART_BEGUN,
            Phase {
                label: "restart begun -> started",
                color: "#4c6ef5",
            },
            Phase {
                label: "started -> healthy",
                color: HEALTHY_COLOR,
            },
        ];
        let rows = self
            .rounds
            .iter()
            .filter(|r| r.outcome != RoundOutcome::Skipped)
            .map(|r| {
                let held = r.hold.is_some();
                let note = r.hold_note();
                TimelineRow {
                    label: if note.is_empty() {
                        r.name()
                    } else {
                        format!("{}: {note}", r.name())
                    },
                    ends: vec![
                        r.detected_s,
                        r.restart_begun_s.filter(|_| held),
                        r.restart_begun_s.filter(|_| !held),
                        r.started_s,
                        r.healthy_s,
                    ],
                    limit: Some(r.slo_seconds),
                    ..TimelineRow::default()
                }
            })
            .collect();
        TimelineChart {
            title: format!("selfheal drill: {} (seconds after the fault)", self.target),
            phases: &PHASES,
            rows,
            theme: Theme::Paper,
            unfinished: "not recovered",
        }
        .svg()
    }
}

/// Rows under headers, each column as wide as its widest cell.
fn aligned<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut width = headers.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (c, w) in cells.iter().zip(width) {
            let _ = write!(s, "{c:<w$}  ");
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&headers.map(String::from));
    for r in rows {
        out += &line(r);
    }
    out
}

#[cfg(test)]
mod tests;
