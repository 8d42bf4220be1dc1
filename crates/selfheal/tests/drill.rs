//! `selfheal drill` against a real demo-app container healed by a real watchdog process.
//!
//! Needs the Docker engine and the `selfheal/demo-app` image (`make images`). Every container
//! carries a label unique to this run; the watchdog only watches that label, and a guard
//! removes the containers and stops the watchdog even when an assertion fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "selfheal/demo-app:latest";

/// Removes the containers and kills the watchdog on drop.
struct Cleanup {
    containers: Vec<String>,
    watchdog: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        for c in &self.containers {
            // A frozen container is removed just the same: SIGKILL works on stopped processes.
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// A demo-app with chaos on, the image's HEALTHCHECK made fast, and the selfheal labels.
fn start_app(name: &str, filter: &str, opted_in: bool, token: &str) {
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--name".into(),
        name.into(),
        "--restart".into(),
        "unless-stopped".into(),
        "--memory".into(),
        "64m".into(),
        "-e".into(),
        format!("CHAOS_TOKEN={token}"),
        "-e".into(),
        "READY_DELAY=0s".into(),
        "--health-interval".into(),
        "1s".into(),
        "--health-timeout".into(),
        "1s".into(),
        "--health-retries".into(),
        "2".into(),
        "--label".into(),
        filter.into(),
        "--label".into(),
        "selfheal.stop-timeout=2".into(),
        "--label".into(),
        "selfheal.start-period=1s".into(),
        "--label".into(),
        "selfheal.restart.max=20".into(),
    ];
    if opted_in {
        args.extend(["--label".into(), "selfheal.enable=true".into()]);
    }
    args.push(IMAGE.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args);
}

fn start_watchdog(port: u16, state: &Path, filter: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["watch", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(state)
        .args([
            "--filter-label",
            filter,
            "--backoff-initial",
            "100ms",
            "--backoff-max",
            "1s",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the watchdog")
}

fn wait_for(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn drill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .arg("drill")
        .args(args)
        .env_remove("CHAOS_TOKEN")
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .expect("run selfheal drill")
}

#[test]
fn drill_measures_recovery_and_refuses_unopted_containers() {
    let id = run_id();
    let filter = format!("test.selfheal.drill={id}");
    let app = format!("selfheal-drill-app-{id}");
    let plain = format!("selfheal-drill-plain-{id}");
    let state = tempfile::tempdir().unwrap();
    let mut guard = Cleanup {
        containers: vec![app.clone(), plain.clone()],
        watchdog: None,
    };
    let token = format!("token-{id}");
    start_app(&app, &filter, true, &token);
    start_app(&plain, &filter, false, &token);
    let port = free_port();
    guard.watchdog = Some(start_watchdog(port, state.path(), &filter));
    let api = format!("http://127.0.0.1:{port}");
    wait_for("the watchdog's API", Duration::from_secs(30), || {
        Command::new(env!("CARGO_BIN_EXE_selfheal"))
            .args(["healthcheck", "--url", &format!("{api}/healthz")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });

    // Not opted in: refused, and nothing is injected.
    let out = drill(&[
        "--container",
        &plain,
        "--watchdog",
        &api,
        "--scenarios",
        "crash",
        "--rounds",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("selfheal.enable=true") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.RestartCount}}", &plain]),
        "0",
        "the refused drill must not touch the container"
    );

    // One round of each: layer 2 (the watchdog restarts it) and layer 1 (Docker does).
    let report = state.path().join("drill.md");
    let out = drill(&[
        "--container",
        &app,
        "--watchdog",
        &api,
        "--chaos-token",
        &token,
        "--scenarios",
        "unhealthy,crash",
        "--rounds",
        "1",
        "--slo",
        "60s",
        "--settle-timeout",
        "60s",
        "--json",
        "--report",
        report.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "drill failed: {err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(json["ok"], true);
    let rounds = json["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{json:#}");
    for r in rounds {
        let num = |k: &str| {
            r[k].as_f64()
                .unwrap_or_else(|| panic!("{k} missing in {r:#}"))
        };
        let (detect, begun, started, healthy) = (
            num("time_to_detect_seconds"),
            num("restart_begun_s"),
            num("started_s"),
            num("time_to_recover_seconds"),
        );
        assert_eq!(r["outcome"], "recovered", "{r:#}");
        assert!(
            0.0 <= detect && detect <= begun + 0.05 && begun <= started && started <= healthy,
            "phases out of order: {r:#}"
        );
        assert!(healthy < 60.0, "{r:#}");
        assert!(r["restarts"].as_u64().unwrap() >= 1, "{r:#}");
        assert!(r["incident_id"].as_u64().is_some(), "{r:#}");
    }
    let unhealthy = &rounds[0];
    assert_eq!(unhealthy["scenario"], "unhealthy");
    assert_eq!(unhealthy["restarted_by"], "watchdog", "{unhealthy:#}");
    assert_eq!(unhealthy["incident_trigger"], "unhealthy", "{unhealthy:#}");
    // The HEALTHCHECK needs two failed checks 1 s apart before Docker says unhealthy.
    assert!(
        unhealthy["time_to_detect_seconds"].as_f64().unwrap() >= 0.5,
        "{unhealthy:#}"
    );
    let crash = &rounds[1];
    assert_eq!(crash["scenario"], "crash");
    assert_eq!(crash["restarted_by"], "docker", "{crash:#}");
    assert_eq!(crash["incident_trigger"], "died", "{crash:#}");
    let summary = json["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    assert_eq!(summary[0]["time_to_recover"]["n"], 1);
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("| unhealthy round 1 |"), "{md}");
    let svg = std::fs::read_to_string(report.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("crash round 1"));
    drop(guard);
}
