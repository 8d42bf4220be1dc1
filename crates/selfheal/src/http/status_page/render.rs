//! The status page's HTML, from typed values through `maud`: every value is escaped where
//! it is written, so a container name or a label value is text, never markup. The timeline's
//! SVG is `maud` markup too ([`crate::timeline`]), inserted as such.

use super::{Snapshot, Window, PAGE_SIZE};
use crate::evidence::{Evidence, LogStream};
use crate::journal::{Incident, IncidentOutcome, Timestamp};
use crate::shared::{ContainerView, ViewState};
use crate::timeline::{
    Phase, Theme, TimelineChart, TimelineRow, DETECTED_TO_RESTART_BEGUN, FAULT_TO_DETECTED,
    HEALTHY_COLOR,
};
use maud::{html, Markup, DOCTYPE};
use selfheal_core::{format_duration, State};
use std::collections::BTreeMap;
use std::time::SystemTime;

const PHASES: [Phase; 3] = [
    FAULT_TO_DETECTED,
    DETECTED_TO_RESTART_BEGUN,
    Phase {
        label: "restart begun -> healthy again",
        color: HEALTHY_COLOR,
    },
];

/// The document around `main`. `since` and `before` go to the script: the window and the page
/// it polls for.
fn document(title: &str, window: Option<&Window>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " - selfheal" }
                link rel="stylesheet" href="/status.css";
                link rel="icon" href="/favicon.svg" type="image/svg+xml";
                script src="/status.js" defer {}
            }
            body data-since=(window.map_or("", |w| w.since_text.as_str()))
                data-before=[window.and_then(|w| w.before)] data-limit=(PAGE_SIZE) {
                header {
                    h1 { a href="/" { "selfheal" } }
                    span #live .muted { "static page: JavaScript is off or has not run" }
                }
                main { (main) }
                footer .muted {
                    "Read-only. The same data as JSON: "
                    a href="/api/v1/containers" { "/api/v1/containers" } ", "
                    a href="/api/v1/incidents" { "/api/v1/incidents" } ", "
                    a href="/healthz" { "/healthz" } ", "
                    a href="/metrics" { "/metrics" } "."
                }
            }
        }
    }
}

/// A 400 page that says what was wrong with the request.
pub(super) fn bad_request(message: &str) -> Markup {
    document("bad request", None, html! { p .error { (message) } })
}

pub(super) fn no_incident(id: u64) -> Markup {
    let title = format!("incident #{id}");
    document(
        &title,
        None,
        html! { p .error { "No incident #" (id) " in the journal." } },
    )
}

/// The class that colours a state; the state's word is always written next to it.
fn state_class(state: ViewState) -> &'static str {
    match state {
        ViewState::Watched(State::Healthy) => "ok",
        ViewState::Watched(
            State::Starting
            | State::Failing
            | State::Restarting
            | State::BackingOff
            | State::Unhealthy,
        ) => "warn",
        ViewState::Watched(State::Quarantined | State::Exited) | ViewState::Ignored => "bad",
        ViewState::Watched(State::Stopped | State::Paused) => "idle",
    }
}

fn outcome_class(outcome: IncidentOutcome) -> &'static str {
    match outcome {
        IncidentOutcome::Recovered => "ok",
        IncidentOutcome::Open => "warn",
        IncidentOutcome::Quarantined | IncidentOutcome::Abandoned => "bad",
    }
}

fn outcome_badge(outcome: IncidentOutcome) -> Markup {
    html! { span class={ "state " (outcome_class(outcome)) } { (outcome.as_str()) } }
}

fn incident_link(id: u64) -> Markup {
    html! { a href={ "/incidents/" (id) } { "#" (id) } }
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(String::new, |s| format!("{s:.2} s"))
}

/// `/` with the window and, on a later page, the cursor.
fn page_href(since: &str, before: Option<u64>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("since", since);
    if let Some(b) = before {
        q.append_pair("before", &b.to_string());
    }
    format!("/?{}", q.finish())
}

/// What the timeline of this page shows, in words.
pub(super) fn what(window: &Window, snap: &Snapshot) -> String {
    let mut what = format!("incidents since {}", window.since_text);
    if let Some(b) = window.before {
        what += &format!(" older than #{b}");
    }
    if snap.incidents.next_before.is_some() {
        what += &format!(", the newest {PAGE_SIZE} (older ones on the next page)");
    }
    what
}

