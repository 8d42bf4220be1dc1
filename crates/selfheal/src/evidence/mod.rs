//! The evidence an incident carries: what the container and its checks said around the fault.
//! Captured at detection ([`crate::container`]), read back from Docker off the restart path
//! ([`crate::docker::capture`]), bounded here, stored in the journal with the incident.
//!
//! Every part is bounded on its JSON form (what the journal stores), so the evidence of one
//! incident serializes to at most [`MAX_EVIDENCE_BYTES`] however the container misbehaves:
//! huge lines, binary output, control characters.

use crate::timestamp::{lenient, Timestamp};
use selfheal_core::ProbeFailure;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Log lines kept, newest first, at most.
pub const LOG_LINES: usize = 50;
/// Bytes of log text kept (JSON-escaped), at most.
pub const LOG_BYTES: usize = 16 * 1024;
/// Bytes of one log line kept; a longer line is cut (Docker itself splits lines at 16 KiB).
pub const LOG_LINE_BYTES: usize = 4 * 1024;
/// Docker keeps the last 5 health-check results; all are kept.
pub const HEALTH_RESULTS: usize = 5;
/// Bytes of one health-check output kept (Docker keeps up to 4 KiB).
pub const HEALTH_OUTPUT_BYTES: usize = 2 * 1024;
/// The watchdog's own probe failures kept: the newest of the run that led to the incident.
pub const PROBE_FAILURES: usize = 5;
/// Bytes of a probe's response body kept.
pub const BODY_EXCERPT_BYTES: usize = 512;
/// Bytes of a note (why logs are missing).
const NOTE_BYTES: usize = 512;
/// What a whole [`Evidence`] serializes to, at most (checked by a test on the worst case).
pub const MAX_EVIDENCE_BYTES: usize = 32 * 1024;
/// Marks text that was cut.
const CUT: &str = "…";

/// One incident's evidence. Empty parts are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Docker's last HEALTHCHECK results (`State.Health.Log`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_log: Vec<HealthCheck>,
    /// The watchdog's own failed probes that led to the incident, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_failures: Vec<ProbeFailureRecord>,
    /// How the process ended, for a death.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    /// The container's last log lines before the fault, or why there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Logs>,
}

/// One HEALTHCHECK result as Docker recorded it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub output: String,
    /// Docker's times, to the nanosecond (RFC 3339 in JSON); a time Docker sent that cannot
    /// be read is `None`.
    #[serde(default, deserialize_with = "lenient")]
    pub start: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient")]
    pub end: Option<Timestamp>,
}

/// One failed probe of the watchdog's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeFailureRecord {
    /// When it ended; `None` only in a record that has no readable time.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub at: Option<Timestamp>,
    /// `timeout`, `connect`, `status` or `body` (the `reason` of the probe failure metric).
    pub reason: ProbeFailure,
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_excerpt: Option<String>,
}

/// How the main process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i64,
    #[serde(default)]
    pub oom_killed: bool,
    /// The signal that ended it, read from the exit code as Docker reports it (128 + n, the
    /// shell's convention): `SIGKILL` for 137.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

impl ExitRecord {
    pub fn new(exit_code: i64, oom_killed: bool) -> Self {
        Self {
            exit_code,
            oom_killed,
            signal: signal_of(exit_code),
        }
    }
}

/// The signal behind an exit code above 128 (128 + n), by its Linux name.
pub fn signal_of(exit_code: i64) -> Option<String> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    let n = exit_code.checked_sub(128).filter(|n| *n >= 1)?;
    match usize::try_from(n).ok().and_then(|n| NAMES.get(n - 1)) {
        Some(name) => Some((*name).to_string()),
        None if n <= 64 => Some(format!("signal {n}")),
        None => None,
    }
}

/// What is read back from Docker after detection ([`crate::docker::capture`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Captured {
    pub health_log: Vec<HealthCheck>,
    pub logs: Option<Logs>,
}

/// The container's last log lines, or a note saying why they cannot be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    /// Oldest first.
    #[serde(default)]
    pub lines: Vec<LogLine>,
    /// Lines were left out or cut to stay within the bounds.
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub note: Option<String>,
}

/// Which of Docker's streams a line came from; `console` for a container with a TTY, whose
/// two streams Docker cannot tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    Console,
    #[serde(other)]
    Other,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Console => "console",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub stream: LogStream,
    /// Docker's timestamp of the line, to the nanosecond; `None` when Docker sent none that
    /// can be read.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub time: Option<Timestamp>,
    pub text: String,
}

impl Logs {
    /// A note instead of lines.
    pub fn note(text: &str) -> Self {
        Self {
            lines: Vec::new(),
            truncated: false,
            note: Some(cut_json(text, NOTE_BYTES)),
        }
    }

    /// Keeps the newest lines of `lines` (oldest first) within [`LOG_LINES`] and [`LOG_BYTES`],
    /// each line cut to [`LOG_LINE_BYTES`]. `truncated` says whether anything was left out.
    pub fn bounded(lines: impl IntoIterator<Item = LogLine>, more_before: bool) -> Self {
        let all: Vec<LogLine> = lines.into_iter().collect();
        let mut kept = VecDeque::new();
        let mut bytes = 0;
        let mut truncated = more_before;
        for mut line in all.into_iter().rev() {
            if kept.len() == LOG_LINES {
                truncated = true;
                break;
            }
            let cut = cut_json(&line.text, LOG_LINE_BYTES);
            truncated |= cut.len() != line.text.len();
            let cost = json_len(&cut);
            if bytes + cost > LOG_BYTES {
                truncated = true;
                break;
            }
            bytes += cost;
            line.text = cut;
            kept.push_front(line);
        }
        Self {
            lines: kept.into(),
            truncated,
            note: None,
        }
    }
}

