//! What the binary prints when a file it needs cannot be read or made: the path and the
//! operating system's cause, each once. No Docker needed: every case fails before Docker.

use std::path::Path;
use std::process::Command;

/// Runs `selfheal args...`; returns whether it succeeded and its stderr.
fn selfheal(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(args)
        // A SELFHEAL_* variable of the caller's must not change the case under test.
        .env_remove("SELFHEAL_CONFIG")
        .env_remove("SELFHEAL_STATE_DIR")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The last stderr line is exactly `selfheal: {context}: {cause}`.
fn assert_cause_once(stderr: &str, context: &str, cause: &std::io::Error) {
    let cause = cause.to_string();
    assert_eq!(
        stderr.matches(&cause).count(),
        1,
        "{cause:?} not once in:\n{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(last, format!("selfheal: {context}: {cause}"), "{stderr}");
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn incidents_of_a_missing_journal_name_the_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("missing");
    let journal = state_dir.join("incidents.jsonl");
    let cause = std::fs::File::open(&journal).expect_err("no such file");

    let (ok, stderr) = selfheal(&["incidents", "--state-dir", &display(&state_dir)]);
    assert!(!ok, "{stderr}");
    let context = format!("incident journal {}", journal.display());
    assert_cause_once(&stderr, &context, &cause);
}

#[test]
fn watch_with_a_state_dir_it_cannot_create_names_the_cause_once() {
    // Under a regular file, so it fails for root too (a read-only directory would not).
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("write");
    let state_dir = file.join("state");
    let cause = std::fs::create_dir_all(&state_dir).expect_err("not a directory");

    let (ok, stderr) = selfheal(&[
        "watch",
        "--state-dir",
        &display(&state_dir),
        "--listen",
        "127.0.0.1:0",
        // Never reached: the journal is opened first. Kept unreachable all the same.
        "--docker-host",
        &format!("unix://{}", dir.path().join("no-docker.sock").display()),
    ]);
    assert!(!ok, "{stderr}");
    let context = format!(
        "incident journal {}",
        state_dir.join("incidents.jsonl").display()
    );
    assert_cause_once(&stderr, &context, &cause);
}

#[test]
fn a_missing_config_file_names_the_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("missing.toml");
    let cause = std::fs::read_to_string(&config).expect_err("no such file");

    for command in ["check", "watch"] {
        let (ok, stderr) = selfheal(&[command, "--config", &display(&config)]);
        assert!(!ok, "{command}: {stderr}");
        let context = format!("config file {}", config.display());
        assert_cause_once(&stderr, &context, &cause);
    }
}
