//! The watchdog against the real Docker engine: each test starts its own containers on its own
//! network and a `selfheal watch` process scoped to them, then asserts on Docker's state and on
//! the watchdog's API and metrics.

mod support;

use support::*;

const WATCH_FAST: &[&str] = &[
    "--start-period",
    "1s",
    "--backoff-initial",
    "500ms",
    "--backoff-reset",
    "5s",
];

/// Issue test 1: Docker's HEALTHCHECK turns unhealthy: restarted, incident closes with a time to recover.
#[test]
fn unhealthy_container_is_restarted_and_the_incident_closes() {
    let env = TestEnv::new("unhealthy");
    let args = with(
        FAST_HEALTH,
        &[
            "--restart",
            "unless-stopped",
            "--label",
            "selfheal.enable=true",
        ],
    );
    let app = env.run("app", &args);
    let w = env.watchdog(WATCH_FAST);
    app.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    let started = app.started_at();

    app.chaos("unhealthy");
    let recovered = w.wait_recovered(&app.name, secs(40));

    assert_ne!(app.started_at(), started, "the container was restarted");
    app.wait_health("healthy", secs(20)).unwrap();
    assert_eq!(recovered["trigger"], "unhealthy");
    assert!(recovered["action_begun"].is_string(), "{recovered}");
    let ttr = recovered["time_to_recover_seconds"]
        .as_f64()
        .expect("time to recover");
    assert!(ttr > 0.0 && ttr < 30.0, "time to recover {ttr}");
    let labels = [
        ("container", app.name.as_str()),
        ("trigger", "unhealthy"),
        ("result", "success"),
    ];
    assert_eq!(w.metric("app_recovery_events_total", &labels), Some(1.0));
    let count = [("container", app.name.as_str()), ("trigger", "unhealthy")];
    assert_eq!(
        w.metric("selfheal_recovery_duration_seconds_count", &count),
        Some(1.0)
    );
    assert_eq!(
        w.metric(
            "selfheal_container_state",
            &[("container", &app.name), ("state", "healthy")]
        ),
        Some(1.0)
    );
}

/// Issue test 2: A hang only the watchdog's own HTTP probe sees (no HEALTHCHECK) is restarted.
#[test]
fn hang_seen_only_by_the_http_probe_is_restarted() {
    let env = TestEnv::new("hang");
    let app = env.run("app", PROBE_ONLY_FAST);
    let w = env.watchdog(WATCH_FAST);
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    let started = app.started_at();
    app.chaos("hang");
    let incident = w.wait_recovered(&app.name, secs(40));
    assert_eq!(incident["trigger"], "probe_failed");
    assert_ne!(app.started_at(), started);
    let (status, _) = http(
        "GET",
        &format!("{}:8080", app.ip()),
        "/health",
        None,
        secs(2),
    )
    .expect("answers again");
    assert_eq!(status, 200);
    let timeouts = w.metric(
        "selfheal_probe_failures_total",
        &[("container", &app.name), ("reason", "timeout")],
    );
    assert!(timeouts.unwrap_or(0.0) >= 2.0, "{timeouts:?}");
}

/// Issue test 3: A crash that Docker's restart policy heals is recorded, and not restarted a second time.
#[test]
fn crash_restarted_by_docker_is_recorded_not_repeated() {
    let env = TestEnv::new("crash");
    let args = with(
        FAST_HEALTH,
        &[
            "--restart",
            "unless-stopped",
            "--label",
            "selfheal.enable=true",
        ],
    );
    let app = env.run("app", &args);
    let w = env.watchdog(WATCH_FAST);
    app.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    app.chaos("crash");
    let incident = w.wait_recovered(&app.name, secs(40));
    assert_eq!(incident["trigger"], "died");
    assert_eq!(app.restart_count(), 1, "Docker restarted it once");
    let observed = [
        ("container", app.name.as_str()),
        ("trigger", "died"),
        ("result", "observed"),
    ];
    assert_eq!(w.metric("app_recovery_events_total", &observed), Some(1.0));
    let ours = [
        ("container", app.name.as_str()),
        ("trigger", "died"),
        ("result", "success"),
    ];
    assert_eq!(
        w.metric("app_recovery_events_total", &ours),
        Some(0.0),
        "{}",
        w.log_tail()
    );
    assert!(incident["time_to_recover_seconds"].as_f64().is_some());
}

