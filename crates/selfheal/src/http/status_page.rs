//! The status page on the admin server: what is watched now, a timeline of recent incidents,
//! and one page per incident. Read-only, served from the binary (HTML rendered here, one
//! stylesheet and one script compiled in), under a strict Content-Security-Policy.
//!
//! Every value on it is read from the JSON the API serves (`/api/v1/containers`,
//! `/api/v1/incidents`, `/healthz`): the page renders that JSON here, and the script renders
//! the same JSON again when it polls, so the page works without JavaScript and updates with it.
//! Fields other parts of the watchdog add to that JSON (dependencies, incident evidence) are
//! shown when present.

use crate::http::api::parse_since;
use crate::shared::Shared;
use crate::timeline::{
    xml as esc, Phase, Theme, TimelineChart, TimelineRow, DETECTED_TO_RESTART_BEGUN,
    FAULT_TO_DETECTED, HEALTHY_COLOR,
};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// Scripts and styles only from this server's own files: no inline script or style, no other
/// origin; the script fetches only from here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";
const STYLE: &str = include_str!("status_page/status.css");
const SCRIPT: &str = include_str!("status_page/status.js");
const ICON: &str = include_str!("status_page/favicon.svg");
/// The timeline's window when the page is given no `?since=`.
const DEFAULT_SINCE: &str = "24h";
/// At most this many incidents are drawn in the timeline (the newest); the list says how many
/// more there were.
const TIMELINE_ROWS: usize = 200;

const PHASES: [Phase; 3] = [
    FAULT_TO_DETECTED,
    DETECTED_TO_RESTART_BEGUN,
    Phase {
        label: "restart begun -> healthy again",
        color: HEALTHY_COLOR,
    },
];

/// The page's routes; `/` itself is negotiated in [`super`].
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/status.css", get(style))
        .route("/status.js", get(script))
        .route("/favicon.svg", get(icon))
        .route("/status/timeline.svg", get(timeline_svg))
        .route("/incidents/{id}", get(incident_page))
}

/// Does the client want HTML (a browser) rather than the plain-text endpoint list (curl)?
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn secured(content_type: &'static str, body: String) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn html(body: String) -> Response {
    secured("text/html; charset=utf-8", body)
}

