//! The `selfheal.*` label contract: what a container asks of the watchdog.

use crate::duration::{format_duration, parse_duration};
use crate::policy::{Action, Ladder, OnQuarantine};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

pub const ENABLE: &str = "selfheal.enable";
pub const PROBE_HTTP: &str = "selfheal.probe.http";
pub const PROBE_TCP: &str = "selfheal.probe.tcp";
pub const PROBE_EXPECT: &str = "selfheal.probe.expect";
pub const PROBE_INTERVAL: &str = "selfheal.probe.interval";
pub const PROBE_TIMEOUT: &str = "selfheal.probe.timeout";
pub const PROBE_FAILURES: &str = "selfheal.probe.failures";
pub const START_PERIOD: &str = "selfheal.start-period";
pub const STOP_TIMEOUT: &str = "selfheal.stop-timeout";
pub const RESTART_MAX: &str = "selfheal.restart.max";
pub const RESTART_WINDOW: &str = "selfheal.restart.window";
/// `false` mutes the container's notifications (default `true`).
pub const NOTIFY: &str = "selfheal.notify";

/// `NAME[,NAME]`: restart this container after NAME is running (and healthy) again.
pub const DEPENDS_ON: &str = "selfheal.depends-on";
/// `ignore` on a parent: its dependents are left alone. `restart` is the default.
pub const DEPENDENTS: &str = "selfheal.dependents";
/// What a fault gets: `restart` (the ladder, default), `recreate`, `notify` or `none`.
pub const ACTION: &str = "selfheal.action";
/// The ladder's second step: recreate after this many restarts (default 2), or `never`.
pub const RECREATE_AFTER: &str = "selfheal.recreate-after";
/// What quarantine does: `leave` (default) or `stop`.
pub const ON_QUARANTINE: &str = "selfheal.on-quarantine";

const KNOWN: [&str; 18] = [
    crate::swarm::RESTART_CONDITION_LABEL,
    ENABLE,
    PROBE_HTTP,
    PROBE_TCP,
    PROBE_EXPECT,
    PROBE_INTERVAL,
    PROBE_TIMEOUT,
    PROBE_FAILURES,
    START_PERIOD,
    STOP_TIMEOUT,
    RESTART_MAX,
    RESTART_WINDOW,
    NOTIFY,
    DEPENDS_ON,
    DEPENDENTS,
    ACTION,
    RECREATE_AFTER,
    ON_QUARANTINE,
];

/// A label whose value the watchdog cannot use. The container carrying it is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("label {label}={value:?}: {reason}")]
pub struct LabelError {
    pub label: String,
    pub value: String,
    pub reason: String,
}

impl LabelError {
    /// The value is kept with any credentials in it redacted: label errors are shown in the
    /// log, the API and `selfheal check`.
    fn new(label: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            value: redact_userinfo(value),
            reason: reason.into(),
        }
    }
}

/// `scheme://user:secret@host/...` -> `scheme://***@host/...`; anything else as it is.
pub fn redact_userinfo(value: &str) -> String {
    let (scheme, rest) = match value.find("://") {
        Some(i) => value.split_at(i + 3),
        None => ("", value),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => value.to_string(),
    }
}

/// A host name (RFC 1123 labels) or an IP address; `[v6]` brackets already stripped.
fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Http,
    Tcp,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Http => "http",
            ProbeKind::Tcp => "tcp",
        }
    }
}

/// Where a probe connects. `host: None` means "the container's own address", resolved by the
/// daemon at probe time (it changes when the container restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeTarget {
    pub kind: ProbeKind,
    pub host: Option<String>,
    pub port: u16,
    /// HTTP only: the request path, starting with `/`.
    pub path: String,
    /// HTTP only: text the body must contain.
    pub expect_body: Option<String>,
}

/// Settings that apply when a label does not say otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchDefaults {
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub start_period: Duration,
    pub restart_max: u32,
    pub restart_window: Duration,
}