/// Issue test 4: `docker stop` is respected: never started again by the watchdog.
#[test]
fn docker_stop_is_respected() {
    let env = TestEnv::new("stop");
    let args = with(
        FAST_HEALTH,
        &[
            "--restart",
            "unless-stopped",
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.probe.http=:8080/health",
        ],
    );
    let app = env.run("app", &args);
    let w = env.watchdog(WATCH_FAST);
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    docker(&["stop", "-t", "5", &app.name]);
    w.wait_state(&app.name, "stopped", secs(10)).unwrap();
    // Several probe intervals and backoff periods pass; it stays stopped.
    let held = wait_for("the container to be started again", secs(6), || {
        app.running().then_some(())
    });
    assert!(
        held.is_err(),
        "the watchdog started a container the user stopped\n{}",
        w.log_tail()
    );
    assert_eq!(w.state(&app.name), "stopped");
    let any_restart: f64 = ["unhealthy", "probe_failed", "died", "oom"]
        .iter()
        .filter_map(|t| {
            w.metric(
                "app_recovery_events_total",
                &[
                    ("container", &app.name),
                    ("trigger", t),
                    ("result", "success"),
                ],
            )
        })
        .sum();
    assert_eq!(any_restart, 0.0);
}

/// Issue test 5: A crash loop backs off with growing gaps and ends in quarantine, while another faulty
/// container is still healed meanwhile.
#[test]
fn crash_loop_backs_off_then_quarantines_while_others_heal() {
    let env = TestEnv::new("loop");
    // PORT is not a number: the app exits at once, every time. No Docker restart policy.
    let looping = env.run(
        "loop",
        &[
            "--no-healthcheck",
            "--restart",
            "no",
            "-e",
            "PORT=not-a-port",
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.restart.max=4",
            "--label",
            "selfheal.restart.window=5m",
        ],
    );
    let args = with(
        FAST_HEALTH,
        &[
            "--restart",
            "unless-stopped",
            "--label",
            "selfheal.enable=true",
        ],
    );
    let other = env.run("other", &args);
    let w = env.watchdog(&[
        "--start-period",
        "1s",
        "--backoff-initial",
        "1s",
        "--backoff-reset",
        "30s",
    ]);
    other.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&other.name, "healthy", secs(20)).unwrap();
    // The loop container exited before the watchdog started: it looks stopped. Start it once
    // as a user would; from then on every exit is a crash.
    docker(&["start", &looping.name]);
    other.chaos("unhealthy");
    w.wait_state(&looping.name, "quarantined", secs(60))
        .unwrap();
    w.wait_recovered(&other.name, secs(30));

    let quarantined = w.incidents(&looping.name);
    assert!(
        quarantined.iter().any(|i| i["outcome"] == "quarantined"),
        "{quarantined:?}"
    );
    assert_eq!(w.metric("selfheal_quarantined_containers", &[]), Some(1.0));
    // Four restarts, then the budget was spent.
    let restarts = [
        ("container", looping.name.as_str()),
        ("trigger", "died"),
        ("result", "success"),
    ];
    assert_eq!(
        w.metric("app_recovery_events_total", &restarts),
        Some(4.0),
        "{}",
        w.log_tail()
    );
    // Backoff (selfheal-core backoff.rs): the first restart is immediate, the n-th after it
    // waits at least initial * 2^(n-1) (1 s, 2 s, 4 s; the 60 s cap is not reached) after the
    // previous one. Load only makes a gap longer (the container's start and exit take time
    // too), so only the lower bounds are asserted, never a ratio of gaps.
    // Every order Docker received, from the incidents' steps (with the ladder, restarts and
    // then recreates; one incident can hold several when a run dies before it was healthy).
    let mut begun: Vec<std::time::SystemTime> = quarantined
        .iter()
        .flat_map(|i| i["steps"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["at"].as_str().map(String::from))
        .map(|t| humantime::parse_rfc3339_weak(&t).expect("RFC 3339"))
        .collect();
    begun.sort();
    assert_eq!(begun.len(), 4, "{quarantined:?}");
    let gaps: Vec<std::time::Duration> = begun
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default())
        .collect();
    let bounds: Vec<std::time::Duration> = (0..gaps.len())
        .map(|n| secs(1) * 2u32.pow(u32::try_from(n).expect("small")))
        .collect();
    assert!(bounds.windows(2).all(|b| b[0] <= b[1]), "{bounds:?}");
    // The times come from the policy's own clock (the one its backoff check uses), truncated
    // to milliseconds in the journal: allow a little for that.
    let clock_tolerance = std::time::Duration::from_millis(50);
    for (n, (gap, bound)) in gaps.iter().zip(&bounds).enumerate() {
        assert!(
            *gap + clock_tolerance >= *bound,
            "gap before restart {} is {gap:?}, backoff {bound:?}: {gaps:?}",
            n + 2
        );
    }
    // Left alone afterwards: Docker shows it exited, and it stays so.
    assert!(!looping.running());
    let later = wait_for("another restart", secs(4), || {
        looping.running().then_some(())
    });
    assert!(later.is_err(), "a quarantined container was restarted");
    assert_eq!(w.metric("app_recovery_events_total", &restarts), Some(4.0));
}

