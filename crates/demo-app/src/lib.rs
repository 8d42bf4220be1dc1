//! The app container: a small web service standing in for a user's own service, with health,
//! readiness, metrics and token-guarded fault injection (`POST /chaos/*`).

pub mod config;
pub mod healthcheck;
pub mod metrics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::time::Instant;

pub use config::Config;
use metrics::{AppMetrics, RequestLabels, RouteLabels};

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Exit code of `/chaos/crash`.
pub const CRASH_EXIT_CODE: i32 = 3;

/// How `/chaos/crash` ends the process; tests pass one that records the code instead.
pub type ExitHook = Arc<dyn Fn(i32) + Send + Sync>;

/// The faults currently injected. Each lasts until the process restarts.
#[derive(Debug, Default)]
struct Faults {
    hung: AtomicBool,
    unhealthy: AtomicBool,
    slow_ms: AtomicU64,
    /// Kept, never read: holding it is the point.
    leaked: Mutex<Vec<Vec<u8>>>,
}

struct Inner {
    started: Instant,
    started_unix: SystemTime,
    ready_delay: Duration,
    chaos_token: Option<String>,
    shutting_down: AtomicBool,
    faults: Faults,
    metrics: AppMetrics,
    exit: ExitHook,
}

/// Shared state of the app; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("ready_delay", &self.inner.ready_delay)
            .field("chaos_enabled", &self.inner.chaos_token.is_some())
            .field("faults", &self.inner.faults)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for a real process: `/chaos/crash` exits the process.
    pub fn new(config: &Config) -> Self {
        Self::with_exit_hook(config, Arc::new(|code| std::process::exit(code)))
    }

    /// State whose `/chaos/crash` calls `exit` instead of exiting.
    pub fn with_exit_hook(config: &Config, exit: ExitHook) -> Self {
        let started_unix = SystemTime::now();
        let unix = started_unix.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                started_unix,
                ready_delay: config.ready_delay,
                chaos_token: config.chaos_token.clone(),
                shutting_down: AtomicBool::new(false),
                faults: Faults::default(),
                metrics: AppMetrics::new(i64::try_from(unix.as_secs()).unwrap_or(i64::MAX)),
                exit,
            }),
        }
    }

    /// Marks the app as shutting down: `/ready` answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    fn is_ready(&self) -> bool {
        !self.inner.shutting_down.load(Ordering::SeqCst)
            && self.inner.started.elapsed() >= self.inner.ready_delay
    }
}

/// The router with every route and middleware.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text));
    if state.inner.chaos_token.is_some() {
        // Unset token: the routes do not exist at all, so they answer 404.
        // POST only: a fault changes state, and a GET may come from a crawler, a link preview
        // or a browser's prefetch. The token check wraps the POST handlers only, so any other
        // method answers 405 before the token is looked at.
        let token = || middleware::from_fn_with_state(state.clone(), require_token);
        let chaos = Router::new()
            .route("/crash", post(chaos_crash).route_layer(token()))
            .route("/hang", post(chaos_hang).route_layer(token()))
            .route("/unhealthy", post(chaos_unhealthy).route_layer(token()))
            .route("/slow", post(chaos_slow).route_layer(token()))
            .route("/leak", post(chaos_leak).route_layer(token()));
        router = router.nest("/chaos", chaos);
    }
    router
        .layer(middleware::from_fn_with_state(state.clone(), inject_faults))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let metrics = &state.inner.metrics;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    let status = response.status().as_u16();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}

/// Applies `hang` (to every request) and `slow` (to every request but `/chaos/*`, so a slow
/// server can still be told to be fast again).
async fn inject_faults(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let faults = &state.inner.faults;
    if faults.hung.load(Ordering::SeqCst) {
        // Never answers; the connection stays open until the client or shutdown gives up.
        std::future::pending::<()>().await;
    }
    let delay = faults.slow_ms.load(Ordering::SeqCst);
    if delay > 0 && !req.uri().path().starts_with("/chaos/") {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    next.run(req).await
}

async fn require_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let expected = state.inner.chaos_token.as_deref().unwrap_or_default();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes())) {
        next.run(req).await
    } else {
        tracing::warn!(path = %req.uri().path(), "chaos request refused: missing or wrong token");
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response()
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn index(State(state): State<AppState>) -> Json<serde_json::Value> {
    let inner = &state.inner;
    let started = inner
        .started_unix
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": inner.started.elapsed().as_secs_f64(),
        "started_at_unix": started.as_secs(),
        "chaos_enabled": inner.chaos_token.is_some(),
    }))
}

