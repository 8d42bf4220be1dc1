//! What the journal keeps in memory. For every kept incident: the keys a page is chosen by and
//! where its latest copy lies in the file (about 200 bytes). The whole incident (up to ~40 KiB
//! with its evidence) only where it is needed: open ones, the newest [`super::HOT_CLOSED`] closed
//! ones, and any whose latest copy is not written yet. Older ones are read back from the file
//! when a page or [`Index::lookup`] asks for them.

use super::parse::{self, Span};
use super::record::{matches_keys, Incident, IncidentOutcome};
use super::{IncidentPage, IncidentQuery};
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug)]
struct Kept {
    detected: SystemTime,
    container: Box<str>,
    container_id: Box<str>,
    open: bool,
    /// The latest copy in the file; `None` until first written.
    at: Option<Span>,
    /// Never `None` while `at` is `None`, nor while the incident is open.
    whole: Option<Box<Incident>>,
}

impl Kept {
    fn of(i: &Incident, at: Option<Span>) -> Self {
        Self {
            detected: i.detected.system_time(),
            container: i.container.as_str().into(),
            container_id: i.container_id.as_str().into(),
            open: i.is_open(),
            at,
            whole: None,
        }
    }
}

/// A copy of a kept incident as a reader takes it under the journal's lock: whole, or where to
/// read it (done after the lock is released).
#[derive(Debug)]
pub(super) enum Copy {
    Whole(Box<Incident>),
    OnFile(u64, Span),
}

/// Copies taken under the lock, and the file they point into.
#[derive(Debug)]
pub(super) struct Taken {
    copies: Vec<Copy>,
    file: Option<Arc<File>>,
    /// A page's cursor.
    next_before: Option<u64>,
}

impl Taken {
    /// The page, the older incidents read from the file.
    pub(super) fn into_page(self) -> IncidentPage {
        IncidentPage {
            next_before: self.next_before,
            incidents: self.resolve(false),
        }
    }

    /// The one incident looked up, with its evidence.
    pub(super) fn into_one(self) -> Option<Incident> {
        self.resolve(true).pop()
    }

    /// Reads the copies that are on file. One that cannot be read any more (the file was
    /// changed behind the journal's back) is left out and logged.
    fn resolve(self, evidence: bool) -> Vec<Incident> {
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(self.copies.len());
        for c in self.copies {
            let read = match c {
                Copy::Whole(i) => Some(*i),
                Copy::OnFile(id, span) => {
                    let read = self
                        .file
                        .as_deref()
                        .map(|f| parse::read_at(f, span, &mut buf));
                    match read {
                        Some(Ok(Some(i))) if i.id == id => Some(i),
                        other => {
                            tracing::warn!(id, ?span, error = ?other.and_then(Result::err),
                                "incident no longer readable where the journal wrote it");
                            None
                        }
                    }
                }
            };
            out.extend(read.map(|i| if evidence { i } else { i.without_evidence() }));
        }
        out
    }
}

#[derive(Debug)]
pub(super) struct Index {
    kept: BTreeMap<u64, Kept>,
    /// The file the spans point into, shared with the writer (positioned reads).
    file: Option<Arc<File>>,
    /// Closed incidents held whole besides the open ones ([`super::HOT_CLOSED`]).
    hot_closed: usize,
    /// The most incidents this index has held at once (tests check the bound).
    peak: usize,
}

impl Index {
    pub(super) fn new(file: Option<Arc<File>>, hot_closed: usize) -> Self {
        Self {
            kept: BTreeMap::new(),
            file,
            hot_closed,
            peak: 0,
        }
    }

    fn insert(&mut self, id: u64, kept: Kept) {
        self.kept.insert(id, kept);
        self.peak = self.peak.max(self.kept.len());
    }

    #[cfg(test)]
    pub(super) fn peak(&self) -> usize {
        self.peak
    }

    pub(super) fn len(&self) -> usize {
        self.kept.len()
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        self.kept.contains_key(&id)
    }

    pub(super) fn max_id(&self) -> Option<u64> {
        self.kept.keys().next_back().copied()
    }

    pub(super) fn file(&self) -> Option<&Arc<File>> {
        self.file.as_ref()
    }

    /// Points the spans at another file: a reopened or compacted journal. `spans` gives the new
    /// place of every kept incident that has one.
    pub(super) fn set_file(&mut self, file: Arc<File>, spans: Option<&[(u64, Span)]>) {
        if let Some(spans) = spans {
            for (id, span) in spans {
                if let Some(k) = self.kept.get_mut(id) {
                    k.at = Some(*span);
                }
            }
        }
        self.file = Some(file);
    }

    /// A copy read from the file: only its keys and place are kept (see [`Self::load_hot`]).
    pub(super) fn insert_on_file(&mut self, keys: &parse::Keys<'_>, span: Span) {
        let kept = Kept {
            detected: keys.detected.system_time(),
            container: keys.container.as_ref().into(),
            container_id: keys.container_id.as_ref().into(),
            open: keys.outcome == IncidentOutcome::Open,
            at: Some(span),
            whole: None,
        };
        self.insert(keys.id, kept);
    }

