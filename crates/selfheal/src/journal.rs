//! The incident journal: `incidents.jsonl` under `--state-dir`, and the in-memory view of it
//! that the API, the CLI and the container tasks read.
//!
//! "Append-only" means: every change of an incident appends a full copy of that incident as
//! one JSON line; reading folds the lines by id (last copy wins). The only other write is
//! compaction, which writes the latest copy of each kept incident to a new file, fsyncs it,
//! renames it over the journal and fsyncs the directory, so a crash leaves either the old or
//! the new file, never a mix. Compaction keeps the newest [`MAX_KEPT`] incidents and every open
//! one, whatever its age.
//!
//! One writer thread owns the file. [`IncidentJournal::record`] only updates the in-memory map
//! and marks the id dirty; the writer appends the latest copy of each dirty incident and fsyncs.
//! If a write fails (a full disk), the incident stays in memory marked `unpersisted`, the
//! failure is counted, and the writer retries with backoff until it succeeds.
//!
//! One tolerant parser serves the daemon ([`IncidentJournal::open`]) and the CLI
//! ([`read_only`]): a line that is not a readable record (not UTF-8, not JSON, an unknown
//! trigger or outcome, an id out of range, longer than [`MAX_LINE`], or a torn last line) is
//! skipped and reported with a short excerpt; it never stops the watchdog or the CLI.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use selfheal_core::{Outcome, Trigger};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How an incident stands or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentOutcome {
    Open,
    Recovered,
    Quarantined,
    Abandoned,
}

