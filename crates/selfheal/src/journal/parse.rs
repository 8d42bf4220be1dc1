//! The one tolerant parser of the journal, shared by the daemon and the CLI: it reads a stream
//! line by line (never the whole file), tells where each record lies in the file, and skips a
//! line that is not a readable record (not UTF-8, not JSON, an unknown trigger or outcome, an
//! id out of range, longer than [`MAX_LINE`], or a torn last line) with a short excerpt.

use super::record::{Incident, IncidentOutcome, Timestamp};
use selfheal_core::Trigger;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;

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
    pub(super) fn skip(&mut self, line: u64, len: u64, reason: SkipReason, excerpt: &[u8]) {
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
        // memchr: a gigabyte journal is mostly long lines, and a byte-by-byte search for their
        // ends was a good part of a start's CPU time (BENCHMARKS.md, "9").
        let (chunk, used) = match memchr::memchr(b'\n', avail) {
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

/// Where one record lies in the file: its first byte and its length without the newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub offset: u64,
    /// At most [`MAX_LINE`].
    pub len: u32,
}

/// What a scan saw besides the records.
#[derive(Debug, Default)]
pub(super) struct Scanned {
    /// Lines that hold something (records and skipped lines, not blank ones).
    pub lines: usize,
    /// Where the complete lines end: a torn tail starts there.
    pub complete_len: u64,
}

/// Reads `r` line by line and hands each line that could be a record to `each`, with its span;
/// `each` parses it and says why not when it cannot. Skipped lines go to `report`. Only an I/O
/// error fails the scan; content never does. Holds one line (at most [`MAX_LINE`]) at a time.
pub(super) fn scan(
    r: impl Read,
    report: &mut Recovery,
    mut each: impl FnMut(&[u8], Span) -> Result<(), SkipReason>,
) -> std::io::Result<Scanned> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let mut scanned = Scanned::default();
    let mut buf = Vec::new();
    let mut number = 0u64;
    while let Some(line) = read_line(&mut r, &mut buf)? {
        number += 1;
        let offset = scanned.complete_len;
        if !line.terminated {
            report.torn_tail_bytes = line.len;
            report.skip(number, line.len, SkipReason::TornTail, &buf);
            break;
        }
        scanned.complete_len += line.len + 1;
        if line.too_long {
            scanned.lines += 1;
            report.skip(number, line.len, SkipReason::TooLong, &buf);
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        scanned.lines += 1;
        // Not too long, so the length fits.
        let len = u32::try_from(line.len).unwrap_or(u32::MAX);
        match each(&buf, Span { offset, len }) {
            Ok(()) => report.records += 1,
            Err(reason) => report.skip(number, line.len, reason, &buf),
        }
    }
    Ok(scanned)
}

/// Scans the bytes `file` holds now (its length at the start: a device such as `/dev/full`
/// reads as empty rather than endless).
pub(super) fn scan_file(
    file: &File,
    report: &mut Recovery,
    each: impl FnMut(&[u8], Span) -> Result<(), SkipReason>,
) -> std::io::Result<Scanned> {
    let len = file.metadata()?.len();
    scan(file.take(len), report, each)
}

/// What a scan keeps of a record, read without building the rest: strings are borrowed where
/// they hold no escapes and the evidence (most of a record's bytes) is skipped unparsed. Every
/// other field of [`Incident`] is declared with its type, so a line is a record here exactly
/// when it is one whole (a test holds the two parsers to that); the evidence needs no check,
/// as unreadable evidence is dropped, not the record.
#[derive(Debug, Deserialize)]
pub(super) struct Keys<'a> {
    pub id: u64,
    #[serde(borrow)]
    pub container: Cow<'a, str>,
    #[serde(borrow)]
    pub container_id: Cow<'a, str>,
    pub detected: Timestamp,
    pub outcome: IncidentOutcome,
    #[serde(rename = "trigger")]
    _trigger: Trigger,
    #[serde(rename = "first_failure")]
    _first_failure: Timestamp,
    #[serde(rename = "attempts")]
    _attempts: u32,
    #[serde(default, rename = "dry_run")]
    _dry_run: bool,
    #[serde(default, rename = "unpersisted")]
    _unpersisted: bool,
    #[serde(default, rename = "time_to_detect_seconds")]
    _time_to_detect: Option<f64>,
    #[serde(default, rename = "time_to_recover_seconds")]
    _time_to_recover: Option<f64>,
    #[serde(default, rename = "parent_incident")]
    _parent_incident: Option<u64>,
    #[serde(default, rename = "compose_project", borrow)]
    _compose_project: Option<Cow<'a, str>>,
    #[serde(default, rename = "compose_service", borrow)]
    _compose_service: Option<Cow<'a, str>>,
    #[serde(default, rename = "action_begun")]
    _action_begun: Option<Timestamp>,
    #[serde(default, rename = "last_restart")]
    _last_restart: Option<Timestamp>,
    #[serde(default, rename = "healthy_again")]
    _healthy_again: Option<Timestamp>,
    #[serde(default, rename = "parent", borrow)]
    _parent: Option<Cow<'a, str>>,
    #[serde(default, rename = "failure", borrow)]
    _failure: Option<Cow<'a, str>>,
    #[serde(default, rename = "evidence")]
    _evidence: IgnoredAny,
}

/// One line as a record's keys, or why it is not a record.
pub(super) fn parse_keys(line: &[u8]) -> Result<Keys<'_>, SkipReason> {
    let text = std::str::from_utf8(line).map_err(|_| SkipReason::Unreadable)?;
    match serde_json::from_str::<Keys<'_>>(text) {
        Ok(k) if k.id == 0 || k.id > MAX_ID => Err(SkipReason::IdOutOfRange),
        Ok(k) => Ok(k),
        Err(_) => Err(SkipReason::Unreadable),
    }
}

/// One line as a record, or why it is not one.
pub(super) fn parse_record(line: &[u8]) -> Result<Incident, SkipReason> {
    match serde_json::from_slice::<Incident>(line) {
        Ok(i) if i.id == 0 || i.id > MAX_ID => Err(SkipReason::IdOutOfRange),
        Ok(mut i) => {
            i.unpersisted = false;
            Ok(i)
        }
        Err(_) => Err(SkipReason::Unreadable),
    }
}

/// Reads the record at `span` of `file` again (positioned read: the file's offset is not
/// touched, so readers share the writer's handle). `None` if it is no longer a record there.
pub(super) fn read_at(
    file: &File,
    span: Span,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Incident>> {
    buf.resize(span.len as usize, 0);
    file.read_exact_at(buf, span.offset)?;
    Ok(parse_record(buf).ok())
}