pub(super) fn index(snap: &Snapshot, window: &Window) -> Markup {
    let since = window.since_text.as_str();
    let main = html! {
        section #now {
            h2 { "Now" }
            p {
                "Docker: "
                span #docker {
                    @if snap.docker_up { span .state .ok { "reachable" } }
                    @else { span .state .bad { "unreachable" } }
                }
                " "
                span #summary { (summary(&snap.containers)) }
            }
            table #containers {
                thead { tr {
                    th { "container" } th { "state" } th { "Docker health" }
                    th { "restarts used / budget" } th { "last incident" } th { "label errors" }
                    th { "dependencies" }
                } }
                tbody { @for c in &snap.containers { (container_row(c)) } }
            }
        }
        section #timeline-section {
            h2 { "Timeline" }
            form method="get" action="/" {
                label { "incidents since " input name="since" value=(since) size="24"; }
                " " button type="submit" { "show" } " "
                span .muted { "a duration back from now (30m, 24h, 7d) or an RFC 3339 time" }
            }
            div #timeline { (timeline_chart(&snap.incidents.incidents, &what(window, snap))) }
            table #incidents {
                thead { tr {
                    th { "incident" } th { "container" } th { "trigger" } th { "detected" }
                    th { "attempts" } th { "outcome" } th { "recovered in" }
                } }
                tbody { @for i in &snap.incidents.incidents { (incident_row(i)) } }
            }
            nav #paging .muted {
                @if window.before.is_some() {
                    a #newest href=(page_href(since, None)) { "newest" } " "
                }
                a #older rel="next" hidden[snap.incidents.next_before.is_none()]
                    href=(page_href(since, snap.incidents.next_before)) { "older" }
            }
        }
    };
    document("status", Some(window), main)
}

