//! The admin server's optional guard, for users who publish its port: a token that the status
//! page and `/api/` require, and a separate one for `/metrics`. `/healthz` stays open (Docker's
//! HEALTHCHECK and orchestrators call it without credentials).
//!
//! A request passes with `Authorization: Bearer TOKEN` (curl, Prometheus' `authorization`
//! setting) or HTTP basic auth whose password is TOKEN, any user name (RFC 7617: what a browser
//! asks for after a `WWW-Authenticate: Basic` challenge).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use crate::auth_token::Token;

/// Which parts of the admin server need which token; `None`: open.
#[derive(Debug, Clone, Default)]
pub struct AdminGuard {
    /// The status page and `/api/`.
    pub admin: Option<Token>,
    /// `/metrics`.
    pub metrics: Option<Token>,
}

/// Middleware: the request goes on if it carries the token, else 401 with a basic-auth
/// challenge (so a browser asks for it).
pub async fn require(State(token): State<Token>, req: Request, next: Next) -> Response {
    if token.admits(req.headers().get(header::AUTHORIZATION)) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"selfheal\", charset=\"UTF-8\"",
        )],
        "unauthorized: give the admin token as a bearer token or as the basic-auth password\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The admin token guards the page, its files and `/api/`; `/metrics` only with its own
    /// token; `/healthz` never.
    #[tokio::test]
    async fn the_guard_covers_page_and_api_and_metrics_separately() {
        use crate::journal::{IncidentJournal, JournalMetrics};
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = IncidentJournal::open(dir.path(), JournalMetrics::default()).unwrap();
        let shared = crate::shared::Shared::new(Arc::new(journal), false);
        let status = |app: axum::Router, path: &'static str, auth: Option<&'static str>| async move {
            let mut req = Request::get(path).header(header::ACCEPT, "text/html");
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            let r = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let challenge = r.headers().get(header::WWW_AUTHENTICATE).cloned();
            (r.status().as_u16(), challenge.is_some())
        };
        let paths = [
            "/",
            "/status.js",
            "/status.css",
            "/status/timeline.svg",
            "/incidents/1",
            "/api/v1/containers",
            "/api/v1/incidents",
        ];
        let admin_only = crate::http::router_guarded(
            shared.clone(),
            &AdminGuard {
                admin: Some(Token::new("adm")),
                metrics: None,
            },
        );
        for p in paths {
            assert_eq!(
                status(admin_only.clone(), p, None).await,
                (401, true),
                "{p}"
            );
            assert_eq!(
                status(admin_only.clone(), p, Some("Bearer nope")).await.0,
                401,
                "{p}"
            );
            let ok = status(admin_only.clone(), p, Some("Bearer adm")).await.0;
            assert!(ok == 200 || (p == "/incidents/1" && ok == 404), "{p}: {ok}");
        }
        // A browser's basic auth: user "x", password "adm".
        assert_eq!(
            status(admin_only.clone(), "/", Some("Basic eDphZG0="))
                .await
                .0,
            200
        );
        assert_eq!(status(admin_only.clone(), "/metrics", None).await.0, 200);
        assert_ne!(status(admin_only.clone(), "/healthz", None).await.0, 401);
        let both = crate::http::router_guarded(
            shared.clone(),
            &AdminGuard {
                admin: Some(Token::new("adm")),
                metrics: Some(Token::new("met")),
            },
        );
        assert_eq!(status(both.clone(), "/metrics", None).await.0, 401);
        assert_eq!(
            status(both.clone(), "/metrics", Some("Bearer adm")).await.0,
            401
        );
        assert_eq!(
            status(both.clone(), "/metrics", Some("Bearer met")).await.0,
            200
        );
        assert_eq!(
            status(both.clone(), "/api/v1/containers", Some("Bearer met"))
                .await
                .0,
            401
        );
        assert_ne!(status(both, "/healthz", None).await.0, 401);
        // No guard configured: everything open.
        let open = crate::http::router(shared);
        for p in paths {
            let s = status(open.clone(), p, None).await.0;
            assert!(s == 200 || (p == "/incidents/1" && s == 404), "{p}: {s}");
        }
    }
}