impl Default for WatchDefaults {
    /// Probe every 1 s with a 500 ms timeout and act on the 2nd consecutive failure: a hung
    /// service is detected in about 2 s. 10 restarts per hour before quarantine.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            failures: 2,
            start_period: Duration::from_secs(10),
            restart_max: 10,
            restart_window: Duration::from_secs(3600),
        }
    }
}

/// What the labels of one opted-in container ask for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchSpec {
    pub probe: Option<ProbeTarget>,
    #[serde(with = "secs")]
    pub interval: Duration,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub failures: u32,
    #[serde(with = "secs")]
    pub start_period: Duration,
    /// Whole seconds for Docker's `t` parameter; `None` = the container's own StopTimeout.
    pub stop_timeout: Option<u32>,
    pub restart_max: u32,
    #[serde(with = "secs")]
    pub restart_window: Duration,
    /// Notifications about this container are sent (label `selfheal.notify`).
    pub notify: bool,
    /// `selfheal.depends-on`: container names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// `selfheal.dependents=ignore`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_dependents: bool,
    /// `selfheal.action`, `selfheal.recreate-after`, `selfheal.on-quarantine`.
    pub ladder: Ladder,
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::format_duration(*d))
    }
}

impl WatchSpec {
    pub fn describe(&self) -> String {
        let probe = match &self.probe {
            Some(p) => format!(
                "{} {}:{}{}",
                p.kind.as_str(),
                p.host.as_deref().unwrap_or("<container>"),
                p.port,
                p.path
            ),
            None => "docker health only".into(),
        };
        format!(
            "{probe} every {} (timeout {}, {} failures), start period {}, budget {}/{}, {}",
            format_duration(self.interval),
            format_duration(self.timeout),
            self.failures,
            format_duration(self.start_period),
            self.restart_max,
            format_duration(self.restart_window),
            self.describe_ladder(),
        )
    }

    /// What a fault gets, in words: `action restart (recreate after 2, on quarantine leave)`.
    pub fn describe_ladder(&self) -> String {
        let l = &self.ladder;
        let quarantine = format!("on quarantine {}", l.on_quarantine);
        match l.action {
            Action::Restart => {
                let recreate = match l.recreate_after {
                    Some(n) => format!("recreate after {n}"),
                    None => "never recreate".into(),
                };
                format!("action restart ({recreate}, {quarantine})")
            }
            Action::Recreate => format!("action recreate ({quarantine})"),
            Action::Notify => "action notify (nothing touched)".into(),
            Action::None => "action none (recorded only)".into(),
        }
    }
}

