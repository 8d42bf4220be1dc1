//! The admin server's JSON and text endpoints: `/metrics`, `/healthz`, `/api/v1/containers`,
//! `/api/v1/incidents`, `/api/v1/incidents/{id}`, `/api/v1/swarm/tasks`,
//! `/api/v1/swarm/services/{id}` and `/api/v1/swarm/slots/{service}/{slot}` (what the other
//! nodes' watchdogs ask on Swarm).

use crate::journal::{Incident, IncidentQuery};
use crate::shared::Shared;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The event loop beats at least every few seconds; this much silence means it is stuck.
const HEARTBEAT_STALE: Duration = Duration::from_secs(30);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `/api/v1/` routes (guarded with the page by [`super::router_guarded`]).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/containers", get(containers))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/swarm/tasks", get(swarm_tasks))
        .route("/api/v1/swarm/services/{id}", get(swarm_service))
        .route("/api/v1/swarm/slots/{service}/{slot}", get(swarm_slot))
}

pub(super) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    // Read at scrape time, so the gauges are exact when they are read.
    shared.degraded();
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &shared.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub(super) async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let docker = shared.docker_up.load(Ordering::Relaxed);
    let silent = shared.since_heartbeat();
    let loop_alive = silent < HEARTBEAT_STALE;
    // Degraded is reported, not failed: a bad probe host or a full disk must not get the
    // watchdog itself restarted.
    let degraded: Vec<&str> = shared.degraded().into_iter().map(|d| d.as_str()).collect();
    let body = serde_json::json!({
        "docker_up": docker,
        "event_loop_alive": loop_alive,
        "seconds_since_heartbeat": silent.as_secs_f64(),
        "degraded": degraded,
    });
    let status = if docker && loop_alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn containers(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.views()).into_response()
}

/// The Swarm tasks watched here, for a peer following a slot whose task ended on its node.
async fn swarm_tasks(State(shared): State<Arc<Shared>>) -> Response {
    let tasks = shared.views().into_iter().filter_map(|v| v.swarm).collect();
    Json(crate::swarm::TasksReply { tasks }).into_response()
}

/// What a slot whose task ended here spent (budget, backoff), for its replacement's watchdog
/// on another node: 404 when no such slot waits here.
async fn swarm_slot(
    State(shared): State<Arc<Shared>>,
    Path((service, slot)): Path<(String, String)>,
) -> Response {
    match crate::swarm::SlotReply::of(&shared, &format!("{service}/{slot}")) {
        Some(r) => Json(r).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "no such slot handed over here" })),
        )
            .into_response(),
    }
}

/// A service's restart condition, known on a manager only: 404 elsewhere, or for a service
/// the manager does not have.
async fn swarm_service(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.swarm_service_condition(&id) {
        Some(restart_condition) => {
            Json(crate::swarm::ServiceReply { restart_condition }).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "error": "no such service known here (only a Swarm manager's watchdog knows services)"
            })),
        )
            .into_response(),
    }
}

/// `GET /api/v1/incidents` serves this many incidents when `?limit=` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most `?limit=` may ask for: a page stays under about half a megabyte of JSON.
pub const MAX_LIMIT: usize = 1000;
/// The cursor of the next page, when there is one (the `before` to ask with).
pub const NEXT_BEFORE: &str = "x-next-before";

/// The query of `GET /api/v1/incidents`. Numbers are read as text, so that a bad one is a
/// JSON 400 that names it, like every other error of the API.
#[derive(Debug, Default, Deserialize)]
struct IncidentsParams {
    since: Option<String>,
    container: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// `since` is RFC 3339 or a duration back from now (`30m`, `24h`).
pub fn parse_since(s: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    selfheal_core::parse_duration(s)
        .map(|d| SystemTime::now() - d)
        .map_err(|_| format!("since={s:?}: expected RFC 3339 time or a duration like 30m"))
}

/// `before`: the cursor, an incident id (only older incidents, those with a smaller id).
pub fn parse_before(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("before={s:?}: expected an incident id (a whole number)"))
}

