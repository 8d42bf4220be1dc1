//! Work a container task hands off its own path, whose answers come back as messages in its
//! inbox: the core's orders to the executor (and the executor's turn, which the core answers
//! in order with the container's events), inspects, and messages to itself.

use super::Msg;
use crate::docker::executor::{ContainerRuntime, Turn};
use crate::docker::ContainerInfo;
use crate::shared::Shared;
use selfheal_core::{EndMode, Order, Verb, Verdict};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

#[derive(Debug)]
pub(super) struct Dispatcher {
    runtime: Arc<dyn ContainerRuntime>,
    /// The task's own inbox.
    tx: mpsc::Sender<Msg>,
}

impl Dispatcher {
    pub(super) fn new(runtime: Arc<dyn ContainerRuntime>, tx: mpsc::Sender<Msg>) -> Self {
        Self { runtime, tx }
    }

    pub(super) fn runtime(&self) -> Arc<dyn ContainerRuntime> {
        self.runtime.clone()
    }

    pub(super) fn inbox(&self) -> mpsc::Sender<Msg> {
        self.tx.clone()
    }

    /// Hands `order` to the executor. Its turn comes back as [`Msg::Turn`], its outcome as
    /// [`Msg::Ended`] (none if the core dropped it at its turn). Returns what fires once the
    /// turn was answered (the order sent or dropped).
    pub(super) fn order(
        &self,
        shared: &Shared,
        info: &ContainerInfo,
        order: Order,
    ) -> oneshot::Receiver<()> {
        let reaction = Instant::now().saturating_duration_since(order.detected);
        shared
            .metrics
            .event_to_action
            .observe(reaction.as_secs_f64());
        let verb = match (shared.dry_run, &order.verb) {
            (true, _) => "would restart or end (dry run)",
            (false, Verb::Restart) => "restarting",
            (false, Verb::Recreate { .. }) => "recreating",
            (false, Verb::End(EndMode::Stop)) => "stopping the Swarm task for Swarm to replace",
            (false, Verb::End(EndMode::Kill)) => "killing the Swarm task for Swarm to replace",
            (false, Verb::Stop) => {
                "stopping the quarantined container (selfheal.on-quarantine=stop)"
            }
        };
        tracing::warn!(container = %info.name, trigger = %order.trigger, attempt = order.attempt,
            stop_timeout = order.stop_timeout, reaction = ?reaction, "{verb}");
        let runtime = self.runtime.clone();
        let id = info.id.clone();
        let tx = self.tx.clone();
        let (sent_tx, sent_rx) = oneshot::channel();
        tokio::spawn(async move {
            let asks = tx.clone();
            // Queued behind the container's events so far: the ones after the answer are the
            // order's own.
            let turn: Turn = Box::new(move |running| {
                Box::pin(async move {
                    let (reply, verdict) = oneshot::channel();
                    let _ = asks.send(Msg::Turn { running, reply }).await;
                    let verdict = verdict.await.unwrap_or(Verdict::Drop);
                    let _ = sent_tx.send(());
                    verdict
                })
            });
            if let Some(outcome) = runtime.execute(&id, &order, turn).await {
                let _ = tx.send(Msg::Ended(outcome)).await;
            }
        });
        sent_rx
    }

    /// Queues a message to the task without waiting on its own inbox.
    pub(super) fn send_self(&self, msg: Msg) {
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.tx.try_send(msg) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
    }

    /// Inspects the container off the task's path; `then` turns what it shows into a message.
    pub(super) fn look(&self, id: &str, then: fn(ContainerInfo) -> Option<Msg>) {
        let runtime = self.runtime.clone();
        let id = id.to_string();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Some(msg) = runtime.inspect(&id).await.and_then(then) {
                let _ = tx.send(msg).await;
            }
        });
    }
}
