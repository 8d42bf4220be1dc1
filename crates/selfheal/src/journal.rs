//! The incident journal: an append-only JSON-lines file under `--state-dir`.
//!
//! Each line is the full latest version of one incident; reading folds them by id (last wins).
//! Every record is flushed and `fsync`ed before the call returns, so a crash of the watchdog
//! loses nothing it reported. A torn last line (crash mid-write) is cut off with a warning.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    pub trigger: String,
    /// RFC 3339 wall-clock times.
    pub first_failure: String,
    pub detected: String,
    #[serde(default)]
    pub action_begun: Option<String>,
    #[serde(default)]
    pub healthy_again: Option<String>,
    #[serde(default)]
    pub time_to_detect_seconds: Option<f64>,
    #[serde(default)]
    pub time_to_recover_seconds: Option<f64>,
    pub attempts: u32,
    /// open, recovered, quarantined or abandoned.
    pub outcome: String,
    #[serde(default)]
    pub dry_run: bool,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.outcome == "open"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("incident journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Incidents kept across restarts; older ones are dropped when the journal is compacted.
const MAX_KEPT: usize = 10_000;
const COMPACT_SLACK: usize = 1_000;

/// Writes the latest copy of each incident to a new file and moves it over the journal.
fn compact(path: &Path, incidents: &BTreeMap<u64, Incident>) -> std::io::Result<File> {
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        for i in incidents.values() {
            serde_json::to_writer(&mut out, i)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().read(true).append(true).open(path)
}

/// The journal file plus the folded view of it.
#[derive(Debug)]
pub struct IncidentJournal {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    incidents: BTreeMap<u64, Incident>,
    next_id: u64,
}

/// What opening the journal found worth telling.
#[derive(Debug, Default)]
pub struct Recovery {
    pub records: usize,
    /// The file was rewritten with only the latest copy of each incident.
    pub compacted: bool,
    pub skipped: Vec<String>,
    pub torn_tail_bytes: u64,
}

impl IncidentJournal {
    pub fn open(state_dir: &Path) -> Result<(Self, Recovery), JournalError> {
        let path = state_dir.join("incidents.jsonl");
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut recovery = Recovery::default();
        let mut content = Vec::new();
        file.read_to_end(&mut content).map_err(io)?;
        // Cut a torn tail: bytes after the last newline were never a complete record.
        let complete = content
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if complete < content.len() {
            recovery.torn_tail_bytes = (content.len() - complete) as u64;
            recovery
                .skipped
                .push(String::from_utf8_lossy(&content[complete..]).into_owned());
            file.set_len(complete as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let mut incidents = BTreeMap::new();
        // Bytes, not text: one corrupt record must not stop the watchdog from starting.
        for line in content[..complete].split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Incident>(line) {
                Ok(i) => {
                    recovery.records += 1;
                    incidents.insert(i.id, i);
                }
                Err(_) => recovery
                    .skipped
                    .push(String::from_utf8_lossy(line).into_owned()),
            }
        }
        // Each change appends a full copy of its incident; rewrite the file with the latest
        // copies when old ones dominate, and keep at most MAX_KEPT incidents.
        while incidents.len() > MAX_KEPT {
            incidents.pop_first();
        }
        if recovery.records > 2 * incidents.len() + COMPACT_SLACK {
            file = compact(&path, &incidents).map_err(io)?;
            recovery.compacted = true;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let next_id = incidents.keys().next_back().map_or(1, |id| id + 1);
        Ok((
            Self {
                path,
                inner: Mutex::new(Inner {
                    file,
                    incidents,
                    next_id,
                }),
            },
            recovery,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_id(&self) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        id
    }

    /// Appends the incident's new version and syncs it to disk. Blocking: call from
    /// `spawn_blocking` or a context where a few milliseconds of disk I/O are fine.
    pub fn record(&self, incident: &Incident) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(incident).map_err(|e| io(e.into()))?;
        line.push(b'\n');
        let mut inner = self.lock();
        let before = inner.file.metadata().map_err(io)?.len();
        if let Err(e) = inner
            .file
            .write_all(&line)
            .and_then(|()| inner.file.sync_data())
        {
            // Never leave half a record for the next one to be glued to.
            let _ = inner.file.set_len(before);
            return Err(io(e));
        }
        inner.incidents.insert(incident.id, incident.clone());
        Ok(())
    }

    /// Newest first, optionally only those started at or after `since` (RFC 3339 compared as
    /// time) and of one container.
    pub fn list(
        &self,
        since: Option<std::time::SystemTime>,
        container: Option<&str>,
    ) -> Vec<Incident> {
        let inner = self.lock();
        let mut out: Vec<Incident> = inner
            .incidents
            .values()
            .filter(|i| container.is_none_or(|c| i.container == c || i.container_id.starts_with(c)))
            .filter(|i| {
                since.is_none_or(|s| {
                    humantime::parse_rfc3339_weak(&i.detected).is_ok_and(|d| d >= s)
                })
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| b.detected.cmp(&a.detected).then(b.id.cmp(&a.id)));
        out
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

/// Reads a journal without opening it for writing (the `selfheal incidents` command).
pub fn read_only(state_dir: &Path) -> Result<(Vec<Incident>, Vec<String>), JournalError> {
    let path = state_dir.join("incidents.jsonl");
    let text =
        std::fs::read_to_string(&path).map_err(|source| JournalError::Io { path, source })?;
    let mut incidents = BTreeMap::new();
    let mut skipped = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Incident>(line) {
            Ok(i) => {
                incidents.insert(i.id, i);
            }
            Err(_) => skipped.push(line.to_string()),
        }
    }
    let mut out: Vec<Incident> = incidents.into_values().collect();
    out.sort_by(|a, b| b.detected.cmp(&a.detected).then(b.id.cmp(&a.id)));
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: u64, outcome: &str) -> Incident {
        Incident {
            id,
            container: format!("c{id}"),
            container_id: "abc".into(),
            compose_project: None,
            compose_service: None,
            trigger: "unhealthy".into(),
            first_failure: format!("2026-01-01T00:00:0{id}Z"),
            detected: format!("2026-01-01T00:00:0{id}Z"),
            action_begun: None,
            healthy_again: None,
            time_to_detect_seconds: None,
            time_to_recover_seconds: None,
            attempts: 0,
            outcome: outcome.into(),
            dry_run: false,
        }
    }

    #[test]
    fn replays_last_version_and_skips_a_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, rec) = IncidentJournal::open(dir.path()).unwrap();
            assert_eq!(rec.records, 0);
            j.record(&incident(1, "open")).unwrap();
            j.record(&incident(2, "open")).unwrap();
            j.record(&incident(1, "recovered")).unwrap();
        }
        // A crash in the middle of writing the next record.
        let path = dir.path().join("incidents.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":3,"container":"c3","contai"#).unwrap();
        drop(f);

        let (j, rec) = IncidentJournal::open(dir.path()).unwrap();
        assert_eq!(rec.records, 3);
        assert_eq!(rec.torn_tail_bytes, 32);
        let all = j.list(None, None);
        assert_eq!(
            all.iter()
                .map(|i| (i.id, i.outcome.as_str()))
                .collect::<Vec<_>>(),
            vec![(2, "open"), (1, "recovered")]
        );
        assert_eq!(j.open_incidents().len(), 1);
        assert_eq!(j.next_id(), 3);
        // Appending after the cut yields a clean file.
        j.record(&incident(3, "open")).unwrap();
        let (_, skipped) = read_only(dir.path()).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(j.list(None, Some("c3")).len(), 1);
        let since = humantime::parse_rfc3339("2026-01-01T00:00:02Z").unwrap();
        assert_eq!(j.list(Some(since), None).len(), 2);
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&incident(1, "open")).unwrap();
        std::fs::write(
            dir.path().join("incidents.jsonl"),
            format!("garbage\n{good}\n"),
        )
        .unwrap();
        let (j, rec) = IncidentJournal::open(dir.path()).unwrap();
        assert_eq!(rec.skipped, vec!["garbage".to_string()]);
        assert_eq!(j.list(None, None).len(), 1);
    }
}

#[cfg(test)]
mod compaction_tests {
    use super::*;

    #[test]
    fn many_updates_are_compacted_to_the_latest_copies() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = IncidentJournal::open(dir.path()).unwrap();
            let mut i: Incident = serde_json::from_str(
                r#"{"id":1,"container":"c","container_id":"x","trigger":"died","first_failure":"2026-01-01T00:00:00Z","detected":"2026-01-01T00:00:00Z","attempts":0,"outcome":"open"}"#,
            )
            .unwrap();
            for n in 0..(COMPACT_SLACK as u32 + 10) {
                i.attempts = n;
                j.record(&i).unwrap();
            }
        }
        let (j, rec) = IncidentJournal::open(dir.path()).unwrap();
        assert!(rec.compacted);
        assert_eq!(j.list(None, None)[0].attempts, COMPACT_SLACK as u32 + 9);
        let text = std::fs::read_to_string(dir.path().join("incidents.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 1);
    }
}
