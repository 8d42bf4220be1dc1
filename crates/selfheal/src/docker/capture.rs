//! Reading evidence back from Docker after a fault: the container's last log lines
//! (`GET /containers/{id}/logs?tail=..&timestamps=1`, both streams) and its HEALTHCHECK log
//! (`GET /containers/{id}/json`). Run after the restart is issued, never before it: logs and the
//! health log survive `docker restart`, and whatever the container's next run wrote is cut off
//! by time (Docker's `State.FinishedAt` of the faulted run, else `StartedAt` of the next).

use super::{bounded, API_TIMEOUT};
use crate::evidence::{
    text_of, Captured, HealthCheck, LogLine, LogStream, Logs, HEALTH_RESULTS, LOG_LINES,
    LOG_LINE_BYTES,
};
use crate::timestamp::Timestamp;
use bollard::container::LogOutput;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use std::time::SystemTime;

/// Log entries asked of Docker: twice what is kept, so lines of a run that started meanwhile
/// (cut off afterwards) leave room for the lines before the fault.
const TAIL: usize = 2 * LOG_LINES;

/// Reads the evidence of a fault detected at `detected` from container `id`.
pub async fn capture(docker: &Docker, id: &str, detected: SystemTime) -> Captured {
    // Logs first, inspect second: if the container started anew before the inspect, its new
    // `StartedAt` cuts off every line of that run, including any read before.
    let logs = read_logs(docker, id).await;
    let inspect = bounded(docker.inspect_container(id, None::<InspectContainerOptions>))
        .await
        .ok();
    from_parts(logs, inspect.as_ref(), detected)
}

/// Raw log entries as read: (stream, Docker's timestamp, text already cut to a line's bound,
/// whether it was cut).
type RawLines = Vec<(LogStream, Option<Timestamp>, String, bool)>;

/// Turns what was read into bounded evidence (no I/O: tested on its own).
fn from_parts(
    logs: Result<RawLines, String>,
    inspect: Option<&ContainerInspectResponse>,
    detected: SystemTime,
) -> Captured {
    let state = inspect.and_then(|c| c.state.as_ref());
    // Docker's times are read once, here; an unreadable one is `None` (kept as evidence).
    let time = |t: Option<&String>| t.and_then(|t| Timestamp::parse(t));
    // The run after the fault, if it began after detection: nothing of it is evidence. Its
    // first lines can be logged a moment before Docker records its `StartedAt`, so the cut is
    // the faulted run's end (`FinishedAt`, set once its output is drained) when Docker has it.
    let detected = Timestamp::new(detected);
    let next_run = time(state.and_then(|s| s.started_at.as_ref())).filter(|s| *s > detected);
    let finished = time(state.and_then(|s| s.finished_at.as_ref()))
        .filter(|f| next_run.is_some_and(|n| *f <= n));
    let before_next_run = |t: Option<Timestamp>| match (next_run, finished, t) {
        (None, _, _) | (_, _, None) => true,
        (Some(_), Some(end), Some(t)) => t <= end,
        (Some(start), None, Some(t)) => t < start,
    };
    let health_log: Vec<HealthCheck> = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.log.as_ref())
        .map(|log| {
            let kept: Vec<HealthCheck> = log
                .iter()
                .map(|r| {
                    HealthCheck::new(
                        r.exit_code,
                        r.output.as_deref().unwrap_or_default(),
                        time(r.start.as_ref()),
                        time(r.end.as_ref()),
                    )
                })
                .filter(|h| before_next_run(h.start))
                .collect();
            let from = kept.len().saturating_sub(HEALTH_RESULTS);
            kept[from..].to_vec()
        })
        .unwrap_or_default();
    let logs = match logs {
        Ok(raw) => {
            let more_before = raw.len() >= TAIL;
            let mut cut = false;
            let lines: Vec<LogLine> = raw
                .into_iter()
                .filter(|(_, time, _, _)| before_next_run(*time))
                .map(|(stream, time, text, was_cut)| {
                    cut |= was_cut;
                    LogLine { stream, time, text }
                })
                .collect();
            Logs::bounded(lines, more_before || cut)
        }
        Err(e) => Logs::note(&unreadable_note(inspect, &e)),
    };
    Captured {
        health_log,
        logs: Some(logs),
    }
}

/// Why the logs could not be read, in the user's terms: Docker reads back only what a local
/// driver (`json-file`, `local`, `journald`) or its dual-logging cache holds.
fn unreadable_note(inspect: Option<&ContainerInspectResponse>, error: &str) -> String {
    let log_config = inspect
        .and_then(|c| c.host_config.as_ref())
        .and_then(|h| h.log_config.as_ref());
    let driver = log_config.and_then(|l| l.typ.as_deref()).unwrap_or("");
    let cache_off = log_config
        .and_then(|l| l.config.as_ref())
        .and_then(|c| c.get("cache-disabled"))
        .is_some_and(|v| v == "true");
    match driver {
        "none" => "no logs: the container's log driver is \"none\", so Docker keeps none".into(),
        d if cache_off => format!(
            "no logs: log driver \"{d}\" with Docker's dual logging cache turned off \
             (cache-disabled=true), so Docker cannot read them back ({error})"
        ),
        "" => format!("no logs: they could not be read ({error})"),
        d => format!("no logs: log driver \"{d}\": they could not be read ({error})"),
    }
}

