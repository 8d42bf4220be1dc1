//! The one writer thread: the only code that touches the file after `open`. Callers only
//! update the in-memory state and mark ids dirty; the writer appends the latest copy of each
//! dirty incident, fsyncs, records where each copy lies, lets go of whole copies no longer
//! needed in memory and compacts when old copies dominate. Its work per batch is bounded by
//! the number of dirty incidents, never by the queue of changes.

use super::compaction::{self, compact, open_for_append, worth_compacting, Limits};
use super::ids::IdAllocator;
use super::index::Index;
use super::parse::Span;
use super::record::{write_record, Incident};
use super::JournalMetrics;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Shared between the handles and the writer thread.
#[derive(Debug)]
pub(super) struct Core {
    pub path: PathBuf,
    pub state: Mutex<State>,
    /// Wakes the writer: something is dirty, a flush asks for a retry now, or closing.
    pub wake: Condvar,
    /// Wakes flushers and closers: a batch finished or the writer exited.
    pub idle: Condvar,
    pub metrics: JournalMetrics,
    pub limits: Limits,
}

#[derive(Debug)]
pub(super) struct State {
    /// The readers' snapshot: every kept incident, the needed ones whole.
    pub index: Index,
    /// Ids whose latest copy is not on disk yet (always held whole).
    pub dirty: BTreeSet<u64>,
    /// The writer holds a batch taken from `dirty`.
    pub writing: bool,
    /// Incidents flagged `unpersisted`.
    pub unpersisted: usize,
    pub ids: IdAllocator,
    /// A flush asked the writer not to wait out its backoff.
    pub nudge: bool,
    pub closing: bool,
    pub writer_exited: bool,
}

impl Core {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_unpersisted(&self, st: &mut State, id: u64, flag: bool) {
        if let Some(i) = st.index.whole_mut(id) {
            if i.unpersisted != flag {
                i.unpersisted = flag;
                if flag {
                    st.unpersisted += 1;
                } else {
                    st.unpersisted -= 1;
                }
            }
        }
        self.publish_unpersisted(st);
    }

    fn publish_unpersisted(&self, st: &State) {
        self.metrics
            .unpersisted
            .set(i64::try_from(st.unpersisted).unwrap_or(i64::MAX));
    }
}

/// Lets go of whole copies no longer needed in memory (see [`Index::evict`]).
fn evict(st: &mut State) {
    let State { index, dirty, .. } = st;
    index.evict(|id| dirty.contains(&id));
}

pub(super) struct Writer {
    pub core: Arc<Core>,
    /// `None` after a failure: reopened (by path) before the next attempt.
    pub file: Option<Arc<File>>,
    pub lines: usize,
    pub compacted_lines: usize,
}

/// Marks the writer gone even if it panics, so flushers do not wait for it.
struct ExitGuard(Arc<Core>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.lock().writer_exited = true;
        self.0.idle.notify_all();
    }
}

impl Writer {
    pub(super) fn run(mut self) {
        let _exit = ExitGuard(self.core.clone());
        let mut backoff = RETRY_FIRST;
        let mut retry_at: Option<Instant> = None;
        let mut last_attempt_done = false;
        loop {
            let batch = {
                let mut st = self.core.lock();
                loop {
                    if st.closing && (st.dirty.is_empty() || last_attempt_done) {
                        return;
                    }
                    let now = Instant::now();
                    let due = st.nudge || st.closing || retry_at.is_none_or(|t| now >= t);
                    if !st.dirty.is_empty() && due {
                        break;
                    }
                    st = match retry_at.filter(|_| !st.dirty.is_empty()) {
                        Some(t) => {
                            self.core
                                .wake
                                .wait_timeout(st, t.saturating_duration_since(now))
                                .unwrap_or_else(|p| p.into_inner())
                                .0
                        }
                        None => self.core.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
                    };
                }
                st.nudge = false;
                st.writing = true;
                let ids = std::mem::take(&mut st.dirty);
                ids.iter()
                    .filter_map(|id| st.index.whole(*id).cloned())
                    .collect::<Vec<_>>()
            };
            let result = self.append(&batch);
            {
                let mut st = self.core.lock();
                match &result {
                    Ok(spans) => {
                        for (i, span) in batch.iter().zip(spans) {
                            st.index.written(i.id, *span);
                            self.core.set_unpersisted(&mut st, i.id, false);
                        }
                        evict(&mut st);
                        backoff = RETRY_FIRST;
                        retry_at = None;
                    }
                    Err(e) => {
                        self.core.metrics.write_failures.inc();
                        for i in &batch {
                            if st.index.contains(i.id) {
                                st.dirty.insert(i.id);
                                self.core.set_unpersisted(&mut st, i.id, true);
                            }
                        }
                        tracing::error!(error = %e, path = %self.core.path.display(),
                            unpersisted = st.unpersisted, retry_in = ?backoff,
                            "could not write the incident journal; incidents kept in memory");
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(RETRY_MAX);
                        // Closing: one attempt past the failure was all we could do.
                        last_attempt_done = st.closing;
                    }
                }
            }
            if result.is_ok() {
                self.lines += batch.len();
                self.maybe_compact();
            }
            // Only now: a flush that returns has its records appended and any compaction done.
            self.core.lock().writing = false;
            self.core.idle.notify_all();
        }
    }