/// Reads the `selfheal.*` labels. `Ok(None)`: not opted in. `Err`: opted in, but at least one
/// label is unusable (all of them are listed, so one fix round is enough).
pub fn parse_labels(
    labels: &HashMap<String, String>,
    defaults: &WatchDefaults,
    watch_all: bool,
) -> Result<Option<WatchSpec>, Vec<LabelError>> {
    let mut errors = Vec::new();
    let enabled = bool_label(labels, ENABLE, watch_all, &mut errors);
    if !enabled {
        return Ok(None);
    }
    for key in labels.keys() {
        if key.starts_with("selfheal.") && !KNOWN.contains(&key.as_str()) {
            errors.push(LabelError::new(key, &labels[key], "unknown selfheal label"));
        }
    }
    if let Some(v) = labels.get(crate::swarm::RESTART_CONDITION_LABEL) {
        if crate::swarm::RestartCondition::from_swarm(v.trim()).is_none() || v.trim().is_empty() {
            errors.push(LabelError::new(
                crate::swarm::RESTART_CONDITION_LABEL,
                v,
                "expected Swarm's restart condition: any, on-failure or none",
            ));
        }
    }

    let duration =
        |errors: &mut Vec<LabelError>, key: &str, default: Duration, min: Duration| match labels
            .get(key)
        {
            None => default,
            Some(v) => match parse_duration(v) {
                Ok(d) if d >= min => d,
                Ok(_) => {
                    errors.push(LabelError::new(
                        key,
                        v,
                        format!("must be at least {}", format_duration(min)),
                    ));
                    default
                }
                Err(e) => {
                    errors.push(LabelError::new(key, v, e.to_string()));
                    default
                }
            },
        };
    let count =
        |errors: &mut Vec<LabelError>, key: &str, default: u32, min: u32| match labels.get(key) {
            None => default,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n >= min => n,
                _ => {
                    errors.push(LabelError::new(
                        key,
                        v,
                        format!("expected a whole number >= {min}"),
                    ));
                    default
                }
            },
        };

    let ms = Duration::from_millis;
    let interval = duration(&mut errors, PROBE_INTERVAL, defaults.interval, ms(100));
    let timeout = duration(&mut errors, PROBE_TIMEOUT, defaults.timeout, ms(10));
    let failures = count(&mut errors, PROBE_FAILURES, defaults.failures, 1);
    let start_period = duration(&mut errors, START_PERIOD, defaults.start_period, ms(0));
    let restart_max = count(&mut errors, RESTART_MAX, defaults.restart_max, 0);
    let restart_window = duration(
        &mut errors,
        RESTART_WINDOW,
        defaults.restart_window,
        ms(1000),
    );
    let stop_timeout = labels
        .get(STOP_TIMEOUT)
        .and_then(|v| match parse_duration(v) {
            // Docker takes whole seconds; round up so the service gets at least what it asked for.
            Ok(d) if d <= Duration::from_secs(3600) => {
                Some(u32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(3600))
            }
            _ => {
                errors.push(LabelError::new(
                    STOP_TIMEOUT,
                    v,
                    "expected seconds between 0 and 3600",
                ));
                None
            }
        });

    let http = labels.get(PROBE_HTTP);
    let tcp = labels.get(PROBE_TCP);
    let probe = match (http, tcp) {
        (Some(_), Some(t)) => {
            errors.push(LabelError::new(
                PROBE_TCP,
                t,
                "set either probe.http or probe.tcp, not both",
            ));
            None
        }
        (Some(v), None) => parse_http(v)
            .map_err(|r| errors.push(LabelError::new(PROBE_HTTP, v, r)))
            .ok(),
        (None, Some(v)) => parse_tcp(v)
            .map_err(|r| errors.push(LabelError::new(PROBE_TCP, v, r)))
            .ok(),
        (None, None) => None,
    };
    let probe = probe.map(|mut p| {
        p.expect_body = labels.get(PROBE_EXPECT).cloned();
        p
    });
    if let Some(v) = labels.get(PROBE_EXPECT) {
        if !labels.contains_key(PROBE_HTTP) {
            errors.push(LabelError::new(
                PROBE_EXPECT,
                v,
                "needs an HTTP probe (selfheal.probe.http)",
            ));
        }
    }

    let notify = bool_label(labels, NOTIFY, true, &mut errors);
    let depends_on = labels.get(DEPENDS_ON).map_or_else(Vec::new, |v| {
        parse_depends_on(v).unwrap_or_else(|r| {
            errors.push(LabelError::new(DEPENDS_ON, v, r));
            Vec::new()
        })
    });
    let ignore_dependents = match labels.get(DEPENDENTS).map(|v| v.trim()) {
        None | Some("restart") => false,
        Some("ignore") => true,
        Some(v) => {
            errors.push(LabelError::new(DEPENDENTS, v, "expected ignore or restart"));
            false
        }
    };

    let ladder = parse_ladder(labels, &mut errors);

    if !errors.is_empty() {
        errors.sort_by(|a, b| a.label.cmp(&b.label));
        return Err(errors);
    }
    Ok(Some(WatchSpec {
        probe,
        interval,
        timeout,
        failures,
        start_period,
        stop_timeout,
        restart_max,
        restart_window,
        notify,
        depends_on,
        ignore_dependents,
        ladder,
    }))
}

