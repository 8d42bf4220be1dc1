//! The ladder on the real engine and a third-party image (static busybox httpd serving
//! `/www/health`, with a HEALTHCHECK): a fault in the container's writable layer (a file of
//! the image deleted) survives `docker restart`, so two restarts do not heal it and the
//! third step recreates the container from its own configuration; quarantine with
//! `selfheal.on-quarantine=stop`; `selfheal.action=notify` touching nothing.

mod support;

use std::time::{Duration, Instant};
use support::*;

/// Opted in on Docker's HEALTHCHECK alone (unhealthy about 2 s after the fault), Docker's
/// `unless-stopped`, a 1 s stop timeout; `labels` are more `selfheal.*` labels.
fn busybox_args<'a>(labels: &[&'a str]) -> Vec<&'a str> {
    let mut args = with(
        BUSYBOX_HEALTH,
        &[
            "--restart",
            "unless-stopped",
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.stop-timeout=1",
        ],
    );
    for l in labels {
        args.extend(["--label", l]);
    }
    args
}

/// Deletes the file the HEALTHCHECK fetches: a fault in the writable layer.
fn break_layer(name: &str) {
    docker(&["exec", "-u", "0", name, "rm", "/www/health"]);
}

fn id_of(name: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", name])
}

/// The verbs of an incident's steps, in order.
fn steps(incident: &serde_json::Value) -> Vec<String> {
    incident["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["verb"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Restart, restart, recreate, healthy: one incident with those three steps, recovered; the
/// container under its name is a new one (a fresh layer: the file is back), with the same
/// labels; nothing parked aside is left. Prints fault -> healthy for BENCHMARKS.md.
#[test]
fn a_writable_layer_fault_is_healed_by_restart_restart_recreate() {
    require_image(BUSYBOX);
    let env = TestEnv::new("ladder");
    let c = env.run_image("web", BUSYBOX, &busybox_args(&[]));
    let w = env.watchdog(&[]);
    w.wait_state(&c.name, "healthy", secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let old_id = id_of(&c.name);
    let fault = Instant::now();
    break_layer(&c.name);
    let incident = wait_for("the incident recovered", secs(90), || {
        w.incidents(&c.name)
            .into_iter()
            .find(|i| i["outcome"] == "recovered")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let healed_in = fault.elapsed();
    assert_eq!(
        steps(&incident),
        ["restart", "restart", "recreate"],
        "{incident:#}"
    );
    assert_eq!(incident["attempts"], 3);
    assert_eq!(w.incidents(&c.name).len(), 1, "one incident, carried over");
    let new_id = id_of(&c.name);
    assert_ne!(new_id, old_id, "recreated");
    assert_eq!(incident["container_id"], new_id.as_str());
    docker(&["exec", &c.name, "test", "-f", "/www/health"]);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"selfheal.enable\"}}",
            &c.name
        ]),
        "true"
    );
    let filter = format!("label={}", env.scope());
    let all = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    assert_eq!(all.lines().collect::<Vec<_>>(), [c.name.as_str()], "{all}");
    w.wait_state(&c.name, "healthy", secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let recreates = w
        .metric(
            "app_recovery_events_total",
            &[
                ("container", &c.name),
                ("result", "success"),
                ("verb", "recreate"),
            ],
        )
        .unwrap_or(0.0);
    assert_eq!(recreates, 1.0);
    // Where the time went, from the incident's own times (seconds after its first failure).
    let at = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    };
    let first = at(&incident["first_failure"]).expect("first failure");
    let after = |v: &serde_json::Value| {
        at(v).map_or(f64::NAN, |t| {
            t.duration_since(first).unwrap_or_default().as_secs_f64()
        })
    };
    let sent: Vec<String> = incident["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} {:.2}",
                s["verb"].as_str().unwrap_or("?"),
                after(&s["at"])
            )
        })
        .collect();
    println!(
        "ladder: fault -> healthy {:.2} s; from the first failure: detected {:.2}, {}, healthy {:.2}",
        healed_in.as_secs_f64(),
        after(&incident["detected"]),
        sent.join(", "),
        incident["time_to_recover_seconds"].as_f64().unwrap_or(f64::NAN),
    );
}