/// Issue test 6: A container without the opt-in label is never touched.
#[test]
fn container_without_opt_in_is_never_touched() {
    let env = TestEnv::new("optout");
    let args = with(FAST_HEALTH, &["--restart", "unless-stopped"]);
    let app = env.run("app", &args);
    let canary = env.run(
        "canary",
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
    canary.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&canary.name, "healthy", secs(20)).unwrap();
    let started = app.started_at();
    app.chaos("unhealthy");
    canary.chaos("unhealthy");
    app.wait_health("unhealthy", secs(20)).unwrap();
    // The canary proves the watchdog was acting during the same time.
    w.wait_recovered(&canary.name, secs(30));
    assert_eq!(
        app.started_at(),
        started,
        "the un-opted container was restarted"
    );
    assert_eq!(app.health(), "unhealthy");
    assert!(
        w.container(&app.name).is_none(),
        "not listed by the watchdog"
    );
}

/// Issue test 7: A bad label: a clear error naming container, label and value in log, metric and API;
/// that container alone is left untouched and the others are still healed.
#[test]
fn bad_label_is_reported_and_others_are_still_healed() {
    let env = TestEnv::new("badlabel");
    let bad = env.run(
        "bad",
        &with(
            FAST_HEALTH,
            &[
                "--restart",
                "unless-stopped",
                "--label",
                "selfheal.enable=true",
                "--label",
                "selfheal.probe.interval=soon",
            ],
        ),
    );
    let good = env.run(
        "good",
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
    w.wait_state(&bad.name, "ignored", secs(20)).unwrap();
    let view = w.container(&bad.name).expect("listed");
    let err = &view["label_errors"][0];
    assert_eq!(err["label"], "selfheal.probe.interval");
    assert_eq!(err["value"], "soon");
    assert_eq!(
        w.metric(
            "selfheal_label_errors",
            &[
                ("container", &bad.name),
                ("label", "selfheal.probe.interval")
            ]
        ),
        Some(1.0)
    );
    let log = std::fs::read_to_string(&w.log).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains(&bad.name)
            && l.contains("selfheal.probe.interval")
            && l.contains("soon")),
        "{log}"
    );

    bad.wait_health("healthy", secs(20)).unwrap();
    good.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&good.name, "healthy", secs(20)).unwrap();
    let bad_started = bad.started_at();
    bad.chaos("unhealthy");
    good.chaos("unhealthy");
    w.wait_recovered(&good.name, secs(30));
    bad.wait_health("unhealthy", secs(20)).unwrap();
    assert_eq!(
        bad.started_at(),
        bad_started,
        "the mislabelled container was touched"
    );
}

