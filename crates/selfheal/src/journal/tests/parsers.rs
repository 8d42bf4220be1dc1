//! The scan's keys parser and the whole-record parser accept exactly the same lines: a copy
//! the scan takes as the latest must be one the journal can read back whole.

use super::super::parse::{parse_keys, parse_record};
use super::super::*;
use super::{incident, ts};
use crate::evidence::{Evidence, Logs};
use serde_json::{json, Value};

/// Both parsers' verdicts on `line` agree (and when they accept, on the keys).
fn agree(line: &[u8]) -> bool {
    match (parse_keys(line), parse_record(line)) {
        (Ok(k), Ok(i)) => {
            assert_eq!(
                (k.id, &*k.container, &*k.container_id, k.detected, k.outcome),
                (i.id, &*i.container, &*i.container_id, i.detected, i.outcome)
            );
            true
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "{}", String::from_utf8_lossy(line));
            false
        }
        (k, i) => panic!(
            "keys {:?}, whole {:?}: {}",
            k.map(|k| k.id),
            i.map(|i| i.id),
            String::from_utf8_lossy(line)
        ),
    }
}

/// Every field of a full record, given each wrong-typed value or left out: whatever one
/// parser says, the other says too. A field added to `Incident` but not to the keys parser
/// fails here as soon as its type rejects one of the values.
#[test]
fn the_keys_parser_accepts_exactly_the_records_the_whole_parser_does() {
    let mut full = incident(7, IncidentOutcome::Recovered);
    full.compose_project = Some("p".into());
    full.compose_service = Some("s".into());
    full.action_begun = Some(ts("2026-01-01T00:00:08.123456789Z"));
    full.last_restart = full.action_begun;
    full.healthy_again = full.action_begun;
    full.time_to_detect_seconds = Some(1.0);
    full.time_to_recover_seconds = Some(2.0);
    full.parent = Some("vpn".into());
    full.parent_incident = Some(3);
    full.failure = Some("refused".into());
    full.evidence = Some(Arc::new(Evidence {
        logs: Some(Logs {
            note: Some("gone".into()),
            ..Logs::default()
        }),
        ..Evidence::default()
    }));
    let Value::Object(fields) = serde_json::to_value(&full).unwrap() else {
        panic!("an object");
    };
    assert!(agree(&serde_json::to_vec(&fields).unwrap()));
    let wrong = [
        json!({}),
        json!([]),
        json!("x"),
        json!(-1),
        json!(1.5),
        json!(true),
        json!(null),
        json!(u64::MAX),
    ];
    let mut accepted = 0;
    for name in fields.keys() {
        let mut without = fields.clone();
        without.remove(name);
        accepted += usize::from(agree(&serde_json::to_vec(&without).unwrap()));
        for value in &wrong {
            let mut changed = fields.clone();
            changed.insert(name.clone(), value.clone());
            accepted += usize::from(agree(&serde_json::to_vec(&changed).unwrap()));
        }
    }
    // Both accept some variants (an optional field left out) and refuse others.
    assert!(accepted > 0 && accepted < fields.len() * (wrong.len() + 1));

    let line = serde_json::to_string(&full).unwrap();
    // Not UTF-8 inside the evidence, which the keys parser skips.
    let bad = line.replace("gone", "go\u{1}e").replace('\u{1}', "\u{7f}");
    let mut bytes = bad.into_bytes();
    let at = bytes.iter().position(|b| *b == 0x7f).unwrap();
    bytes[at] = 0xff;
    assert!(!agree(&bytes));
    // Evidence this version cannot read, an unknown field, ids out of range, not JSON.
    assert!(agree(
        line.replace(r#""evidence":{"#, r#""evidence":"old","x":{"#)
            .as_bytes()
    ));
    assert!(agree(
        line.replace(r#""id":7"#, r#""id":7,"new_field":[1]"#)
            .as_bytes()
    ));
    assert!(!agree(line.replace(r#""id":7"#, r#""id":0"#).as_bytes()));
    assert!(!agree(
        line.replace(r#""id":7"#, r#""id":9007199254740992"#)
            .as_bytes()
    ));
    assert!(!agree(&line.as_bytes()[..line.len() - 1]));
}
