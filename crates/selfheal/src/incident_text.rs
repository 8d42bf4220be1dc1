//! One incident as readable text, with its evidence (`selfheal incidents show ID`).

use crate::evidence::{Evidence, Logs};
use crate::journal::{Incident, Timestamp};
use std::fmt::Write;

/// The incident's facts, then each part of its evidence under its own heading.
pub fn render(i: &Incident) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "Incident #{}: {} ({})", i.id, i.container, i.trigger);
    let short_id = i.container_id.get(..12).unwrap_or(&i.container_id);
    field(w, "container id", short_id);
    if let Some(p) = &i.compose_project {
        let service = i.compose_service.as_deref().unwrap_or("-");
        field(w, "compose", &format!("project {p}, service {service}"));
    }
    let mut outcome = format!("{}, {} restart attempt(s)", i.outcome, i.attempts);
    if i.dry_run {
        outcome.push_str(" (dry run)");
    }
    field(w, "outcome", &outcome);
    field(w, "first failure", &i.first_failure.to_string());
    field(w, "detected", &i.detected.to_string());
    let opt = |v: &Option<Timestamp>| v.map_or_else(|| "-".into(), |t| t.to_string());
    field(w, "restart begun", &opt(&i.action_begun));
    field(w, "healthy again", &opt(&i.healthy_again));
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.3} s"));
    field(w, "time to detect", &secs(i.time_to_detect_seconds));
    field(w, "time to recover", &secs(i.time_to_recover_seconds));
    if i.unpersisted {
        field(w, "journal", "not yet written to disk");
    }
    match &i.evidence {
        Some(e) => evidence(w, e),
        None => {
            let _ = writeln!(w, "\nNo evidence recorded.");
        }
    }
    out
}

fn field(w: &mut String, name: &str, value: &str) {
    let _ = writeln!(w, "  {:<17}{value}", format!("{name}:"));
}

/// `text` indented under a heading, each of its lines on its own line.
fn block(w: &mut String, prefix: &str, text: &str) {
    let mut lines = text.trim_end_matches(['\n', '\r']).split('\n');
    let _ = writeln!(w, "{prefix}{}", lines.next().unwrap_or_default());
    let pad = " ".repeat(prefix.chars().count());
    for l in lines {
        let _ = writeln!(w, "{pad}{}", l.trim_end_matches('\r'));
    }
}

fn evidence(w: &mut String, e: &Evidence) {
    if !e.health_log.is_empty() {
        let _ = writeln!(w, "\nDocker health checks (oldest first):");
        for h in &e.health_log {
            let code = h.exit_code.map_or("?".into(), |c| c.to_string());
            let start = h.start.map_or("-".into(), |t| t.to_string());
            block(w, &format!("  {start}  exit {code}  "), &h.output);
        }
    }
    if !e.probe_failures.is_empty() {
        let _ = writeln!(w, "\nProbe failures (oldest first):");
        for p in &e.probe_failures {
            let status = p
                .http_status
                .map_or(String::new(), |s| format!("  HTTP {s}"));
            let _ = writeln!(
                w,
                "  {}  {}{status}  {:.0} ms",
                p.at.map_or("-".into(), |t| t.to_string()),
                p.reason,
                p.duration_ms
            );
            if let Some(body) = p.body_excerpt.as_deref().filter(|b| !b.is_empty()) {
                block(w, "    body: ", body);
            }
        }
    }
    if let Some(x) = &e.exit {
        let _ = writeln!(w, "\nExit: {}", x.describe());
    }
    if let Some(logs) = &e.logs {
        log_lines(w, logs);
    }
}

fn log_lines(w: &mut String, logs: &Logs) {
    if let Some(note) = &logs.note {
        let _ = writeln!(w, "\nLogs: {note}");
    }
    if logs.lines.is_empty() {
        if logs.note.is_none() {
            let _ = writeln!(w, "\nLogs: none written before the fault");
        }
        return;
    }
    let more = if logs.truncated {
        ", earlier or longer lines left out"
    } else {
        ""
    };
    let _ = writeln!(
        w,
        "\nLast log lines before the fault ({}{more}):",
        logs.lines.len()
    );
    for l in &logs.lines {
        let time = l.time.map_or("-".into(), |t| t.to_string());
        let _ = writeln!(w, "  {time} {:<6} {}", l.stream.as_str(), l.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{ExitRecord, HealthCheck, LogLine, LogStream};
    use std::sync::Arc;

    #[test]
    fn shows_facts_and_every_part_of_the_evidence() {
        let json = r#"{"id":9,"container":"web","container_id":"0123456789abcdef","compose_project":"shop","compose_service":"web","trigger":"died","first_failure":"2026-01-01T00:00:01Z","detected":"2026-01-01T00:00:01Z","action_begun":"2026-01-01T00:00:01.01Z","attempts":1,"outcome":"recovered","time_to_recover_seconds":1.5}"#;
        let mut i: Incident = serde_json::from_str(json).unwrap();
        let text = render(&i);
        assert!(text.starts_with("Incident #9: web (died)\n"), "{text}");
        assert!(text.contains("  container id:    0123456789ab\n"), "{text}");
        assert!(text.contains("project shop, service web"), "{text}");
        assert!(text.contains("  time to recover: 1.500 s\n"), "{text}");
        assert!(text.ends_with("\nNo evidence recorded.\n"), "{text}");

        i.evidence = Some(Arc::new(Evidence {
            health_log: vec![HealthCheck::new(
                Some(1),
                "line one\nline two\n",
                crate::timestamp::Timestamp::parse("2026-01-01T00:00:00Z"),
                None,
            )],
            exit: Some(ExitRecord::new(137, true)),
            logs: Some(Logs::bounded(
                vec![LogLine {
                    stream: LogStream::Stderr,
                    time: crate::timestamp::Timestamp::parse("2026-01-01T00:00:00.5Z"),
                    text: "boom".into(),
                }],
                false,
            )),
            ..Evidence::default()
        }));
        let text = render(&i);
        assert!(
            text.contains("  2026-01-01T00:00:00.000Z  exit 1  line one\n                                    line two\n"),
            "{text}"
        );
        assert!(
            text.contains("\nExit: code 137 (SIGKILL), OOM-killed\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "Last log lines before the fault (1):\n  2026-01-01T00:00:00.500Z stderr boom\n"
            ),
            "{text}"
        );
    }
}