/// `selfheal.action`, `selfheal.recreate-after` and `selfheal.on-quarantine`. The last two
/// belong to the steps of an action that acts: set with one that does not, they are errors
/// (a label that silently does nothing is a trap).
fn parse_ladder(labels: &HashMap<String, String>, errors: &mut Vec<LabelError>) -> Ladder {
    let mut ladder = Ladder::default();
    if let Some(v) = labels.get(ACTION) {
        match Action::parse(v.trim()) {
            Some(a) => ladder.action = a,
            None => errors.push(LabelError::new(
                ACTION,
                v,
                "expected restart, recreate, notify or none",
            )),
        }
    }
    if let Some(v) = labels.get(RECREATE_AFTER) {
        let v = v.trim();
        match v {
            _ if ladder.action != Action::Restart => errors.push(LabelError::new(
                RECREATE_AFTER,
                v,
                format!(
                    "only with selfheal.action=restart (this container's is {})",
                    ladder.action
                ),
            )),
            "never" => ladder.recreate_after = None,
            _ => match v.parse::<u32>() {
                Ok(n) => ladder.recreate_after = Some(n),
                Err(_) => errors.push(LabelError::new(
                    RECREATE_AFTER,
                    v,
                    "expected a whole number of restarts >= 0, or never",
                )),
            },
        }
    }
    if let Some(v) = labels.get(ON_QUARANTINE) {
        match OnQuarantine::parse(v.trim()) {
            _ if matches!(ladder.action, Action::Notify | Action::None) => {
                errors.push(LabelError::new(
                    ON_QUARANTINE,
                    v,
                    format!(
                        "selfheal.action={} never restarts, so nothing is quarantined",
                        ladder.action
                    ),
                ))
            }
            Some(q) => ladder.on_quarantine = q,
            None => errors.push(LabelError::new(ON_QUARANTINE, v, "expected leave or stop")),
        }
    }
    ladder
}

/// A `true`/`false` label (any case); `default` when absent. A bad value is an error, and
/// counts as `true`.
fn bool_label(
    labels: &HashMap<String, String>,
    key: &str,
    default: bool,
    errors: &mut Vec<LabelError>,
) -> bool {
    match labels.get(key).map(|v| v.trim()) {
        None => default,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            errors.push(LabelError::new(key, v, "expected true or false"));
            true
        }
    }
}