    /// The file to append to, reopened by path after a failure (readers follow it).
    fn file(&mut self) -> std::io::Result<Arc<File>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let f = Arc::new(open_for_append(&self.core.path)?);
        self.core.lock().index.set_file(f.clone(), None);
        Ok(self.file.insert(f).clone())
    }

    /// Appends the batch and syncs it, returning where each copy lies; on failure cuts the
    /// file back to where it was, so no half record stays for the next one to be glued to.
    fn append(&mut self, batch: &[Incident]) -> std::io::Result<Vec<Span>> {
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut ends = Vec::with_capacity(batch.len());
        for i in batch {
            write_record(&mut buf, i)?;
            ends.push(buf.len());
        }
        let file = self.file()?;
        let before = file.metadata()?.len();
        let result = (&*file).write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = result {
            let _ = file.set_len(before);
            // Start from a fresh handle next time (the file may have been replaced).
            self.file = None;
            return Err(e);
        }
        let mut start = 0;
        Ok(ends
            .into_iter()
            .map(|end| {
                let span = Span {
                    offset: before + start as u64,
                    len: u32::try_from(end - start - 1).unwrap_or(u32::MAX),
                };
                start = end;
                span
            })
            .collect())
    }

    /// Compacts when the lines appended since the last compaction outgrow the bound.
    fn maybe_compact(&mut self) {
        let limits = self.core.limits;
        if !worth_compacting(self.lines, self.compacted_lines, limits) {
            return;
        }
        // The sources hold the latest copy of every dirty incident too: once it is on disk,
        // they need no append of their own.
        let (sources, old, covered) = {
            let mut st = self.core.lock();
            for id in st.index.prune(limits.max_kept) {
                st.dirty.remove(&id);
            }
            st.unpersisted = st.index.wholes().filter(|i| i.unpersisted).count();
            self.core.publish_unpersisted(&st);
            let covered = std::mem::take(&mut st.dirty);
            (st.index.sources(), st.index.file().cloned(), covered)
        };
        let kept = sources.len();
        let result = compact(&self.core.path, old.as_deref(), sources);
        let mut st = self.core.lock();
        for id in covered {
            if result.is_ok() {
                self.core.set_unpersisted(&mut st, id, false);
            } else if st.index.contains(id) {
                st.dirty.insert(id);
            }
        }
        match result {
            Ok(compaction::Compacted {
                file,
                spans,
                dir_sync_failed,
            }) => {
                st.index.set_file(file.clone(), Some(&spans));
                evict(&mut st);
                drop(st);
                self.file = Some(file);
                self.lines = kept;
                self.compacted_lines = kept;
                if let Some(e) = dir_sync_failed {
                    self.core.metrics.write_failures.inc();
                    tracing::error!(error = %e, path = %self.core.path.display(),
                        "compacted the incident journal but could not sync its directory");
                }
                tracing::info!(incidents = kept, "incident journal compacted");
            }
            Err(e) => {
                drop(st);
                self.core.metrics.write_failures.inc();
                // Try again after another bound's worth of appends, not on every one.
                self.compacted_lines = self.lines;
                tracing::error!(error = %e, path = %self.core.path.display(),
                    "could not compact the incident journal; it stays as it was");
            }
        }
    }
}
