//! Bounds and text handling of evidence: every cut lands on a character boundary, the JSON
//! form stays within its bound whatever the input, and old or unreadable records still parse.

use super::*;

/// Docker's log times have nine digits; the longest a time serializes to.
fn nanos() -> Timestamp {
    Timestamp::parse("2026-01-01T00:00:00.000000001Z").unwrap()
}

fn line(stream: LogStream, text: &str) -> LogLine {
    LogLine {
        stream,
        time: Some(nanos()),
        text: text.into(),
    }
}

#[test]
fn json_len_matches_what_serde_json_writes() {
    for s in [
        "plain",
        "quote \" and backslash \\",
        "tab\tnewline\nreturn\r",
        "\u{1}\u{1b}[31mred\u{1b}[0m\u{7f}",
        "é, 日本, 🦀",
        "",
    ] {
        let written = serde_json::to_string(s).unwrap();
        assert_eq!(json_len(s), written.len() - 2, "{s:?} -> {written}");
    }
}

#[test]
fn cuts_land_on_character_boundaries_and_respect_the_json_bound() {
    // Multi-byte characters and escapes around every possible cut point.
    let samples = [
        "ééééééééééééééééééééé".to_string(),
        "🦀".repeat(40),
        "\u{1}".repeat(40),
        "a\"b\\c\n".repeat(20),
        "x".repeat(100),
    ];
    for s in &samples {
        for max in 0..80 {
            let cut = cut_json(s, max);
            // A valid &str by construction; the bound holds on the JSON form.
            assert!(json_len(&cut) <= max.max(CUT.len()), "{s:?} {max}: {cut:?}");
            if json_len(s) <= max {
                assert_eq!(&cut, s);
            } else {
                assert!(cut.ends_with(CUT), "{cut:?}");
                let kept = cut.strip_suffix(CUT).unwrap();
                assert!(s.starts_with(kept), "{s:?} {kept:?}");
            }
        }
    }
}

#[test]
fn text_of_replaces_invalid_utf8_and_marks_a_cut_head() {
    // A head that ends inside a multi-byte character: replaced, never a panic.
    let crab = "🦀".as_bytes();
    assert_eq!(text_of(&crab[..2], 10, false), "\u{fffd}");
    assert_eq!(text_of(&[b"ok", &crab[..3]].concat(), 10, true), "ok…");
    assert_eq!(text_of(b"ok", 10, true), "ok…");
    assert_eq!(text_of(b"\xff\xfeok", 10, false), "\u{fffd}\u{fffd}ok");
    let long = text_of(&[b'a'; 100], 10, true);
    assert!(json_len(&long) <= 10 && long.ends_with(CUT), "{long}");
}

#[test]
fn logs_keep_the_newest_lines_within_lines_and_bytes() {
    // Fewer than the bounds: all kept, in order, not truncated.
    let few: Vec<LogLine> = (0..3)
        .map(|i| line(LogStream::Stdout, &format!("l{i}")))
        .collect();
    let logs = Logs::bounded(few.clone(), false);
    assert_eq!((logs.lines, logs.truncated), (few, false));

    // More lines than LOG_LINES: the newest LOG_LINES.
    let many: Vec<LogLine> = (0..120)
        .map(|i| line(LogStream::Stderr, &format!("l{i}")))
        .collect();
    let logs = Logs::bounded(many, false);
    assert_eq!(logs.lines.len(), LOG_LINES);
    assert_eq!(logs.lines[0].text, "l70");
    assert_eq!(logs.lines[LOG_LINES - 1].text, "l119");
    assert!(logs.truncated);

    // Huge lines: each cut to LOG_LINE_BYTES, the whole within LOG_BYTES, newest kept.
    let huge: Vec<LogLine> = (0..10)
        .map(|i| line(LogStream::Stdout, &format!("{i}{}", "é".repeat(10_000))))
        .collect();
    let logs = Logs::bounded(huge, false);
    let total: usize = logs.lines.iter().map(|l| json_len(&l.text)).sum();
    assert!(total <= LOG_BYTES, "{total}");
    assert!(logs
        .lines
        .iter()
        .all(|l| json_len(&l.text) <= LOG_LINE_BYTES));
    assert!(logs.lines.last().unwrap().text.starts_with('9'));
    assert!(logs.truncated);
    assert!(!logs.lines.is_empty());
}