/// `limit`: how many incidents at most, 1 to [`MAX_LIMIT`].
pub fn parse_limit(s: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| format!("limit={s:?}: expected a whole number from 1 to {MAX_LIMIT}"))
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Newest first, without evidence, at most `limit` (default [`DEFAULT_LIMIT`]). The body is
/// the bare array it always was; when more incidents match, the next page's cursor is in
/// `X-Next-Before` and in `Link: <...>; rel="next"` (RFC 8288), the same query with `before`.
async fn incidents(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<IncidentsParams>,
) -> Response {
    let since = match q.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    if q.container.as_deref().is_some_and(|c| c.trim().is_empty()) {
        // An empty filter would match every container (all ids start with "").
        return bad_request("container= is empty: give a name or an id".into());
    }
    let limit = match q.limit.as_deref().map(parse_limit).transpose() {
        Ok(l) => l.unwrap_or(DEFAULT_LIMIT),
        Err(e) => return bad_request(e),
    };
    let before = match q.before.as_deref().map(parse_before).transpose() {
        Ok(b) => b,
        Err(e) => return bad_request(e),
    };
    let page = shared.journal.page(&IncidentQuery {
        since,
        container: q.container.as_deref(),
        limit,
        before,
    });
    let mut response = Json(page.incidents).into_response();
    if let Some(next) = page.next_before {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("since", &q.since), ("container", &q.container)] {
            if let Some(v) = value {
                link.append_pair(key, v);
            }
        }
        link.append_pair("limit", &limit.to_string());
        link.append_pair("before", &next.to_string());
        let link = format!("</api/v1/incidents?{}>; rel=\"next\"", link.finish());
        let h = response.headers_mut();
        h.insert(NEXT_BEFORE, HeaderValue::from(next));
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(header::LINK, v);
        }
    }
    response
}

/// Every incident `url` (`/api/v1/incidents` with its query) lists, page after page: what the
/// CLI's `--api` reads. A server that does not page answers once, with no cursor.
pub async fn fetch_all_incidents(url: reqwest::Url) -> reqwest::Result<Vec<Incident>> {
    let client = reqwest::Client::new();
    let mut all: Vec<Incident> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut page_url = url.clone();
        page_url
            .query_pairs_mut()
            .append_pair("limit", &MAX_LIMIT.to_string());
        if let Some(b) = &before {
            page_url.query_pairs_mut().append_pair("before", b);
        }
        let response = client
            .get(page_url)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?;
        let next = response
            .headers()
            .get(NEXT_BEFORE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        all.extend(response.json::<Vec<Incident>>().await?);
        match next {
            Some(n) if before.as_ref() != Some(&n) => before = Some(n),
            _ => return Ok(all),
        }
    }
}

