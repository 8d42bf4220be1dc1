//! `docker rename` of a watched container, on the real engine: every metric series of the
//! container moves to the new name, the probe's included, and nothing stays under the old one.

mod support;

use std::process::Command;
use support::*;

/// Removes a container by id on drop: the test env removes its containers by the name they
/// were run with, which a renamed one no longer has.
struct RemoveById(String);

impl Drop for RemoveById {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.0])
            .output();
    }
}

const PROBE_COUNT: &str = "selfheal_probe_duration_seconds_count";

#[test]
fn after_a_rename_every_series_is_under_the_new_name_only() {
    let env = TestEnv::new("rename");
    let c = env.run_image("web", BUSYBOX, OPT_IN_HTTP_PROBE);
    // Declared after `env`, so dropped before it: the container is gone when the network
    // is removed, also when an assertion below fails.
    let _remove = RemoveById(c.id.clone());
    let wd = env.watchdog(&[]);
    wd.wait_state(&c.name, "healthy", secs(20)).unwrap();
    let old = c.name.clone();
    wait_for("a probe recorded under the old name", secs(20), || {
        (wd.metric(PROBE_COUNT, &[("container", &old)])? >= 1.0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.log_tail()));

    let new = format!("{old}-renamed");
    docker(&["rename", &c.id, &new]);
    wd.wait_state(&new, "healthy", secs(20)).unwrap();
    let count = |name: &str| wd.metric(PROBE_COUNT, &[("container", name)]);
    // Probes every second (the default interval): a few more land under the new name.
    let before = count(&new).unwrap_or_else(|| panic!("no probe histogram of {new}"));
    let after = wait_for("three probes recorded under the new name", secs(20), || {
        count(&new).filter(|n| *n >= before + 3.0)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.get("/metrics")));

    let stale = format!("container=\"{old}\"");
    let metrics = wd.get("/metrics");
    let left: Vec<&str> = metrics.lines().filter(|l| l.contains(&stale)).collect();
    assert!(
        left.is_empty(),
        "series left under {old}:\n{}",
        left.join("\n")
    );
    assert!(
        metrics.contains(&format!("selfheal_container_state{{container=\"{new}\"")),
        "{metrics}"
    );
    // Still growing: the probe writes to the series that is served, not a detached one.
    wait_for(
        "the count under the new name to keep growing",
        secs(20),
        || count(&new).filter(|n| *n > after),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", wd.get("/metrics")));
}