/// "3 containers: 1 healthy, 2 ignored" (states in alphabetical order).
fn summary(containers: &[ContainerView]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in containers {
        *counts.entry(c.state.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{} containers: {}", containers.len(), parts.join(", "))
}

fn container_row(c: &ContainerView) -> Markup {
    html! {
        tr data-name=(c.name) {
            td { (c.name) }
            td {
                span class={ "state " (state_class(c.state)) } { (c.state.as_str()) }
                @if c.restart_in_flight { " " span .muted { "(restart in flight)" } }
                @if let Some(why) = c.cannot_observe {
                    " " span .muted { "cannot observe: " (why.as_str()) }
                }
            }
            td { @if let Some(h) = c.docker_health { (h.as_str()) } }
            td {
                (c.restarts_in_window)
                @if let Some(spec) = &c.spec {
                    " of " (spec.restart_max) " in " (format_duration(spec.restart_window))
                }
            }
            td {
                @if let Some(i) = &c.last_incident {
                    (incident_link(i.id)) " " (i.trigger.as_str()) " " (outcome_badge(i.outcome))
                    " " (i.detected)
                }
            }
            td {
                @for e in &c.label_errors {
                    div .label-error { code { (e.label) "=" (e.value) } ": " (e.reason) }
                }
            }
            td { (dependencies(c)) }
        }
    }
}

/// A container's parents (and how it is tied to each), dependents, the parent it waits on,
/// and its dependency error.
fn dependencies(c: &ContainerView) -> Markup {
    let d = &c.dependencies;
    let parents: Vec<String> = d
        .depends_on
        .iter()
        .map(|p| format!("{} ({})", p.name, p.via.as_str()))
        .collect();
    html! {
        @if !parents.is_empty() { div { "after: " (parents.join(", ")) } }
        @if !d.dependents.is_empty() { div { "dependents: " (d.dependents.join(", ")) } }
        @if let Some(parent) = &c.waiting_on { div { "waiting on: " (parent) } }
        @if let Some(e) = &d.dependency_error { div .label-error { (e) } }
    }
}

fn incident_row(i: &Incident) -> Markup {
    html! {
        tr data-incident=(i.id) {
            td { (incident_link(i.id)) }
            td { (i.container) }
            td { (i.trigger.as_str()) }
            td { (i.detected) }
            td { (i.attempts) }
            td { (outcome_badge(i.outcome)) }
            td { (seconds(i.time_to_recover_seconds)) }
        }
    }
}

fn wall(time: Option<Timestamp>) -> Option<SystemTime> {
    time.map(Timestamp::system_time)
}

/// The incidents' timeline as a file of its own (`/status/timeline.svg`).
pub(super) fn timeline(incidents: &[Incident], what: &str) -> String {
    timeline_chart(incidents, what).svg()
}

/// The incidents as a timeline (SVG): grouped by container, oldest first within one, each bar
/// from its first failure. `what` heads it.
fn timeline_chart(incidents: &[Incident], what: &str) -> TimelineChart<'static> {
    let mut shown: Vec<&Incident> = incidents.iter().collect();
    shown.sort_by(|a, b| (a.container.as_str(), a.id).cmp(&(b.container.as_str(), b.id)));
    let rows = shown
        .into_iter()
        .map(|i| {
            let fault = wall(Some(i.first_failure)).or_else(|| wall(Some(i.detected)));
            let after = |time: Option<Timestamp>| {
                let at = wall(time)?;
                Some(at.duration_since(fault?).map_or(0.0, |d| d.as_secs_f64()))
            };
            TimelineRow {
                label: format!("{} #{}", i.container, i.id),
                ends: vec![
                    after(Some(i.detected)),
                    after(i.action_begun),
                    after(i.healthy_again),
                ],
                limit: None,
                href: Some(format!("/incidents/{}", i.id)),
                anchor: Some(format!("incident-{}", i.id)),
            }
        })
        .collect();
    TimelineChart {
        title: format!("{what} - seconds after the fault"),
        phases: &PHASES,
        rows,
        theme: Theme::Inherit,
        unfinished: "not healthy again",
    }
}

/// One incident's page, with its evidence when the journal has it.
pub(super) fn incident(i: &Incident) -> Markup {
    let title = format!("incident #{}", i.id);
    let optional = |t: &Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
    let steps: Vec<String> = i
        .steps
        .iter()
        .map(|s| format!("{} at {}", s.verb, s.at))
        .collect();
    let items: [(&str, Markup); 12] = [
        ("container id", html! { (i.container_id) }),
        ("trigger", html! { (i.trigger.as_str()) }),
        ("outcome", outcome_badge(i.outcome)),
        ("first failure", html! { (i.first_failure) }),
        ("detected", html! { (i.detected) }),
        ("restart begun", html! { (optional(&i.action_begun)) }),
        ("latest restart sent", html! { (optional(&i.last_restart)) }),
        ("healthy again", html! { (optional(&i.healthy_again)) }),
        (
            "time to detect",
            html! { (seconds(i.time_to_detect_seconds)) },
        ),
        (
            "time to recover",
            html! { (seconds(i.time_to_recover_seconds)) },
        ),
        ("restart attempts", html! { (i.attempts) }),
        ("steps", html! { (steps.join("; ")) }),
    ];
    let main = html! {
        section #incident {
            h2 { "Incident #" (i.id) ": " (i.container) }
            dl {
                @for (term, value) in &items {
                    @if !value.0.is_empty() { dt { (term) } dd { (value) } }
                }
                @if i.dry_run { dt { "dry run" } dd { "yes: nothing was restarted" } }
                @if i.unpersisted {
                    dt { "journal" } dd { "not yet written to disk (retrying)" }
                }
            }
            div #timeline { (timeline_chart(std::slice::from_ref(i), &title)) }
            (evidence(i.evidence.as_deref()))
        }
    };
    document(&title, None, main)
}

/// A part of the evidence as the API serves it (indented JSON), for a `<pre>`.
fn pretty(part: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(part).unwrap_or_default()
}

/// What the watchdog kept of an incident: how the process ended, Docker's health log, the
/// probe's failures, and the container's last log lines.
fn evidence(e: Option<&Evidence>) -> Markup {
    let Some(e) = e else {
        return html! { p .muted { "No evidence recorded for this incident." } };
    };
    html! {
        section #evidence {
            h3 { "Evidence" }
            @if let Some(exit) = &e.exit { h4 { "exit" } pre { (pretty(exit)) } }
            @if !e.health_log.is_empty() {
                h4 { "Docker health log" } pre { (pretty(&e.health_log)) }
            }
            @if !e.probe_failures.is_empty() {
                h4 { "probe failures" } pre { (pretty(&e.probe_failures)) }
            }
            @if let Some(logs) = &e.logs {
                h4 { "logs" }
                pre .logs {
                    @for l in &logs.lines {
                        span .(if l.stream == LogStream::Stderr { "stderr" } else { "stdout" }) {
                            (l.text)
                        }
                        "\n"
                    }
                }
                @if logs.truncated { p .muted { "(truncated)" } }
                @if let Some(note) = logs.note.as_deref().filter(|n| !n.is_empty()) {
                    p .muted { (note) }
                }
            }
        }
    }
}