/// One incident with its evidence: 404 for an id the journal does not hold, 400 for an id
/// that is not a number (both with a JSON `error`).
async fn incident(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let error = |status, message: String| {
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    };
    let Ok(n) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("incident id {id:?}: expected a number"),
        );
    };
    match shared.journal.get(n) {
        Some(i) => Json(i).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no incident {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{IncidentJournal, JournalMetrics};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(app: Router, uri: &str) -> (StatusCode, String, String) {
        let r = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn routes() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = IncidentJournal::open(dir.path(), JournalMetrics::default()).unwrap();
        let shared = Shared::new(Arc::new(journal), false);
        shared.metrics.add_container("web", None);
        let app = crate::http::router(shared.clone());
        let (s, ct, body) = get(app.clone(), "/metrics").await;
        assert_eq!(s, StatusCode::OK);
        assert!(ct.starts_with("application/openmetrics-text"));
        assert!(body.contains("app_recovery_events_total{container=\"web\",trigger=\"unhealthy\",result=\"success\",verb=\"restart\"} 0"), "{body}");
        assert!(body.contains("selfheal_build_info{version="));
        assert!(
            body.contains("selfheal_journal_write_failures_total 0"),
            "{body}"
        );
        assert!(body.contains("selfheal_incidents_unpersisted 0"), "{body}");
        assert!(body.ends_with("# EOF\n"));
        // Docker not connected yet: not healthy.
        let (s, _, body) = get(app.clone(), "/healthz").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        shared.set_docker_up(true);
        shared.beat();
        assert_eq!(get(app.clone(), "/healthz").await.0, StatusCode::OK);
        let (s, _, body) = get(app.clone(), "/api/v1/incidents?since=bogus").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(body.contains("bogus"));
        let (s, _, body) = get(app.clone(), "/api/v1/incidents?since=1h").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "[]"));
        let (s, ct, body) = get(app.clone(), "/api/v1/incidents?container=").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(ct.starts_with("application/json"), "{ct}");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            err["error"].as_str().unwrap().contains("container"),
            "{body}"
        );
        assert_eq!(get(app.clone(), "/api/v1/containers").await.2, "[]");
        // Without `Accept: text/html` (curl), `/` is still the plain-text endpoint list.
        let (s, _, body) = get(app.clone(), "/").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.starts_with("selfheal watchdog\n") && body.contains("/api/v1/incidents"));
        let (s, ct, body) = get(app.clone(), "/api/v1/incidents/7").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
        assert!(ct.starts_with("application/json"), "{ct}");
        assert!(body.contains("no incident 7"), "{body}");
        let (s, ct, body) = get(app.clone(), "/api/v1/incidents/seven").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(ct.starts_with("application/json"), "{ct}");
        assert!(body.contains("seven"), "{body}");
        let (s, _, body) = get(app, "/api/v1/incidents/-1").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    }

    /// The status, the `X-Next-Before` and `Link` headers, and the incident ids of a GET.
    async fn page(
        app: &Router,
        uri: &str,
    ) -> (StatusCode, Option<String>, Option<String>, Vec<u64>) {
        let r = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = |name| {
            r.headers()
                .get(name)
                .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_string())
        };
        let (next, link) = (header(NEXT_BEFORE), header(header::LINK.as_str()));
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 30).await.unwrap();
        let ids = match serde_json::from_slice::<Vec<Incident>>(&body) {
            Ok(list) => list.iter().map(|i| i.id).collect(),
            Err(_) => Vec::new(),
        };
        (status, next, link, ids)
    }

    /// A bad `limit` or `before` is a JSON 400 that names it.
    #[tokio::test]
    async fn bad_paging_parameters_are_named() {
        let (shared, _dir) = crate::http::test_support::shared_with_incidents(3);
        let app = crate::http::router(shared);
        for (query, named) in [
            (
                "limit=0",
                "limit=\"0\": expected a whole number from 1 to 1000",
            ),
            ("limit=1001", "limit=\"1001\""),
            ("limit=ten", "limit=\"ten\""),
            ("limit=", "limit=\"\""),
            ("before=x", "before=\"x\": expected an incident id"),
            ("before=-1", "before=\"-1\""),
        ] {
            let (s, ct, body) = get(app.clone(), &format!("/api/v1/incidents?{query}")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert!(ct.starts_with("application/json"), "{query}: {ct}");
            let err: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(
                err["error"].as_str().unwrap().contains(named),
                "{query}: {body}"
            );
        }
        let (s, next, link, ids) = page(&app, "/api/v1/incidents?limit=1000&before=3").await;
        assert_eq!(
            (s, next, link, ids),
            (StatusCode::OK, None, None, vec![2, 1])
        );
    }

    /// With 10,000 incidents the API serves the newest 100 and the cursor of the rest; walking
    /// the cursor visits every incident once, newest first, and the `Link` keeps the filters.
    #[tokio::test]
    async fn walking_the_cursor_visits_each_incident_once() {
        let (shared, _dir) = crate::http::test_support::shared_with_incidents(10_000);
        let app = crate::http::router(shared);
        let (s, next, link, ids) = page(&app, "/api/v1/incidents").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ids, (9901..=10_000).rev().collect::<Vec<u64>>());
        assert_eq!(next.as_deref(), Some("9901"));
        assert_eq!(
            link.as_deref(),
            Some("</api/v1/incidents?limit=100&before=9901>; rel=\"next\"")
        );

        let mut seen = Vec::new();
        let mut uri = "/api/v1/incidents?limit=1000".to_string();
        loop {
            let (s, next, _, ids) = page(&app, &uri).await;
            assert_eq!(s, StatusCode::OK, "{uri}");
            assert!(ids.len() <= 1000, "{uri}");
            seen.extend(ids);
            match next {
                Some(n) => uri = format!("/api/v1/incidents?limit=1000&before={n}"),
                None => break,
            }
        }
        assert_eq!(seen, (1..=10_000).rev().collect::<Vec<u64>>());

        // Following `Link` as it is: the filters stay, every match once.
        let mut seen = Vec::new();
        let mut uri = "/api/v1/incidents?since=24h&container=shop-web-3&limit=37".to_string();
        loop {
            let (s, _, link, ids) = page(&app, &uri).await;
            assert_eq!(s, StatusCode::OK, "{uri}");
            seen.extend(ids);
            let Some(link) = link else { break };
            assert!(
                link.contains("since=24h&container=shop-web-3&limit=37&before="),
                "{link}"
            );
            uri = link[1..link.find('>').unwrap()].to_string();
        }
        let want: Vec<u64> = (1..=10_000).rev().filter(|id| id % 20 == 3).collect();
        assert_eq!(seen, want);
    }

    /// The CLI's `--api` reads every page over a real socket: 2,500 incidents come back once
    /// each, newest first, with the filter kept on every page.
    #[tokio::test]
    async fn fetch_all_incidents_follows_the_cursor() {
        let (shared, _dir) = crate::http::test_support::shared_with_incidents(2_500);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(crate::http::server::serve(
            listener,
            crate::http::router(shared),
            crate::http::server::ConnectionLimits::default(),
            cancel.clone(),
        ));
        let url = |q: &str| reqwest::Url::parse(&format!("http://{addr}/api/v1/incidents{q}"));
        let all = fetch_all_incidents(url("").unwrap()).await.unwrap();
        let ids: Vec<u64> = all.iter().map(|i| i.id).collect();
        assert_eq!(ids, (1..=2_500).rev().collect::<Vec<u64>>());
        let some = fetch_all_incidents(url("?container=shop-web-7").unwrap())
            .await
            .unwrap();
        assert_eq!(some.len(), 125);
        assert!(some.iter().all(|i| i.container == "shop-web-7"));
        cancel.cancel();
        server.await.unwrap();
    }
}
