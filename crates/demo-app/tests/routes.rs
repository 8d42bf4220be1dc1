//! The demo app's routes, through `oneshot` (no socket), plus the server's shutdown deadline
//! and the healthcheck client against a real loopback socket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use demo_app::{app, AppState, Config, CRASH_EXIT_CODE, OPENMETRICS_CONTENT_TYPE};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "test-token";

fn config(chaos_token: Option<&str>, ready_delay: Duration) -> Config {
    Config {
        port: 0,
        ready_delay,
        chaos_token: chaos_token.map(str::to_owned),
        shutdown_deadline: Duration::from_secs(1),
    }
}

fn state_with_chaos() -> (AppState, Arc<Mutex<Vec<i32>>>) {
    let exits = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&exits);
    let hook = Arc::new(move |code| recorded.lock().expect("lock").push(code));
    (
        AppState::with_exit_hook(&config(Some(TOKEN), Duration::ZERO), hook),
        exits,
    )
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(req)
        .await
        .expect("router is infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

/// Every fault route, with the query its handler needs.
const FAULTS: [&str; 5] = ["crash", "hang", "unhealthy", "slow?ms=1", "leak?mb=1"];

fn with_token(req: axum::http::request::Builder) -> Request<Body> {
    req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request")
}

/// An authorised `POST uri`, the way faults are injected.
fn chaos(uri: &str) -> Request<Body> {
    with_token(Request::post(uri))
}

#[tokio::test]
async fn health_is_ok_and_index_describes_the_app() {
    let router = app(AppState::new(&config(None, Duration::ZERO)));
    assert_eq!(send(&router, get("/health")).await.0, StatusCode::OK);
    let (status, body) = send(&router, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["name"], "demo-app");
    assert!(json["uptime_seconds"].as_f64().is_some());
    assert!(json["started_at_unix"]
        .as_u64()
        .is_some_and(|t| t > 1_600_000_000));
}

#[tokio::test(start_paused = true)]
async fn ready_is_503_during_warm_up_then_200_then_503_on_shutdown() {
    let state = AppState::new(&config(None, Duration::from_secs(3)));
    let router = app(state.clone());
    assert_eq!(
        send(&router, get("/ready")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(send(&router, get("/ready")).await.0, StatusCode::OK);
    state.begin_shutdown();
    let (status, body) = send(&router, get("/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("shutting down"));
    // Liveness is unaffected by readiness.
    assert_eq!(send(&router, get("/health")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_openmetrics_and_count_requests() {
    let router = app(AppState::new(&config(None, Duration::ZERO)));
    send(&router, get("/health")).await;
    send(&router, get("/nowhere")).await;
    let response = router
        .clone()
        .oneshot(get("/metrics"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        OPENMETRICS_CONTENT_TYPE
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(
            r#"demo_app_http_requests_total{method="GET",route="/health",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("# TYPE demo_app_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("demo_app_start_time_seconds "), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test]
async fn chaos_is_404_without_a_configured_token() {
    let router = app(AppState::new(&config(None, Duration::ZERO)));
    for fault in FAULTS {
        let uri = format!("/chaos/{fault}");
        assert_eq!(
            send(&router, chaos(&uri)).await.0,
            StatusCode::NOT_FOUND,
            "{fault}"
        );
        let get_with_token = with_token(Request::get(&uri));
        assert_eq!(
            send(&router, get_with_token).await.0,
            StatusCode::NOT_FOUND,
            "GET {fault}"
        );
    }
}

// Paused time: the crash's 100 ms delay before exiting elapses at once, so an exit hook that a
// GET had scheduled would have been called by the time the test looks.
#[tokio::test(start_paused = true)]
async fn chaos_by_get_is_405_with_or_without_the_token_and_injects_nothing() {
    let (state, exits) = state_with_chaos();
    let router = app(state);
    for fault in FAULTS {
        let uri = format!("/chaos/{fault}");
        for req in [with_token(Request::get(&uri)), get(&uri)] {
            let response = router.clone().oneshot(req).await.expect("infallible");
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "GET {fault}"
            );
            assert_eq!(response.headers()[header::ALLOW], "POST", "GET {fault}");
        }
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    // Neither crashed, nor hung, nor unhealthy, nor slow: /health answers 200 at once.
    let health = tokio::time::timeout(Duration::from_millis(300), send(&router, get("/health")));
    let (status, _) = health.await.expect("/health answered after GET /chaos/*");
    assert_eq!(status, StatusCode::OK);
    assert!(
        exits.lock().expect("lock").is_empty(),
        "GET /chaos/crash exited"
    );
    let (_, metrics) = send(&router, get("/metrics")).await;
    assert!(metrics.contains("demo_app_leaked_bytes 0"), "{metrics}");
}

#[tokio::test]
async fn chaos_needs_the_right_bearer_token() {
    let (state, _) = state_with_chaos();
    let router = app(state);
    let (status, _) = send(
        &router,
        Request::post("/chaos/unhealthy")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong = Request::post("/chaos/unhealthy")
        .header(header::AUTHORIZATION, "Bearer test-tokem")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&router, wrong).await.0, StatusCode::UNAUTHORIZED);
    // Refused requests inject nothing.
    assert_eq!(send(&router, get("/health")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn unhealthy_makes_health_503_for_good() {
    let (state, _) = state_with_chaos();
    let router = app(state);
    assert_eq!(
        send(&router, chaos("/chaos/unhealthy")).await.0,
        StatusCode::ACCEPTED
    );
    for _ in 0..3 {
        assert_eq!(
            send(&router, get("/health")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    // Still serving: it is unhealthy, not hung.
    assert_eq!(send(&router, get("/")).await.0, StatusCode::OK);
}

// Paused time: the app's 100 ms delay before exiting and the test's polling advance together,
// so a loaded machine cannot stretch them apart.
#[tokio::test(start_paused = true)]
async fn crash_exits_with_a_non_zero_code() {
    let (state, exits) = state_with_chaos();
    let router = app(state);
    assert_eq!(
        send(&router, chaos("/chaos/crash")).await.0,
        StatusCode::ACCEPTED
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while exits.lock().expect("lock").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "exit hook never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*exits.lock().expect("lock"), vec![CRASH_EXIT_CODE]);
}

// Paused time: a hung request is pending for good, so the 300 ms timeout is one that fires
// in order, not a wall-clock window.
#[tokio::test(start_paused = true)]
async fn hang_stops_every_answer_health_included() {
    let (state, _) = state_with_chaos();
    let router = app(state);
    assert_eq!(
        send(&router, chaos("/chaos/hang")).await.0,
        StatusCode::ACCEPTED
    );
    for uri in ["/health", "/", "/metrics"] {
        let pending =
            tokio::time::timeout(Duration::from_millis(300), send(&router, get(uri))).await;
        assert!(pending.is_err(), "{uri} answered after /chaos/hang");
    }
}

#[tokio::test(start_paused = true)]
async fn slow_delays_requests_but_not_chaos_itself() {
    let (state, _) = state_with_chaos();
    let router = app(state);
    assert_eq!(
        send(&router, chaos("/chaos/slow?ms=2000")).await.0,
        StatusCode::ACCEPTED
    );
    let start = tokio::time::Instant::now();
    assert_eq!(send(&router, get("/health")).await.0, StatusCode::OK);
    assert!(
        start.elapsed() >= Duration::from_millis(2000),
        "{:?}",
        start.elapsed()
    );
    let start = tokio::time::Instant::now();
    assert_eq!(
        send(&router, chaos("/chaos/slow?ms=0")).await.0,
        StatusCode::ACCEPTED
    );
    assert!(start.elapsed() < Duration::from_millis(2000));
    let start = tokio::time::Instant::now();
    send(&router, get("/health")).await;
    assert!(start.elapsed() < Duration::from_millis(1));
}

#[tokio::test]
async fn slow_and_leak_reject_a_missing_amount() {
    let (state, _) = state_with_chaos();
    let router = app(state);
    assert_eq!(
        send(&router, chaos("/chaos/slow")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&router, chaos("/chaos/leak?mb=lots")).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn leak_keeps_the_memory() {
    let (state, _) = state_with_chaos();
    let router = app(state);
    assert_eq!(
        send(&router, chaos("/chaos/leak?mb=3")).await.0,
        StatusCode::ACCEPTED
    );
    let (_, body) = send(&router, chaos("/chaos/leak?mb=2")).await;
    assert!(body.contains("holding 5242880 bytes"), "{body}");
    let (_, metrics) = send(&router, get("/metrics")).await;
    assert!(
        metrics.contains("demo_app_leaked_bytes 5242880"),
        "{metrics}"
    );
}

/// Reads one HTTP/1.1 response head and its `Content-Length` body; returns the status line.
async fn read_response(stream: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut status = String::new();
    stream.read_line(&mut status).await.expect("status line");
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.expect("header");
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body");
    status.trim().to_owned()
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_hung_request_past_the_deadline() {
    use tokio::io::AsyncWriteExt;
    let (state, _) = state_with_chaos();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let deadline = Duration::from_millis(500);
    let server = tokio::spawn(demo_app::serve(
        listener,
        state,
        async move {
            let _ = stop_rx.await;
        },
        deadline,
    ));
    // One keep-alive connection: once it has been answered it is surely accepted, so the
    // request it parks later is one the server must wait for.
    let conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut conn = tokio::io::BufReader::new(conn);
    conn.get_mut()
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut conn).await, "HTTP/1.1 200 OK");
    let hang =
        format!("POST /chaos/hang HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    conn.get_mut()
        .write_all(hang.as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut conn).await, "HTTP/1.1 202 Accepted");
    conn.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    // The healthcheck client gives up: the process is alive but answers nothing.
    let hung = tokio::task::spawn_blocking(move || {
        demo_app::healthcheck::status_of(addr, "/health", Duration::from_secs(1))
    });
    let hung = hung.await.expect("join");
    assert!(hung.is_err(), "answered while hung: {hung:?}");
    let start = tokio::time::Instant::now();
    stop_tx.send(()).expect("server running");
    // The hung request never ends, so the server stopping at all shows it gave up on it; the
    // 5 s is a deadline for that, not a timing window (a loaded machine is only slower).
    let finished = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stopped within 5 s")
        .expect("join")
        .expect("serve ok");
    assert!(!finished, "a hung request cannot finish");
    let took = start.elapsed();
    assert!(took >= deadline, "stopped before the deadline: {took:?}");
}

#[tokio::test]
async fn healthcheck_reads_the_status_of_a_real_server() {
    let (state, _) = state_with_chaos();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app(state);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let status = |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            demo_app::healthcheck::status_of(addr, path, Duration::from_secs(2))
        })
    };
    assert_eq!(status("/health").await.expect("join").expect("answer"), 200);
    assert_eq!(
        status("/nowhere").await.expect("join").expect("answer"),
        404
    );
    server.abort();
    // Nothing listening: an error, not a status.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gone = closed.local_addr().expect("addr");
    drop(closed);
    let refused = tokio::task::spawn_blocking(move || {
        demo_app::healthcheck::status_of(gone, "/health", Duration::from_secs(2))
    });
    assert!(refused.await.expect("join").is_err());
}