fn bad_request(message: &str) -> Response {
    let mut r = html(page(
        "bad request",
        "",
        &format!("<p class=\"error\">{}</p>", esc(message)),
    ));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

async fn style() -> Response {
    secured("text/css; charset=utf-8", STYLE.to_string())
}

async fn icon() -> Response {
    secured("image/svg+xml", ICON.to_string())
}

async fn script() -> Response {
    secured("text/javascript; charset=utf-8", SCRIPT.to_string())
}

#[derive(Debug, Deserialize)]
pub struct SinceQuery {
    since: Option<String>,
}

impl SinceQuery {
    fn resolve(&self) -> Result<(String, SystemTime), String> {
        let text = self
            .since
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(DEFAULT_SINCE);
        parse_since(text).map(|t| (text.to_string(), t))
    }
}

/// The JSON of `/api/v1/containers`, `/api/v1/incidents?since=` and `/healthz`'s Docker flag.
struct Snapshot {
    containers: Vec<Value>,
    incidents: Vec<Value>,
    docker_up: bool,
}

fn json(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Snapshot {
    fn read(shared: &Shared, since: SystemTime) -> Self {
        Self {
            containers: shared.views().into_iter().map(json).collect(),
            incidents: shared
                .journal
                .list(Some(since), None)
                .into_iter()
                .map(json)
                .collect(),
            docker_up: shared.docker_up.load(Ordering::Relaxed),
        }
    }
}

/// The page at `/` for a browser.
pub async fn index_page(shared: Arc<Shared>, q: SinceQuery) -> Response {
    let (since_text, since) = match q.resolve() {
        Ok(s) => s,
        Err(e) => return bad_request(&e),
    };
    let snap = Snapshot::read(&shared, since);
    html(render_index(&snap, &since_text))
}

async fn timeline_svg(State(shared): State<Arc<Shared>>, Query(q): Query<SinceQuery>) -> Response {
    match q.resolve() {
        Ok((text, since)) => {
            let snap = Snapshot::read(&shared, since);
            secured(
                "image/svg+xml",
                timeline(&snap.incidents, &format!("incidents since {text}")),
            )
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn incident_page(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return bad_request(&format!("incident {id:?}: expected a number"));
    };
    // With its evidence, as `/api/v1/incidents/{id}` serves it.
    match shared.journal.get(id).map(json) {
        Some(i) => html(render_incident(&i)),
        None => {
            let mut r = html(page(
                &format!("incident #{id}"),
                "",
                &format!("<p class=\"error\">No incident #{id} in the journal.</p>"),
            ));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

/// The document around `main`; `since` goes to the script (the window it polls for).
fn page(title: &str, since: &str, main: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{} - selfheal</title><link rel=\"stylesheet\" href=\"/status.css\">\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <script src=\"/status.js\" defer></script></head>\n\
         <body data-since=\"{}\"><header><h1><a href=\"/\">selfheal</a></h1>\
         <span id=\"live\" class=\"muted\">static page: JavaScript is off or has not run</span>\
         </header>\n<main>\n{main}</main>\n<footer class=\"muted\">Read-only. The same data as JSON: \
         <a href=\"/api/v1/containers\">/api/v1/containers</a>, \
         <a href=\"/api/v1/incidents\">/api/v1/incidents</a>, <a href=\"/healthz\">/healthz</a>, \
         <a href=\"/metrics\">/metrics</a>.</footer>\n</body></html>\n",
        esc(title),
        esc(since)
    )
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A JSON value as text: strings as they are, anything else as compact JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The class that colours a state; the state's word is always written next to it.
fn state_class(state: &str) -> &'static str {
    match state {
        "healthy" => "ok",
        "starting" | "failing" | "restarting" | "backing_off" | "unhealthy" => "warn",
        "quarantined" | "exited" | "ignored" => "bad",
        _ => "idle",
    }
}

fn render_index(snap: &Snapshot, since: &str) -> String {
    let mut m = String::new();
    let docker = if snap.docker_up {
        "<span class=\"state ok\">reachable</span>"
    } else {
        "<span class=\"state bad\">unreachable</span>"
    };
    let _ = write!(
        m,
        "<section id=\"now\"><h2>Now</h2>\n<p>Docker: <span id=\"docker\">{docker}</span> \
         <span id=\"summary\">{}</span></p>\n",
        esc(&summary(&snap.containers))
    );
    m += "<table id=\"containers\"><thead><tr><th>container</th><th>state</th>\
          <th>Docker health</th><th>restarts used / budget</th><th>last incident</th>\
          <th>label errors</th><th>dependencies</th></tr></thead>\n<tbody>\n";
    for c in &snap.containers {
        m += &container_row(c);
    }
    m += "</tbody></table></section>\n";
    let _ = write!(
        m,
        "<section id=\"timeline-section\"><h2>Timeline</h2>\n\
         <form method=\"get\" action=\"/\"><label>incidents since \
         <input name=\"since\" value=\"{}\" size=\"24\"></label> \
         <button type=\"submit\">show</button> <span class=\"muted\">a duration back from now \
         (30m, 24h, 7d) or an RFC 3339 time</span></form>\n<div id=\"timeline\">{}</div>\n",
        esc(since),
        timeline(&snap.incidents, &format!("incidents since {since}"))
    );
    m += "<table id=\"incidents\"><thead><tr><th>incident</th><th>container</th>\
          <th>trigger</th><th>detected</th><th>attempts</th><th>outcome</th>\
          <th>recovered in</th></tr></thead>\n<tbody>\n";
    for i in &snap.incidents {
        m += &incident_row(i);
    }
    m += "</tbody></table></section>\n";
    page("status", since, &m)
}

fn summary(containers: &[Value]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for c in containers {
        let s = str_of(c, "state");
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    counts.sort();
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{} containers: {}", containers.len(), parts.join(", "))
}

fn container_row(c: &Value) -> String {
    let name = str_of(c, "name");
    let state = str_of(c, "state");
    let mut row = format!(
        "<tr data-name=\"{}\"><td>{}</td><td><span class=\"state {}\">{}</span>",
        esc(name),
        esc(name),
        state_class(state),
        esc(state)
    );
    if c["restart_in_flight"] == true {
        row += " <span class=\"muted\">(restart in flight)</span>";
    }
    if let Some(why) = c.get("cannot_observe").and_then(Value::as_str) {
        let _ = write!(
            row,
            " <span class=\"muted\">cannot observe: {}</span>",
            esc(why)
        );
    }
    let _ = write!(row, "</td><td>{}</td>", esc(str_of(c, "docker_health")));
    let used = c["restarts_in_window"].as_u64().unwrap_or(0);
    match c.get("spec").filter(|s| !s.is_null()) {
        Some(spec) => {
            let _ = write!(
                row,
                "<td>{used} of {} in {}</td>",
                spec["restart_max"].as_u64().unwrap_or(0),
                esc(str_of(spec, "restart_window"))
            );
        }
        None => {
            let _ = write!(row, "<td>{used}</td>");
        }
    }
    row += "<td>";
    if let Some(i) = c.get("last_incident").filter(|i| !i.is_null()) {
        let _ = write!(
            row,
            "<a href=\"/incidents/{0}\">#{0}</a> {1} <span class=\"state {2}\">{3}</span> {4}",
            i["id"].as_u64().unwrap_or(0),
            esc(str_of(i, "trigger")),
            outcome_class(str_of(i, "outcome")),
            esc(str_of(i, "outcome")),
            esc(str_of(i, "detected"))
        );
    }
    row += "</td><td>";
    for e in c["label_errors"].as_array().into_iter().flatten() {
        let _ = write!(
            row,
            "<div class=\"label-error\"><code>{}={}</code>: {}</div>",
            esc(str_of(e, "label")),
            esc(str_of(e, "value")),
            esc(str_of(e, "reason"))
        );
    }
    row += "</td><td>";
    row += &dependencies(c);
    row += "</td></tr>\n";
    row
}

/// The dependency fields of a container view, as far as the API serves them.
fn dependencies(c: &Value) -> String {
    let mut out = String::new();
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|d| match d.get("name") {
                Some(n) => match d.get("via").map(text_of).filter(|v| !v.is_empty()) {
                    Some(via) => format!("{} ({via})", text_of(n)),
                    None => text_of(n),
                },
                None => text_of(d),
            })
            .collect()
    };
    let depends_on = names(&c["depends_on"]);
    if !depends_on.is_empty() {
        let _ = write!(out, "<div>after: {}</div>", esc(&depends_on.join(", ")));
    }
    let dependents = names(&c["dependents"]);
    if !dependents.is_empty() {
        let _ = write!(
            out,
            "<div>dependents: {}</div>",
            esc(&dependents.join(", "))
        );
    }
    let waiting = text_of(&c["waiting_on"]);
    if !waiting.is_empty() {
        let _ = write!(out, "<div>waiting on: {}</div>", esc(&waiting));
    }
    let error = text_of(&c["dependency_error"]);
    if !error.is_empty() {
        let _ = write!(out, "<div class=\"label-error\">{}</div>", esc(&error));
    }
    out
}

fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "recovered" => "ok",
        "open" => "warn",
        _ => "bad",
    }
}

fn seconds(v: &Value) -> String {
    v.as_f64().map_or_else(String::new, |s| format!("{s:.2} s"))
}

fn incident_row(i: &Value) -> String {
    format!(
        "<tr data-incident=\"{0}\"><td><a href=\"/incidents/{0}\">#{0}</a></td><td>{1}</td>\
         <td>{2}</td><td>{3}</td><td>{4}</td><td><span class=\"state {5}\">{6}</span></td>\
         <td>{7}</td></tr>\n",
        i["id"].as_u64().unwrap_or(0),
        esc(str_of(i, "container")),
        esc(str_of(i, "trigger")),
        esc(str_of(i, "detected")),
        i["attempts"].as_u64().unwrap_or(0),
        outcome_class(str_of(i, "outcome")),
        esc(str_of(i, "outcome")),
        seconds(&i["time_to_recover_seconds"])
    )
}

fn wall(i: &Value, key: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(i.get(key)?.as_str()?).ok()
}

/// The incidents (newest first, as the API lists them) as a timeline: grouped by container,
/// oldest first within one, each bar from its first failure. `what` heads it.
pub fn timeline(incidents: &[Value], what: &str) -> String {
    let mut shown: Vec<&Value> = incidents.iter().take(TIMELINE_ROWS).collect();
    shown.sort_by(|a, b| {
        (str_of(a, "container"), a["id"].as_u64()).cmp(&(str_of(b, "container"), b["id"].as_u64()))
    });
    let rows = shown
        .into_iter()
        .map(|i| {
            let fault = wall(i, "first_failure").or_else(|| wall(i, "detected"));
            let after = |key| {
                let at = wall(i, key)?;
                Some(at.duration_since(fault?).map_or(0.0, |d| d.as_secs_f64()))
            };
            let id = i["id"].as_u64().unwrap_or(0);
            TimelineRow {
                label: format!("{} #{id}", str_of(i, "container")),
                ends: vec![
                    after("detected"),
                    after("action_begun"),
                    after("healthy_again"),
                ],
                limit: None,
                href: Some(format!("/incidents/{id}")),
                anchor: Some(format!("incident-{id}")),
            }
        })
        .collect();
    let more = incidents.len().saturating_sub(TIMELINE_ROWS);
    let title = if more > 0 {
        format!(
            "{what}, the newest {TIMELINE_ROWS} ({more} more in the list) - seconds after the \
             fault"
        )
    } else {
        format!("{what} - seconds after the fault")
    };
    TimelineChart {
        title,
        phases: &PHASES,
        rows,
        theme: Theme::Inherit,
        unfinished: "not healthy again",
    }
    .svg()
}

fn render_incident(i: &Value) -> String {
    let id = i["id"].as_u64().unwrap_or(0);
    let mut m = format!(
        "<section id=\"incident\"><h2>Incident #{id}: {}</h2>\n<dl>",
        esc(str_of(i, "container"))
    );
    let mut item = |term: &str, value: String| {
        if !value.is_empty() {
            let _ = write!(m, "<dt>{}</dt><dd>{value}</dd>", esc(term));
        }
    };
    item("container id", esc(str_of(i, "container_id")));
    item("trigger", esc(str_of(i, "trigger")));
    item(
        "outcome",
        format!(
            "<span class=\"state {}\">{}</span>",
            outcome_class(str_of(i, "outcome")),
            esc(str_of(i, "outcome"))
        ),
    );
    item("first failure", esc(str_of(i, "first_failure")));
    item("detected", esc(str_of(i, "detected")));
    item("restart begun", esc(str_of(i, "action_begun")));
    item("latest restart sent", esc(str_of(i, "last_restart")));
    item("healthy again", esc(str_of(i, "healthy_again")));
    item("time to detect", seconds(&i["time_to_detect_seconds"]));
    item("time to recover", seconds(&i["time_to_recover_seconds"]));
    item(
        "restart attempts",
        i["attempts"].as_u64().unwrap_or(0).to_string(),
    );
    if i["dry_run"] == true {
        item("dry run", "yes: nothing was restarted".into());
    }
    if i["unpersisted"] == true {
        item("journal", "not yet written to disk (retrying)".into());
    }
    m += "</dl>\n";
    let _ = writeln!(
        m,
        "<div id=\"timeline\">{}</div>",
        timeline(std::slice::from_ref(i), &format!("incident #{id}"))
    );
    m += &evidence(&i["evidence"]);
    m += "</section>\n";
    page(&format!("incident #{id}"), "", &m)
}

/// What the watchdog kept of an incident, when the journal carries it: the health log, probe
/// failures, the exit, and the container's last log lines.
fn evidence(e: &Value) -> String {
    let Some(obj) = e.as_object() else {
        return "<p class=\"muted\">No evidence recorded for this incident.</p>\n".into();
    };
    let mut out = String::from("<section id=\"evidence\"><h3>Evidence</h3>\n");
    for (key, title) in [
        ("exit", "exit"),
        ("health_log", "Docker health log"),
        ("probe_failures", "probe failures"),
    ] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            let text = serde_json::to_string_pretty(v).unwrap_or_default();
            let _ = writeln!(out, "<h4>{title}</h4><pre>{}</pre>", esc(&text));
        }
    }
    if let Some(logs) = obj.get("logs").filter(|v| !v.is_null()) {
        out += "<h4>logs</h4><pre class=\"logs\">";
        for l in logs["lines"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "<span class=\"{}\">{}</span>",
                if str_of(l, "stream") == "stderr" {
                    "stderr"
                } else {
                    "stdout"
                },
                esc(str_of(l, "text"))
            );
        }
        out += "</pre>";
        if logs["truncated"] == true {
            out += "<p class=\"muted\">(truncated)</p>";
        }
        let note = str_of(logs, "note");
        if !note.is_empty() {
            let _ = write!(out, "<p class=\"muted\">{}</p>", esc(note));
        }
    }
    out += "</section>\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(name: &str) -> Value {
        json!({
            "id": "abc", "name": name, "state": "ignored", "docker_health": null,
            "consecutive_failures": 0, "restarts_in_window": 0, "restart_in_flight": false,
            "label_errors": [{"label": "selfheal.probe.interval",
                "value": "<img src=x onerror=alert(1)>", "reason": "not a duration"}],
            "last_incident": null
        })
    }

    /// Every name and label value is text, never markup.
    #[test]
    fn hostile_names_and_label_values_are_escaped() {
        let snap = Snapshot {
            containers: vec![view("x\"><script>alert(1)</script>")],
            incidents: vec![
                json!({"id": 3, "container": "<b>c</b>", "container_id": "f",
                "trigger": "died", "first_failure": "2026-01-01T00:00:00Z",
                "detected": "2026-01-01T00:00:01Z", "attempts": 1, "outcome": "open"}),
            ],
            docker_up: true,
        };
        let page = render_index(&snap, "24h\"><script>");
        for bad in ["<img", "<script>alert", "<b>c", "\"><script>"] {
            assert!(!page.contains(bad), "{bad} in {page}");
        }
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
        assert!(page.contains("<span class=\"state bad\">ignored</span>"));
        assert!(page.contains("<span class=\"state ok\">reachable</span>"));
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the page's own script"
        );
        assert!(page.contains("id=\"incident-3\""));
    }

    /// Dependency and evidence fields are shown when the API serves them, and their absence is
    /// no error.
    #[test]
    fn optional_fields_render_when_present() {
        let mut c = view("web");
        assert_eq!(dependencies(&c), "");
        c["depends_on"] = json!([{"name": "db", "id": "1", "via": "network"}]);
        c["dependents"] = json!(["<api>"]);
        c["waiting_on"] = json!("db");
        c["dependency_error"] = json!("selfheal.depends-on=nope: no such container");
        let d = dependencies(&c);
        assert!(d.contains("after: db (network)"), "{d}");
        assert!(d.contains("dependents: &lt;api&gt;"), "{d}");
        assert!(
            d.contains("waiting on: db") && d.contains("no such container"),
            "{d}"
        );
        let mut i = json!({"id": 9, "container": "web", "trigger": "died", "attempts": 2,
            "outcome": "recovered", "first_failure": "2026-01-01T00:00:00Z",
            "detected": "2026-01-01T00:00:01Z", "healthy_again": "2026-01-01T00:00:04Z"});
        assert!(render_incident(&i).contains("No evidence recorded"));
        i["evidence"] = json!({"exit": {"code": 137, "oom_killed": true},
            "logs": {"lines": [{"stream": "stderr", "text": "<panic>"}], "truncated": true,
                     "note": "last 2 lines"}});
        let p = render_incident(&i);
        assert!(p.contains("&quot;code&quot;: 137"), "{p}");
        assert!(
            p.contains("<span class=\"stderr\">&lt;panic&gt;</span>"),
            "{p}"
        );
        assert!(p.contains("(truncated)") && p.contains("last 2 lines"));
        assert!(p.contains("<dt>restart attempts</dt><dd>2</dd>"), "{p}");
    }

    #[test]
    fn timeline_bars_run_from_the_first_failure() {
        let i = json!({"id": 4, "container": "web", "first_failure": "2026-01-01T00:00:00Z",
            "detected": "2026-01-01T00:00:02Z", "action_begun": "2026-01-01T00:00:03Z",
            "healthy_again": "2026-01-01T00:00:07Z", "outcome": "recovered"});
        let svg = timeline(&[i], "incidents since 1h");
        assert!(
            svg.contains("fault -&gt; detected: 0.00s to 2.00s"),
            "{svg}"
        );
        assert!(
            svg.contains("detected -&gt; restart begun: 2.00s to 3.00s"),
            "{svg}"
        );
        assert!(
            svg.contains("restart begun -&gt; healthy again: 3.00s to 7.00s"),
            "{svg}"
        );
        assert!(!svg.contains("not healthy again"));
    }

    /// A bad `?since=` is a 400 that names the value (as text); every page and file carries
    /// the CSP; the timeline is SVG.
    #[tokio::test]
    async fn routes_answer_with_the_policy_and_name_bad_input() {
        use crate::journal::{IncidentJournal, JournalMetrics};
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = IncidentJournal::open(dir.path(), JournalMetrics::default()).unwrap();
        let app = crate::http::router(Shared::new(Arc::new(journal), false));
        let get = |uri: &str| {
            let req = Request::get(uri)
                .header(header::ACCEPT, "text/html")
                .body(Body::empty())
                .unwrap();
            let app = app.clone();
            async move {
                let r = app.oneshot(req).await.unwrap();
                let (status, h) = (r.status(), r.headers().clone());
                let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
                (status, h, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        for uri in [
            "/",
            "/status.css",
            "/status.js",
            "/favicon.svg",
            "/status/timeline.svg",
        ] {
            let (status, h, _) = get(uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(
                h[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY,
                "{uri}"
            );
        }
        let (_, h, body) = get("/status/timeline.svg?since=2h").await;
        assert_eq!(h[header::CONTENT_TYPE], "image/svg+xml");
        assert!(
            body.starts_with("<svg") && body.contains("incidents since 2h"),
            "{body}"
        );
        let (status, _, body) = get("/?since=%3Cb%3Esoon").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("since=&quot;&lt;b&gt;soon&quot;"), "{body}");
        assert!(!body.contains("<b>"), "{body}");
        let (status, _, body) = get("/incidents/x%3Cy").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.contains("incident &quot;x&lt;y&quot;: expected a number"),
            "{body}"
        );
    }
}