/// The worst case a container can produce serializes within MAX_EVIDENCE_BYTES: every part
/// full, every character the most expensive to escape.
#[test]
fn the_worst_case_evidence_stays_within_its_bound() {
    let nasty = "\u{1}".repeat(100_000);
    let health_log = (0..HEALTH_RESULTS)
        .map(|_| HealthCheck::new(Some(1), &nasty, Some(nanos()), Some(nanos())))
        .collect();
    let probe_failures = (0..PROBE_FAILURES)
        .map(|_| ProbeFailureRecord {
            at: Some(nanos()),
            reason: ProbeFailure::Status,
            duration_ms: 123.456_789,
            http_status: Some(503),
            body_excerpt: Some(text_of(nasty.as_bytes(), BODY_EXCERPT_BYTES, true)),
        })
        .collect();
    let lines: Vec<LogLine> = (0..500).map(|_| line(LogStream::Stderr, &nasty)).collect();
    let mut logs = Logs::bounded(lines, true);
    logs.note = Some(cut_json(&nasty, NOTE_BYTES));
    let e = Evidence {
        health_log,
        probe_failures,
        exit: Some(ExitRecord::new(137, true)),
        logs: Some(logs),
    };
    let json = serde_json::to_string(&e).unwrap();
    assert!(
        json.len() <= MAX_EVIDENCE_BYTES,
        "{} > {MAX_EVIDENCE_BYTES}",
        json.len()
    );
    // And it reads back as it was.
    assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), e);
}

#[test]
fn empty_parts_are_left_out_of_the_json() {
    let e = Evidence {
        exit: Some(ExitRecord::new(1, false)),
        ..Evidence::default()
    };
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"exit":{"exit_code":1,"oom_killed":false}}"#
    );
    assert_eq!(serde_json::to_string(&Evidence::default()).unwrap(), "{}");
}

#[test]
fn signals_are_read_from_exit_codes_above_128() {
    assert_eq!(signal_of(137).as_deref(), Some("SIGKILL"));
    assert_eq!(signal_of(143).as_deref(), Some("SIGTERM"));
    assert_eq!(signal_of(139).as_deref(), Some("SIGSEGV"));
    assert_eq!(signal_of(128 + 40).as_deref(), Some("signal 40"));
    assert_eq!(signal_of(1), None);
    assert_eq!(signal_of(128), None);
    assert_eq!(signal_of(255), None);
    assert_eq!(
        ExitRecord::new(137, true).describe(),
        "code 137 (SIGKILL), OOM-killed"
    );
}

#[test]
fn the_summary_has_the_last_output_reason_exit_and_log_tail_each_cut_short() {
    let e = Evidence {
        health_log: vec![
            HealthCheck::new(Some(1), "old", None, None),
            HealthCheck::new(
                Some(1),
                &format!("db down\n{}", "z".repeat(1000)),
                None,
                None,
            ),
        ],
        probe_failures: vec![ProbeFailureRecord {
            at: None,
            reason: ProbeFailure::Status,
            duration_ms: 12.4,
            http_status: Some(503),
            body_excerpt: Some("maintenance".into()),
        }],
        exit: Some(ExitRecord::new(143, false)),
        logs: Some(Logs::bounded(
            (0..8).map(|i| line(LogStream::Stderr, &format!("err {i} {}", "é".repeat(500)))),
            false,
        )),
    };
    let s = e.summary();
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[0].starts_with("health check: exit 1: db down ⏎ zzz"),
        "{s}"
    );
    assert_eq!(lines[1], "probe: status after 12 ms, HTTP 503: maintenance");
    assert_eq!(lines[2], "exit: code 143 (SIGTERM)");
    assert_eq!(lines[3], "last log lines:");
    assert_eq!(lines.len(), 4 + 5, "the last 5 log lines: {s}");
    assert!(lines[4].starts_with("  [stderr] err 3 "), "{s}");
    assert!(lines.iter().all(|l| l.chars().count() <= 200), "{s}");
    assert!(!s.contains("old"));

    let note = Evidence {
        logs: Some(Logs::note(
            "no logs: the container's log driver is \"none\"",
        )),
        ..Evidence::default()
    };
    assert_eq!(
        note.summary(),
        "logs: no logs: the container's log driver is \"none\""
    );
}

