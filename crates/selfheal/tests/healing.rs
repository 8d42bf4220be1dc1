//! The healing core's semantics on the real engine, on a third-party image (static busybox
//! httpd, nothing of this project inside), in the bad case: a fault soon after a start.

mod support;

use std::time::{Duration, SystemTime};
use support::*;

fn wall(rfc3339: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339_weak(rfc3339.as_str().expect("a time")).expect("RFC 3339")
}

fn after(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).unwrap_or_default()
}

/// Docker's `unhealthy` is acted on at once, also 1 s after the container turned healthy again
/// (inside the watchdog's own 10 s start period, which a success ended). Before the fix the
/// restart waited for the start period to run out.
#[test]
fn unhealthy_soon_after_healthy_again_is_restarted_at_once() {
    let env = TestEnv::new("soon-unhealthy");
    let c = env.run_image(
        "web",
        BUSYBOX,
        &with(
            BUSYBOX_HEALTH,
            &["--stop-timeout", "2", "--label", "selfheal.enable=true"],
        ),
    );
    let wd = env.watchdog(&[]);
    c.wait_health("healthy", secs(30)).unwrap();
    wd.wait_state(&c.name, "healthy", secs(10)).unwrap();
    // First fault: the container is restarted and healthy again.
    c.freeze();
    wd.wait_recovered(&c.name, secs(40));
    c.wait_health("healthy", secs(30)).unwrap();
    wd.wait_state(&c.name, "healthy", secs(10)).unwrap();
    // Second fault, 1 s after healthy again.
    std::thread::sleep(Duration::from_secs(1)); // the scenario: a fault 1 s after healthy
    let frozen_at = SystemTime::now();
    c.freeze();
    let second = wait_for("a second recovered incident", secs(60), || {
        let list = wd.incidents(&c.name);
        (list.iter().filter(|i| i["outcome"] == "recovered").count() >= 2).then(|| list[0].clone())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
    let detected = wall(&second["detected"]);
    let begun = wall(&second["action_begun"]);
    // Docker needs two failed 1 s checks (about 2-3 s) to say unhealthy; the old start period
    // would have held the restart until 10 s after the start.
    assert!(
        after(detected, frozen_at) < secs(6),
        "detected {:?} after the freeze: {second}",
        after(detected, frozen_at)
    );
    assert!(
        after(begun, detected) < Duration::from_millis(500),
        "restart began {:?} after detection: {second}",
        after(begun, detected)
    );
    // The incident's clock starts at the first failing check in Docker's health log, not at
    // the decision.
    let first = wall(&second["first_failure"]);
    assert!(
        first <= detected && after(first, frozen_at) < secs(3),
        "{second}"
    );
    assert_eq!(second["trigger"], "unhealthy");
}

/// Probe only (no HEALTHCHECK), frozen 3 s after a start: the first successful probe ended
/// the start period, so two failed probes (about 2 s) restart it.
#[test]
fn probe_only_freeze_soon_after_start_is_restarted_within_seconds() {
    let env = TestEnv::new("soon-probe");
    let c = env.run_image(
        "web",
        BUSYBOX,
        &with(&["--stop-timeout", "2"], OPT_IN_HTTP_PROBE),
    );
    let wd = env.watchdog(&[]);
    wd.wait_state(&c.name, "healthy", secs(20)).unwrap();
    let frozen_at = SystemTime::now();
    c.freeze();
    let incident = wd.wait_recovered(&c.name, secs(40));
    let detected = wall(&incident["detected"]);
    assert!(
        after(detected, frozen_at) < secs(4),
        "detected {:?} after the freeze: {incident}",
        after(detected, frozen_at)
    );
    assert_eq!(incident["trigger"], "probe_failed");
    let healthy_again = wall(&incident["healthy_again"]);
    assert!(
        after(healthy_again, frozen_at) < secs(10),
        "serving again {:?} after the freeze: {incident}",
        after(healthy_again, frozen_at)
    );
    // Reaction is recorded for every restart, also one the probe decided.
    let reactions = wd
        .metric("selfheal_reaction_seconds_count", &[])
        .unwrap_or_default();
    assert!(reactions >= 1.0, "no reaction recorded");
}

/// A user's `docker pause` is honoured: no probing counts, no restart, state `paused`.
#[test]
fn a_paused_container_is_left_alone() {
    let env = TestEnv::new("paused");
    let c = env.run_image("web", BUSYBOX, &with(BUSYBOX_HEALTH, OPT_IN_HTTP_PROBE));
    let wd = env.watchdog(&[]);
    wd.wait_state(&c.name, "healthy", secs(30)).unwrap();
    let started = c.started_at();
    docker(&["pause", &c.name]);
    wd.wait_state(&c.name, "paused", secs(10)).unwrap();
    // Docker turns a paused container unhealthy; wait for that, then some more probe rounds.
    c.wait_health("unhealthy", secs(20)).unwrap();
    // Proving an absence needs a window: three more check intervals.
    std::thread::sleep(secs(3));
    assert_eq!(wd.state(&c.name), "paused");
    assert_eq!(c.started_at(), started, "never restarted");
    assert!(
        wd.incidents(&c.name).is_empty(),
        "{:?}",
        wd.incidents(&c.name)
    );
    docker(&["unpause", &c.name]);
    c.wait_health("healthy", secs(20)).unwrap();
    wd.wait_state(&c.name, "healthy", secs(10)).unwrap();
    assert_eq!(c.started_at(), started, "still the same run");
}

/// "Cannot observe" is not "failed": a probe host that does not resolve raises no incident and
/// restarts nothing; the watchdog says it cannot see (API, metric, `/healthz` body) and stays
/// healthy itself. A probe address with credentials is a label error whose value is shown
/// redacted everywhere.
#[test]
fn the_watchdogs_own_trouble_is_never_blamed_on_a_container() {
    let env = TestEnv::new("cannot-observe");
    let unresolvable = env.run_image(
        "unresolvable",
        BUSYBOX,
        &[
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.probe.http=http://does-not-exist.invalid:8080/health",
        ],
    );
    let secret = env.run_image(
        "secret",
        BUSYBOX,
        &[
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.probe.http=http://user:hunter2@127.0.0.1:8080/health",
        ],
    );
    let wd = env.watchdog(&[]);
    let started = unresolvable.started_at();
    wait_for("the probe to report it cannot look", secs(20), || {
        let c = wd.container(&unresolvable.name)?;
        (c["cannot_observe"] == "resolve").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));
    wait_for("several probes that could not look", secs(20), || {
        let n = wd.metric(
            "selfheal_probe_unobservable_total",
            &[("container", &unresolvable.name), ("reason", "resolve")],
        )?;
        (n >= 5.0).then_some(())
    })
    .unwrap();
    assert!(wd.incidents(&unresolvable.name).is_empty());
    assert_eq!(unresolvable.started_at(), started, "never restarted");
    assert_eq!(
        wd.metric(
            "selfheal_probe_failures_total",
            &[("container", &unresolvable.name), ("reason", "connect")]
        ),
        Some(0.0)
    );
    assert_eq!(
        wd.metric("selfheal_degraded", &[("reason", "cannot_observe")]),
        Some(1.0)
    );
    let health = wd.json("/healthz");
    assert_eq!(health["degraded"][0], "cannot_observe", "{health}");
    let status = wd.healthz_status();
    assert_eq!(status, 200, "degraded is reported, not failed");

    // Credentials: a label error, shown redacted in the API, the log and `selfheal check`.
    let view = wd.container(&secret.name).expect("listed");
    assert_eq!(view["state"], "ignored", "{view}");
    assert_eq!(
        view["label_errors"][0]["value"],
        "http://***@127.0.0.1:8080/health"
    );
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["check", "--filter-label", &env.scope()])
        .env_remove("SELFHEAL_CONFIG")
        .output()
        .expect("selfheal check runs");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("credentials"), "{stdout}");
    let everything = format!(
        "{stdout}{}{}",
        wd.get("/api/v1/containers"),
        std::fs::read_to_string(&wd.log).unwrap_or_default()
    );
    assert!(!everything.contains("hunter2"), "the secret leaked");
}
