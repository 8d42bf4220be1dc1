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
use status_page::SinceQuery;
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
    Query(q): Query<SinceQuery>,
) -> Response {
    if status_page::wants_html(&headers) {
        return status_page::index_page(shared, q).await;
    }
    ENDPOINTS.into_response()
}

const ENDPOINTS: &str = "selfheal watchdog\n\n/metrics            Prometheus metrics (OpenMetrics)\n/healthz            event loop alive and Docker reachable\n/api/v1/containers  watched containers and their state\n/api/v1/incidents   incidents, newest first (?since=1h or RFC 3339, ?container=NAME)\n/api/v1/incidents/ID  one incident with its evidence\n/api/v1/swarm/tasks  the Swarm tasks watched here (for the other nodes' watchdogs)\n/api/v1/swarm/services/ID  a service's restart condition (a manager's watchdog)\n/api/v1/swarm/slots/SERVICE/SLOT  what a slot whose task ended here spent\n/                   the status page (for a browser: Accept: text/html)\n";