/// Records of older versions have no evidence; a record whose evidence this version cannot
/// read keeps the incident and drops the evidence.
#[test]
fn incidents_without_or_with_unreadable_evidence_still_parse() {
    use crate::journal::Incident;
    let base = r#"{"id":3,"container":"web","container_id":"abc","trigger":"died","first_failure":"2026-01-01T00:00:01Z","detected":"2026-01-01T00:00:01Z","attempts":1,"outcome":"open""#;
    let old: Incident = serde_json::from_str(&format!("{base}}}")).unwrap();
    assert!(old.evidence.is_none());
    let bad: Incident =
        serde_json::from_str(&format!(r#"{base},"evidence":{{"exit":"sideways"}}}}"#)).unwrap();
    assert_eq!((bad.id, bad.evidence.is_none()), (3, true));
    let null: Incident = serde_json::from_str(&format!(r#"{base},"evidence":null}}"#)).unwrap();
    assert!(null.evidence.is_none());
    // A stream name from a later version reads as `other`.
    let later: Incident = serde_json::from_str(&format!(
        r#"{base},"evidence":{{"logs":{{"lines":[{{"stream":"stdin","text":"x"}}],"truncated":false,"note":null}}}}}}"#
    ))
    .unwrap();
    let logs = later.evidence.unwrap().logs.clone().unwrap();
    assert_eq!(logs.lines[0].stream, LogStream::Other);
    // Without evidence, the record is written exactly as before.
    assert!(!serde_json::to_string(&old).unwrap().contains("evidence"));
}

/// Evidence as the previous version wrote it (times as Docker sent them, reasons as words)
/// loads with typed times, odd times as `None`, and is written back in the same shape.
#[test]
fn evidence_of_the_previous_version_loads_with_typed_times() {
    let old = r#"{
        "health_log": [
            {"exit_code": 1, "output": "down", "start": "2026-01-01T10:00:00.123456789+02:00", "end": "2026-01-01T08:00:00.2234567Z"},
            {"exit_code": 1, "output": "odd", "start": "0001-01-01T00:00:00Z", "end": "not a time"},
            {"exit_code": 0, "output": "null and missing", "start": null}
        ],
        "probe_failures": [
            {"at": "2026-01-01T08:00:01.500Z", "reason": "timeout", "duration_ms": 2000.0},
            {"at": "", "reason": "body", "duration_ms": 3.0, "http_status": 200, "body_excerpt": "no"},
            {"reason": "connect", "duration_ms": 1.0}
        ],
        "logs": {"lines": [
            {"stream": "stderr", "time": "2026-01-01T08:00:00.000000001Z", "text": "a"},
            {"stream": "stdout", "time": 12, "text": "b"},
            {"stream": "stdout", "text": "c"}
        ], "truncated": false, "note": null}
    }"#;
    let e: Evidence = serde_json::from_str(old).unwrap();
    let t = |s: &str| Some(Timestamp::parse(s).unwrap());
    let h = &e.health_log;
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].start, t("2026-01-01T08:00:00.123456789Z"));
    assert_eq!(h[0].end, t("2026-01-01T08:00:00.2234567Z"));
    assert_eq!((h[1].start, h[1].end), (None, None));
    assert_eq!((h[2].start, h[2].end), (None, None));
    let p = &e.probe_failures;
    assert_eq!(p[0].at, t("2026-01-01T08:00:01.5Z"));
    assert_eq!(
        p.iter().map(|p| p.reason).collect::<Vec<_>>(),
        [
            ProbeFailure::Timeout,
            ProbeFailure::Body,
            ProbeFailure::Connect
        ]
    );
    assert_eq!((p[1].at, p[2].at), (None, None));
    let lines = &e.logs.as_ref().unwrap().lines;
    assert_eq!(lines[0].time, t("2026-01-01T08:00:00.000000001Z"));
    assert_eq!((lines[1].time, lines[2].time), (None, None));

    // Written back: RFC 3339 strings under the same names, to the nanosecond.
    let json: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(
        json["health_log"][0]["start"],
        "2026-01-01T08:00:00.123456789Z"
    );
    assert_eq!(
        json["health_log"][0]["end"],
        "2026-01-01T08:00:00.223456700Z"
    );
    assert_eq!(json["health_log"][1]["start"], serde_json::Value::Null);
    assert_eq!(json["probe_failures"][0]["at"], "2026-01-01T08:00:01.500Z");
    assert_eq!(json["probe_failures"][0]["reason"], "timeout");
    assert!(json["probe_failures"][1].get("at").is_none());
    assert_eq!(
        json["logs"]["lines"][0]["time"],
        "2026-01-01T08:00:00.000000001Z"
    );
    assert!(json["logs"]["lines"][1].get("time").is_none());
    // And what is written reads back the same.
    let again: Evidence = serde_json::from_value(json).unwrap();
    assert_eq!(again, e);
}

/// A whole journal line of the previous version, evidence and all, loads.
#[test]
fn a_journal_line_of_the_previous_version_loads() {
    use crate::journal::Incident;
    let line = r#"{"id":7,"container":"web","container_id":"abc","trigger":"probe_failed","first_failure":"2026-01-01T00:00:01.000Z","detected":"2026-01-01T00:00:02.000Z","action_begun":null,"healthy_again":null,"time_to_detect_seconds":1.0,"time_to_recover_seconds":null,"attempts":0,"outcome":"open","dry_run":false,"evidence":{"health_log":[{"exit_code":null,"output":"","start":"garbage","end":null}],"probe_failures":[{"at":"2026-01-01T00:00:01.000Z","reason":"status","duration_ms":5.0,"http_status":503}],"logs":{"lines":[{"stream":"stdout","time":"2026-01-01T00:00:00.999999999Z","text":"x"}],"truncated":false,"note":null}}}"#;
    let i: Incident = serde_json::from_str(line).unwrap();
    let e = i.evidence.expect("the evidence is kept");
    assert_eq!(e.health_log[0].start, None);
    assert_eq!(e.probe_failures[0].reason, ProbeFailure::Status);
    assert_eq!(
        e.probe_failures[0].at.map(|t| t.to_string()).as_deref(),
        Some("2026-01-01T00:00:01.000Z")
    );
    assert_eq!(
        e.logs.as_ref().unwrap().lines[0]
            .time
            .map(|t| t.to_string())
            .as_deref(),
        Some("2026-01-01T00:00:00.999999999Z")
    );
}
