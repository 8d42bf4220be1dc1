//! Incident ids: allocated increasing, so the id orders incidents by when they were opened and
//! serves as the paging cursor.

use super::parse::MAX_ID;

/// Hands out ids: max + 1 up to [`MAX_ID`]. Past the top (possible only after a record claimed
/// an id near it) it hands out the smallest ids not in use, ascending, so an id is never
/// reused while its incident is kept and the counter never wraps. Only past the top does a
/// newer incident get a smaller id than an older one.
#[derive(Debug)]
pub(super) struct IdAllocator {
    next: Option<u64>,
    scan_from: u64,
}

impl IdAllocator {
    pub(super) fn after(max: Option<u64>) -> Self {
        Self {
            next: max.map_or(Some(1), |m| m.checked_add(1).filter(|n| *n <= MAX_ID)),
            scan_from: 1,
        }
    }

    pub(super) fn allocate(&mut self, in_use: impl Fn(u64) -> bool) -> u64 {
        if let Some(id) = self.next {
            self.next = id.checked_add(1).filter(|n| *n <= MAX_ID);
            return id;
        }
        let free = |from: u64| (from..=MAX_ID).find(|id| !in_use(*id));
        // The journal keeps far fewer than 2^53 incidents, so a free id always exists.
        let id = free(self.scan_from).or_else(|| free(1)).unwrap_or(MAX_ID);
        self.scan_from = id.saturating_add(1);
        id
    }
}
