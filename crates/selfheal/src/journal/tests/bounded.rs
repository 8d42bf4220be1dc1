//! The journal's bound on memory and its paging, over incidents held whole and incidents read
//! back from the file. The model (which ids match, in which order) is computed here from the
//! generated records, never read from the journal.

use super::super::*;
use super::{incident, line, open, WAIT};
use crate::evidence::{Evidence, Logs};

/// Records as a run of the watchdog leaves them: every 7th open, container `web` for ids
/// divisible by 3 (`db` otherwise), detected at minute `id`, evidence naming the incident
/// on every tenth (the rest keep the large test quick in a debug build).
fn generated(id: u64) -> Incident {
    let outcome = if id.is_multiple_of(7) {
        IncidentOutcome::Open
    } else {
        IncidentOutcome::Recovered
    };
    let mut i = incident(id, outcome);
    i.container = if id.is_multiple_of(3) { "web" } else { "db" }.into();
    i.detected = minute(id).into();
    i.evidence = (id % 10 == 1).then(|| {
        Arc::new(Evidence {
            logs: Some(Logs {
                note: Some(format!("evidence of {id}")),
                ..Logs::default()
            }),
            ..Evidence::default()
        })
    });
    i
}

fn minute(n: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000 + 60 * n)
}

/// Writes a journal of incidents `1..=n` in their final state, each first open if `twice`.
fn write_journal(dir: &Path, n: u64, twice: bool) {
    let mut text = String::new();
    for id in 1..=n {
        if twice {
            let first = Incident {
                outcome: IncidentOutcome::Open,
                ..generated(id)
            };
            text.push_str(&line(&first));
        }
        text.push_str(&line(&generated(id)));
    }
    std::fs::write(journal_path(dir), text).unwrap();
}

fn open_with(dir: &Path, limits: Limits) -> IncidentJournal {
    IncidentJournal::open_with(dir, JournalMetrics::default(), limits)
        .unwrap()
        .0
}

/// Incidents the journal holds whole in memory.
fn held_whole(j: &IncidentJournal) -> usize {
    j.lock().index.wholes().count()
}

/// Walks every page of `q` and returns the ids in the order served; each page holds at most
/// `limit` incidents, none with evidence.
fn walk(mut next: impl FnMut(Option<u64>) -> IncidentPage, limit: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let page = next(before);
        assert!(page.incidents.len() <= limit.max(1));
        assert!(page.incidents.iter().all(|i| i.evidence.is_none()));
        ids.extend(page.incidents.iter().map(|i| i.id));
        match page.next_before {
            Some(b) => before = Some(b),
            None => return ids,
        }
    }
}

