//! The slots whose task ended on this node and whose replacement has not been seen yet: what
//! each ended task's supervisor handed over, for the supervisor of the task that replaces it.

use crate::journal::Incident;
use selfheal_core::{Handover, SlotCarry};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::Instant;

/// What an ended task left for its slot: the core's carry, the open incident's record, and
/// the hand-over the core follows until a replacement takes the slot.
#[derive(Debug)]
pub struct Handed {
    pub carry: SlotCarry,
    pub incident: Option<Incident>,
    pub handover: Handover,
    /// The ended task's container name (the metrics' `container` label if the incident closes
    /// here, its replacement being elsewhere).
    pub container: String,
    /// `selfheal.notify=false` on the ended task.
    pub muted: bool,
}

/// At most this many slots wait at once; past it the oldest is given up (its incident closed
/// `abandoned`), so a node whose tasks keep moving away cannot grow the ledger without bound.
pub const MAX_HANDED: usize = 1024;

/// Slots whose task ended and whose replacement has not been seen yet, by slot key.
#[derive(Debug, Default)]
pub struct SlotLedger {
    slots: Mutex<HashMap<String, Handed>>,
}

impl SlotLedger {
    /// Keeps `handed` for its slot; returns what had to make room (a slot handed over again
    /// before it was taken, or the oldest slot when the ledger is full), for the caller to
    /// close.
    pub fn put(&self, slot: String, handed: Handed) -> Vec<Handed> {
        let Ok(mut m) = self.slots.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Handed> = m.insert(slot, handed).into_iter().collect();
        while m.len() > MAX_HANDED {
            let oldest = m
                .iter()
                .min_by_key(|(_, h)| h.handover.handed_at)
                .map(|(k, _)| k.clone());
            match oldest.and_then(|k| m.remove(&k)) {
                Some(h) => out.push(h),
                None => break,
            }
        }
        out
    }

    pub fn take(&self, slot: &str) -> Option<Handed> {
        self.slots.lock().ok()?.remove(slot)
    }

    /// Takes the slot only if it still holds `handover` (not a later hand-over of the same
    /// slot, made while this one was being decided).
    pub fn take_if_still(&self, handover: &Handover) -> Option<Handed> {
        let mut m = self.slots.lock().ok()?;
        let same = m.get(&handover.slot_key).is_some_and(|h| {
            h.handover.ended_task == handover.ended_task
                && h.handover.handed_at == handover.handed_at
        });
        if same {
            m.remove(&handover.slot_key)
        } else {
            None
        }
    }

    /// What the slot spent, for its replacement on another node: the budget's send times,
    /// the backoff count and the last end's send time.
    pub fn spent(&self, slot: &str) -> Option<(Vec<Instant>, u32, Option<Instant>)> {
        let m = self.slots.lock().ok()?;
        let c = &m.get(slot)?.carry;
        Some((c.budget.sent().collect(), c.recent, c.last))
    }

    /// The hand-overs waiting now.
    pub fn waiting(&self) -> Vec<Handover> {
        self.slots
            .lock()
            .map(|m| m.values().map(|h| h.handover.clone()).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.slots.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
