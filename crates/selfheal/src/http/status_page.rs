//! The status page on the admin server: what is watched now, a timeline and a list of recent
//! incidents one page at a time, and one page per incident. Read-only, served from the binary
//! (HTML rendered in [`render`], one stylesheet and one script compiled in), under a strict
//! Content-Security-Policy.
//!
//! The page is rendered from the same typed values the API serializes (the container views,
//! a page of the journal, Docker's reachability), so it shows what `/api/v1/containers`,
//! `/api/v1/incidents` and `/healthz` say; the script polls that JSON and redraws in place,
//! so the page works without JavaScript and updates with it.

mod render;
#[cfg(test)]
mod tests;

use super::api::{parse_before, parse_since};
use crate::journal::{IncidentPage, IncidentQuery};
use crate::shared::{ContainerView, Shared};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use serde::Deserialize;
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
/// Incidents listed (and drawn in the timeline) on one page; `?before=` turns the page. Keeps
/// the page small however many incidents the journal holds.
pub const PAGE_SIZE: usize = 50;

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

fn html(status: StatusCode, body: Markup) -> Response {
    let mut r = secured("text/html; charset=utf-8", body.into_string());
    *r.status_mut() = status;
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

/// The query of `/` and of the timeline: the window (`?since=`, default 24 h) and the page
/// (`?before=`, an incident id; the newest page without it).
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    since: Option<String>,
    before: Option<String>,
}

/// Which incidents a page shows.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    /// `since` as the user wrote it (shown back, and kept in the page's links).
    since_text: String,
    since: SystemTime,
    before: Option<u64>,
}

impl PageQuery {
    fn resolve(&self) -> Result<Window, String> {
        let since_text = self
            .since
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(DEFAULT_SINCE);
        let since = parse_since(since_text)?;
        let before = self
            .before
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(parse_before)
            .transpose()?;
        Ok(Window {
            since_text: since_text.to_string(),
            since,
            before,
        })
    }
}

/// What the page shows, read once: the container views, one page of incidents, and whether
/// Docker is reachable (`/healthz`'s `docker_up`).
#[derive(Debug)]
struct Snapshot {
    containers: Vec<ContainerView>,
    incidents: IncidentPage,
    docker_up: bool,
}

impl Snapshot {
    fn read(shared: &Shared, window: &Window) -> Self {
        Self {
            containers: shared.views(),
            incidents: shared.journal.page(&IncidentQuery {
                since: Some(window.since),
                container: None,
                limit: PAGE_SIZE,
                before: window.before,
            }),
            docker_up: shared.docker_up.load(Ordering::Relaxed),
        }
    }
}

/// The page at `/` for a browser.
pub fn index_page(shared: &Shared, q: &PageQuery) -> Response {
    match q.resolve() {
        Ok(window) => {
            let snap = Snapshot::read(shared, &window);
            html(StatusCode::OK, render::index(&snap, &window))
        }
        Err(e) => html(StatusCode::BAD_REQUEST, render::bad_request(&e)),
    }
}

async fn timeline_svg(State(shared): State<Arc<Shared>>, Query(q): Query<PageQuery>) -> Response {
    match q.resolve() {
        Ok(window) => {
            let snap = Snapshot::read(&shared, &window);
            secured(
                "image/svg+xml",
                render::timeline(&snap.incidents.incidents, &render::what(&window, &snap)),
            )
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn incident_page(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return html(
            StatusCode::BAD_REQUEST,
            render::bad_request(&format!("incident {id:?}: expected a number")),
        );
    };
    // With its evidence, as `/api/v1/incidents/{id}` serves it.
    match shared.journal.get(id) {
        Some(i) => html(StatusCode::OK, render::incident(&i)),
        None => html(StatusCode::NOT_FOUND, render::no_incident(id)),
    }
}