impl IncidentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Recovered => "recovered",
            Self::Quarantined => "quarantined",
            Self::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for IncidentOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`: the CLI's table aligns this column with a width.
        f.pad(self.as_str())
    }
}

impl From<Outcome> for IncidentOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Recovered => Self::Recovered,
            Outcome::Quarantined => Self::Quarantined,
            Outcome::Abandoned => Self::Abandoned,
        }
    }
}

/// One incident as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub container: String,
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
    pub trigger: Trigger,
    /// RFC 3339 wall-clock times.
    pub first_failure: String,
    pub detected: String,
    #[serde(default)]
    pub action_begun: Option<String>,
    /// When the latest restart was sent (a restart a crash of the watchdog interrupted is
    /// finished from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<String>,
    #[serde(default)]
    pub healthy_again: Option<String>,
    #[serde(default)]
    pub time_to_detect_seconds: Option<f64>,
    #[serde(default)]
    pub time_to_recover_seconds: Option<f64>,
    pub attempts: u32,
    pub outcome: IncidentOutcome,
    #[serde(default)]
    pub dry_run: bool,
    /// Trigger `dependency`: the parent whose new start this container was restarted to
    /// join, and the parent's incident that restarted it (none when a user or something
    /// else restarted the parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_incident: Option<u64>,
    /// Why the latest restart (or recreate) failed, as Docker or the executor said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Set by the journal, only in what it serves: the latest copy could not be written (the
    /// writer keeps retrying). Never written to the file; ignored in what callers record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpersisted: bool,
    /// What the container and its checks said around the fault ([`crate::evidence`]), at most
    /// about 32 KiB. Absent in records of older versions; evidence this version cannot read is
    /// dropped and the incident kept.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::evidence::tolerant"
    )]
    pub evidence: Option<Arc<crate::evidence::Evidence>>,
}

impl Incident {
    /// A copy without its evidence (cheap: the evidence is shared, not copied).
    pub fn without_evidence(&self) -> Incident {
        Incident {
            evidence: None,
            ..self.clone()
        }
    }

    pub fn is_open(&self) -> bool {
        self.outcome == IncidentOutcome::Open
    }

    /// Detected at or after `since` (RFC 3339 compared as time) and of `container` (its name,
    /// or a prefix of its id): the filter of the API and the CLI.
    pub fn matches(&self, since: Option<std::time::SystemTime>, container: Option<&str>) -> bool {
        container.is_none_or(|c| self.container == c || self.container_id.starts_with(c))
            && since
                .is_none_or(|s| humantime::parse_rfc3339_weak(&self.detected).is_ok_and(|d| d >= s))
    }
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
/// The longest line read as a record (without its newline). A record is a few KiB plus its
/// evidence (at most [`crate::evidence::MAX_EVIDENCE_BYTES`]); a longer line is skipped unread.
pub const MAX_LINE: usize = 1 << 20;
const _: () = assert!(crate::evidence::MAX_EVIDENCE_BYTES * 4 < MAX_LINE);
/// Bytes of a skipped line kept in its report.
pub const EXCERPT_BYTES: usize = 120;
/// Skipped lines reported one by one; past this only the count goes up.
const MAX_REPORTED: usize = 100;
/// The largest valid id: 2^53 - 1, the largest integer every JSON consumer (JavaScript's
/// `Number.MAX_SAFE_INTEGER`) reads exactly. A record with a larger id (or 0) is corrupt and is
/// skipped, so it can never push the next id past the top and make ids wrap.
pub const MAX_ID: u64 = (1 << 53) - 1;
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long dropping the last handle waits for the writer to drain.
const DRAIN_ON_DROP: Duration = Duration::from_secs(5);

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Not UTF-8, not JSON, or not an incident (e.g. an unknown trigger or outcome).
    Unreadable,
    /// Longer than [`MAX_LINE`]; not read whole.
    TooLong,
    /// The id is 0 or above [`MAX_ID`].
    IdOutOfRange,
    /// The last line had no newline: a crash while writing it.
    TornTail,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::TooLong => "too long",
            Self::IdOutOfRange => "id out of range",
            Self::TornTail => "torn tail",
        }
    }
}

/// One skipped line: where it was and its first [`EXCERPT_BYTES`] bytes, never the whole line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: u64,
    /// Length in bytes, without the newline.
    pub len: u64,
    pub reason: SkipReason,
    /// The first bytes of the line, lossily decoded.
    pub excerpt: String,
}

/// What reading the journal found worth telling.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Readable records (copies), before folding by id.
    pub records: usize,
    /// The file was rewritten with only the latest copy of each kept incident.
    pub compacted: bool,
    /// The first [`MAX_REPORTED`] skipped lines, in file order.
    pub skipped: Vec<SkippedLine>,
    /// Every skipped line, including the torn tail.
    pub skipped_count: usize,
    /// Bytes of a torn last line; the daemon cuts them off, the CLI leaves the file alone.
    pub torn_tail_bytes: u64,
}

impl Recovery {
    fn skip(&mut self, line: u64, len: u64, reason: SkipReason, excerpt: &[u8]) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_REPORTED {
            let excerpt = &excerpt[..excerpt.len().min(EXCERPT_BYTES)];
            self.skipped.push(SkippedLine {
                line,
                len,
                reason,
                excerpt: String::from_utf8_lossy(excerpt).into_owned(),
            });
        }
    }
}

/// What the parser read: the folded incidents, the lines of the file, and where the complete
/// lines end (a torn tail starts there).
#[derive(Debug)]
struct Parsed {
    incidents: BTreeMap<u64, Incident>,
    lines: usize,
    complete_len: u64,
}

/// One line as read: at most [`MAX_LINE`] bytes of it are held.
struct RawLine {
    len: u64,
    too_long: bool,
    /// Ended by a newline (not cut off by the end of the file).
    terminated: bool,
}

/// Reads the next line into `buf` (cleared first); `None` at the end. A line longer than
/// [`MAX_LINE`] keeps only its first [`EXCERPT_BYTES`] bytes in `buf` and is read past.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<RawLine>> {
    buf.clear();
    let mut line = RawLine {
        len: 0,
        too_long: false,
        terminated: false,
    };
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        let (chunk, used) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.terminated = true;
                (&avail[..i], i + 1)
            }
            None => (avail, avail.len()),
        };
        line.len += chunk.len() as u64;
        if !line.too_long {
            if buf.len() + chunk.len() > MAX_LINE {
                line.too_long = true;
                let room = EXCERPT_BYTES.saturating_sub(buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk[..room]);
                buf.truncate(EXCERPT_BYTES);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        r.consume(used);
        if line.terminated {
            break;
        }
    }
    Ok((line.len > 0 || line.terminated).then_some(line))
}

/// The tolerant parser: reads `r` line by line and folds readable records by id (last copy
/// wins). Only an I/O error fails it; content never does.
fn parse(r: impl Read, report: &mut Recovery) -> std::io::Result<Parsed> {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut parsed = Parsed {
        incidents: BTreeMap::new(),
        lines: 0,
        complete_len: 0,
    };
    let mut buf = Vec::new();
    let mut number = 0u64;
    while let Some(line) = read_line(&mut r, &mut buf)? {
        number += 1;
        if !line.terminated {
            report.torn_tail_bytes = line.len;
            report.skip(number, line.len, SkipReason::TornTail, &buf);
            break;
        }
        parsed.complete_len += line.len + 1;
        if line.too_long {
            parsed.lines += 1;
            report.skip(number, line.len, SkipReason::TooLong, &buf);
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        parsed.lines += 1;
        match serde_json::from_slice::<Incident>(&buf) {
            Ok(i) if i.id == 0 || i.id > MAX_ID => {
                report.skip(number, line.len, SkipReason::IdOutOfRange, &buf);
            }
            Ok(mut i) => {
                report.records += 1;
                i.unpersisted = false;
                parsed.incidents.insert(i.id, i);
            }
            Err(_) => report.skip(number, line.len, SkipReason::Unreadable, &buf),
        }
    }
    Ok(parsed)
}

/// Opens `path` and parses the bytes it holds now (its length at open: a device such as
/// `/dev/full` reads as empty rather than endless).
fn parse_file(file: &File, report: &mut Recovery) -> std::io::Result<Parsed> {
    let len = file.metadata()?.len();
    parse(file.take(len), report)
}

/// Drops all but the newest `max_kept` incidents, keeping every open one. Returns the ids
/// dropped.
fn prune(incidents: &mut BTreeMap<u64, Incident>, max_kept: usize) -> Vec<u64> {
    let Some(&cut) = incidents.keys().rev().nth(max_kept) else {
        return Vec::new();
    };
    let dropped: Vec<u64> = incidents
        .range(..=cut)
        .filter(|(_, i)| !i.is_open())
        .map(|(id, _)| *id)
        .collect();
    for id in &dropped {
        incidents.remove(id);
    }
    dropped
}

fn open_for_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("jsonl.tmp")
}

/// Writes `incidents` to a new file and renames it over the journal, then reopens it. The
/// rename is atomic: a crash leaves the old file or the new one.
fn compact<'a>(
    path: &Path,
    incidents: impl Iterator<Item = &'a Incident>,
) -> std::io::Result<File> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        for i in incidents {
            write_record(&mut out, i)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    open_for_append(path)
}

/// One record: the incident as JSON (never with the `unpersisted` flag) and a newline.
fn write_record(out: &mut impl Write, i: &Incident) -> std::io::Result<()> {
    if i.unpersisted {
        let clean = Incident {
            unpersisted: false,
            parent: None,
            parent_incident: None,
            failure: None,
            ..i.clone()
        };
        serde_json::to_writer(&mut *out, &clean)?;
    } else {
        serde_json::to_writer(&mut *out, i)?;
    }
    out.write_all(b"\n")
}

/// Limits that tests make small.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_kept: usize,
    compact_slack: usize,
}

const LIMITS: Limits = Limits {
    max_kept: MAX_KEPT,
    compact_slack: COMPACT_SLACK,
};

/// A file of `lines` lines holding `kept` incidents is worth compacting: the copies appended
/// since it was compacted outnumber the slack and the compacted size. Amortised, compaction
/// costs a constant per appended line.
fn worth_compacting(lines: usize, kept: usize, limits: Limits) -> bool {
    lines.saturating_sub(kept) > limits.compact_slack.max(kept)
}

/// Shared between the handles and the writer thread.
#[derive(Debug)]
struct Core {
    path: PathBuf,
    state: Mutex<State>,
    /// Wakes the writer: something is dirty, a flush asks for a retry now, or closing.
    wake: Condvar,
    /// Wakes flushers and closers: a batch finished or the writer exited.
    idle: Condvar,
    metrics: JournalMetrics,
    limits: Limits,
}

#[derive(Debug)]
struct State {
    /// The readers' snapshot: the latest copy of every kept incident.
    incidents: BTreeMap<u64, Incident>,
    /// Ids whose latest copy is not on disk yet.
    dirty: BTreeSet<u64>,
    /// The writer holds a batch taken from `dirty`.
    writing: bool,
    /// Incidents flagged `unpersisted`.
    unpersisted: usize,
    ids: IdAllocator,
    /// A flush asked the writer not to wait out its backoff.
    nudge: bool,
    closing: bool,
    writer_exited: bool,
}

/// Hands out ids: max + 1 up to [`MAX_ID`]. Past the top (possible only after a record claimed
/// an id near it) it hands out the smallest ids not in use, ascending, so an id is never
/// reused while its incident is kept and the counter never wraps.
#[derive(Debug)]
struct IdAllocator {
    next: Option<u64>,
    scan_from: u64,
}

impl IdAllocator {
    fn after(max: Option<u64>) -> Self {
        Self {
            next: max.map_or(Some(1), |m| m.checked_add(1).filter(|n| *n <= MAX_ID)),
            scan_from: 1,
        }
    }

    fn allocate(&mut self, in_use: &BTreeMap<u64, Incident>) -> u64 {
        if let Some(id) = self.next {
            self.next = id.checked_add(1).filter(|n| *n <= MAX_ID);
            return id;
        }
        let free = |from: u64| (from..=MAX_ID).find(|id| !in_use.contains_key(id));
        // The map holds far fewer than 2^53 incidents, so a free id always exists.
        let id = free(self.scan_from).or_else(|| free(1)).unwrap_or(MAX_ID);
        self.scan_from = id.saturating_add(1);
        id
    }
}

/// The incident journal. Share it behind an `Arc`; dropping the last handle drains the writer
/// (up to a few seconds) and stops it.
#[derive(Debug)]
pub struct IncidentJournal {
    core: Arc<Core>,
}

impl IncidentJournal {
    /// Reads the journal (tolerantly), cuts a torn tail, compacts when old copies dominate,
    /// and starts the writer thread.
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
        let path = state_dir.join("incidents.jsonl");
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        // A leftover of a compaction that crashed before its rename.
        let _ = std::fs::remove_file(tmp_path(&path));
        let mut file = open_for_append(&path).map_err(io)?;
        let mut recovery = Recovery::default();
        let mut parsed = parse_file(&file, &mut recovery).map_err(io)?;
        if recovery.torn_tail_bytes > 0 {
            // Never glue the next record to half of one.
            file.set_len(parsed.complete_len).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        prune(&mut parsed.incidents, limits.max_kept);
        let mut lines = parsed.lines;
        if worth_compacting(lines, parsed.incidents.len(), limits) {
            match compact(&path, parsed.incidents.values()) {
                Ok(f) => {
                    file = f;
                    recovery.compacted = true;
                    lines = parsed.incidents.len();
                }
                Err(e) => {
                    // Nothing is lost: the old file is whole. Start anyway (a full disk).
                    metrics.write_failures.inc();
                    tracing::warn!(error = %e, path = %path.display(),
                        "could not compact the incident journal; it stays as it was");
                    file = open_for_append(&path).map_err(io)?;
                }
            }
        }
        let ids = IdAllocator::after(parsed.incidents.keys().next_back().copied());
        let core = Arc::new(Core {
            path: path.clone(),
            state: Mutex::new(State {
                incidents: parsed.incidents,
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
        let st = &mut *st;
        st.ids.allocate(&st.incidents)
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
        incident.unpersisted = st.incidents.get(&id).is_some_and(|i| i.unpersisted);
        st.incidents.insert(id, incident);
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

    /// Newest first, optionally only those detected at or after `since` (RFC 3339 compared as
    /// time) and of one container (name, or a prefix of its id). Without their evidence (up to
    /// 32 KiB each): [`Self::get`] has it.
    pub fn list(
        &self,
        since: Option<std::time::SystemTime>,
        container: Option<&str>,
    ) -> Vec<Incident> {
        let st = self.lock();
        let mut out: Vec<Incident> = st
            .incidents
            .values()
            .filter(|i| i.matches(since, container))
            .map(Incident::without_evidence)
            .collect();
        drop(st);
        sort_newest_first(&mut out);
        out
    }

    /// One incident by id.
    pub fn get(&self, id: u64) -> Option<Incident> {
        self.lock().incidents.get(&id).cloned()
    }

    pub fn open_incidents(&self) -> Vec<Incident> {
        self.lock()
            .incidents
            .values()
            .filter(|i| i.is_open())
            .cloned()
            .collect()
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

fn sort_newest_first(v: &mut [Incident]) {
    v.sort_by(|a, b| b.detected.cmp(&a.detected).then(b.id.cmp(&a.id)));
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_unpersisted(&self, st: &mut State, id: u64, flag: bool) {
        if let Some(i) = st.incidents.get_mut(&id) {
            if i.unpersisted != flag {
                i.unpersisted = flag;
                if flag {
                    st.unpersisted += 1;
                } else {
                    st.unpersisted -= 1;
                }
            }
        }
        self.metrics
            .unpersisted
            .set(i64::try_from(st.unpersisted).unwrap_or(i64::MAX));
    }
}

/// The writer thread: the only code that touches the file after `open`.
struct Writer {
    core: Arc<Core>,
    /// `None` after a failure: reopened (by path) before the next attempt.
    file: Option<File>,
    lines: usize,
    compacted_lines: usize,
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
    fn run(mut self) {
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
                    .filter_map(|id| st.incidents.get(id).cloned())
                    .collect::<Vec<_>>()
            };
            let result = self.append(&batch);
            {
                let mut st = self.core.lock();
                match &result {
                    Ok(()) => {
                        for i in &batch {
                            self.core.set_unpersisted(&mut st, i.id, false);
                        }
                        backoff = RETRY_FIRST;
                        retry_at = None;
                    }
                    Err(e) => {
                        self.core.metrics.write_failures.inc();
                        for i in &batch {
                            if st.incidents.contains_key(&i.id) {
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

    /// Appends the batch and syncs it; on failure cuts the file back to where it was, so no
    /// half record stays for the next one to be glued to.
    fn append(&mut self, batch: &[Incident]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(batch.len() * 512);
        for i in batch {
            write_record(&mut buf, i)?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(open_for_append(&self.core.path)?),
        };
        let before = file.metadata()?.len();
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        if result.is_err() {
            let _ = file.set_len(before);
            // Start from a fresh handle next time (the file may have been replaced).
            self.file = None;
        }
        result
    }

    /// Compacts when the lines appended since the last compaction outgrow the bound.
    fn maybe_compact(&mut self) {
        let limits = self.core.limits;
        if !worth_compacting(self.lines, self.compacted_lines, limits) {
            return;
        }
        // The snapshot holds the latest copy of every dirty incident too: once it is on disk,
        // they need no append of their own.
        let (snapshot, covered): (Vec<Incident>, BTreeSet<u64>) = {
            let mut st = self.core.lock();
            for id in prune(&mut st.incidents, limits.max_kept) {
                st.dirty.remove(&id);
            }
            st.unpersisted = st.incidents.values().filter(|i| i.unpersisted).count();
            self.core
                .metrics
                .unpersisted
                .set(i64::try_from(st.unpersisted).unwrap_or(i64::MAX));
            let covered = std::mem::take(&mut st.dirty);
            (st.incidents.values().cloned().collect(), covered)
        };
        let result = compact(&self.core.path, snapshot.iter());
        {
            let mut st = self.core.lock();
            for id in covered {
                if result.is_ok() {
                    self.core.set_unpersisted(&mut st, id, false);
                } else if st.incidents.contains_key(&id) {
                    st.dirty.insert(id);
                }
            }
        }
        match result {
            Ok(f) => {
                self.file = Some(f);
                self.lines = snapshot.len();
                self.compacted_lines = snapshot.len();
                tracing::info!(incidents = snapshot.len(), "incident journal compacted");
            }
            Err(e) => {
                self.core.metrics.write_failures.inc();
                // The rename may have happened: never append to an unlinked file.
                self.file = None;
                // Try again after another bound's worth of appends, not on every one.
                self.compacted_lines = self.lines;
                tracing::error!(error = %e, path = %self.core.path.display(),
                    "could not compact the incident journal; it stays as it was");
            }
        }
    }
}

/// Reads a journal without opening it for writing (the `selfheal incidents` command): the same
/// tolerant parser as the daemon, newest first. Fails only when the file cannot be read.
pub fn read_only(state_dir: &Path) -> Result<(Vec<Incident>, Recovery), JournalError> {
    let path = state_dir.join("incidents.jsonl");
    let mut recovery = Recovery::default();
    let parsed = File::open(&path)
        .and_then(|f| parse_file(&f, &mut recovery))
        .map_err(|source| JournalError::Io { path, source })?;
    let mut out: Vec<Incident> = parsed.incidents.into_values().collect();
    sort_newest_first(&mut out);
    Ok((out, recovery))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn incident(id: u64, outcome: IncidentOutcome) -> Incident {
        Incident {
            id,
            container: format!("c{id}"),
            container_id: "abc".into(),
            compose_project: None,
            compose_service: None,
            trigger: Trigger::Unhealthy,
            first_failure: format!("2026-01-01T00:00:0{}Z", id % 10),
            detected: format!("2026-01-01T00:00:0{}Z", id % 10),
            action_begun: None,
            last_restart: None,
            healthy_again: None,
            time_to_detect_seconds: None,
            time_to_recover_seconds: None,
            attempts: 0,
            outcome,
            dry_run: false,
            unpersisted: false,
            evidence: None,
            parent: None,
            parent_incident: None,
            failure: None,
        }
    }

    fn line(i: &Incident) -> String {
        serde_json::to_string(i).unwrap() + "\n"
    }

    fn journal_path(dir: &Path) -> PathBuf {
        dir.join("incidents.jsonl")
    }

    fn open(dir: &Path) -> (IncidentJournal, Recovery) {
        IncidentJournal::open(dir, JournalMetrics::default()).unwrap()
    }

    fn ids_and_outcomes(list: &[Incident]) -> Vec<(u64, IncidentOutcome)> {
        list.iter().map(|i| (i.id, i.outcome)).collect()
    }

    /// Polls `cond` until it holds or `WAIT` passes.
    fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn json_shape_is_unchanged_and_unpersisted_only_appears_when_set() {
        let mut i = incident(7, IncidentOutcome::Recovered);
        i.trigger = Trigger::ProbeFailed;
        i.compose_project = Some("demo".into());
        i.time_to_recover_seconds = Some(1.5);
        assert_eq!(
            serde_json::to_string(&i).unwrap(),
            r#"{"id":7,"container":"c7","container_id":"abc","compose_project":"demo","trigger":"probe_failed","first_failure":"2026-01-01T00:00:07Z","detected":"2026-01-01T00:00:07Z","action_begun":null,"healthy_again":null,"time_to_detect_seconds":null,"time_to_recover_seconds":1.5,"attempts":0,"outcome":"recovered","dry_run":false}"#
        );
        i.unpersisted = true;
        assert!(serde_json::to_string(&i)
            .unwrap()
            .ends_with(r#""dry_run":false,"unpersisted":true}"#));
        assert_eq!(
            IncidentOutcome::from(Outcome::Quarantined),
            IncidentOutcome::Quarantined
        );
        assert_eq!(format!("{:<6}|", IncidentOutcome::Open), "open  |");
    }

    /// A `dependency` incident and its links to the parent round-trip through the parser the
    /// daemon and the CLI share; a record without them (older) still parses.
    #[test]
    fn dependency_incidents_round_trip_with_their_parent() {
        let mut i = incident(8, IncidentOutcome::Recovered);
        i.trigger = Trigger::Dependency;
        i.parent = Some("vpn".into());
        i.parent_incident = Some(7);
        i.failure = Some("not recreated: ambiguous".into());
        let line = serde_json::to_string(&i).unwrap();
        assert!(line.contains(r#""trigger":"dependency""#), "{line}");
        assert!(
            line.contains(r#""parent":"vpn","parent_incident":7"#),
            "{line}"
        );
        let mut report = Recovery::default();
        let parsed = parse(format!("{line}\n").as_bytes(), &mut report).unwrap();
        assert_eq!(parsed.incidents.len(), 1, "{report:?}");
        assert_eq!(parsed.incidents.get(&8), Some(&i));
    }

    #[test]
    fn replays_last_version_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, rec) = open(dir.path());
            assert_eq!(rec.records, 0);
            j.record(incident(1, IncidentOutcome::Open));
            assert!(j.flush(WAIT));
            j.record(incident(2, IncidentOutcome::Open));
            j.record(incident(1, IncidentOutcome::Recovered));
            assert!(j.flush(WAIT));
        }
        // A crash in the middle of writing the next record.
        let path = journal_path(dir.path());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":3,"container":"c3","contai"#).unwrap();
        drop(f);

        let (j, rec) = open(dir.path());
        assert_eq!(rec.records, 3);
        assert_eq!(rec.torn_tail_bytes, 32);
        assert_eq!(rec.skipped[0].reason, SkipReason::TornTail);
        let all = j.list(None, None);
        assert_eq!(
            ids_and_outcomes(&all),
            vec![(2, IncidentOutcome::Open), (1, IncidentOutcome::Recovered)]
        );
        assert_eq!(j.open_incidents().len(), 1);
        assert_eq!(j.next_id(), 3);
        // Appending after the cut yields a clean file.
        j.record(incident(3, IncidentOutcome::Open));
        assert!(j.flush(WAIT));
        let (_, rec) = read_only(dir.path()).unwrap();
        assert_eq!(rec.skipped_count, 0);
        assert_eq!(j.list(None, Some("c3")).len(), 1);
        let since = humantime::parse_rfc3339("2026-01-01T00:00:02Z").unwrap();
        assert_eq!(j.list(Some(since), None).len(), 2);
    }

    #[test]
    fn unreadable_lines_are_skipped_by_the_daemon_and_the_cli_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path());
        let mut content = Vec::new();
        content.extend(line(&incident(1, IncidentOutcome::Open)).bytes());
        content.extend(b"garbage\n");
        // A record with one byte that is not UTF-8 in a string.
        let bad_utf8 = line(&incident(9, IncidentOutcome::Open)).replace("c9", "c\u{1}9");
        content.extend(bad_utf8.bytes().map(|b| if b == 1 { 0xff } else { b }));
        content.extend(line(&incident(2, IncidentOutcome::Open)).bytes());
        // A 5 MB line: skipped without being read whole.
        let mut huge = b"{\"id\":4,\"container\":\"".to_vec();
        huge.resize(5 << 20, b'x');
        content.extend(&huge);
        content.push(b'\n');
        // Unknown trigger and outcome values are unreadable records.
        content.extend(
            line(&incident(5, IncidentOutcome::Open))
                .replace("\"unhealthy\"", "\"sunspots\"")
                .bytes(),
        );
        content.extend(
            line(&incident(6, IncidentOutcome::Open))
                .replace("\"open\"", "\"mostly_fine\"")
                .bytes(),
        );
        content.extend(b"\n   \n");
        content.extend(line(&incident(1, IncidentOutcome::Recovered)).bytes());
        content.extend(br#"{"id":3,"conta"#);
        std::fs::write(&path, &content).unwrap();

        let expected = vec![(2, IncidentOutcome::Open), (1, IncidentOutcome::Recovered)];
        let check = |rec: &Recovery| {
            let reasons: Vec<(u64, SkipReason)> =
                rec.skipped.iter().map(|s| (s.line, s.reason)).collect();
            assert_eq!(
                reasons,
                vec![
                    (2, SkipReason::Unreadable),
                    (3, SkipReason::Unreadable),
                    (5, SkipReason::TooLong),
                    (6, SkipReason::Unreadable),
                    (7, SkipReason::Unreadable),
                    (11, SkipReason::TornTail),
                ]
            );
            assert_eq!(rec.skipped_count, 6);
            assert_eq!(rec.records, 3);
            assert_eq!(rec.skipped[0].excerpt, "garbage");
            let long = &rec.skipped[2];
            assert_eq!(long.len, 5 << 20);
            assert_eq!(long.excerpt.len(), EXCERPT_BYTES);
            assert!(long.excerpt.starts_with("{\"id\":4,"));
            assert!(rec.skipped[1].excerpt.contains('\u{fffd}'));
        };

        // The CLI reads and leaves the file alone.
        let (list, rec) = read_only(dir.path()).unwrap();
        check(&rec);
        assert_eq!(ids_and_outcomes(&list), expected);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            content.len() as u64
        );

        // The daemon reads the same and cuts the torn tail only.
        let (j, rec) = open(dir.path());
        check(&rec);
        assert_eq!(ids_and_outcomes(&j.list(None, None)), expected);
        assert!(!rec.compacted);
        let torn = br#"{"id":3,"conta"#.len() as u64;
        assert_eq!(rec.torn_tail_bytes, torn);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            content.len() as u64 - torn
        );
    }

    #[test]
    fn ids_beyond_the_json_safe_range_are_skipped_and_never_make_ids_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let text = [1, 2, u64::MAX, MAX_ID + 1]
            .map(|id| line(&incident(id, IncidentOutcome::Recovered)))
            .concat();
        std::fs::write(journal_path(dir.path()), text).unwrap();
        let (j, rec) = open(dir.path());
        assert_eq!(
            rec.skipped.iter().map(|s| s.reason).collect::<Vec<_>>(),
            vec![SkipReason::IdOutOfRange; 2]
        );
        assert_eq!(j.next_id(), 3);
        j.record(incident(3, IncidentOutcome::Open));
        assert!(j.flush(WAIT));
        let (list, rec) = read_only(dir.path()).unwrap();
        assert_eq!(rec.skipped_count, 2);
        // The old incidents are still there, next to the new one.
        assert_eq!(
            ids_and_outcomes(&list),
            vec![
                (3, IncidentOutcome::Open),
                (2, IncidentOutcome::Recovered),
                (1, IncidentOutcome::Recovered)
            ]
        );
    }

    #[test]
    fn ids_past_the_top_take_free_ids_and_never_overwrite_an_incident() {
        let dir = tempfile::tempdir().unwrap();
        let text = [1, 2, MAX_ID]
            .map(|id| line(&incident(id, IncidentOutcome::Recovered)))
            .concat();
        std::fs::write(journal_path(dir.path()), text).unwrap();
        let (j, _) = open(dir.path());
        let new: Vec<u64> = (0..3).map(|_| j.next_id()).collect();
        assert_eq!(new, vec![3, 4, 5]);
        for id in new {
            j.record(incident(id, IncidentOutcome::Open));
        }
        assert!(j.flush(WAIT));
        let mut ids: Vec<u64> = j.list(None, None).iter().map(|i| i.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3, 4, 5, MAX_ID]);
    }

    #[test]
    fn dropping_the_journal_writes_what_was_recorded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = open(dir.path());
            for id in 1..=50 {
                j.record(incident(id, IncidentOutcome::Open));
            }
        }
        let (list, rec) = read_only(dir.path()).unwrap();
        assert_eq!((list.len(), rec.skipped_count), (50, 0));
    }

    #[test]
    fn many_updates_are_compacted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = incident(1, IncidentOutcome::Open);
        let text: String = (0..(COMPACT_SLACK as u32 + 10))
            .map(|n| {
                i.attempts = n;
                line(&i)
            })
            .collect();
        std::fs::write(journal_path(dir.path()), text).unwrap();
        let (j, rec) = open(dir.path());
        assert!(rec.compacted);
        assert_eq!(j.list(None, None)[0].attempts, COMPACT_SLACK as u32 + 9);
        let text = std::fs::read_to_string(journal_path(dir.path())).unwrap();
        assert_eq!(text.lines().count(), 1);
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_writer_compacts_updates_to_the_latest_copies() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_kept: 5,
            compact_slack: 10,
        };
        let (j, _) =
            IncidentJournal::open_with(dir.path(), JournalMetrics::default(), limits).unwrap();
        let mut i = incident(1, IncidentOutcome::Open);
        for n in 0..100 {
            i.attempts = n;
            j.record(i.clone());
            // One append per update: no coalescing.
            assert!(j.flush(WAIT));
        }
        let text = std::fs::read_to_string(journal_path(dir.path())).unwrap();
        assert!(text.lines().count() <= 11, "{}", text.lines().count());
        assert_eq!(dir_entries(dir.path()), vec!["incidents.jsonl"]);
        drop(j);
        let (list, _) = read_only(dir.path()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].attempts, 99);
    }

    #[test]
    fn compaction_keeps_the_newest_and_every_open_incident() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_kept: 5,
            compact_slack: 10,
        };
        let (j, _) =
            IncidentJournal::open_with(dir.path(), JournalMetrics::default(), limits).unwrap();
        for id in 1..=30 {
            let outcome = if id == 2 || id == 4 {
                IncidentOutcome::Open
            } else {
                IncidentOutcome::Recovered
            };
            j.record(incident(id, outcome));
        }
        assert!(j.flush(WAIT));
        let expected: Vec<u64> = vec![2, 4, 26, 27, 28, 29, 30];
        let mut in_memory: Vec<u64> = j.list(None, None).iter().map(|i| i.id).collect();
        in_memory.sort_unstable();
        assert_eq!(in_memory, expected);
        let text = std::fs::read_to_string(journal_path(dir.path())).unwrap();
        let on_disk: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<Incident>(l).unwrap().id)
            .collect();
        assert_eq!(on_disk, expected);
        assert_eq!(dir_entries(dir.path()), vec!["incidents.jsonl"]);
        drop(j);

        // The same rule at open, with more than N incidents in the file.
        let text = (1..=30)
            .map(|id| {
                let o = if id == 3 {
                    IncidentOutcome::Open
                } else {
                    IncidentOutcome::Abandoned
                };
                line(&incident(id, o))
            })
            .collect::<String>();
        std::fs::write(journal_path(dir.path()), text).unwrap();
        // Left by a compaction that crashed before its rename: removed, never read.
        std::fs::write(dir.path().join("incidents.jsonl.tmp"), "half a fi").unwrap();
        let (j, rec) =
            IncidentJournal::open_with(dir.path(), JournalMetrics::default(), limits).unwrap();
        assert!(rec.compacted);
        assert_eq!(dir_entries(dir.path()), vec!["incidents.jsonl"]);
        let mut ids: Vec<u64> = j.list(None, None).iter().map(|i| i.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![3, 26, 27, 28, 29, 30]);
        assert_eq!(j.next_id(), 31);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_keeps_the_incident_in_memory_until_a_retry_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal_path(dir.path());
        // Every write to /dev/full fails with ENOSPC, like a full disk.
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let metrics = JournalMetrics::default();
        let (j, _) = IncidentJournal::open(dir.path(), metrics.clone()).unwrap();
        j.record(incident(1, IncidentOutcome::Open));
        assert!(!j.flush(Duration::from_millis(200)));
        eventually("the incident to be marked unpersisted", || {
            j.list(None, None).first().is_some_and(|i| i.unpersisted)
        });
        assert!(metrics.write_failures.get() >= 1);
        assert_eq!(metrics.unpersisted.get(), 1);
        // A change while the disk is full keeps the flag and is not lost either.
        j.record(incident(1, IncidentOutcome::Recovered));
        assert!(j.list(None, None)[0].unpersisted);

        // Space again: the journal file is a real file from now on.
        std::fs::remove_file(&path).unwrap();
        assert!(j.flush(WAIT));
        let list = j.list(None, None);
        assert_eq!(
            ids_and_outcomes(&list),
            vec![(1, IncidentOutcome::Recovered)]
        );
        assert!(!list[0].unpersisted);
        assert_eq!(metrics.unpersisted.get(), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("unpersisted"), "{text}");
        let (on_disk, rec) = read_only(dir.path()).unwrap();
        assert_eq!(rec.skipped_count, 0);
        assert_eq!(on_disk, list);
    }
}

// ---- Provisional paging, replaced by the journal branch's `page` at the merge. ----

/// Which incidents a reader wants: the filter of [`IncidentJournal::list`], at most `limit`
/// of them, and only those with an id below the cursor `before`.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery<'a> {
    pub since: Option<std::time::SystemTime>,
    pub container: Option<&'a str>,
    pub limit: usize,
    /// Cursor: only incidents with `id < before`.
    pub before: Option<u64>,
}

/// One page of incidents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentPage {
    /// Newest first (highest id first), without evidence.
    pub incidents: Vec<Incident>,
    /// The cursor of the next page, when more incidents match.
    pub next_before: Option<u64>,
}

impl IncidentJournal {
    /// One page of the incidents that match `q`, newest first.
    pub fn page(&self, q: &IncidentQuery<'_>) -> IncidentPage {
        let mut matching = self.list(q.since, q.container);
        matching.retain(|i| q.before.is_none_or(|b| i.id < b));
        matching.sort_by_key(|i| std::cmp::Reverse(i.id));
        let more = matching.len() > q.limit;
        matching.truncate(q.limit);
        let next_before = if more {
            matching.last().map(|i| i.id)
        } else {
            None
        };
        IncidentPage {
            incidents: matching,
            next_before,
        }
    }
}
