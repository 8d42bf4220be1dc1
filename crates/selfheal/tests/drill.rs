//! `selfheal drill` against a real demo-app container healed by a real watchdog process.
//!
//! Needs the Docker engine and the `selfheal/demo-app` image (`make images`). The shared test
//! support gives every container a label unique to this run; the watchdog only watches that
//! label, and the containers and the watchdog are removed even when an assertion fails.

mod support;

use std::process::{Command, Output};
use support::*;

/// Options for a demo-app with its HEALTHCHECK made fast and the selfheal labels.
fn app_args(opted_in: bool) -> Vec<&'static str> {
    let mut args = with(
        FAST_HEALTH,
        &[
            "--restart",
            "unless-stopped",
            "--memory",
            "64m",
            "--label",
            "selfheal.stop-timeout=2",
            "--label",
            "selfheal.start-period=1s",
            "--label",
            "selfheal.restart.max=20",
        ],
    );
    if opted_in {
        args.extend(["--label", "selfheal.enable=true"]);
    }
    args
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
    let env = TestEnv::new("drill");
    let app = env.run("app", &app_args(true)).name;
    let plain = env.run("plain", &app_args(false)).name;
    // A short reset period: the crash round waits until the unhealthy round's restart no
    // longer counts for backoff (the drill's default spacing), 2 s here rather than 60.
    let w = env.watchdog(&[
        "--backoff-initial",
        "100ms",
        "--backoff-max",
        "1s",
        "--backoff-reset",
        "2s",
    ]);
    let api = format!("http://127.0.0.1:{}", w.port);
    let token = TOKEN;

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
    let report = env.dir.path().join("drill.md");
    let out = drill(&[
        "--container",
        &app,
        "--watchdog",
        &api,
        "--chaos-token",
        token,
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
    assert_eq!(json["spaced"], true);
    assert_eq!(json["verdict"]["result"], "passed", "{json:#}");
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
        // Detection, hold and restart to healthy add up to the round's time; nothing held it.
        let part = |k: &str| r["split"][k].as_f64().unwrap_or(f64::NAN);
        let sum = part("detection_s") + part("hold_s") + part("restart_to_healthy_s");
        assert!((sum - healthy).abs() < 1e-6, "{r:#}");
        assert!(r["hold"].is_null() && part("hold_s") < 0.5, "{r:#}");
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
}

/// The drill follows its container by name: back to back, the watchdog's ladder recreates it
/// on the third round (two restarts within the stable period did not hold), which gives the
/// container under that name a new id; that round is still measured and recovered.
#[test]
fn a_back_to_back_drill_follows_the_container_the_ladder_recreates() {
    let env = TestEnv::new("drill-ladder");
    let app = env.run("app", &app_args(true));
    let w = env.watchdog(&["--backoff-initial", "100ms", "--backoff-max", "1s"]);
    let api = format!("http://127.0.0.1:{}", w.port);
    w.wait_state(&app.name, "healthy", secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = drill(&[
        "--container",
        &app.name,
        "--watchdog",
        &api,
        "--chaos-token",
        TOKEN,
        "--scenarios",
        "unhealthy",
        "--rounds",
        "3",
        "--back-to-back",
        "--slo",
        "60s",
        "--settle-timeout",
        "60s",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "drill failed: {err}\n{}",
        w.log_tail()
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let rounds = json["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3, "{json:#}");
    for r in rounds {
        assert_eq!(r["outcome"], "recovered", "{r:#}\n{}", w.log_tail());
    }
    assert_ne!(
        docker(&["inspect", "-f", "{{.Id}}", &app.name]),
        app.id,
        "the third round's fault was met with a recreate"
    );
    let steps: Vec<String> = w
        .incidents(&app.name)
        .iter()
        .flat_map(|i| i["steps"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["verb"].as_str().map(String::from))
        .collect();
    assert!(steps.contains(&"recreate".to_string()), "{steps:?}");
}