    /// A new latest copy, not written yet.
    pub(super) fn insert_whole(&mut self, i: Incident) {
        let at = self.kept.get(&i.id).and_then(|k| k.at);
        let kept = Kept::of(&i, at);
        self.insert(
            i.id,
            Kept {
                whole: Some(Box::new(i)),
                ..kept
            },
        );
    }

    /// The latest copy of `id` is now on file at `span`.
    pub(super) fn written(&mut self, id: u64, span: Span) {
        if let Some(k) = self.kept.get_mut(&id) {
            k.at = Some(span);
        }
    }

    pub(super) fn whole(&self, id: u64) -> Option<&Incident> {
        self.kept.get(&id).and_then(|k| k.whole.as_deref())
    }

    pub(super) fn whole_mut(&mut self, id: u64) -> Option<&mut Incident> {
        self.kept.get_mut(&id).and_then(|k| k.whole.as_deref_mut())
    }

    pub(super) fn wholes(&self) -> impl Iterator<Item = &Incident> {
        self.kept.values().filter_map(|k| k.whole.as_deref())
    }

    pub(super) fn open_incidents(&self) -> Vec<Incident> {
        self.kept
            .values()
            .filter(|k| k.open)
            .filter_map(|k| k.whole.as_deref().cloned())
            .collect()
    }

    /// Drops all but the newest `max_kept` incidents, keeping every open one. Returns the ids
    /// dropped.
    pub(super) fn prune(&mut self, max_kept: usize) -> Vec<u64> {
        let Some(&cut) = self.kept.keys().rev().nth(max_kept) else {
            return Vec::new();
        };
        let dropped: Vec<u64> = self
            .kept
            .range(..=cut)
            .filter(|(_, k)| !k.open)
            .map(|(id, _)| *id)
            .collect();
        for id in &dropped {
            self.kept.remove(id);
        }
        dropped
    }

    /// Lets go of the whole copies that are not needed in memory: closed, older than the
    /// newest `hot_closed` closed ones, on file and not `pinned` (waiting to be written).
    pub(super) fn evict(&mut self, pinned: impl Fn(u64) -> bool) {
        let closed = self.kept.iter_mut().rev().filter(|(_, k)| !k.open);
        for (id, k) in closed.skip(self.hot_closed) {
            if k.at.is_some() && !pinned(*id) {
                k.whole = None;
            }
        }
    }

    /// Reads back the whole copies that must be in memory (after a scan kept only keys).
    pub(super) fn load_hot(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        let mut closed = 0usize;
        for (id, k) in self.kept.iter_mut().rev() {
            if !k.open {
                closed += 1;
            }
            if k.whole.is_some() || (!k.open && closed > self.hot_closed) {
                continue;
            }
            let Some(span) = k.at else { continue };
            match parse::read_at(&file, span, &mut buf)? {
                Some(i) if i.id == *id => k.whole = Some(Box::new(i)),
                _ => tracing::warn!(id, "incident no longer readable where the scan found it"),
            }
        }
        Ok(())
    }

    /// The copies of one page (see [`super::IncidentJournal::page`]) and its cursor.
    pub(super) fn page(&self, q: &IncidentQuery<'_>) -> Taken {
        let mut matching = self
            .kept
            .range(..q.before.unwrap_or(u64::MAX))
            .rev()
            .filter(|(_, k)| matches_keys(&k.container, &k.container_id, k.detected, q))
            .filter_map(|(id, k)| Self::copy(*id, k, false));
        let copies: Vec<Copy> = matching.by_ref().take(q.limit.max(1)).collect();
        let next_before = match (matching.next(), copies.last()) {
            (Some(_), Some(Copy::Whole(i))) => Some(i.id),
            (Some(_), Some(Copy::OnFile(id, _))) => Some(*id),
            _ => None,
        };
        Taken {
            copies,
            file: self.file.clone(),
            next_before,
        }
    }

    /// One incident, with its evidence.
    pub(super) fn lookup(&self, id: u64) -> Taken {
        Taken {
            copies: self
                .kept
                .get(&id)
                .and_then(|k| Self::copy(id, k, true))
                .into_iter()
                .collect(),
            file: self.file.clone(),
            next_before: None,
        }
    }

    fn copy(id: u64, k: &Kept, evidence: bool) -> Option<Copy> {
        match (&k.whole, k.at) {
            (Some(i), _) if evidence => Some(Copy::Whole(i.clone())),
            (Some(i), _) => Some(Copy::Whole(Box::new(i.without_evidence()))),
            (None, Some(span)) => Some(Copy::OnFile(id, span)),
            (None, None) => None,
        }
    }

    /// What a compaction writes, in id order: the whole copy where there is one (it may be
    /// newer than the file's), else the place of the latest copy in [`Self::file`].
    pub(super) fn sources(&self) -> Vec<(u64, Copy)> {
        self.kept
            .iter()
            .filter_map(|(id, k)| Some((*id, Self::copy(*id, k, true)?)))
            .collect()
    }
}