async fn health(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.inner.faults.unhealthy.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy (injected)\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.inner.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "warming up\n")
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match state.inner.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!(%err, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn chaos_crash(State(state): State<AppState>) -> (StatusCode, &'static str) {
    tracing::warn!(
        fault = "crash",
        exit_code = CRASH_EXIT_CODE,
        "fault injected: exiting"
    );
    let exit = Arc::clone(&state.inner.exit);
    tokio::spawn(async move {
        // Let the response reach the client before the process goes away.
        tokio::time::sleep(Duration::from_millis(100)).await;
        exit(CRASH_EXIT_CODE);
    });
    (StatusCode::ACCEPTED, "crashing\n")
}

async fn chaos_hang(State(state): State<AppState>) -> (StatusCode, &'static str) {
    tracing::warn!(
        fault = "hang",
        "fault injected: no request will be answered from now on"
    );
    state.inner.faults.hung.store(true, Ordering::SeqCst);
    (StatusCode::ACCEPTED, "hanging\n")
}

async fn chaos_unhealthy(State(state): State<AppState>) -> (StatusCode, &'static str) {
    tracing::warn!(
        fault = "unhealthy",
        "fault injected: /health answers 503 until restart"
    );
    state.inner.faults.unhealthy.store(true, Ordering::SeqCst);
    (StatusCode::ACCEPTED, "unhealthy\n")
}

/// `?key=N` as a number, or the 400 answer that says it is missing.
fn query_number(query: &HashMap<String, String>, key: &str) -> Result<u64, BadQuery> {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BadQuery(key.to_owned()))
}

/// A required numeric query parameter that is missing or not a number.
#[derive(Debug)]
struct BadQuery(String);

impl IntoResponse for BadQuery {
    fn into_response(self) -> Response {
        let text = format!("query parameter {}=N required\n", self.0);
        (StatusCode::BAD_REQUEST, text).into_response()
    }
}

async fn chaos_slow(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let ms = match query_number(&query, "ms") {
        Ok(ms) => ms,
        Err(bad) => return bad.into_response(),
    };
    tracing::warn!(
        fault = "slow",
        delay_ms = ms,
        "fault injected: every request delayed"
    );
    state.inner.faults.slow_ms.store(ms, Ordering::SeqCst);
    (StatusCode::ACCEPTED, format!("slow: {ms} ms\n")).into_response()
}

const MIB: usize = 1024 * 1024;

async fn chaos_leak(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mb = match query_number(&query, "mb") {
        Ok(mb) => usize::try_from(mb).unwrap_or(usize::MAX),
        Err(bad) => return bad.into_response(),
    };
    tracing::warn!(
        fault = "leak",
        mb,
        "fault injected: allocating memory that is never freed"
    );
    let keeper = state.clone();
    let held = tokio::task::spawn_blocking(move || {
        let faults = &keeper.inner.faults;
        for _ in 0..mb {
            // A non-zero fill writes every page, so the memory is resident and counts
            // against a cgroup limit (zeroed allocations may stay untouched).
            let chunk = vec![0xA5u8; MIB];
            let mut leaked = faults.leaked.lock().unwrap_or_else(|e| e.into_inner());
            leaked.push(chunk);
            keeper.inner.metrics.leaked_bytes.inc_by(MIB as i64);
        }
        keeper.inner.metrics.leaked_bytes.get()
    })
    .await
    .unwrap_or_default();
    (
        StatusCode::ACCEPTED,
        format!("leaked {mb} MiB, holding {held} bytes\n"),
    )
        .into_response()
}

/// Completes on SIGTERM or Ctrl+C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl+C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// for at most `deadline`. Returns `true` if they all finished in time.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    deadline: Duration,
) -> std::io::Result<bool> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(async move {
        let _ = stop_rx.await;
    });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    tokio::select! {
        result = &mut server => return result.map(|()| true),
        () = shutdown => {},
    }
    tracing::info!(
        deadline_ms = deadline.as_millis(),
        "shutting down: no new connections"
    );
    state.begin_shutdown();
    let _ = stop_tx.send(());
    match tokio::time::timeout(deadline, server).await {
        Ok(result) => result.map(|()| true),
        Err(_) => {
            tracing::warn!("shutdown deadline passed with requests still in flight; exiting");
            Ok(false)
        }
    }
}
