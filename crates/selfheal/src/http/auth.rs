//! The admin server's optional guard, for users who publish its port: a token that the status
//! page and `/api/` require, and a separate one for `/metrics`. `/healthz` stays open (Docker's
//! HEALTHCHECK and orchestrators call it without credentials).
//!
//! A request passes with `Authorization: Bearer TOKEN` (curl, Prometheus' `authorization`
//! setting) or HTTP basic auth whose password is TOKEN, any user name (RFC 7617: what a browser
//! asks for after a `WWW-Authenticate: Basic` challenge).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use std::sync::Arc;

/// Which parts of the admin server need which token; `None`: open.
#[derive(Debug, Clone, Default)]
pub struct AdminGuard {
    /// The status page and `/api/`.
    pub admin: Option<Token>,
    /// `/metrics`.
    pub metrics: Option<Token>,
}

/// A secret from the configuration; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(s: &str) -> Self {
        Self(s.into())
    }

    /// The secret itself, for a request this watchdog makes to another one (never logged).
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = u8::from(want.len() != given.len());
        for (i, w) in want.iter().enumerate() {
            diff |= w ^ given.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }

    /// Does this request carry the token?
    pub fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.matches(credentials.as_bytes())
        } else if scheme.eq_ignore_ascii_case("basic") {
            base64::engine::general_purpose::STANDARD
                .decode(credentials)
                .ok()
                .and_then(|pair| {
                    let colon = pair.iter().position(|b| *b == b':')?;
                    Some(self.matches(&pair[colon + 1..]))
                })
                .unwrap_or(false)
        } else {
            false
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
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

    fn h(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn bearer_or_basic_password_and_nothing_else() {
        let t = Token::new("s3cret");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(t.admits(Some(&h("Bearer s3cret"))));
        assert!(t.admits(Some(&h("bearer  s3cret "))));
        assert!(t.admits(Some(&h(&format!("Basic {}", b64("anyone:s3cret"))))));
        assert!(t.admits(Some(&h(&format!("Basic {}", b64(":s3cret"))))));
        for bad in [
            "Bearer s3cre".to_string(),
            "Bearer s3cret2".into(),
            "Bearer".into(),
            "s3cret".into(),
            "Token s3cret".into(),
            format!("Basic {}", b64("s3cret")),
            format!("Basic {}", b64("s3cret:wrong")),
            "Basic !!!".into(),
        ] {
            assert!(!t.admits(Some(&h(&bad))), "{bad}");
        }
        assert!(!t.admits(None));
        assert_eq!(format!("{t:?}"), "Token(***)");
    }

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
