use super::*;
use selfheal_core::{Outcome, Trigger};
use std::fs::OpenOptions;
use std::io::Write;

mod bounded;
mod parsers;

pub(super) const WAIT: Duration = Duration::from_secs(10);

pub(super) fn incident(id: u64, outcome: IncidentOutcome) -> Incident {
    Incident {
        id,
        container: format!("c{id}"),
        container_id: "abc".into(),
        compose_project: None,
        compose_service: None,
        trigger: Trigger::Unhealthy,
        first_failure: ts(&format!("2026-01-01T00:00:0{}Z", id % 10)),
        detected: ts(&format!("2026-01-01T00:00:0{}Z", id % 10)),
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
        steps: Vec::new(),
        failure: None,
    }
}

pub(super) fn ts(rfc3339: &str) -> Timestamp {
    humantime::parse_rfc3339(rfc3339).unwrap().into()
}

pub(super) fn line(i: &Incident) -> String {
    serde_json::to_string(i).unwrap() + "\n"
}

/// What the CLI reads: every kept incident, and the parser's report.
pub(super) fn read_back(dir: &Path) -> (Vec<Incident>, Recovery) {
    let (reader, rec) = read_only(dir).unwrap();
    (reader.list(None, None), rec)
}

pub(super) fn open(dir: &Path) -> (IncidentJournal, Recovery) {
    IncidentJournal::open(dir, JournalMetrics::default()).unwrap()
}

pub(super) fn ids_and_outcomes(list: &[Incident]) -> Vec<(u64, IncidentOutcome)> {
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
        r#"{"id":7,"container":"c7","container_id":"abc","compose_project":"demo","trigger":"probe_failed","first_failure":"2026-01-01T00:00:07.000Z","detected":"2026-01-01T00:00:07.000Z","action_begun":null,"healthy_again":null,"time_to_detect_seconds":null,"time_to_recover_seconds":1.5,"attempts":0,"outcome":"recovered","dry_run":false}"#
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
    assert_eq!(parse::parse_record(line.as_bytes()), Ok(i));
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
    let (_, rec) = read_back(dir.path());
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
    let (list, rec) = read_back(dir.path());
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
    let (list, rec) = read_back(dir.path());
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
    let (list, rec) = read_back(dir.path());
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

/// Limits small enough for a test to cross.
const SMALL: Limits = Limits {
    max_kept: 5,
    compact_slack: 10,
    ..LIMITS
};

#[test]
fn the_writer_compacts_updates_to_the_latest_copies() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SMALL;
    let (j, _) = IncidentJournal::open_with(dir.path(), JournalMetrics::default(), limits).unwrap();
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
    let (list, _) = read_back(dir.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].attempts, 99);
}

#[test]
fn compaction_keeps_the_newest_and_every_open_incident() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SMALL;
    let (j, _) = IncidentJournal::open_with(dir.path(), JournalMetrics::default(), limits).unwrap();
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
    // A change while the disk is full keeps the flag and is not lost either, all of it.
    let mut recovered = incident(1, IncidentOutcome::Recovered);
    recovered.failure = Some("restart refused".into());
    recovered.parent = Some("vpn".into());
    j.record(recovered);
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
    let (on_disk, rec) = read_back(dir.path());
    assert_eq!(rec.skipped_count, 0);
    assert_eq!(on_disk, list);
}