/// `selfheal.on-quarantine=stop`: once the budget is spent the container is stopped (so a
/// balancer fails over), the incident closes `quarantined`, the API shows it quarantined, and
/// started again by a user while still broken it stays quarantined: never restarted.
#[test]
fn on_quarantine_stop_stops_the_container_past_its_budget() {
    require_image(BUSYBOX);
    let env = TestEnv::new("quarantine-stop");
    let c = env.run_image(
        "web",
        BUSYBOX,
        &busybox_args(&[
            "selfheal.restart.max=1",
            "selfheal.recreate-after=never",
            "selfheal.on-quarantine=stop",
        ]),
    );
    let w = env.watchdog(&[]);
    w.wait_state(&c.name, "healthy", secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    break_layer(&c.name);
    wait_for("stopped", secs(60), || (!c.running()).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    w.wait_state(&c.name, "quarantined", secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    // The stop order has ended (Docker answered it), not only the process.
    wait_for("the stop order ended", secs(30), || {
        let view = w.container(&c.name)?;
        (view["restart_in_flight"] == false).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let incidents = w.incidents(&c.name);
    assert!(
        incidents.iter().any(|i| i["outcome"] == "quarantined"),
        "{incidents:#?}"
    );
    assert_eq!(
        c.restart_count(),
        0,
        "Docker's policy did not bring it back"
    );
    // A user starts it; the layer is still broken: quarantined, not restarted.
    let stopped_run = c.started_at();
    docker(&["start", &c.name]);
    let started = wait_for("the user's start, unhealthy", secs(30), || {
        let now = c.started_at();
        (now != stopped_run && c.health() == "unhealthy").then_some(now)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let until = Instant::now() + secs(6);
    while Instant::now() < until {
        assert_eq!(c.started_at(), started, "restarted\n{}", w.log_tail());
        assert!(c.running(), "stopped again\n{}", w.log_tail());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(w.state(&c.name), "quarantined");
}

/// `selfheal.action=notify`: the fault opens an incident (recorded as observed, verb none)
/// and nothing is done to the container; healthy again by itself, the incident closes
/// `recovered` with no steps.
#[test]
fn action_notify_records_the_fault_and_touches_nothing() {
    require_image(BUSYBOX);
    let env = TestEnv::new("notify-only");
    let c = env.run_image("web", BUSYBOX, &busybox_args(&["selfheal.action=notify"]));
    let w = env.watchdog(&[]);
    w.wait_state(&c.name, "healthy", secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let before = c.inspect("{{.Id}} {{.State.StartedAt}} {{.RestartCount}}");
    break_layer(&c.name);
    wait_for("an open incident", secs(30), || {
        w.incidents(&c.name)
            .into_iter()
            .find(|i| i["outcome"] == "open")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    // A window, not a condition: what must not happen can only be watched for a while.
    let until = Instant::now() + secs(8);
    while Instant::now() < until {
        assert_eq!(
            c.inspect("{{.Id}} {{.State.StartedAt}} {{.RestartCount}}"),
            before,
            "touched\n{}",
            w.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(w.state(&c.name), "unhealthy");
    let observed = w.metric(
        "app_recovery_events_total",
        &[
            ("container", &c.name),
            ("result", "observed"),
            ("verb", "none"),
        ],
    );
    assert_eq!(observed, Some(1.0));
    // Mended by hand: the incident closes as recovered, with nothing done.
    docker(&[
        "exec",
        "-u",
        "0",
        &c.name,
        "sh",
        "-c",
        "echo ok > /www/health",
    ]);
    let incident = w.wait_recovered(&c.name, secs(30));
    assert_eq!(steps(&incident), Vec::<String>::new());
    assert_eq!(incident["attempts"], 0);
    assert_eq!(
        c.inspect("{{.Id}} {{.State.StartedAt}} {{.RestartCount}}"),
        before
    );
}
