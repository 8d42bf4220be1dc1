//! Optional webhook notifications. Never on the healing path: events are queued without
//! waiting and dropped (with a warning) if the queue is full.

use serde::Serialize;
use std::time::Duration;
use tokio::sync::mpsc;

const QUEUE: usize = 256;
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(5);

/// One notification. `text` makes Slack and Mattermost incoming webhooks work as they are.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub text: String,
    /// opened, recovered, failed or quarantined.
    pub event: &'static str,
    pub container: String,
    pub trigger: String,
    pub incident_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_recover_seconds: Option<f64>,
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notification>>,
}

impl Notifier {
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// Starts the sender task for `url`.
    pub fn start(url: String) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        let (tx, mut rx) = mpsc::channel::<Notification>(QUEUE);
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                for attempt in 1..=ATTEMPTS {
                    match client.post(&url).json(&n).send().await {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) => {
                            tracing::warn!(status = %r.status(), attempt, "webhook refused notification")
                        }
                        Err(e) => tracing::warn!(error = %e, attempt, "webhook unreachable"),
                    }
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    }
                }
            }
        });
        Ok(Self { tx: Some(tx) })
    }

    pub fn send(&self, n: Notification) {
        if let Some(tx) = &self.tx {
            if tx.try_send(n).is_err() {
                tracing::warn!("webhook queue full; notification dropped");
            }
        }
    }
}
