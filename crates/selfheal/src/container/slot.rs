//! A Swarm task's slot, as its container task sees it: what it asks the other nodes'
//! watchdogs when it starts (the slot's spending elsewhere, the service's restart condition),
//! and the hand-over of its slot when its container ends (see [`crate::swarm`]).

use super::{Context, Msg};
use crate::journal::Incident;
use crate::swarm::{Handed, SwarmBinding};
use selfheal_core::{Handover, RestartCondition, SlotCarry, SwarmSlot};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Starts the questions to the peers a new task needs answered; `taken_over`: it took its
/// slot over from a task that ended on this node (nothing to ask about the slot then).
pub(super) fn ask_peers(
    ctx: &Context,
    binding: &SwarmBinding,
    taken_over: bool,
    tx: &mpsc::Sender<Msg>,
    cancel: &CancellationToken,
) {
    let Some(peers) = &ctx.peers else { return };
    // A replicated slot's last task may have ended on another node.
    if !taken_over && matches!(binding.task.slot, SwarmSlot::Replica(_)) {
        let (peers, slot, shared) = (peers.clone(), binding.task.slot_key(), ctx.shared.clone());
        let (tx, cancel) = (tx.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Some(s) =
                crate::swarm::slot_spent_elsewhere(&peers, &slot, &shared, &cancel).await
            {
                let msg = Msg::AdoptSlot {
                    sent: s.sent,
                    recent: s.recent,
                    last: s.last,
                };
                let _ = tx.send(msg).await;
            }
        });
    }
    if binding.condition == RestartCondition::Unknown {
        let (peers, service) = (peers.clone(), binding.task.service_id.clone());
        let (tx, cancel) = (tx.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Some(c) = crate::swarm::condition_from_peers(&peers, &service, &cancel).await {
                let _ = tx.send(Msg::RestartCondition(c)).await;
            }
        });
    }
}

/// The task's container ended: its slot, with the open incident's record, waits in the
/// ledger for the task Swarm starts next.
pub(super) fn hand_over(
    ctx: &Context,
    binding: &SwarmBinding,
    carry: SlotCarry,
    incident: Option<Incident>,
    (container, muted): (&str, bool),
    now: Instant,
) {
    tracing::info!(container, service = %binding.task.service_name,
        incident = ?incident.as_ref().map(|i| i.id),
        "Swarm task ended; its slot goes to the task Swarm starts next");
    let handover = Handover {
        slot_key: binding.task.slot_key(),
        ended_task: binding.task.task_id.clone(),
        handed_at: now,
        first_failure: carry.incident.as_ref().map(|t| t.first_failure),
    };
    let handed = Handed {
        carry,
        incident,
        handover,
        container: container.to_string(),
        muted,
    };
    crate::swarm::keep_for_replacement(&ctx.slots, &ctx.shared, &ctx.notifier, handed, now);
}
