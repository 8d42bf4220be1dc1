//! The probe loop of one container: runs the watchdog's own probe on its schedule, records its
//! metric series under the container's current name, keeps its failures for an incident's
//! evidence, and hands each result to the container task while the core counts them.

use super::{Context, Msg};
use crate::docker::ContainerInfo;
use crate::evidence::{ProbeFailureLog, ProbeFailureRecord};
use crate::metrics::{probe_labels, Metrics};
use crate::shared::Shared;
use crate::timestamp::Timestamp;
use prometheus_client::metrics::histogram::Histogram;
use selfheal_core::{Observation, ProbeKind, ProbeOutcome, WatchSpec};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the container task tells its probe loop: the address to probe, the name to record
/// under, and whether the core counts results now.
#[derive(Debug)]
pub(super) struct ProbeLink {
    addr: watch::Sender<Option<IpAddr>>,
    /// The container's current name, shared with the probe loop for its series.
    name: watch::Sender<String>,
    /// `Supervisor::wants_probes` after the last observation: results are neither recorded
    /// nor sent while it is false (not running, paused, restarting).
    counted: Arc<AtomicBool>,
    kind: Option<ProbeKind>,
}

impl ProbeLink {
    /// Starts the probe loop when `spec` has a probe. `failures`: where its failures are kept
    /// for evidence (`--evidence`).
    pub(super) fn start(
        ctx: &Context,
        info: &ContainerInfo,
        spec: &WatchSpec,
        failures: Option<ProbeFailureLog>,
        tx: mpsc::Sender<Msg>,
        cancel: &CancellationToken,
    ) -> (Self, Option<JoinHandle<()>>) {
        let (addr, addr_rx) =
            watch::channel(info.probe_address(ctx.probe_network.as_deref(), &ctx.own_networks));
        let (name, name_rx) = watch::channel(info.name.clone());
        let counted = Arc::new(AtomicBool::new(false));
        let link = Self {
            addr,
            name,
            counted: counted.clone(),
            kind: spec.probe.as_ref().map(|p| p.kind),
        };
        let task = spec.probe.clone().map(|target| {
            let prober = ctx.prober.clone();
            let (interval, timeout) = (spec.interval, spec.timeout);
            let mut series = ProbeSeries::new(ctx.shared.clone(), target.kind, name_rx);
            let cancel = cancel.clone();
            let clock = ctx.shared.clock;
            tokio::spawn(async move {
                let report = |outcome: ProbeOutcome,
                              took: std::time::Duration,
                              _lag,
                              detail: crate::probe::ProbeDetail| {
                    if !counted.load(Ordering::Relaxed) {
                        return true;
                    }
                    series.record(outcome, took);
                    if let Some(log) = &failures {
                        match outcome {
                            ProbeOutcome::Failed(f) => log.push(ProbeFailureRecord {
                                at: Some(Timestamp::millis(clock.wall(Instant::now()))),
                                reason: f,
                                duration_ms: took.as_secs_f64() * 1000.0,
                                http_status: detail.http_status,
                                body_excerpt: detail.body_excerpt,
                            }),
                            ProbeOutcome::Passed => log.clear(),
                            ProbeOutcome::Unobservable(_) => {}
                        }
                    }
                    // Never block the probe schedule on a busy task: a probe result dropped
                    // is one the next probe replaces.
                    !matches!(
                        tx.try_send(Msg::Observe(Observation::Probe(outcome))),
                        Err(mpsc::error::TrySendError::Closed(_))
                    )
                };
                crate::probe::schedule(prober, target, interval, timeout, addr_rx, cancel, report)
                    .await;
            })
        });
        (link, task)
    }

    /// The address the latest inspect shows.
    pub(super) fn retarget(&self, ctx: &Context, info: &ContainerInfo) {
        let _ = self
            .addr
            .send(info.probe_address(ctx.probe_network.as_deref(), &ctx.own_networks));
    }

    pub(super) fn rename(&self, metrics: &Metrics, to: &str) {
        move_series(metrics, &self.name, to, self.kind);
    }

    pub(super) fn count(&self, counted: bool) {
        self.counted.store(counted, Ordering::Relaxed);
    }
}

/// The probe loop's metric series, kept under the container's current name, which the
/// container task shares through `names` and changes with [`move_series`]. The histogram
/// handle is looked up when the name changes, not per probe.
pub(super) struct ProbeSeries {
    shared: Arc<Shared>,
    kind: ProbeKind,
    names: watch::Receiver<String>,
    duration: Histogram,
}

impl ProbeSeries {
    pub(super) fn new(
        shared: Arc<Shared>,
        kind: ProbeKind,
        mut names: watch::Receiver<String>,
    ) -> Self {
        let duration = Self::duration_of(&shared, &names.borrow_and_update(), kind);
        Self {
            shared,
            kind,
            names,
            duration,
        }
    }

    fn duration_of(shared: &Shared, name: &str, kind: ProbeKind) -> Histogram {
        shared
            .metrics
            .probe_duration
            .get_or_create(&probe_labels(name, kind))
            .clone()
    }

    pub(super) fn record(&mut self, outcome: ProbeOutcome, took: std::time::Duration) {
        // Held while writing: a rename waits for it, so nothing is written under a name
        // after its series were removed. A cheap read lock when nothing changed.
        let name = self.names.borrow_and_update();
        if name.has_changed() {
            // Also for the same name (renamed away and back): its series were removed.
            self.duration = Self::duration_of(&self.shared, &name, self.kind);
        }
        self.duration.observe(took.as_secs_f64());
        let metrics = &self.shared.metrics;
        match outcome {
            ProbeOutcome::Failed(f) => {
                let labels = crate::metrics::FailureLabels {
                    container: name.as_str().into(),
                    reason: crate::metrics::Label(f),
                };
                metrics.probe_failures.get_or_create(&labels).inc();
            }
            ProbeOutcome::Unobservable(u) => {
                let labels = crate::metrics::UnobservableLabels {
                    container: name.as_str().into(),
                    reason: crate::metrics::Label(u),
                };
                metrics.probe_unobservable.get_or_create(&labels).inc();
            }
            ProbeOutcome::Passed => {}
        }
    }
}

/// Moves a container's series from its current name in `names` to `to`. Done under the
/// channel's write lock, so a probe recording meanwhile writes wholly before (then its series
/// are removed with the rest) or wholly after (under the new name).
pub(super) fn move_series(
    metrics: &Metrics,
    names: &watch::Sender<String>,
    to: &str,
    probe: Option<ProbeKind>,
) {
    names.send_modify(|name| {
        metrics.remove_container(name);
        to.clone_into(name);
        metrics.add_container(name, probe);
    });
}
