//! The bearer token of the admin API: checked by the admin server (`crate::http::auth`) and
//! sent by a watchdog asking its Swarm peers (`crate::swarm::peers`). Its own module so that
//! neither of those needs the other for it.

use axum::http::HeaderValue;
use base64::Engine as _;
use std::sync::Arc;

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
}
