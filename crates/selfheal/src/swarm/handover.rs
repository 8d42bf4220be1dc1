//! A slot whose task ended here, from the hand-over to its close: kept in the ledger for the
//! replacement, followed through the peers while the replacement is elsewhere, and its
//! incident closed (through [`crate::incident::close`]) when the core says how it ended.

use super::{Handed, Peers, SlotLedger};
use crate::incident::Closing;
use crate::journal::Incident;
use crate::shared::Shared;
use selfheal_core::{Followed, PeerTask};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Keeps `handed` in the ledger for the task that replaces it; what it displaces (the same slot
/// handed over again before it was taken, or the oldest slot of a full ledger) is given up.
pub fn keep_for_replacement(
    ledger: &SlotLedger,
    shared: &Shared,
    notifier: &crate::notify::Notifier,
    handed: Handed,
    now: Instant,
) {
    for displaced in ledger.put(handed.handover.slot_key.clone(), handed) {
        close_handed(shared, notifier, displaced, Followed::GaveUp, now);
    }
}

/// How often the hand-overs are followed through the peers.
pub(super) const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Follows the slots handed over on this node whose replacement has not started here: asks
/// the peers where each slot's tasks run and lets the core decide ([`Handover::follow`]). A
/// replacement healthy on another node closes the incident `recovered`, with the time to
/// recover to the moment that node's watchdog saw it healthy (the nodes' clocks are assumed
/// in step, as Swarm's certificates already require); a slot nobody took within `wait` is
/// given up and its incident closed `abandoned`. Without peers, only the wait applies.
pub async fn follow_handovers(
    ledger: Arc<SlotLedger>,
    shared: Arc<Shared>,
    notifier: crate::notify::Notifier,
    peers: Option<Peers>,
    wait: Duration,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let waiting = ledger.waiting();
        if waiting.is_empty() {
            continue;
        }
        let reports: Vec<PeerTask> = match &peers {
            Some(p) if waiting.iter().any(|h| h.first_failure.is_some()) => p
                .tasks()
                .await
                .into_iter()
                .map(|v| PeerTask {
                    slot_key: v.slot,
                    task_id: v.task,
                    healthy_since: v
                        .healthy_since
                        .map(|t| shared.clock.instant(t.system_time())),
                })
                .collect(),
            _ => Vec::new(),
        };
        let now = Instant::now();
        for h in waiting {
            let verdict = h.follow(&reports, now, wait);
            if verdict == Followed::Wait {
                continue;
            }
            // Taken here, or by a replacement that started here meanwhile: one of the two.
            if let Some(handed) = ledger.take_if_still(&h) {
                close_handed(&shared, &notifier, handed, verdict, now);
            }
        }
    }
}

/// Closes the incident of a slot whose replacement is elsewhere (`RecoveredElsewhere`) or
/// never came (`GaveUp`, or pushed out of a full ledger: pass `Followed::GaveUp`).
pub fn close_handed(
    shared: &Shared,
    notifier: &crate::notify::Notifier,
    handed: Handed,
    verdict: Followed,
    now: Instant,
) {
    let Some(held) = handed.incident else {
        return;
    };
    // The journal's copy: evidence read back after the hand-over was added there.
    let mut incident = shared
        .journal
        .get(held.id)
        .filter(Incident::is_open)
        .unwrap_or(held);
    let closing = match verdict {
        Followed::RecoveredElsewhere { time_to_recover } => {
            tracing::info!(container = %handed.container, incident = incident.id,
                "Swarm task's replacement healthy on another node");
            Closing::Recovered {
                time_to_recover,
                at: handed
                    .handover
                    .first_failure
                    .map_or(now, |f| f + time_to_recover),
            }
        }
        Followed::GaveUp | Followed::Wait => {
            tracing::warn!(container = %handed.container, incident = incident.id,
                "no replacement seen for the ended Swarm task's slot");
            Closing::Abandoned {
                why: Some(
                    "Swarm's replacement for this task's slot was not seen healthy on this \
                     node or by any peer"
                        .into(),
                ),
            }
        }
    };
    crate::incident::close(shared, &mut incident, &closing, &handed.container);
    if let (
        Closing::Recovered {
            time_to_recover, ..
        },
        false,
    ) = (&closing, handed.muted)
    {
        notifier.send(crate::incident::notice::notification(
            selfheal_core::Notice::Recovered {
                time_to_recover: *time_to_recover,
                faults: 1,
            },
            &incident,
            &selfheal_core::Ladder::default(),
        ));
    }
}