/// Issue test 8: SIGKILL of the watchdog in the middle of an incident: the journal is intact after the
/// restart and the incident completes.
#[test]
fn watchdog_killed_mid_incident_resumes_it() {
    let env = TestEnv::new("sigkill");
    let args = with(
        FAST_HEALTH,
        &[
            "--restart",
            "unless-stopped",
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.stop-timeout=3",
        ],
    );
    let app = env.run("app", &args);
    let mut w = env.watchdog(WATCH_FAST);
    app.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    // Hang: the restart takes the whole stop timeout, so the incident stays open a while.
    app.chaos("hang");
    let journal = w.state_dir.join("incidents.jsonl");
    let open_id = wait_for("an open incident in the journal", secs(30), || {
        let text = std::fs::read_to_string(&journal).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|i| i["outcome"] == "open")
            .map(|i| i["id"].as_u64().unwrap_or_default())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    w.kill();

    w.start();
    let done = wait_for("the resumed incident to complete", secs(60), || {
        w.incidents(&app.name)
            .into_iter()
            .find(|i| i["id"].as_u64() == Some(open_id) && i["outcome"] == "recovered")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    assert!(done["time_to_recover_seconds"].as_f64().is_some());
    // Intact: every line parses, and the incident was not duplicated.
    let text = std::fs::read_to_string(&journal).expect("journal");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("torn journal line {line:?}: {e}"));
    }
    let incidents = w.incidents(&app.name);
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let log = std::fs::read_to_string(&w.log).unwrap_or_default();
    assert!(log.contains("resuming open incident"), "{}", w.log_tail());
    app.wait_health("healthy", secs(30)).unwrap();
}

/// A Unix-socket proxy in front of the Docker engine that the test can cut and restore.
struct SocketProxy {
    path: std::path::PathBuf,
    cut: tokio::sync::watch::Sender<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SocketProxy {
    fn start(path: std::path::PathBuf) -> Self {
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let listen_path = path.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::UnixListener::bind(&listen_path).expect("bind proxy socket");
                let _ = ready_tx.send(());
                loop {
                    let conn = tokio::select! {
                        _ = &mut stop_rx => return,
                        c = listener.accept() => match c { Ok((c, _)) => c, Err(_) => continue },
                    };
                    let mut rx = cut_rx.clone();
                    if *rx.borrow() {
                        drop(conn);
                        continue;
                    }
                    tokio::spawn(async move {
                        let mut conn = conn;
                        let Ok(mut up) =
                            tokio::net::UnixStream::connect("/var/run/docker.sock").await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut conn, &mut up) => {}
                            _ = rx.wait_for(|c| *c) => {}
                        }
                    });
                }
            });
        });
        ready_rx.recv_timeout(secs(5)).expect("proxy listening");
        Self {
            path,
            cut,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn set_cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.set_cut(true);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Issue test 9: the Docker connection is cut and restored (through a socket proxy the test
/// controls): the watchdog survives, resyncs, and heals a fault that happened while cut.
#[test]
fn docker_connection_cut_and_restored_heals_the_fault_from_the_outage() {
    let env = TestEnv::new("cut");
    let args = with(
        FAST_HEALTH,
        &[
            "--restart",
            "unless-stopped",
            "--label",
            "selfheal.enable=true",
        ],
    );
    let app = env.run("app", &args);
    let proxy = SocketProxy::start(env.dir.path().join("docker.sock"));
    let host = format!("unix://{}", proxy.path.display());
    let w = Watchdog::spawn(&env, WATCH_FAST, Some(host));
    app.wait_health("healthy", secs(20)).unwrap();
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    assert_eq!(w.metric("selfheal_docker_up", &[]), Some(1.0));
    let started = app.started_at();

    proxy.set_cut(true);
    wait_for("the watchdog to notice the cut", secs(20), || {
        (w.metric("selfheal_docker_up", &[]) == Some(0.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let status = w.healthz_status();
    assert_eq!(status, 503, "not healthy while Docker is unreachable");

    // The fault happens during the outage; Docker sees it, the watchdog cannot.
    app.chaos("unhealthy");
    app.wait_health("unhealthy", secs(20)).unwrap();
    assert_eq!(app.started_at(), started);

    proxy.set_cut(false);
    let incident = w.wait_recovered(&app.name, secs(60));
    assert_eq!(incident["trigger"], "unhealthy");
    assert_ne!(
        app.started_at(),
        started,
        "restarted after the connection came back"
    );
    app.wait_health("healthy", secs(20)).unwrap();
    assert_eq!(w.metric("selfheal_docker_up", &[]), Some(1.0));
    assert!(
        w.metric("selfheal_docker_reconnects_total", &[])
            .unwrap_or(0.0)
            >= 1.0
    );
    let one = [
        ("container", app.name.as_str()),
        ("trigger", "unhealthy"),
        ("result", "success"),
    ];
    assert_eq!(
        w.metric("app_recovery_events_total", &one),
        Some(1.0),
        "healed once, not twice"
    );
    let status = w.healthz_status();
    assert_eq!(status, 200);
}

/// A crash while Docker is unreachable is healed once after the reconnect; a user's stop in
/// the same outage is left alone. Neither container has a restart policy. The watchdog
/// replays Docker's events for the outage before it lists the containers again.
#[test]
fn a_crash_and_a_stop_during_an_outage_are_told_apart() {
    let env = TestEnv::new("outage");
    let args = with(FAST_HEALTH, &["--label", "selfheal.enable=true"]);
    let crashes = env.run("crashes", &args);
    let stopped = env.run("stopped", &args);
    let proxy = SocketProxy::start(env.dir.path().join("docker.sock"));
    let host = format!("unix://{}", proxy.path.display());
    let w = Watchdog::spawn(&env, WATCH_FAST, Some(host));
    for c in [&crashes, &stopped] {
        c.wait_health("healthy", secs(20)).unwrap();
        w.wait_state(&c.name, "healthy", secs(20)).unwrap();
    }
    let started = crashes.started_at();

    proxy.set_cut(true);
    wait_for("the watchdog to notice the cut", secs(20), || {
        (w.metric("selfheal_docker_up", &[]) == Some(0.0)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    crashes.chaos("crash");
    wait_for("the crash", secs(20), || (!crashes.running()).then_some(()))
        .unwrap_or_else(|e| panic!("{e}"));
    docker(&["stop", "-t", "2", &stopped.name]);

    proxy.set_cut(false);
    let incident = w.wait_recovered(&crashes.name, secs(60));
    assert_eq!(incident["trigger"], "died");
    assert_ne!(
        crashes.started_at(),
        started,
        "started again by the watchdog"
    );
    let once = [
        ("container", crashes.name.as_str()),
        ("trigger", "died"),
        ("result", "success"),
    ];
    assert_eq!(w.metric("app_recovery_events_total", &once), Some(1.0));
    w.wait_state(&stopped.name, "stopped", secs(10)).unwrap();
    assert!(!stopped.running(), "a user's stop is never undone");
    assert!(
        std::fs::read_to_string(&w.log)
            .unwrap_or_default()
            .contains("replaying Docker events from the outage"),
        "the outage was replayed\n{}",
        w.log_tail()
    );
}

/// After a session that had connected, the first retry is at once (200 ms), not the 10 s the
/// backoff reached in an earlier long outage.
#[test]
fn reconnect_backoff_starts_over_after_a_connected_session() {
    let env = TestEnv::new("backoff");
    let proxy = SocketProxy::start(env.dir.path().join("docker.sock"));
    let host = format!("unix://{}", proxy.path.display());
    let w = Watchdog::spawn(&env, &[], Some(host));
    let w = &w;
    let up = |want: f64| move || (w.metric("selfheal_docker_up", &[]) == Some(want)).then_some(());
    wait_for("connected", secs(20), up(1.0)).unwrap();
    // A long outage: failed attempts double the wait up to its 10 s cap.
    proxy.set_cut(true);
    wait_for("the backoff to reach its cap", secs(40), || {
        std::fs::read_to_string(&w.log)
            .unwrap_or_default()
            .contains("retry_in=10s")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    proxy.set_cut(false);
    wait_for("reconnected", secs(20), up(1.0)).unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    // A short outage right after: back within the first short retries.
    proxy.set_cut(true);
    wait_for("the second cut noticed", secs(20), up(0.0)).unwrap();
    proxy.set_cut(false);
    let restored = std::time::Instant::now();
    wait_for("reconnected again", secs(20), up(1.0)).unwrap();
    assert!(
        restored.elapsed() < secs(5),
        "reconnected {:?} after the second outage: the old 10 s backoff was kept\n{}",
        restored.elapsed(),
        w.log_tail()
    );
}
