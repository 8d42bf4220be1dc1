//! What the drill reads from the watchdog's admin API: incidents, and a container's view
//! (state, restarts in the window, backoff) for the split of each round and its spacing.

use super::spacing::BackoffSeen;
use crate::journal::Incident;
use std::time::{Duration, SystemTime};

/// One call to the watchdog's API may take this long.
const API_TIMEOUT: Duration = Duration::from_secs(3);

/// The watchdog's admin API.
#[derive(Debug, Clone)]
pub struct WatchdogApi {
    http: reqwest::Client,
    base: String,
}

impl WatchdogApi {
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    pub async fn reachable(&self) -> bool {
        self.http
            .get(format!("{}/healthz", self.base))
            .timeout(API_TIMEOUT)
            .send()
            .await
            .is_ok()
    }

    /// The watchdog's view of one container (`None`: it does not watch it).
    /// The watchdog's view of the container named `name` (the container under that name now:
    /// a recreate gives it a new id).
    pub async fn container(&self, name: &str) -> Result<Option<WatchView>, String> {
        let url = format!("{}/api/v1/containers", self.base);
        let r = self
            .http
            .get(&url)
            .timeout(API_TIMEOUT)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{url}: {e}"))?;
        let views: Vec<WatchView> = r.json().await.map_err(|e| format!("{url}: {e}"))?;
        Ok(views.into_iter().find(|v| v.name == name))
    }

    /// Incidents of one container, newest first.
    /// The incidents of the container named `name` (whatever its id was).
    pub async fn incidents(&self, name: &str) -> Result<Vec<Incident>, String> {
        let url = format!("{}/api/v1/incidents", self.base);
        let r = self
            .http
            .get(&url)
            .query(&[("container", name)])
            .timeout(API_TIMEOUT)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{url}: {e}"))?;
        r.json().await.map_err(|e| format!("{url}: {e}"))
    }
}

/// What the drill reads of `/api/v1/containers`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct WatchView {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub restarts_in_window: u32,
    /// Absent from watchdogs older than the drill's spacing.
    #[serde(default)]
    pub backoff: Option<BackoffApi>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct BackoffApi {
    pub reset_after: String,
    pub healthy_since: Option<String>,
}

impl WatchView {
    /// The backoff as the watchdog shows it; from an older watchdog, its default reset period
    /// and `ready_since` (when the drill itself last saw the container become ready).
    pub fn backoff_seen(&self, ready_since: Option<SystemTime>) -> BackoffSeen {
        let default_reset = selfheal_core::Backoff::default().reset_after;
        match &self.backoff {
            Some(b) => BackoffSeen {
                restarts_in_window: self.restarts_in_window,
                healthy_since: b
                    .healthy_since
                    .as_deref()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
                reset_after: selfheal_core::parse_duration(&b.reset_after).unwrap_or(default_reset),
            },
            None => BackoffSeen {
                restarts_in_window: self.restarts_in_window,
                healthy_since: ready_since,
                reset_after: default_reset,
            },
        }
    }
}
