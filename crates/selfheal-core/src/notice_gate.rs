//! Which incident events become notifications: the noise control of the notifier.
//!
//! A crash loop is one story, told in at most four messages: the first fault (an incident
//! opened), the first failed restart, the quarantine, and the recovery. The loop ends when no
//! new fault came for `quiet` after the container was healthy again; `quiet` is the backoff
//! reset period, the same time after which the [`Supervisor`](crate::Supervisor) forgets the
//! restarts of the loop (kube-rs' `backoff_reset_timer` has the same shape). The recovery
//! message is therefore sent `quiet` after the container was healthy again, not at once: a
//! recovery that lasts only a moment is part of the loop.
//!
//! Pure: every input carries `now`, and [`NoticeGate::wake_at`] says when the owner must call
//! [`NoticeGate::tick`] for a pending recovery to go out.

use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// How serious a notification is; each target has a minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A container recovered.
    Info,
    /// A container is being restarted.
    Warning,
    /// A container was quarantined, or a restart failed: it needs a human.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// A message the gate lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The first fault of a loop: an incident opened, a restart follows.
    Opened,
    /// The first restart of the loop that Docker refused or that failed.
    RestartFailed,
    /// The restart budget is spent; the container is left alone.
    Quarantined,
    /// Healthy again, and it stayed so for the quiet period. `time_to_recover`: from the first
    /// failure of the loop's first fault to the moment it was healthy again for good.
    Recovered {
        time_to_recover: Duration,
        faults: u32,
    },
}

impl Notice {
    pub fn severity(&self) -> Severity {
        match self {
            Notice::Opened => Severity::Warning,
            Notice::RestartFailed | Notice::Quarantined => Severity::Critical,
            Notice::Recovered { .. } => Severity::Info,
        }
    }
}

/// Where the container's story stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing announced, or the last loop's recovery was announced.
    Calm,
    /// A loop was announced; it lasts until the container is healthy for `quiet`.
    Loop {
        /// The first failure of the loop's first fault.
        began: Instant,
        faults: u32,
        failed_sent: bool,
        quarantined_sent: bool,
        /// Healthy again since, with no fault after it.
        healthy_since: Option<Instant>,
    },
}

/// The noise gate of one container.
#[derive(Debug, Clone)]
pub struct NoticeGate {
    quiet: Duration,
    phase: Phase,
}

impl NoticeGate {
    pub fn new(quiet: Duration) -> Self {
        Self {
            quiet,
            phase: Phase::Calm,
        }
    }

    /// An incident opened; its first failure was at `first_failure`.
    pub fn opened(&mut self, first_failure: Instant, now: Instant) -> Vec<Notice> {
        let mut out = self.settle(now);
        match &mut self.phase {
            Phase::Calm => {
                self.phase = Phase::Loop {
                    began: first_failure.min(now),
                    faults: 1,
                    failed_sent: false,
                    quarantined_sent: false,
                    healthy_since: None,
                };
                out.push(Notice::Opened);
            }
            Phase::Loop {
                faults,
                healthy_since,
                ..
            } => {
                *faults = faults.saturating_add(1);
                *healthy_since = None;
            }
        }
        out
    }

    /// A restart failed (Docker refused it, or it never took).
    pub fn restart_failed(&mut self, now: Instant) -> Vec<Notice> {
        self.once_per_loop(Notice::RestartFailed, now)
    }

    /// The restart budget is spent.
    pub fn quarantined(&mut self, now: Instant) -> Vec<Notice> {
        self.once_per_loop(Notice::Quarantined, now)
    }

    /// Tells `notice` (a failed restart or a quarantine) if it is the loop's first of its kind.
    fn once_per_loop(&mut self, notice: Notice, now: Instant) -> Vec<Notice> {
        let mut out = self.settle(now);
        if let Phase::Loop {
            failed_sent,
            quarantined_sent,
            healthy_since,
            ..
        } = self.enter_loop(now)
        {
            *healthy_since = None;
            let sent = if notice == Notice::Quarantined {
                quarantined_sent
            } else {
                failed_sent
            };
            if !std::mem::replace(sent, true) {
                out.push(notice);
            }
        }
        out
    }

    /// Healthy again: an incident closed as recovered, or a quarantined container healthy by
    /// itself. The loop ends if nothing else happens for `quiet`.
    pub fn healthy(&mut self, now: Instant) -> Vec<Notice> {
        let out = self.settle(now);
        if let Phase::Loop { healthy_since, .. } = &mut self.phase {
            if healthy_since.is_none() {
                *healthy_since = Some(now);
            }
        }
        out
    }

    /// The container was stopped by its user or removed: the story ends untold.
    pub fn abandoned(&mut self, now: Instant) -> Vec<Notice> {
        let out = self.settle(now);
        self.phase = Phase::Calm;
        out
    }

    /// Time passed: sends the recovery of a loop that has been quiet long enough.
    pub fn tick(&mut self, now: Instant) -> Vec<Notice> {
        self.settle(now)
    }

    /// When [`NoticeGate::tick`] has something to send.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Loop {
                healthy_since: Some(h),
                ..
            } => Some(h + self.quiet),
            _ => None,
        }
    }

    /// Whether a loop is being told (announced, not yet recovered).
    pub fn in_loop(&self) -> bool {
        matches!(self.phase, Phase::Loop { .. })
    }

    /// Ends a loop whose quiet period has run out by `now`.
    fn settle(&mut self, now: Instant) -> Vec<Notice> {
        if let Phase::Loop {
            began,
            faults,
            healthy_since: Some(h),
            ..
        } = self.phase
        {
            if now.saturating_duration_since(h) >= self.quiet {
                self.phase = Phase::Calm;
                return vec![Notice::Recovered {
                    time_to_recover: h.saturating_duration_since(began),
                    faults,
                }];
            }
        }
        Vec::new()
    }

    /// A failed restart or a quarantine without an announced fault (a previous run of the
    /// watchdog announced it) starts a loop of its own.
    fn enter_loop(&mut self, now: Instant) -> &mut Phase {
        if self.phase == Phase::Calm {
            self.phase = Phase::Loop {
                began: now,
                faults: 1,
                failed_sent: false,
                quarantined_sent: false,
                healthy_since: None,
            };
        }
        &mut self.phase
    }
}

#[cfg(test)]
#[path = "notice_gate_tests.rs"]
mod tests;
