//! Dependents on the real engine: containers in a parent's network namespace
//! (`--network container:PARENT`, the VPN pattern) lose their network when the parent starts
//! again; the watchdog restarts them once the parent is healthy, however the parent was
//! restarted. Parent and dependents are static busybox httpd, each serving its own port in
//! the shared namespace, reached through the parent's address.

mod support;

use std::time::{Duration, SystemTime};
use support::*;

/// The parent: busybox httpd on 8080, the watchdog's own probe, Docker's restart policy. No
/// `selfheal.enable`: the test's watchdog runs with `--watch-all` within the test's scope, so
/// a watchdog of some stack on the same host (which heals what opts in) leaves these alone.
const PARENT: &[&str] = &[
    "--label",
    "selfheal.probe.http=:8080/health",
    "--label",
    "selfheal.start-period=0s",
    "--restart",
    "unless-stopped",
    "--stop-timeout",
    "1",
];
/// A dependent: watched, no probe of its own (it has no address of its own).
const DEPENDENT: &[&str] = &["--stop-timeout", "1"];
/// The test's watchdog: every container of the test's scope.
const WATCH_ALL: &[&str] = &["--watch-all"];

struct Vpn {
    parent: Ctr,
    apps: Vec<(Ctr, u16)>,
}

impl Vpn {
    fn new(env: &TestEnv, apps: &[(&str, u16)]) -> Self {
        let parent = env.run_image("vpn", BUSYBOX, PARENT);
        let apps = apps
            .iter()
            .map(|(name, port)| {
                let port_arg = port.to_string();
                let c = env.run_in_namespace_of(
                    &parent,
                    name,
                    BUSYBOX,
                    DEPENDENT,
                    &["httpd", "-f", "-p", &port_arg, "-h", "/www"],
                );
                (c, *port)
            })
            .collect();
        Self { parent, apps }
    }

    /// `GET /health` on `port` of the parent's address answers 200.
    fn serves(&self, port: u16) -> bool {
        let addr = format!("{}:{port}", self.parent.ip());
        http("GET", &addr, "/health", None, Duration::from_secs(1))
            .is_ok_and(|(status, _)| status == 200)
    }

