//! Kill signals against the real Docker engine: which ones are a user's stop is the core's
//! call. SIGSTOP freezes the process without ending it; a frozen container is the watchdog's
//! to heal, never taken for a user's stop.

mod support;

use support::*;

/// `docker kill --signal STOP`: the process is frozen, the watchdog's own probe times out, and
/// the container is restarted and recovers, the incident a `probe_failed` one.
#[test]
fn a_container_frozen_by_sigstop_is_healed_not_taken_for_a_stop() {
    let env = TestEnv::new("sigstop");
    let app = env.run("app", PROBE_ONLY_FAST);
    let w = env.watchdog(&["--start-period", "1s"]);
    w.wait_state(&app.name, "healthy", secs(20)).unwrap();
    let started = app.started_at();
    docker(&["kill", "--signal", "STOP", &app.name]);
    let incident = w.wait_recovered(&app.name, secs(40));
    assert_eq!(incident["trigger"], "probe_failed", "{incident}");
    assert_ne!(app.started_at(), started, "restarted\n{}", w.log_tail());
    assert!(app.running());
    let labels = [
        ("container", app.name.as_str()),
        ("trigger", "probe_failed"),
        ("result", "success"),
    ];
    assert_eq!(w.metric("app_recovery_events_total", &labels), Some(1.0));
}
