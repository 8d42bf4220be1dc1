//! The admin HTTP server (read-only), one file per job: [`server`] (the listener, its
//! connection bound and timeouts, an orderly stop), [`auth`] (the optional tokens), [`api`]
//! (`/metrics`, `/healthz`, the JSON API under `/api/v1/`) and [`status_page`] (the page for a
//! browser at `/` and `/incidents/{id}`, with its files). This module puts the routes
//! together; the page and the API do not know of each other.

pub mod api;
pub mod auth;
pub mod server;
pub mod status_page;

use crate::shared::Shared;
use auth::{AdminGuard, Token};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use status_page::PageQuery;
use std::sync::Arc;

/// The routes, unguarded.
pub fn router(shared: Arc<Shared>) -> Router {
    router_guarded(shared, &AdminGuard::default())
}

/// The routes; the page and `/api/` need `guard.admin`, `/metrics` needs `guard.metrics`,
/// `/healthz` is always open.
pub fn router_guarded(shared: Arc<Shared>, guard: &AdminGuard) -> Router {
    let guarded = |r: Router<Arc<Shared>>, token: &Option<Token>| match token {
        Some(t) => r.layer(axum::middleware::from_fn_with_state(
            t.clone(),
            auth::require,
        )),
        None => r,
    };
    let page_and_api = Router::new()
        .route("/", get(index))
        .merge(api::routes())
        .merge(status_page::routes());
    let metrics = Router::new().route("/metrics", get(api::metrics));
    Router::new()
        .merge(guarded(page_and_api, &guard.admin))
        .merge(guarded(metrics, &guard.metrics))
        .route("/healthz", get(api::healthz))
        .with_state(shared)
}

/// The status page for a browser (it asks for `text/html`); the endpoint list for anyone else.
async fn index(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    if status_page::wants_html(&headers) {
        return status_page::index_page(&shared, &q);
    }
    ENDPOINTS.into_response()
}

const ENDPOINTS: &str = "selfheal watchdog\n\n/metrics            Prometheus metrics (OpenMetrics)\n/healthz            event loop alive and Docker reachable\n/api/v1/containers  watched containers and their state\n/api/v1/incidents   incidents, newest first (?since=1h or RFC 3339, ?container=NAME,\n                    ?limit=100 (at most 1000), ?before=ID: the next page's ID is in X-Next-Before)\n/api/v1/incidents/ID  one incident with its evidence\n/api/v1/swarm/tasks  the Swarm tasks watched here (for the other nodes' watchdogs)\n/api/v1/swarm/services/ID  a service's restart condition (a manager's watchdog)\n/api/v1/swarm/slots/SERVICE/SLOT  what a slot whose task ended here spent\n/                   the status page (for a browser: Accept: text/html)\n";

/// A journal full of realistic incidents, for the size and paging tests of the API and the
/// page.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::journal::{Incident, IncidentJournal, IncidentOutcome, JournalMetrics};
    use crate::shared::Shared;
    use selfheal_core::Trigger;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    /// A recovered probe failure of one of 20 compose services, detected `ago` back, with
    /// every time of a recovery filled in.
    pub fn recovered(id: u64, ago: Duration) -> Incident {
        // Whole milliseconds, as the watchdog writes its times.
        let at = |back: Duration| -> crate::journal::Timestamp {
            let text = humantime::format_rfc3339_millis(SystemTime::now() - back).to_string();
            humantime::parse_rfc3339_weak(&text)
                .expect("RFC 3339")
                .into()
        };
        Incident {
            id,
            container: format!("shop-web-{}", id % 20),
            container_id: format!("{:064x}", id * 7919),
            compose_project: Some("shop".into()),
            compose_service: Some(format!("web-{}", id % 20)),
            trigger: Trigger::ProbeFailed,
            first_failure: at(ago + Duration::from_millis(2500)),
            detected: at(ago),
            action_begun: Some(at(ago.saturating_sub(Duration::from_millis(20)))),
            last_restart: Some(at(ago.saturating_sub(Duration::from_millis(20)))),
            healthy_again: Some(at(ago.saturating_sub(Duration::from_secs(3)))),
            time_to_detect_seconds: Some(2.5),
            time_to_recover_seconds: Some(5.52),
            attempts: 1,
            outcome: IncidentOutcome::Recovered,
            dry_run: false,
            parent: None,
            parent_incident: None,
            steps: Vec::new(),
            failure: None,
            unpersisted: false,
            evidence: None,
        }
    }

    /// Shared state whose journal holds incidents 1..=n, one a second up to now (all within
    /// the page's default window of 24 h for n up to 86,400).
    pub fn shared_with_incidents(n: u64) -> (Arc<Shared>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = IncidentJournal::open(dir.path(), JournalMetrics::default()).unwrap();
        for id in 1..=n {
            journal.record(recovered(id, Duration::from_secs(n - id + 1)));
        }
        (Shared::new(Arc::new(journal), false), dir)
    }
}
