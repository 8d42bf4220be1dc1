//! What an incident's evidence gathers for one container: at detection, what the watchdog
//! already holds (the probe's recent failures, how the process ended); after the order is
//! sent, what Docker holds (log lines, the HEALTHCHECK log), read off the task's path.

use super::Msg;
use crate::docker::executor::ContainerRuntime;
use crate::docker::ContainerInfo;
use crate::evidence::{Evidence, ExitRecord, ProbeFailureLog};
use selfheal_core::{Exit, Trigger};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The evidence of one container's incidents, and the pieces of a `die` it is assembled from.
#[derive(Debug)]
pub(super) struct EvidenceCollector {
    /// `None` without `--evidence`: nothing is kept or read back.
    probe_failures: Option<ProbeFailureLog>,
    /// How the process last ended, until an incident takes it.
    last_exit: Option<Exit>,
    /// An `oom` event came, and the `die` it belongs to not yet.
    oom_before_death: bool,
}

impl EvidenceCollector {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            probe_failures: enabled.then(ProbeFailureLog::default),
            last_exit: None,
            oom_before_death: false,
        }
    }

    /// The log the probe loop keeps its failures in, if evidence is kept.
    pub(super) fn probe_log(&self) -> Option<ProbeFailureLog> {
        self.probe_failures.clone()
    }

    pub(super) fn oom(&mut self) {
        self.oom_before_death = true;
    }

    /// A `die` event: the exit it tells, with an `oom` event that came before it.
    pub(super) fn died(&mut self, code: Option<i64>, restart_count: i64) -> Exit {
        let exit = Exit {
            code,
            oom_killed: std::mem::take(&mut self.oom_before_death),
            restart_count,
        };
        self.last_exit = Some(exit);
        exit
    }

    /// What is known at detection, without asking Docker: the probe's failures, the exit (the
    /// `die` event's, else, for a death seen in an inspect after a gap, the inspect's).
    pub(super) fn at_detection(
        &mut self,
        trigger: Trigger,
        info: &ContainerInfo,
    ) -> Option<Evidence> {
        let exit = self
            .last_exit
            .take()
            .or_else(|| (!info.running).then(|| info.exit(info.exit_code, info.oom_killed)));
        let log = self.probe_failures.as_ref()?;
        let probe_failures = log.snapshot();
        // Taken: a later incident gets only failures seen after this one.
        log.clear();
        let died = matches!(trigger, Trigger::Died | Trigger::Oom);
        Some(Evidence {
            probe_failures,
            exit: exit
                .filter(|_| died)
                // A `die` that named no code leaves none to record (never a made-up one).
                .and_then(|e| e.code.map(|code| ExitRecord::new(code, e.oom_killed))),
            ..Evidence::default()
        })
    }

    /// Reads the rest of incident `incident`'s evidence from Docker off the task's path, once
    /// the order decided with it (if any) is sent or dropped: healing never waits for it.
    pub(super) fn read_back(
        &self,
        incident: u64,
        runtime: Arc<dyn ContainerRuntime>,
        id: String,
        order_sent: Option<oneshot::Receiver<()>>,
        tx: mpsc::Sender<Msg>,
    ) {
        if self.probe_failures.is_none() {
            return;
        }
        let detected = std::time::SystemTime::now();
        tokio::spawn(async move {
            if let Some(sent) = order_sent {
                let _ = sent.await;
            }
            let captured = Box::new(runtime.capture(&id, detected).await);
            let _ = tx.send(Msg::Evidence { incident, captured }).await;
        });
    }
}
