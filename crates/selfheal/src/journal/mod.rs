//! The incident journal: `incidents.jsonl` under `--state-dir`, and the in-memory view of it
//! that the API, the CLI and the container tasks read.
//!
//! "Append-only" means: every change of an incident appends a full copy of that incident as
//! one JSON line; reading folds the lines by id (last copy wins). The only other write is
//! compaction ([`compaction`]), which keeps the newest [`MAX_KEPT`] incidents and every open
//! one, whatever its age.
//!
//! Memory does not grow with the file: opening streams it line by line ([`parse`]) and keeps,
//! per kept incident, only its keys and where its latest copy lies ([`index`]); whole
//! incidents only for the open ones, the newest [`HOT_CLOSED`] closed ones and those not yet
//! written. Older pages are read back from the file on demand.
//!
//! One writer thread owns the file ([`writer`]). [`IncidentJournal::record`] only updates the
//! in-memory view and marks the id dirty; the writer appends the latest copy of each dirty
//! incident and fsyncs. If a write fails (a full disk), the incident stays in memory marked
//! `unpersisted`, the failure is counted, and the writer retries with backoff until it
//! succeeds.

mod compaction;
mod ids;
mod index;
mod parse;
mod record;
#[cfg(test)]
mod tests;
mod writer;

pub use parse::{Recovery, SkipReason, SkippedLine, EXCERPT_BYTES, MAX_ID, MAX_LINE};
pub use record::{Incident, IncidentOutcome, Step, Timestamp};

use compaction::{compact, open_for_append, tmp_path, worth_compacting, Limits};
use ids::IdAllocator;
use index::Index;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use writer::{Core, State, Writer};

/// Which incidents a [`IncidentJournal::page`] holds: those detected at or after `since`, of
/// `container` (see [`Incident::matches`]), with an id below `before`, at most `limit` of them.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery<'a> {
    pub since: Option<SystemTime>,
    pub container: Option<&'a str>,
    /// At least 1 (0 is taken as 1); the API clamps what it accepts.
    pub limit: usize,
    /// The cursor: only incidents with an id below it (the previous page's `next_before`).
    pub before: Option<u64>,
}

impl<'a> IncidentQuery<'a> {
    /// Every match at once: [`IncidentJournal::list`].
    pub fn everything(since: Option<SystemTime>, container: Option<&'a str>) -> Self {
        Self {
            since,
            container,
            limit: usize::MAX,
            before: None,
        }
    }
}

/// One page of incidents, newest first by id, without their evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    /// The `before` of the next page; `None` when this page holds the last match.
    pub next_before: Option<u64>,
}

/// The cause is the `source()`, not part of the message: the CLI prints the chain
/// (`{:#}`), so a message that repeated it printed it twice.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("incident journal {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The journal's own metrics; the daemon passes handles registered in its registry, tests and
/// the CLI pass `JournalMetrics::default()`.
#[derive(Debug, Clone, Default)]
pub struct JournalMetrics {
    /// Failed appends, opens and compactions of the journal file.
    pub write_failures: Counter,
    /// Incidents whose latest copy is only in memory because a write failed.
    pub unpersisted: Gauge,
}

/// Incidents kept by compaction, besides every open one.
pub const MAX_KEPT: usize = 10_000;
/// Lines appended beyond the compacted size before the file is compacted again.
const COMPACT_SLACK: usize = 1_000;
/// Closed incidents held whole in memory besides the open ones: the API's and the status
/// page's first pages are served without reading the file. With evidence (at most
/// [`crate::evidence::MAX_EVIDENCE_BYTES`] each) this bounds what the journal holds whole.
pub const HOT_CLOSED: usize = 1_000;
/// How long dropping the last handle waits for the writer to drain.
const DRAIN_ON_DROP: Duration = Duration::from_secs(5);

const LIMITS: Limits = Limits {
    max_kept: MAX_KEPT,
    compact_slack: COMPACT_SLACK,
    hot_closed: HOT_CLOSED,
};

fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join("incidents.jsonl")
}

