//! Dry run, webhook notifications and the `check` and `incidents` commands, against the real
//! Docker engine.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::sync::mpsc;
use support::*;

const WATCH_FAST: &[&str] = &["--start-period", "1s", "--backoff-initial", "500ms"];

#[test]
fn dry_run_decides_and_records_but_changes_nothing() {
    let env = TestEnv::new("dryrun");
    let app = env.run(
        "app",
        &with(
            FAST_HEALTH,
            &[
                "--restart",
                "unless-stopped",
                "--label",
                "selfheal.enable=true",
            ],
        ),
    );
    let w = env.watchdog(&with(WATCH_FAST, &["--dry-run"]));
    app.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    let started = app.started_at();
    app.chaos("unhealthy");
    let labels = [
        ("container", app.name.as_str()),
        ("trigger", "unhealthy"),
        ("result", "dry_run"),
    ];
    wait_for("a dry-run decision", secs(30), || {
        (w.metric("app_recovery_events_total", &labels) >= Some(1.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let incidents = w.incidents(&app.name);
    assert!(
        incidents.iter().any(|i| i["dry_run"] == true),
        "{incidents:?}"
    );
    let log = std::fs::read_to_string(&w.log).unwrap_or_default();
    assert!(log.contains("would restart"), "{}", w.log_tail());
    assert_eq!(app.started_at(), started, "dry run restarted the container");
    assert_eq!(app.health(), "unhealthy");
}

/// Accepts HTTP POSTs on loopback and hands their bodies to the test.
fn capture_server() -> (u16, mpsc::Receiver<serde_json::Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(20) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(secs(5)));
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
                if let Ok(v) = serde_json::from_slice(&body) {
                    let _ = tx.send(v);
                }
            }
        }
    });
    (port, rx)
}

#[test]
fn webhook_receives_opened_and_recovered_with_slack_text() {
    let env = TestEnv::new("webhook");
    let app = env.run(
        "app",
        &with(
            FAST_HEALTH,
            &[
                "--restart",
                "unless-stopped",
                "--label",
                "selfheal.enable=true",
            ],
        ),
    );
    let (port, rx) = capture_server();
    let url = format!("http://127.0.0.1:{port}/hook");
    // The recovery is told once the container stayed healthy for the backoff reset period.
    let w = env.watchdog(&with(
        WATCH_FAST,
        &["--webhook-url", &url, "--backoff-reset", "2s"],
    ));
    app.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    app.chaos("unhealthy");
    let mut events = Vec::new();
    while let Ok(v) = rx.recv_timeout(secs(30)) {
        events.push(v.clone());
        if v["event"] == "recovered" {
            break;
        }
    }
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds,
        vec!["opened", "recovered"],
        "{events:?}\n{}",
        w.log_tail()
    );
    for e in &events {
        assert_eq!(e["container"], app.name.as_str());
        assert!(
            e["text"].as_str().is_some_and(|t| t.contains(&app.name)),
            "{e}"
        );
    }
    assert!(events[1]["time_to_recover_seconds"].as_f64().is_some());
}

#[test]
fn check_command_names_container_label_and_value() {
    let env = TestEnv::new("check");
    let bad = env.run(
        "bad",
        &[
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.restart.max=lots",
        ],
    );
    let good = env.run(
        "good",
        &[
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.probe.http=:8080/health",
        ],
    );
    // The ladder's labels: shown when good, named when they would do nothing.
    let monitor = env.run(
        "monitor",
        &[
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.action=notify",
        ],
    );
    let pointless = env.run(
        "pointless",
        &[
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.action=none",
            "--label",
            "selfheal.on-quarantine=stop",
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["check", "--filter-label", &env.scope()])
        .env_remove("SELFHEAL_CONFIG")
        .output()
        .expect("selfheal check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.contains("ERROR")
            && l.contains(&bad.name)
            && l.contains("selfheal.restart.max")
            && l.contains("lots")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("ok")
            && l.contains(&good.name)
            && l.contains("http")
            && l.contains("action restart (recreate after 2, on quarantine leave)")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("ok")
            && l.contains(&monitor.name)
            && l.contains("action notify (nothing touched)")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.contains("ERROR")
            && l.contains(&pointless.name)
            && l.contains("selfheal.on-quarantine")
            && l.contains("never restarts")),
        "{stdout}"
    );

    // A bad flag is named before anything runs.
    let out = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["check", "--probe-interval", "sometimes"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--probe-interval") && stderr.contains("sometimes"),
        "{stderr}"
    );
}

