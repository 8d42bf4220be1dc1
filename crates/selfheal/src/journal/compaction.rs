//! Compaction: the latest copy of each kept incident goes to a new file, which is fsynced and
//! renamed over the journal, and the directory fsynced, so a crash leaves the old file or the
//! new one, never a mix. It streams: a copy held whole is serialized, any other is copied
//! line by line from the old file, so memory does not grow with the file.

use super::index::Copy;
use super::parse::Span;
use super::record::write_record;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Limits that tests make small.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Incidents kept besides every open one.
    pub max_kept: usize,
    /// Lines appended beyond the compacted size before the file is compacted again.
    pub compact_slack: usize,
    /// Closed incidents held whole in memory besides the open ones.
    pub hot_closed: usize,
}

/// A file of `lines` lines holding `kept` incidents is worth compacting: the copies appended
/// since it was compacted outnumber the slack and the compacted size. Amortised, compaction
/// costs a constant per appended line.
pub(super) fn worth_compacting(lines: usize, kept: usize, limits: Limits) -> bool {
    lines.saturating_sub(kept) > limits.compact_slack.max(kept)
}

pub(super) fn open_for_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

pub(super) fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("jsonl.tmp")
}

/// The new journal: its handle (open for appending) and where each incident now lies.
#[derive(Debug)]
pub(super) struct Compacted {
    pub file: Arc<File>,
    pub spans: Vec<(u64, Span)>,
    /// The rename is done but may not be durable yet: the directory's fsync failed.
    pub dir_sync_failed: Option<std::io::Error>,
}

/// Writes `sources` (in id order; `OnFile` copies are read from `old`) to a new file and
/// renames it over `path`. An error means the old file is untouched.
pub(super) fn compact(
    path: &Path,
    old: Option<&File>,
    sources: Vec<(u64, Copy)>,
) -> std::io::Result<Compacted> {
    let tmp = tmp_path(path);
    let written = write_tmp(&tmp, old, sources).and_then(|spans| {
        // Opened before the rename, so the handle is the new file whatever happens to names.
        let file = open_for_append(&tmp)?;
        std::fs::rename(&tmp, path)?;
        Ok((file, spans))
    });
    let (file, spans) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let dir_sync_failed = match path.parent() {
        Some(dir) => File::open(dir).and_then(|d| d.sync_all()).err(),
        None => None,
    };
    Ok(Compacted {
        file: Arc::new(file),
        spans,
        dir_sync_failed,
    })
}

fn write_tmp(
    tmp: &Path,
    old: Option<&File>,
    sources: Vec<(u64, Copy)>,
) -> std::io::Result<Vec<(u64, Span)>> {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, File::create(tmp)?);
    let mut spans = Vec::with_capacity(sources.len());
    let mut line = Vec::new();
    let mut offset = 0u64;
    for (id, source) in sources {
        line.clear();
        match source {
            Copy::Whole(i) => write_record(&mut line, &i)?,
            Copy::OnFile(_, span) => {
                let old = old.ok_or_else(|| std::io::Error::other("no file to copy from"))?;
                line.resize(span.len as usize, 0);
                old.read_exact_at(&mut line, span.offset)?;
                line.push(b'\n');
            }
        }
        out.write_all(&line)?;
        let len = u32::try_from(line.len() - 1).unwrap_or(u32::MAX);
        spans.push((id, Span { offset, len }));
        offset += line.len() as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(spans)
}