/// Streams `file` into an index of the incidents the limits keep, pruning as it goes, so
/// memory follows the limits, not the file.
fn load(
    file: Arc<File>,
    report: &mut Recovery,
    limits: Limits,
) -> std::io::Result<(Index, parse::Scanned)> {
    let mut index = Index::new(Some(file.clone()), limits.hot_closed);
    let floor = 2 * limits.max_kept.max(1_000);
    let mut prune_at = floor;
    let scanned = parse::scan_file(&file, report, |line, span| {
        index.insert_on_file(&parse::parse_keys(line)?, span);
        // Pruning early gives the same result as pruning at the end: the cut only rises as
        // ids are added, and a later copy of a dropped id is inserted (and judged) again.
        if index.len() > prune_at {
            index.prune(limits.max_kept);
            prune_at = floor.max(2 * index.len());
        }
        Ok(())
    })?;
    index.prune(limits.max_kept);
    Ok((index, scanned))
}

/// The incident journal. Share it behind an `Arc`; dropping the last handle drains the writer
/// (up to a few seconds) and stops it.
#[derive(Debug)]
pub struct IncidentJournal {
    core: Arc<Core>,
}

impl IncidentJournal {
    /// Reads the journal (tolerantly, as a stream), cuts a torn tail, compacts when old copies
    /// dominate, and starts the writer thread.
    pub fn open(
        state_dir: &Path,
        metrics: JournalMetrics,
    ) -> Result<(Self, Recovery), JournalError> {
        Self::open_with(state_dir, metrics, LIMITS)
    }