/// Every walk (several page sizes, with and without filters) serves exactly the model's ids:
/// every match once, newest (highest id) first.
fn check_walks(page: impl Fn(&IncidentQuery<'_>) -> IncidentPage, ids: &[u64]) {
    let since = minute(20);
    for (container, since) in [(None, None), (Some("web"), None), (Some("db"), Some(since))] {
        let expected: Vec<u64> = ids
            .iter()
            .rev()
            .copied()
            .filter(|id| {
                container.is_none_or(|c| c == if id.is_multiple_of(3) { "web" } else { "db" })
            })
            .filter(|id| since.is_none_or(|s| minute(*id) >= s))
            .collect();
        for limit in [1, 3, 40, 1000] {
            let q = |before| IncidentQuery {
                since,
                container,
                limit,
                before,
            };
            let got = walk(|before| page(&q(before)), limit);
            assert_eq!(got, expected, "{container:?} {since:?} limit {limit}");
        }
    }
}

/// Opening a journal much larger than what is kept holds only keys for most incidents: at
/// most the open ones and `HOT_CLOSED` closed ones whole, and never more than twice the kept
/// bound in the index while streaming, however long the file.
#[test]
fn a_large_journal_is_held_by_keys_with_only_the_newest_incidents_whole() {
    let dir = tempfile::tempdir().unwrap();
    let n = 5 * MAX_KEPT as u64;
    write_journal(dir.path(), n, false);
    let open_count = n / 7;
    let newest_open_among_kept = (n - MAX_KEPT as u64 + 1..=n)
        .filter(|id| id.is_multiple_of(7))
        .count();

    let (reader, rec) = read_only(dir.path()).unwrap();
    assert_eq!((rec.records, rec.skipped_count), (n as usize, 0));
    // The daemon's rule: the newest MAX_KEPT, and every open one.
    let kept = MAX_KEPT + open_count as usize - newest_open_among_kept;
    assert_eq!(reader.index.len(), kept);
    // Pruned as the scan goes: the open ones stay, the rest is cut back to MAX_KEPT.
    let bound = 2 * (MAX_KEPT + open_count as usize) + 1;
    assert!(reader.index.peak() <= bound, "{}", reader.index.peak());
    assert_eq!(reader.index.wholes().count(), 0);

    let (j, rec) = open(dir.path());
    assert!(rec.compacted);
    assert_eq!(j.lock().index.len(), kept);
    assert!(j.lock().index.peak() <= bound);
    assert_eq!(held_whole(&j), open_count as usize + HOT_CLOSED);
    assert_eq!(j.open_incidents().len(), open_count as usize);
    // An incident read back from the file has its evidence.
    let old = n - MAX_KEPT as u64 + 1;
    assert!(generated(old).evidence.is_some());
    assert_eq!(j.get(old), Some(generated(old)));
    let text = std::fs::read_to_string(journal_path(dir.path())).unwrap();
    assert_eq!(text.lines().count(), kept);
}

/// Pages are the same whether their incidents are held whole or read from the file, before
/// and after the writer compacts the file under them, and after an old incident is updated.
#[test]
fn pages_walk_memory_and_file_alike_across_updates_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    write_journal(dir.path(), n, true);
    let limits = Limits {
        max_kept: 100,
        compact_slack: 10,
        hot_closed: 5,
    };
    let j = open_with(dir.path(), limits);
    let open_count = (1..=n).filter(|id| id.is_multiple_of(7)).count();
    assert_eq!(held_whole(&j), open_count + 5);
    let ids: Vec<u64> = (1..=n).collect();
    check_walks(|q| j.page(q), &ids);
    assert_eq!(j.get(1), Some(generated(1)));
    assert!(j.get(1).unwrap().evidence.is_some());
    let q = |limit, before| IncidentQuery {
        limit,
        before,
        ..IncidentQuery::default()
    };
    assert_eq!(j.page(&q(40, None)).next_before, None);
    assert_eq!(j.page(&q(39, None)).next_before, Some(2));
    assert_eq!(j.page(&q(5, Some(1))), IncidentPage::default());

    // An old, closed incident changes: served once, with the change, and not held whole once
    // it is written.
    let mut changed = generated(2);
    changed.attempts = 99;
    j.record(changed.clone());
    // (Whole now, or already written and let go: the writer runs concurrently.)
    assert_eq!(j.get(2), Some(changed.clone()));
    assert!(j.flush(WAIT));
    assert_eq!(held_whole(&j), open_count + 5);
    check_walks(|q| j.page(q), &ids);
    assert_eq!(j.get(2), Some(changed.clone()));

    // Enough appends to make the writer compact (the file was not compacted at open, so its
    // 80 lines count as the compacted size): the file is rewritten under the spans.
    let path = journal_path(dir.path());
    let before = std::fs::metadata(&path).unwrap().len();
    let mut touched = generated(n);
    for attempts in 0..2 * n as u32 {
        touched.attempts = attempts;
        j.record(touched.clone());
        assert!(j.flush(WAIT));
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), n as usize, "compacted");
    assert!(text.len() < before as usize);
    check_walks(|q| j.page(q), &ids);
    assert_eq!(j.get(2), Some(changed));
    assert_eq!(j.get(n), Some(touched));
    assert_eq!(j.get(n + 1), None);

    // The CLI reads the same pages from the compacted file.
    drop(j);
    let (reader, _) = read_only(dir.path()).unwrap();
    check_walks(|q| reader.page(q), &ids);
}

/// A line exactly as the previous version of the journal wrote it (times with milliseconds,
/// evidence, compose labels, a parent) reads back and serializes to the same bytes, in the
/// file and in the API's JSON.
#[test]
fn records_of_the_previous_version_read_back_byte_for_byte() {
    let old = r#"{"id":12,"container":"demo-web-1","container_id":"4f1c2a","compose_project":"demo","compose_service":"web","trigger":"dependency","first_failure":"2026-03-01T10:00:00.250Z","detected":"2026-03-01T10:00:01.500Z","action_begun":"2026-03-01T10:00:01.502Z","last_restart":"2026-03-01T10:00:01.503Z","healthy_again":"2026-03-01T10:00:09.010Z","time_to_detect_seconds":1.25,"time_to_recover_seconds":7.508,"attempts":1,"outcome":"recovered","dry_run":false,"parent":"vpn","parent_incident":11,"evidence":{"probe_failures":[{"at":"2026-03-01T10:00:01.400Z","reason":"timeout","duration_ms":1000.0}],"logs":{"lines":[{"stream":"stderr","time":"2026-03-01T10:00:00.100Z","text":"panic"}],"truncated":false,"note":null}}}"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(journal_path(dir.path()), format!("{old}\n")).unwrap();
    let (j, rec) = open(dir.path());
    assert_eq!(rec.skipped_count, 0);
    let got = j.get(12).unwrap();
    assert_eq!(serde_json::to_string(&got).unwrap(), old);
    let since = humantime::parse_rfc3339("2026-03-01T10:00:01.500Z").unwrap();
    assert_eq!(j.list(Some(since), Some("4f1c")).len(), 1);
    let later = since + Duration::from_millis(1);
    assert!(j.list(Some(later), None).is_empty());
    // Times finer than a millisecond (none written so far) keep every digit.
    for text in [
        "2026-03-01T10:00:01.000000001Z",
        "2026-03-01T10:00:01.123456789Z",
    ] {
        assert_eq!(super::ts(text).to_string(), text);
    }
}