    fn wait_serving(&self, port: u16, timeout: Duration, wd: &Watchdog) {
        wait_for(&format!("port {port} served"), timeout, || {
            self.serves(port).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
    }
}

fn wall(s: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn dependency_incidents(wd: &Watchdog, name: &str) -> Vec<serde_json::Value> {
    wd.incidents(name)
        .into_iter()
        .filter(|i| i["trigger"] == "dependency")
        .collect()
}

/// Sets up a parent and two dependents, restarts the parent with `restart`, and checks that
/// both dependents serve again through the parent's address, each restarted once after the
/// parent's new start with one `dependency` incident linked to the parent. Returns the
/// parent's incident, if the watchdog opened one.
fn parent_restarted_by(test: &str, restart: impl FnOnce(&Vpn)) -> Option<serde_json::Value> {
    let env = TestEnv::new(test);
    let vpn = Vpn::new(&env, &[("app1", 8081), ("app2", 8082)]);
    let wd = env.watchdog(WATCH_ALL);
    wd.wait_state(&vpn.parent.name, "healthy", secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    for (app, port) in &vpn.apps {
        wd.wait_state(&app.name, "healthy", secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        vpn.wait_serving(*port, secs(10), &wd);
        // The graph as the API shows it.
        let view = wd.container(&app.name).expect("dependent in the API");
        assert_eq!(
            view["depends_on"][0]["name"],
            vpn.parent.name.as_str(),
            "{view}"
        );
        assert_eq!(view["depends_on"][0]["via"], "network", "{view}");
        assert_eq!(
            view["depends_on"][0]["id"],
            vpn.parent.id.as_str(),
            "{view}"
        );
        assert!(view["dependency_error"].is_null(), "{view}");
    }
    let parent_view = wd.container(&vpn.parent.name).expect("parent in the API");
    let names: Vec<&str> = vpn.apps.iter().map(|(c, _)| c.name.as_str()).collect();
    assert_eq!(parent_view["dependents"], serde_json::json!(names));
    let before: Vec<String> = vpn.apps.iter().map(|(c, _)| c.started_at()).collect();
    let parent_before = vpn.parent.started_at();

    restart(&vpn);

    wait_for("the parent started again", secs(60), || {
        (vpn.parent.running() && vpn.parent.started_at() != parent_before).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
    for (app, port) in &vpn.apps {
        vpn.wait_serving(*port, secs(60), &wd);
        let incident = wait_for(&format!("{} recovered", app.name), secs(30), || {
            dependency_incidents(&wd, &app.name)
                .into_iter()
                .find(|i| i["outcome"] == "recovered")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
        assert_eq!(incident["parent"], vpn.parent.name.as_str(), "{incident}");
    }
    let parent_started = wall(&vpn.parent.started_at());
    let parent_incident = wd
        .incidents(&vpn.parent.name)
        .into_iter()
        .find(|i| wall(i["detected"].as_str().unwrap_or_default()) >= wall(&parent_before));
    for ((app, _), before) in vpn.apps.iter().zip(&before) {
        // Restarted once, after the parent's new start.
        assert_ne!(&app.started_at(), before, "{} not restarted", app.name);
        assert!(wall(&app.started_at()) > parent_started, "{}", app.name);
        let deps = dependency_incidents(&wd, &app.name);
        assert_eq!(deps.len(), 1, "{}: {deps:?}\n{}", app.name, wd.log_tail());
        assert_eq!(
            deps[0]["parent_incident"],
            parent_incident
                .as_ref()
                .map_or(serde_json::Value::Null, |i| i["id"].clone()),
            "{}",
            deps[0]
        );
        assert_eq!(
            wd.metric(
                "app_recovery_events_total",
                &[
                    ("container", app.name.as_str()),
                    ("trigger", "dependency"),
                    ("result", "success"),
                ],
            ),
            Some(1.0)
        );
    }
    parent_incident
}

/// Frozen parent: the watchdog's probe fails and the watchdog restarts it.
#[test]
fn dependents_follow_a_parent_the_watchdog_restarted() {
    let incident = parent_restarted_by("dep-frozen", |vpn| vpn.parent.freeze());
    let incident = incident.expect("the parent's own incident");
    assert_eq!(incident["trigger"], "probe_failed", "{incident}");
}

/// The parent's process killed: Docker's restart policy starts it again.
#[test]
fn dependents_follow_a_parent_the_restart_policy_restarted() {
    let incident = parent_restarted_by("dep-killed", |vpn| {
        let pid = vpn.parent.inspect("{{.State.Pid}}");
        // SIGKILL from outside the container's PID namespace (inside it, PID 1 ignores it),
        // not `docker kill`, which Docker counts as a user's stop.
        docker(&[
            "run",
            "--rm",
            "--pid",
            "host",
            "--network",
            "none",
            BUSYBOX,
            "kill",
            "-9",
            &pid,
        ]);
    });
    let incident = incident.expect("the parent's own incident");
    assert_eq!(incident["trigger"], "died", "{incident}");
}

/// `docker restart` of the parent by hand: no incident on the parent, the dependents follow.
#[test]
fn dependents_follow_a_parent_restarted_by_hand() {
    let incident = parent_restarted_by("dep-by-hand", |vpn| {
        docker(&["restart", "-t", "1", &vpn.parent.name]);
    });
    assert!(incident.is_none(), "{incident:?}");
}

/// A dependent in a crash loop does not hold up its sibling, and a dependent the user stopped
/// stays stopped.
#[test]
fn a_crash_looping_dependent_holds_up_nobody_and_a_stopped_one_stays_stopped() {
    let env = TestEnv::new("dep-siblings");
    let vpn = Vpn::new(&env, &[("app1", 8081)]);
    let looping = env.run_in_namespace_of(
        &vpn.parent,
        "looping",
        BUSYBOX,
        &with(DEPENDENT, &["--restart", "always"]),
        &["sh", "-c", "sleep 1; exit 1"],
    );
    let stopped = env.run_in_namespace_of(
        &vpn.parent,
        "stopped",
        BUSYBOX,
        DEPENDENT,
        &["httpd", "-f", "-p", "8083", "-h", "/www"],
    );
    let wd = env.watchdog(WATCH_ALL);
    wd.wait_state(&vpn.parent.name, "healthy", secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    vpn.wait_serving(8081, secs(10), &wd);
    vpn.wait_serving(8083, secs(10), &wd);
    docker(&["stop", "-t", "1", &stopped.name]);
    wd.wait_state(&stopped.name, "stopped", secs(20)).unwrap();
    let parent_before = vpn.parent.started_at();

    docker(&["restart", "-t", "1", &vpn.parent.name]);

    wait_for("the parent started again", secs(30), || {
        (vpn.parent.started_at() != parent_before).then_some(())
    })
    .unwrap();
    vpn.wait_serving(8081, secs(60), &wd);
    let app1 = &vpn.apps[0].0;
    wait_for("app1's dependency incident recovered", secs(30), || {
        dependency_incidents(&wd, &app1.name)
            .into_iter()
            .find(|i| i["outcome"] == "recovered")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
    assert!(!stopped.running(), "the user's stop was undone");
    assert_eq!(wd.state(&stopped.name), "stopped");
    assert!(dependency_incidents(&wd, &stopped.name).is_empty());
    assert!(!vpn.serves(8083));
    // The loop keeps looping on its own under Docker's policy. Polled: a dependency restart
    // that caught it running resets `RestartCount` to 0 until its next exit.
    wait_for("the looping dependent to loop on", secs(15), || {
        (looping.restart_count() > 0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
}

/// `selfheal.depends-on` naming a container that does not exist is reported on that
/// container; it is still watched.
#[test]
fn a_missing_parent_is_reported_on_the_dependent() {
    let env = TestEnv::new("dep-missing");
    let c = env.run_image(
        "orphan",
        BUSYBOX,
        &["--label", "selfheal.depends-on=no-such-container"],
    );
    let wd = env.watchdog(WATCH_ALL);
    wd.wait_state(&c.name, "healthy", secs(30)).unwrap();
    let view = wd.container(&c.name).expect("in the API");
    let error = view["dependency_error"].as_str().unwrap_or_default();
    assert!(error.contains("no-such-container"), "{view}");
    assert_eq!(view["depends_on"], serde_json::json!([]));
}

/// `selfheal check` shows the graph, and a dependency error as a warning.
#[test]
fn check_shows_the_graph_and_dependency_errors() {
    let env = TestEnv::new("dep-check");
    let vpn = Vpn::new(&env, &[("app1", 8081)]);
    let orphan = env.run_image(
        "orphan",
        BUSYBOX,
        &["--label", "selfheal.depends-on=no-such-container"],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["check", "--watch-all", "--filter-label", &env.scope()])
        .env_remove("SELFHEAL_CONFIG")
        .output()
        .expect("selfheal check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A dependency error turns off only that container's dependency handling: not a failure.
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let app = &vpn.apps[0].0;
    assert!(
        stdout.lines().any(|l| l.starts_with("dep")
            && l.contains(&app.name)
            && l.contains(&format!("depends on {} (network)", vpn.parent.name))),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("WARN")
            && l.contains(&orphan.name)
            && l.contains("no-such-container")),
        "{stdout}"
    );
}

/// Removes a volume on drop (the recreate's volume outlives both containers' `rm -v`).
struct VolumeGuard(String);
impl Drop for VolumeGuard {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

/// The parent recreated (`docker rm -f` + `docker run` under the same name, a new id): the
/// dependent cannot be restarted (its `container:<id>` is gone); it is recreated with the
/// same name, labels and anonymous volume (data kept), in the new parent's namespace.
#[test]
fn a_dependent_of_a_recreated_parent_is_recreated_with_its_volume() {
    // Declared before the containers' env: dropped after them (a volume in use stays).
    let mut volume_guard = VolumeGuard(String::new());
    let env = TestEnv::new("dep-recreate");
    let vpn = Vpn::new(&env, &[]);
    let app = env.run_in_namespace_of(
        &vpn.parent,
        "app1",
        BUSYBOX,
        &with(
            DEPENDENT,
            // Root: the anonymous volume is root's.
            &[
                "-v",
                "/data",
                "--user",
                "0",
                "--label",
                "example.owner=team-a",
            ],
        ),
        &[
            "sh",
            "-c",
            "[ -f /data/first ] || cat /proc/sys/kernel/random/uuid > /data/first; \
             exec httpd -f -p 8081 -h /www",
        ],
    );
    let volume = app.inspect("{{range .Mounts}}{{.Name}}{{end}}");
    volume_guard.0.clone_from(&volume);
    let wd = env.watchdog(WATCH_ALL);
    wd.wait_state(&vpn.parent.name, "healthy", secs(30))
        .unwrap();
    wd.wait_state(&app.name, "healthy", secs(30)).unwrap();
    vpn.wait_serving(8081, secs(10), &wd);
    let data = docker(&["exec", &app.name, "cat", "/data/first"]);

    docker(&["rm", "-f", &vpn.parent.name]);
    let parent = env.run_image("vpn", BUSYBOX, PARENT);
    assert_ne!(parent.id, vpn.parent.id);
    let vpn = Vpn {
        parent,
        apps: Vec::new(),
    };

    vpn.wait_serving(8081, secs(60), &wd);
    let new_id = app.inspect("{{.Id}}");
    assert_ne!(new_id, app.id, "not recreated");
    assert_eq!(
        app.inspect("{{.HostConfig.NetworkMode}}"),
        format!("container:{}", vpn.parent.id)
    );
    assert_eq!(
        app.inspect("{{index .Config.Labels \"example.owner\"}}"),
        "team-a"
    );
    assert_eq!(app.inspect("{{range .Mounts}}{{.Name}}{{end}}"), volume);
    assert_eq!(docker(&["exec", &app.name, "cat", "/data/first"]), data);
    let incident = wait_for("the recreate's incident recovered", secs(30), || {
        dependency_incidents(&wd, &app.name)
            .into_iter()
            .find(|i| i["outcome"] == "recovered")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
    // The incident followed the container to its replacement, which closed it.
    assert_eq!(incident["container_id"], new_id.as_str(), "{incident}");
    assert_eq!(dependency_incidents(&wd, &app.name).len(), 1);
    // The old container is gone, not parked.
    let parked = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}-selfheal", app.name),
        "-q",
    ]);
    assert_eq!(parked, "");
    // The replacement is watched as a container of its own, healthy.
    wait_for("the replacement watched", secs(20), || {
        wd.container(&app.name)
            .filter(|c| c["id"] == new_id.as_str() && c["state"] == "healthy")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
}

/// p50 and max of `v` (sorted in place).
fn p50_max(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

/// The figure in BENCHMARKS.md: from the parent serving again after a `docker restart` to
/// every one of 3 dependents serving again through its address, over rounds
/// (`SELFHEAL_DEPENDENTS_ROUNDS`, 10); next to it, a dependent's own restart (`docker restart`
/// of one dependent to serving), the part of the figure that is the dependent's own. Every
/// round must heal all three, each with one new `dependency` incident. Dependents run with
/// `--init` so they stop on SIGTERM, as a real service does; the watchdog forgets backoff
/// after 1 s healthy, so each round measures the reaction, not the backoff of the last.
#[test]
fn measured_parent_serving_to_every_dependent_serving() {
    let rounds: usize = std::env::var("SELFHEAL_DEPENDENTS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let env = TestEnv::new("dep-measure");
    let parent = env.run_image("vpn", BUSYBOX, PARENT);
    let ports = [8081u16, 8082, 8083];
    let apps: Vec<(Ctr, u16)> = ports
        .iter()
        .map(|port| {
            let p = port.to_string();
            let c = env.run_in_namespace_of(
                &parent,
                &format!("app{port}"),
                BUSYBOX,
                &with(
                    DEPENDENT,
                    &["--init", "--label", "selfheal.restart.max=100"],
                ),
                &["httpd", "-f", "-p", &p, "-h", "/www"],
            );
            (c, *port)
        })
        .collect();
    let vpn = Vpn { parent, apps };
    // Rounds a few seconds apart: with the default 60 s a dependent's backoff would grow
    // from round to round (as it should) and be what is measured.
    let wd = env.watchdog(&["--watch-all", "--backoff-reset", "1s"]);
    wd.wait_state(&vpn.parent.name, "healthy", secs(30))
        .unwrap();
    for (app, port) in &vpn.apps {
        wd.wait_state(&app.name, "healthy", secs(30)).unwrap();
        vpn.wait_serving(*port, secs(10), &wd);
    }
    let fine = |what: &str, timeout: Duration, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + timeout;
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} within {timeout:?}\n{}",
                wd.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::time::Instant::now()
    };
    let mut heal = Vec::new();
    let mut own = Vec::new();
    for round in 0..rounds {
        let before = vpn.parent.started_at();
        docker(&["restart", "-t", "1", &vpn.parent.name]);
        let parent_serving = fine("the parent serving", secs(30), &|| {
            vpn.parent.started_at() != before && vpn.serves(8080)
        });
        let all = fine("every dependent serving", secs(60), &|| {
            ports.iter().all(|p| vpn.serves(*p))
        });
        heal.push(all - parent_serving);
        for (app, _) in &vpn.apps {
            wait_for("one dependency incident per round", secs(30), || {
                let n = dependency_incidents(&wd, &app.name)
                    .iter()
                    .filter(|i| i["outcome"] == "recovered")
                    .count();
                (n == round + 1).then_some(())
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
        }
        // The dependent's own restart, for comparison.
        let (app, port) = &vpn.apps[round % vpn.apps.len()];
        let began = std::time::Instant::now();
        docker(&["restart", "-t", "1", &app.name]);
        own.push(fine("a dependent's own restart", secs(30), &|| vpn.serves(*port)) - began);
    }
    let (heal_p50, heal_max) = p50_max(&mut heal);
    let (own_p50, own_max) = p50_max(&mut own);
    eprintln!(
        "dependents: {rounds} rounds, 3 dependents: parent serving -> all serving p50 {heal_p50:?} \
         max {heal_max:?}; a dependent's own docker restart p50 {own_p50:?} max {own_max:?}"
    );
}

/// `selfheal.dependents=ignore` on the parent: its dependents are left alone, lost network and
/// all (the opt-out is the user's to take).
#[test]
fn a_parent_with_dependents_ignore_leaves_them_alone() {
    let env = TestEnv::new("dep-ignore");
    let parent = env.run_image(
        "vpn",
        BUSYBOX,
        &with(PARENT, &["--label", "selfheal.dependents=ignore"]),
    );
    let app = env.run_in_namespace_of(
        &parent,
        "app1",
        BUSYBOX,
        DEPENDENT,
        &["httpd", "-f", "-p", "8081", "-h", "/www"],
    );
    let vpn = Vpn {
        parent,
        apps: Vec::new(),
    };
    let wd = env.watchdog(WATCH_ALL);
    wd.wait_state(&vpn.parent.name, "healthy", secs(30))
        .unwrap();
    wd.wait_state(&app.name, "healthy", secs(30)).unwrap();
    vpn.wait_serving(8081, secs(10), &wd);
    let app_before = app.started_at();
    let parent_before = vpn.parent.started_at();
    docker(&["restart", "-t", "1", &vpn.parent.name]);
    wait_for("the parent healthy after its new start", secs(30), || {
        (vpn.parent.started_at() != parent_before && vpn.serves(8080)).then_some(())
    })
    .unwrap();
    wd.wait_state(&vpn.parent.name, "healthy", secs(30))
        .unwrap();
    // The watchdog saw the parent healthy (its release would go out with that); the dependent
    // stays as it was: not restarted, and without its network.
    wait_for("the dependent's state settled", secs(5), || {
        (wd.state(&app.name) == "healthy").then_some(())
    })
    .unwrap();
    assert_eq!(app.started_at(), app_before);
    assert!(dependency_incidents(&wd, &app.name).is_empty());
    assert!(!vpn.serves(8081));
}