/// The last [`TAIL`] entries of both streams, oldest first, each cut to its bound as it
/// arrives (so memory stays bounded whatever the container wrote).
async fn read_logs(docker: &Docker, id: &str) -> Result<RawLines, String> {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .tail(&TAIL.to_string())
        .build();
    let mut stream = docker.logs(id, Some(opts));
    let mut out = RawLines::new();
    let read = async {
        while let Some(item) = stream.next().await {
            let (kind, message) = match item.map_err(|e| docker_message(&e))? {
                LogOutput::StdOut { message } => (LogStream::Stdout, message),
                LogOutput::StdErr { message } => (LogStream::Stderr, message),
                LogOutput::Console { message } => (LogStream::Console, message),
                LogOutput::StdIn { .. } => continue,
            };
            push_entry(&mut out, kind, &message);
            if out.len() > 2 * TAIL {
                // More than asked for (a TTY's stream is not split by entry): keep the end.
                out.drain(..out.len() - TAIL);
            }
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(API_TIMEOUT, read).await {
        Ok(r) => r.map(|()| out),
        Err(_) => Err(format!("timed out after {API_TIMEOUT:?}")),
    }
}

/// Docker's own message for an API error, else bollard's.
fn docker_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

/// One entry as Docker sends it with `timestamps=1`: `<RFC 3339 time> <text>\n`. An entry
/// holding several lines becomes several lines with the same time.
fn push_entry(out: &mut RawLines, stream: LogStream, message: &[u8]) {
    let (time, rest) = match message.iter().position(|&b| b == b' ') {
        Some(i) => match std::str::from_utf8(&message[..i])
            .ok()
            .and_then(Timestamp::parse)
        {
            Some(t) => (Some(t), &message[i + 1..]),
            None => (None, message),
        },
        None => (None, message),
    };
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    for line in rest.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let more = line.len() > LOG_LINE_BYTES;
        let head = &line[..line.len().min(LOG_LINE_BYTES)];
        out.push((stream, time, text_of(head, LOG_LINE_BYTES, more), more));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::LOG_BYTES;
    use bollard::models::HostConfigLogConfig;
    use bollard::models::{ContainerState, Health, HealthcheckResult, HostConfig};

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339_weak(s).unwrap()
    }

    fn check(start: &str, code: i64, output: &str) -> HealthcheckResult {
        HealthcheckResult {
            start: Some(start.into()),
            end: Some(start.into()),
            exit_code: Some(code),
            output: Some(output.into()),
        }
    }

    fn inspect(started_at: &str, log: Vec<HealthcheckResult>) -> ContainerInspectResponse {
        ContainerInspectResponse {
            state: Some(ContainerState {
                started_at: Some(started_at.into()),
                finished_at: Some("0001-01-01T00:00:00Z".into()),
                health: Some(Health {
                    log: Some(log),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn entries_are_split_into_timestamped_lines_of_their_stream() {
        let mut out = RawLines::new();
        push_entry(
            &mut out,
            LogStream::Stderr,
            b"2026-01-01T00:00:01.5Z oops\r\n",
        );
        push_entry(&mut out, LogStream::Stdout, b"2026-01-01T00:00:02Z a\nb\n");
        push_entry(&mut out, LogStream::Console, b"no time here\n");
        let t = |s: &str| Timestamp::parse(s);
        assert_eq!(
            out,
            vec![
                (
                    LogStream::Stderr,
                    t("2026-01-01T00:00:01.5Z"),
                    "oops".into(),
                    false
                ),
                (
                    LogStream::Stdout,
                    t("2026-01-01T00:00:02Z"),
                    "a".into(),
                    false
                ),
                (
                    LogStream::Stdout,
                    t("2026-01-01T00:00:02Z"),
                    "b".into(),
                    false
                ),
                (LogStream::Console, None, "no time here".into(), false),
            ]
        );
        // A 1 MB line keeps its head, cut at the line bound and marked.
        let mut huge = b"2026-01-01T00:00:03Z ".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 1 << 20));
        push_entry(&mut out, LogStream::Stdout, &huge);
        let (_, _, text, cut) = out.last().unwrap();
        assert!(*cut);
        assert!(
            text.len() <= LOG_LINE_BYTES && text.ends_with('…'),
            "{}",
            text.len()
        );
    }

    #[test]
    fn the_next_run_is_cut_off_from_logs_and_health_log() {
        let detected = at("2026-01-01T00:00:10Z");
        let raw = |time: &str, text: &str| {
            (
                LogStream::Stdout,
                Timestamp::parse(time),
                text.to_string(),
                false,
            )
        };
        let logs = vec![
            raw("2026-01-01T00:00:05Z", "before"),
            raw("2026-01-01T00:00:10.5Z", "shutting down"),
            raw("2026-01-01T00:00:12Z", "started again"),
        ];
        let c = inspect(
            "2026-01-01T00:00:11Z",
            vec![
                check("2026-01-01T00:00:08Z", 1, "bad"),
                check("2026-01-01T00:00:09Z", 1, "bad again"),
                check("2026-01-01T00:00:11.5Z", 0, "fine"),
            ],
        );
        let got = from_parts(Ok(logs.clone()), Some(&c), detected);
        let texts: Vec<&str> = got
            .logs
            .as_ref()
            .unwrap()
            .lines
            .iter()
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(texts, vec!["before", "shutting down"]);
        let outputs: Vec<&str> = got.health_log.iter().map(|h| h.output.as_str()).collect();
        assert_eq!(outputs, vec!["bad", "bad again"]);
        assert!(!got.logs.unwrap().truncated);

        // The next run's first line logged before Docker recorded its StartedAt: the faulted
        // run's FinishedAt cuts it off.
        let mut c = inspect("2026-01-01T00:00:11Z", vec![]);
        if let Some(state) = c.state.as_mut() {
            state.finished_at = Some("2026-01-01T00:00:10.9Z".into());
        }
        let early = [
            logs[..2].to_vec(),
            vec![raw("2026-01-01T00:00:10.95Z", "started again, early")],
        ]
        .concat();
        let got = from_parts(Ok(early), Some(&c), detected);
        let texts: Vec<String> = got
            .logs
            .unwrap()
            .lines
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(texts, vec!["before", "shutting down"]);

        // Not started again yet (StartedAt before detection): everything read is evidence.
        let c = inspect("2026-01-01T00:00:00Z", vec![]);
        let got = from_parts(Ok(logs), Some(&c), detected);
        assert_eq!(got.logs.unwrap().lines.len(), 3);
        assert!(got.health_log.is_empty());
    }

    /// Docker's health log is in the daemon's local time, to the nanosecond: the offset is
    /// applied and every digit kept; a time that cannot be read is `None`, the result kept.
    #[test]
    fn docker_times_are_read_with_their_offset_and_nanoseconds() {
        let mut odd = check("no time at all", 1, "odd");
        odd.end = None;
        let c = inspect(
            "2026-01-01T00:00:00Z",
            vec![check("2026-01-01T02:00:08.123456789+02:00", 1, "bad"), odd],
        );
        let got = from_parts(Ok(RawLines::new()), Some(&c), at("2026-01-01T00:00:10Z"));
        let times: Vec<_> = got
            .health_log
            .iter()
            .map(|h| (h.start.map(|t| t.to_string()), h.end.map(|t| t.to_string())))
            .collect();
        let nanos = Some("2026-01-01T00:00:08.123456789Z".to_string());
        assert_eq!(times, vec![(nanos.clone(), nanos), (None, None)]);
    }

    #[test]
    fn unreadable_logs_get_a_note_naming_the_driver() {
        let with_driver = |typ: &str, cache_disabled: bool| ContainerInspectResponse {
            host_config: Some(HostConfig {
                log_config: Some(HostConfigLogConfig {
                    typ: Some(typ.into()),
                    config: Some(if cache_disabled {
                        [("cache-disabled".to_string(), "true".to_string())].into()
                    } else {
                        Default::default()
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = || Err("configured logging driver does not support reading".to_string());
        let note = |c: &ContainerInspectResponse| {
            from_parts(err(), Some(c), SystemTime::now())
                .logs
                .unwrap()
                .note
                .unwrap()
        };
        assert!(note(&with_driver("none", false)).contains("\"none\""));
        let remote = note(&with_driver("syslog", true));
        assert!(
            remote.contains("\"syslog\"") && remote.contains("dual logging"),
            "{remote}"
        );
        assert!(remote.contains("does not support reading"), "{remote}");
        let got = from_parts(err(), None, SystemTime::now());
        let logs = got.logs.unwrap();
        assert!(logs.lines.is_empty() && logs.note.unwrap().contains("could not be read"));
    }

    #[test]
    fn a_full_tail_is_marked_truncated() {
        let raw: RawLines = (0..TAIL)
            .map(|i| (LogStream::Stdout, None, format!("line {i}"), false))
            .collect();
        let logs = from_parts(Ok(raw), None, SystemTime::now()).logs.unwrap();
        assert_eq!(logs.lines.len(), LOG_LINES);
        assert_eq!(
            logs.lines.last().unwrap().text,
            format!("line {}", TAIL - 1)
        );
        assert!(logs.truncated);
        assert!(
            crate::evidence::json_len(
                &logs
                    .lines
                    .iter()
                    .map(|l| l.text.as_str())
                    .collect::<String>()
            ) <= LOG_BYTES
        );
    }
}