/// The JSON-escaped length of `s` without its quotes (as `serde_json` writes it).
pub fn json_len(s: &str) -> usize {
    s.chars().map(char_json_len).sum()
}

fn char_json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `s` cut at a character boundary so that its JSON form takes at most `max` bytes, ending
/// with `…` when cut.
pub fn cut_json(s: &str, max: usize) -> String {
    if json_len(s) <= max {
        return s.to_string();
    }
    let room = max.saturating_sub(CUT.len());
    let mut used = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let n = char_json_len(c);
        if used + n > room {
            break;
        }
        used += n;
        end = i + c.len_utf8();
    }
    format!("{}{CUT}", &s[..end])
}

/// Bytes as text (invalid UTF-8 replaced), cut to `max` JSON bytes; `more`: the bytes are
/// themselves the head of something longer, so the text is marked as cut.
pub fn text_of(bytes: &[u8], max: usize, more: bool) -> String {
    // A head cut inside a character loses that character rather than showing U+FFFD.
    let bytes = match std::str::from_utf8(bytes) {
        Err(e) if more && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    let text = String::from_utf8_lossy(bytes);
    if !more {
        return cut_json(&text, max);
    }
    let mut s = cut_json(&text, max.saturating_sub(CUT.len()));
    if !s.ends_with(CUT) {
        s.push_str(CUT);
    }
    s
}

impl HealthCheck {
    /// One of Docker's results, bounded.
    pub fn new(
        exit_code: Option<i64>,
        output: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Self {
        Self {
            exit_code,
            output: cut_json(output, HEALTH_OUTPUT_BYTES),
            start,
            end,
        }
    }
}

impl Evidence {
    pub fn is_empty(&self) -> bool {
        self.health_log.is_empty()
            && self.probe_failures.is_empty()
            && self.exit.is_none()
            && self.logs.is_none()
    }

    /// Adds what was read back from Docker after detection.
    pub fn merge(&mut self, captured: Captured) {
        if !captured.health_log.is_empty() {
            self.health_log = captured.health_log;
        }
        if captured.logs.is_some() {
            self.logs = captured.logs;
        }
    }

    /// A few lines for a notification: the last health-check output, the last probe failure,
    /// the exit, and the last log lines, each cut short.
    pub fn summary(&self) -> String {
        const LINE: usize = 160;
        const LOG_TAIL: usize = 5;
        let mut out = Vec::new();
        if let Some(h) = self.health_log.last() {
            let code = h.exit_code.map_or("?".to_string(), |c| c.to_string());
            out.push(format!(
                "health check: exit {code}: {}",
                one_line(&h.output, LINE)
            ));
        }
        if let Some(p) = self.probe_failures.last() {
            let mut s = format!("probe: {} after {:.0} ms", p.reason, p.duration_ms);
            if let Some(status) = p.http_status {
                s.push_str(&format!(", HTTP {status}"));
            }
            if let Some(body) = p.body_excerpt.as_deref().filter(|b| !b.trim().is_empty()) {
                s.push_str(&format!(": {}", one_line(body, LINE)));
            }
            out.push(s);
        }
        if let Some(e) = &self.exit {
            out.push(format!("exit: {}", e.describe()));
        }
        if let Some(logs) = &self.logs {
            if let Some(note) = &logs.note {
                out.push(format!("logs: {}", one_line(note, LINE)));
            }
            let from = logs.lines.len().saturating_sub(LOG_TAIL);
            if from < logs.lines.len() {
                out.push("last log lines:".into());
            }
            for l in &logs.lines[from..] {
                out.push(format!(
                    "  [{}] {}",
                    l.stream.as_str(),
                    one_line(&l.text, LINE)
                ));
            }
        }
        out.join("\n")
    }
}

impl ExitRecord {
    /// `code 137 (SIGKILL), OOM-killed`.
    pub fn describe(&self) -> String {
        let mut s = format!("code {}", self.exit_code);
        if let Some(sig) = &self.signal {
            s.push_str(&format!(" ({sig})"));
        }
        if self.oom_killed {
            s.push_str(", OOM-killed");
        }
        s
    }
}

/// `s` on one line (line breaks shown as ` ⏎ `), at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let flat = s.trim_end().replace(['\r', '\n'], " ⏎ ");
    if flat.chars().count() <= max {
        flat
    } else {
        flat.chars().take(max.saturating_sub(1)).collect::<String>() + CUT
    }
}

/// Deserializes the `evidence` of a journal record tolerantly: evidence this version cannot
/// read is dropped, and the incident is kept.
pub fn tolerant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Evidence>>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// The watchdog's own recent probe failures of one container, shared by its probe task (which
/// writes) and its container task (which reads at detection). Cleared by a passing probe, so it
/// holds the current run of failures, the newest [`PROBE_FAILURES`] of them.
#[derive(Debug, Clone, Default)]
pub struct ProbeFailureLog(Arc<Mutex<VecDeque<ProbeFailureRecord>>>);

impl ProbeFailureLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<ProbeFailureRecord>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, record: ProbeFailureRecord) {
        let mut log = self.lock();
        if log.len() == PROBE_FAILURES {
            log.pop_front();
        }
        log.push_back(record);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn snapshot(&self) -> Vec<ProbeFailureRecord> {
        self.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