/// `NAME[,NAME]`: container names as Docker allows them (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
fn parse_depends_on(v: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for name in v.split(',').map(str::trim) {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(format!(
                "{name:?} is not a container name; expected NAME[,NAME]"
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("port {s:?} is not a number between 1 and 65535")),
    }
}

/// `host:port` or `:port` (the container's own address). Credentials are refused: the probe
/// would send them nowhere useful, and they would show up wherever the label is shown.
fn parse_host_port(s: &str) -> Result<(Option<String>, u16), String> {
    if s.contains('@') {
        return Err("credentials (user:password@) are not supported in a probe address".into());
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected :PORT or HOST:PORT".to_string())?;
    let port = parse_port(port)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Ok((None, port));
    }
    if !valid_host(host) {
        return Err(format!("{host:?} is not a host name or an IP address"));
    }
    Ok((Some(host.to_string()), port))
}

fn parse_http(v: &str) -> Result<ProbeTarget, String> {
    let v = v.trim();
    let rest = if let Some(rest) = v.strip_prefix("http://") {
        if rest.starts_with(':') || rest.is_empty() {
            return Err("http:// URL needs a host".into());
        }
        rest
    } else if v.starts_with("https://") {
        return Err("https probes are not supported; probe the plain HTTP port".into());
    } else if v.starts_with(':') {
        v
    } else {
        return Err("expected :PORT/PATH or http://HOST:PORT/PATH".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if authority.contains(':') || authority.contains('@') {
        parse_host_port(authority)?
    } else if valid_host(authority) {
        (Some(authority.to_string()), 80)
    } else {
        return Err(format!("{authority:?} is not a host name or an IP address"));
    };
    Ok(ProbeTarget {
        kind: ProbeKind::Http,
        host,
        port,
        path: path.to_string(),
        expect_body: None,
    })
}

fn parse_tcp(v: &str) -> Result<ProbeTarget, String> {
    let v = v.trim().trim_start_matches("tcp://");
    let (host, port) = parse_host_port(v)?;
    Ok(ProbeTarget {
        kind: ProbeKind::Tcp,
        host,
        port,
        path: String::new(),
        expect_body: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<WatchSpec>, Vec<LabelError>> {
        parse_labels(&labels(pairs), &WatchDefaults::default(), false)
    }

    #[test]
    fn the_ladder_labels_default_to_restart_twice_then_recreate_and_leave() {
        let spec = parse(&[(ENABLE, "true")]).unwrap().unwrap();
        assert_eq!(spec.ladder, Ladder::default());
        assert_eq!(spec.ladder.recreate_after, Some(2));
        assert_eq!(
            spec.describe_ladder(),
            "action restart (recreate after 2, on quarantine leave)"
        );
        let spec = parse(&[
            (ENABLE, "true"),
            (RECREATE_AFTER, "never"),
            (ON_QUARANTINE, " stop"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            spec.ladder,
            Ladder {
                action: Action::Restart,
                recreate_after: None,
                on_quarantine: OnQuarantine::Stop
            }
        );
        let spec = parse(&[(ENABLE, "true"), (RECREATE_AFTER, "0")])
            .unwrap()
            .unwrap();
        assert_eq!(spec.ladder.recreate_after, Some(0));
        for (action, want) in [
            ("recreate", Action::Recreate),
            ("notify", Action::Notify),
            ("none", Action::None),
        ] {
            let spec = parse(&[(ENABLE, "true"), (ACTION, action)])
                .unwrap()
                .unwrap();
            assert_eq!(spec.ladder.action, want);
        }
    }

    #[test]
    fn a_ladder_label_that_would_do_nothing_or_is_malformed_is_an_error() {
        let bad = |pairs: &[(&str, &str)]| -> Vec<String> {
            parse(pairs)
                .unwrap_err()
                .into_iter()
                .map(|e| format!("{}: {}", e.label, e.reason))
                .collect()
        };
        assert_eq!(
            bad(&[(ENABLE, "true"), (ACTION, "reboot")]),
            ["selfheal.action: expected restart, recreate, notify or none"]
        );
        assert_eq!(
            bad(&[(ENABLE, "true"), (RECREATE_AFTER, "-1")]),
            ["selfheal.recreate-after: expected a whole number of restarts >= 0, or never"]
        );
        assert_eq!(
            bad(&[(ENABLE, "true"), (ACTION, "notify"), (RECREATE_AFTER, "3")]),
            ["selfheal.recreate-after: only with selfheal.action=restart (this container's is notify)"]
        );
        assert_eq!(
            bad(&[(ENABLE, "true"), (ACTION, "none"), (ON_QUARANTINE, "stop")]),
            ["selfheal.on-quarantine: selfheal.action=none never restarts, so nothing is quarantined"]
        );
        assert_eq!(
            bad(&[(ENABLE, "true"), (ON_QUARANTINE, "kill")]),
            ["selfheal.on-quarantine: expected leave or stop"]
        );
        // With action recreate, quarantine still applies.
        assert!(parse(&[
            (ENABLE, "true"),
            (ACTION, "recreate"),
            (ON_QUARANTINE, "stop")
        ])
        .is_ok());
    }

    #[test]
    fn opt_in_and_out() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(
            parse(&[(ENABLE, "false"), (PROBE_INTERVAL, "junk")]),
            Ok(None)
        );
        let spec = parse(&[(ENABLE, "true")]).unwrap().unwrap();
        assert_eq!(spec.probe, None);
        assert_eq!(spec.failures, 2);
        let all = parse_labels(&labels(&[]), &WatchDefaults::default(), true);
        assert!(matches!(all, Ok(Some(_))));
        let out = parse_labels(
            &labels(&[(ENABLE, "false")]),
            &WatchDefaults::default(),
            true,
        );
        assert_eq!(out, Ok(None));
    }

    #[test]
    fn notify_label_mutes_and_is_validated() {
        let on = parse(&[(ENABLE, "true")]).unwrap().unwrap();
        assert!(on.notify, "notifications are on unless muted");
        let off = parse(&[(ENABLE, "true"), (NOTIFY, "FALSE")])
            .unwrap()
            .unwrap();
        assert!(!off.notify);
        let errors = parse(&[(ENABLE, "true"), (NOTIFY, "quiet")]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].label, NOTIFY);
        assert_eq!(errors[0].value, "quiet");
        assert!(errors[0].to_string().contains("expected true or false"));
    }

    #[test]
    fn full_http_spec() {
        let spec = parse(&[
            (ENABLE, "true"),
            (PROBE_HTTP, ":8080/health"),
            (PROBE_EXPECT, "ok"),
            (PROBE_INTERVAL, "500ms"),
            (PROBE_TIMEOUT, "2s"),
            (PROBE_FAILURES, "3"),
            (START_PERIOD, "5m"),
            (STOP_TIMEOUT, "1.2s"),
            (RESTART_MAX, "4"),
            (RESTART_WINDOW, "1h"),
        ])
        .unwrap()
        .unwrap();
        let probe = spec.probe.unwrap();
        assert_eq!(probe.kind, ProbeKind::Http);
        assert_eq!(probe.host, None);
        assert_eq!(probe.port, 8080);
        assert_eq!(probe.path, "/health");
        assert_eq!(probe.expect_body.as_deref(), Some("ok"));
        assert_eq!(spec.interval, Duration::from_millis(500));
        assert_eq!(spec.timeout, Duration::from_secs(2));
        assert_eq!(spec.failures, 3);
        assert_eq!(spec.start_period, Duration::from_secs(300));
        assert_eq!(spec.stop_timeout, Some(2));
        assert_eq!(spec.restart_max, 4);
        assert_eq!(spec.restart_window, Duration::from_secs(3600));
    }

    #[test]
    fn probe_addresses() {
        let p = parse_http("http://db.internal:9000/x?y=1").unwrap();
        assert_eq!(
            (p.host.as_deref(), p.port, p.path.as_str()),
            (Some("db.internal"), 9000, "/x?y=1")
        );
        let p = parse_http("http://example").unwrap();
        assert_eq!((p.port, p.path.as_str()), (80, "/"));
        let p = parse_http(":81").unwrap();
        assert_eq!((p.host, p.port, p.path.as_str()), (None, 81, "/"));
        let t = parse_tcp(":6379").unwrap();
        assert_eq!((t.host, t.port), (None, 6379));
        let t = parse_tcp("[::1]:6379").unwrap();
        assert_eq!(t.host.as_deref(), Some("::1"));
        for bad in [
            "8080/health",
            "https://x/",
            ":0/",
            ":99999/",
            "http://:80/",
            "http://user:secret@127.0.0.1:8080/health",
            "http://user@db:80/",
            "http://bad host:80/",
            "http://-x.example:80/",
        ] {
            assert!(parse_http(bad).is_err(), "{bad}");
        }
        for bad in ["6379", ":x", ""] {
            assert!(parse_tcp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_refused_and_never_shown() {
        let errs = parse(&[
            (ENABLE, "true"),
            (PROBE_HTTP, "http://user:secret@127.0.0.1:8080/health"),
        ])
        .unwrap_err();
        assert_eq!(errs[0].label, PROBE_HTTP);
        assert_eq!(errs[0].value, "http://***@127.0.0.1:8080/health");
        assert!(!errs[0].to_string().contains("secret"), "{}", errs[0]);
        assert!(errs[0].reason.contains("credentials"));
        let tcp = parse(&[(ENABLE, "true"), (PROBE_TCP, "admin:pw@db:5432")]).unwrap_err();
        assert_eq!(tcp[0].value, "***@db:5432");
        assert_eq!(redact_userinfo("http://db:80/a@b"), "http://db:80/a@b");
        // A name that will not resolve is valid syntax: at run time it is "cannot observe".
        assert!(parse(&[
            (ENABLE, "true"),
            (PROBE_HTTP, "http://does-not-exist.invalid:8080/health")
        ])
        .is_ok());
    }

    /// Swarm's restart conditions are the only values; anything else names label and value.
    #[test]
    fn the_swarm_restart_condition_label_takes_swarms_names() {
        let label = crate::swarm::RESTART_CONDITION_LABEL;
        for ok in ["any", "on-failure", "none"] {
            assert!(parse(&[(ENABLE, "true"), (label, ok)]).is_ok(), "{ok}");
        }
        for bad in ["always", "", "on_failure"] {
            let errs = parse(&[(ENABLE, "true"), (label, bad)]).unwrap_err();
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert_eq!(errs[0].label, label);
            assert_eq!(errs[0].value, bad);
        }
    }

    #[test]
    fn every_bad_label_is_named() {
        let errs = parse(&[
            (ENABLE, "true"),
            (PROBE_INTERVAL, "soon"),
            (PROBE_FAILURES, "0"),
            (PROBE_HTTP, "localhost/health"),
            ("selfheal.probe.intervall", "1s"),
        ])
        .unwrap_err();
        let names: Vec<&str> = errs.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(
            names,
            vec![
                PROBE_FAILURES,
                PROBE_HTTP,
                PROBE_INTERVAL,
                "selfheal.probe.intervall"
            ]
        );
        assert!(errs[2].to_string().contains("soon"), "{}", errs[2]);
        assert_eq!(parse(&[(ENABLE, "yes")]).unwrap_err()[0].label, ENABLE);
        let both = parse(&[(ENABLE, "true"), (PROBE_HTTP, ":1/"), (PROBE_TCP, ":2")]);
        assert_eq!(both.unwrap_err()[0].label, PROBE_TCP);
        let expect = parse(&[(ENABLE, "true"), (PROBE_EXPECT, "ok")]);
        assert_eq!(expect.unwrap_err()[0].label, PROBE_EXPECT);
    }

    #[test]
    fn dependency_labels_are_part_of_the_contract() {
        let spec = parse(&[
            (ENABLE, "true"),
            (DEPENDS_ON, "vpn, db,vpn"),
            (DEPENDENTS, "ignore"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(spec.depends_on, vec!["vpn", "db"]);
        assert!(spec.ignore_dependents);
        let spec = parse(&[(ENABLE, "true"), (DEPENDENTS, "restart")])
            .unwrap()
            .unwrap();
        assert!(!spec.ignore_dependents && spec.depends_on.is_empty());
        for bad in ["", "vpn,,db", "-vpn", "vpn db", "/vpn"] {
            let errs = parse(&[(ENABLE, "true"), (DEPENDS_ON, bad)]).unwrap_err();
            assert_eq!(errs[0].label, DEPENDS_ON, "{bad}");
            assert_eq!(errs[0].value, bad);
        }
        let errs = parse(&[(ENABLE, "true"), (DEPENDENTS, "skip")]).unwrap_err();
        assert_eq!(errs[0].label, DEPENDENTS);
        assert!(errs[0].to_string().contains("skip"), "{}", errs[0]);
    }
}