    fn open_with(
        state_dir: &Path,
        metrics: JournalMetrics,
        limits: Limits,
    ) -> Result<(Self, Recovery), JournalError> {
        let path = journal_path(state_dir);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        // A leftover of a compaction that crashed before its rename.
        let _ = std::fs::remove_file(tmp_path(&path));
        let file = Arc::new(open_for_append(&path).map_err(io)?);
        let mut recovery = Recovery::default();
        let (mut index, scanned) = load(file.clone(), &mut recovery, limits).map_err(io)?;
        if recovery.torn_tail_bytes > 0 {
            // Never glue the next record to half of one.
            file.set_len(scanned.complete_len).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let mut lines = scanned.lines;
        let mut file = file;
        if worth_compacting(lines, index.len(), limits) {
            match compact(&path, Some(&file), index.sources()) {
                Ok(c) => {
                    if let Some(e) = c.dir_sync_failed {
                        metrics.write_failures.inc();
                        tracing::warn!(error = %e, path = %path.display(),
                            "compacted the incident journal but could not sync its directory");
                    }
                    index.set_file(c.file.clone(), Some(&c.spans));
                    file = c.file;
                    recovery.compacted = true;
                    lines = index.len();
                }
                Err(e) => {
                    // Nothing is lost: the old file is whole. Start anyway (a full disk).
                    metrics.write_failures.inc();
                    tracing::warn!(error = %e, path = %path.display(),
                        "could not compact the incident journal; it stays as it was");
                }
            }
        }
        index.load_hot().map_err(io)?;
        let ids = IdAllocator::after(index.max_id());
        let core = Arc::new(Core {
            path: path.clone(),
            state: Mutex::new(State {
                index,
                dirty: BTreeSet::new(),
                writing: false,
                unpersisted: 0,
                ids,
                nudge: false,
                closing: false,
                writer_exited: false,
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            metrics,
            limits,
        });
        let writer = Writer {
            core: core.clone(),
            file: Some(file),
            lines,
            compacted_lines: lines,
        };
        std::thread::Builder::new()
            .name("selfheal-journal".into())
            .spawn(move || writer.run())
            .map_err(|source| JournalError::Io { path, source })?;
        Ok((Self { core }, recovery))
    }

    pub fn path(&self) -> &Path {
        &self.core.path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.core.lock()
    }

    /// A new incident id; see [`IdAllocator`] for the rule.
    pub fn next_id(&self) -> u64 {
        let mut st = self.lock();
        let State { ids, index, .. } = &mut *st;
        ids.allocate(|id| index.contains(id))
    }

    /// Records the incident's new version: readers see it at once; the writer thread appends
    /// it soon after. Never waits on the disk, so it is fine to call from async code.
    ///
    /// Back-pressure: none is needed. Pending work is a set of dirty ids, not a queue of
    /// records, so memory is bounded by the number of incidents and a burst of changes to
    /// one incident costs one write of its latest copy. A disk that is slow or full delays
    /// persistence (and is counted), never the caller.
    pub fn record(&self, mut incident: Incident) {
        let mut st = self.lock();
        let id = incident.id;
        incident.unpersisted = st.index.whole(id).is_some_and(|i| i.unpersisted);
        st.index.insert_whole(incident);
        st.dirty.insert(id);
        drop(st);
        self.core.wake.notify_one();
    }

    /// Waits until everything recorded so far is on disk, asking the writer to retry a failed
    /// write now instead of after its backoff. False if that did not happen within `timeout`
    /// (a write keeps failing, or the writer has stopped).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        st.nudge = true;
        self.core.wake.notify_one();
        loop {
            if st.dirty.is_empty() && !st.writing {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if st.writer_exited || left.is_zero() {
                return false;
            }
            st = self
                .core
                .idle
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Flushes (see [`Self::flush`]) and stops the writer after one last attempt at whatever is
    /// still dirty. Later records are kept in memory only. True if nothing was left unwritten.
    pub fn close(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let flushed = self.flush(timeout);
        let mut st = self.lock();
        st.closing = true;
        self.core.wake.notify_one();
        while !st.writer_exited {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .core
                .idle
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        flushed || (st.dirty.is_empty() && !st.writing)
    }

    /// Every kept incident detected at or after `since` and of one container (name, or a
    /// prefix of its id), newest first by id, without evidence ([`Self::get`] has it). Reads
    /// older incidents from the file: prefer [`Self::page`] where the caller can page.
    pub fn list(&self, since: Option<SystemTime>, container: Option<&str>) -> Vec<Incident> {
        self.page(&IncidentQuery::everything(since, container))
            .incidents
    }

    /// One page of the incidents matching `q`, newest first by id. The id is the cursor: it
    /// never changes and is allocated increasing when an incident is opened (see
    /// [`IdAllocator`]), so a walk with `before = next_before` visits every match once, even
    /// while incidents are added or updated. Only the page's older incidents are read from the
    /// file, after the lock is released.
    pub fn page(&self, q: &IncidentQuery<'_>) -> IncidentPage {
        let taken = self.lock().index.page(q);
        taken.into_page()
    }

    /// One incident by id, with its evidence.
    pub fn get(&self, id: u64) -> Option<Incident> {
        let taken = self.lock().index.lookup(id);
        taken.into_one()
    }

    /// Every open incident, whole (they are always in memory).
    pub fn open_incidents(&self) -> Vec<Incident> {
        self.lock().index.open_incidents()
    }
}

impl Drop for IncidentJournal {
    fn drop(&mut self) {
        if !self.close(DRAIN_ON_DROP) {
            tracing::error!(path = %self.core.path.display(),
                "incident journal closed with incidents not written to disk");
        }
    }
}

/// A journal opened for reading only (the `selfheal incidents` command): the same streaming,
/// tolerant parser and the same bound on memory as the daemon, and the incidents the daemon
/// keeps. The file is left as it is.
#[derive(Debug)]
pub struct JournalReader {
    index: Index,
}

impl JournalReader {
    /// See [`IncidentJournal::list`].
    pub fn list(&self, since: Option<SystemTime>, container: Option<&str>) -> Vec<Incident> {
        self.page(&IncidentQuery::everything(since, container))
            .incidents
    }

    /// See [`IncidentJournal::page`].
    pub fn page(&self, q: &IncidentQuery<'_>) -> IncidentPage {
        self.index.page(q).into_page()
    }

    /// See [`IncidentJournal::get`].
    pub fn get(&self, id: u64) -> Option<Incident> {
        self.index.lookup(id).into_one()
    }
}

/// Opens a journal for reading only. Fails only when the file cannot be read.
pub fn read_only(state_dir: &Path) -> Result<(JournalReader, Recovery), JournalError> {
    let path = journal_path(state_dir);
    let mut recovery = Recovery::default();
    let (index, _) = File::open(&path)
        .and_then(|f| load(Arc::new(f), &mut recovery, LIMITS))
        .map_err(|source| JournalError::Io { path, source })?;
    Ok((JournalReader { index }, recovery))
}
