//! Notifications: several targets at once, each with its own bounded queue and sender task.
//! Never on the healing path: [`Notifier::send`] only queues without waiting; a full queue
//! drops the message and counts it as failed. Each message is tried [`ATTEMPTS`] times with a
//! growing pause; one that never got through is counted in
//! `selfheal_notifications_failed_total{target}` (the target's name, never its URL).

mod deliver;
pub mod message;
mod shoutrrr;
pub mod target;

pub use deliver::Delivery;
pub use message::{Notification, NotifyOutcome, NotifyTrigger};
pub use target::{Kind, Target, TargetError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages waiting per target; past it, new ones are dropped (and counted as failed).
pub const QUEUE: usize = 64;
/// Tries per message, with a pause of 1 s, then 2 s, ... between them.
pub const ATTEMPTS: u32 = 3;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

/// The notifier's metrics, registered next to the watchdog's own.
#[derive(Debug, Clone, Default)]
pub struct NotifyMetrics {
    pub sent: Family<TargetLabels, Counter>,
    pub failed: Family<TargetLabels, Counter>,
}

impl NotifyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "selfheal_notifications_sent",
            "Notifications a target accepted",
            m.sent.clone(),
        );
        registry.register(
            "selfheal_notifications_failed",
            "Notifications that never reached their target (all attempts failed, or the queue was full)",
            m.failed.clone(),
        );
        m
    }
}

#[derive(Debug)]
struct Queue {
    name: String,
    min: selfheal_core::Severity,
    tx: mpsc::Sender<Notification>,
    failed: Counter,
}

#[derive(Debug)]
struct Inner {
    queues: Vec<Queue>,
    host: RwLock<String>,
    host_fixed: bool,
}

/// The handle container tasks send through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

impl Notifier {
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Starts one sender task per target. `host`: the configured `--host-name`; without it the
    /// engine's name is set later with [`Notifier::learn_host`].
    pub fn start(
        targets: Vec<Target>,
        host: Option<String>,
        metrics: NotifyMetrics,
    ) -> Result<Self, deliver::DeliveryError> {
        if targets.is_empty() {
            return Ok(Self::disabled());
        }
        let mut queues = Vec::new();
        for t in targets {
            let labels = TargetLabels {
                target: t.name.clone(),
            };
            // Created at start, so rate() works from the first failure.
            let failed = metrics.failed.get_or_create(&labels).clone();
            let sent = metrics.sent.get_or_create(&labels).clone();
            let delivery = Delivery::new(&t).map_err(|e| {
                deliver::DeliveryError::Setup(format!("notify target {}: {e}", t.name))
            })?;
            let (tx, rx) = mpsc::channel(QUEUE);
            tracing::info!(target = %t.name, address = %t.redacted, min_severity = t.min_severity.as_str(),
                "notification target");
            queues.push(Queue {
                name: t.name.clone(),
                min: t.min_severity,
                tx,
                failed: failed.clone(),
            });
            tokio::spawn(run_queue(t.name, delivery, rx, sent, failed));
        }
        Ok(Self {
            inner: Some(Arc::new(Inner {
                queues,
                host_fixed: host.is_some(),
                host: RwLock::new(host.unwrap_or_else(|| message::UNKNOWN_HOST.into())),
            })),
        })
    }

    /// The engine's `Name`, learned once connected; a configured `--host-name` wins.
    pub fn learn_host(&self, name: &str) {
        if let Some(inner) = &self.inner {
            if !inner.host_fixed && !name.is_empty() {
                if let Ok(mut h) = inner.host.write() {
                    name.clone_into(&mut h);
                }
            }
        }
    }

    /// Queues `n` for every target whose minimum severity it meets. Never waits.
    pub fn send(&self, mut n: Notification) {
        let Some(inner) = &self.inner else {
            return;
        };
        if let Ok(h) = inner.host.read() {
            h.clone_into(&mut n.host);
        }
        for q in inner.queues.iter().filter(|q| n.severity >= q.min) {
            if q.tx.try_send(n.clone()).is_err() {
                q.failed.inc();
                tracing::warn!(target = %q.name, event = n.outcome.event(), container = %n.container,
                    "notification queue full; message dropped");
            }
        }
    }
}

async fn run_queue(
    name: String,
    delivery: Delivery,
    mut rx: mpsc::Receiver<Notification>,
    sent: Counter,
    failed: Counter,
) {
    while let Some(n) = rx.recv().await {
        for attempt in 1..=ATTEMPTS {
            match delivery.deliver(&n).await {
                Ok(()) => {
                    sent.inc();
                    tracing::debug!(target = %name, event = n.outcome.event(), container = %n.container, "notification sent");
                    break;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(target = %name, attempt, error = %e, "notification not delivered; retrying");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
                Err(e) => {
                    failed.inc();
                    tracing::error!(target = %name, attempts = ATTEMPTS, error = %e, event = n.outcome.event(),
                        container = %n.container, "notification given up");
                }
            }
        }
    }
}

/// `selfheal notify test`: one message to every target, tried once each, in order. Returns
/// each target's name, address and result.
pub async fn test_all(
    targets: &[Target],
    host: &str,
) -> Vec<(String, String, Result<(), deliver::DeliveryError>)> {
    let n = Notification {
        severity: selfheal_core::Severity::Critical,
        host: host.into(),
        container: "selfheal-test".into(),
        compose_project: None,
        compose_service: None,
        trigger: NotifyTrigger::Test,
        outcome: NotifyOutcome::Test,
        incident_id: 0,
        attempts: 0,
        steps: Vec::new(),
        evidence: None,
    };
    let mut out = Vec::new();
    for t in targets {
        let result = match Delivery::new(t) {
            Ok(d) => d.deliver(&n).await,
            Err(e) => Err(e),
        };
        out.push((t.name.clone(), t.redacted.clone(), result));
    }
    out
}