#[test]
fn incidents_command_reads_the_journal() {
    let env = TestEnv::new("incidents");
    let app = env.run(
        "app",
        &with(
            FAST_HEALTH,
            &[
                "--restart",
                "unless-stopped",
                "--label",
                "selfheal.enable=true",
            ],
        ),
    );
    let w = env.watchdog(WATCH_FAST);
    app.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    app.chaos("unhealthy");
    w.wait_recovered(&app.name, secs(30));
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_selfheal"))
            .arg("incidents")
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dir = w.state_dir.to_string_lossy().into_owned();
    let table = run(&["--state-dir", &dir]);
    let row = table
        .lines()
        .find(|l| l.contains("unhealthy"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("recovered"), "{table}");
    let api = format!("http://127.0.0.1:{}", w.port);
    let json: serde_json::Value =
        serde_json::from_str(&run(&["--api", &api, "--json", "--since", "1h"])).expect("JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(1));
    let none = run(&["--state-dir", &dir, "--container", "no-such-container"]);
    assert!(none.contains("(no incidents)"), "{none}");
}

/// Booleans follow the same order as every other key: flag, then environment, then file.
/// `check` prints the resolved values before it talks to Docker, so no engine is needed here.
#[test]
fn dry_run_and_watch_all_from_the_file_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("selfheal.toml");
    std::fs::write(&file, "dry-run = true\nwatch-all = true\n").expect("write config");
    let file = file.to_string_lossy().into_owned();
    let resolved = |flags: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_selfheal"));
        cmd.args(["check", "--config", &file])
            .args(["--docker-host", "unix:///nonexistent/docker.sock"])
            .args(flags)
            .env_remove("SELFHEAL_DRY_RUN")
            .env_remove("SELFHEAL_WATCH_ALL")
            .env_remove("SELFHEAL_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("selfheal check runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout
            .lines()
            .find(|l| l.starts_with("configuration ok"))
            .unwrap_or_else(|| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
            .to_string();
        (
            line.contains("dry-run true"),
            line.contains("watch-all true"),
        )
    };
    assert_eq!(resolved(&[], &[]), (true, true), "the file alone");
    assert_eq!(
        resolved(&["--dry-run=false", "--watch-all=false"], &[]),
        (false, false),
        "flags beat the file"
    );
    assert_eq!(
        resolved(
            &[],
            &[
                ("SELFHEAL_DRY_RUN", "false"),
                ("SELFHEAL_WATCH_ALL", "false")
            ]
        ),
        (false, false),
        "the environment beats the file"
    );
    assert_eq!(
        resolved(&["--dry-run"], &[("SELFHEAL_DRY_RUN", "false")]),
        (true, true),
        "a bare flag means true and beats the environment"
    );
}

/// A Unix-socket proxy in front of the real engine that answers Docker's own error shape
/// (500, `{"message": ...}`) to every inspect of `refused_id` and forwards everything else,
/// one request per upstream connection (`Connection: close`), so each request head is seen.
fn refusing_inspect_proxy(path: std::path::PathBuf, refused_id: String) {
    use std::os::unix::net::{UnixListener, UnixStream};
    let listener = UnixListener::bind(&path).expect("bind proxy socket");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let refused = format!("/containers/{refused_id}/json");
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut conn = conn;
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if !line.to_ascii_lowercase().starts_with("connection:") {
                            head.push(line);
                        }
                    }
                    let target = head[0].split(' ').nth(1).unwrap_or("").to_string();
                    if target.split('?').next().unwrap_or("").ends_with(&refused) {
                        let body = r#"{"message":"test proxy: inspect refused"}"#;
                        let reply = format!(
                            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                        continue;
                    }
                    let Ok(mut up) = UnixStream::connect("/var/run/docker.sock") else {
                        return;
                    };
                    head.push("Connection: close\r\n\r\n".into());
                    if up.write_all(head.concat().as_bytes()).is_err() {
                        return;
                    }
                    // Docker closes after the response; so does this connection.
                    let _ = std::io::copy(&mut up, &mut conn);
                    return;
                }
            });
        }
    });
}

/// Item 3 of "A new user's first hour": a container `check` cannot inspect is reported by name
/// with the cause, and `check` fails, while the others are still checked. The engine is real;
/// only the inspect of one container is refused, by a proxy, since no real container can be
/// made uninspectable on demand.
#[test]
fn check_reports_a_container_it_cannot_inspect_and_fails() {
    let env = TestEnv::new("check-inspect");
    let refused = env.run("refused", &["--label", "selfheal.enable=true"]);
    let good = env.run("good", &["--label", "selfheal.enable=true"]);
    let socket = env.dir.path().join("docker.sock");
    refusing_inspect_proxy(socket.clone(), refused.inspect("{{.Id}}"));
    let out = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["check", "--filter-label", &env.scope()])
        .args(["--docker-host", &format!("unix://{}", socket.display())])
        .env_remove("SELFHEAL_CONFIG")
        .env_remove("SELFHEAL_WATCH_ALL")
        .output()
        .expect("selfheal check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("ERROR")
            && l.contains(&refused.name)
            && l.contains("cannot inspect")
            && l.contains("inspect refused")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains(&good.name)),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 container(s) watched, 0 with label errors, 1 not inspectable"),
        "{stdout}"
    );
}
