//! `selfheal incidents --state-dir`: the CLI reads a damaged journal with the same tolerant
//! parser as the daemon. No Docker needed.

use std::process::Command;

fn record(id: u64, container: &str, trigger: &str, outcome: &str) -> String {
    format!(
        r#"{{"id":{id},"container":"{container}","container_id":"{id:064}","trigger":"{trigger}","first_failure":"2026-01-01T00:00:0{id}Z","detected":"2026-01-01T00:00:0{id}Z","attempts":1,"outcome":"{outcome}"}}"#
    ) + "\n"
}

fn incidents(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .arg("incidents")
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn incidents_command_skips_unreadable_lines_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut content = record(1, "web", "unhealthy", "open").into_bytes();
    // One byte that is not UTF-8 in an otherwise well-formed record.
    content.extend(record(2, "bad\u{1}", "died", "open").bytes());
    let bad = content.iter().position(|&b| b == 1).unwrap();
    content[bad] = 0xff;
    content.extend(b"not json at all\n");
    content.extend(vec![b'x'; 3 << 20]);
    content.push(b'\n');
    content.extend(record(3, "db", "probe_failed", "open").bytes());
    content.extend(record(1, "web", "unhealthy", "recovered").bytes());
    std::fs::write(dir.path().join("incidents.jsonl"), &content).unwrap();
    let state_dir = dir.path().to_string_lossy().into_owned();

    let (ok, table, err) = incidents(&["--state-dir", &state_dir]);
    assert!(ok, "{err}");
    assert_eq!(
        err.trim(),
        "selfheal: skipped 3 unreadable record(s) in the journal"
    );
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].contains("db") && rows[0].contains("probe_failed"),
        "{table}"
    );
    assert!(
        rows[1].contains("web") && rows[1].contains("recovered"),
        "{table}"
    );

    let (ok, json, err) = incidents(&["--state-dir", &state_dir, "--json", "--container", "web"]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json:#}");
    assert_eq!(json[0]["outcome"], "recovered");
    assert_eq!(json[0]["trigger"], "unhealthy");
    assert!(json[0].get("unpersisted").is_none(), "{json:#}");

    // The CLI leaves the file as it found it.
    assert_eq!(
        std::fs::read(dir.path().join("incidents.jsonl")).unwrap(),
        content
    );
}
