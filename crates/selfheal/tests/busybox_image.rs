//! The third-party test image `selfheal/busybox` (docker/offline/build.sh) does what the tests
//! and benchmarks rely on: httpd serves `/health`, a wget HEALTHCHECK turns healthy, and a
//! frozen container turns unhealthy until it is thawed.

mod support;

use support::*;

#[test]
fn busybox_image_serves_health_and_its_healthcheck_follows_a_freeze() {
    let env = TestEnv::new("busybox");
    let ctr = env.run_image("httpd", BUSYBOX, BUSYBOX_HEALTH);
    ctr.wait_health("healthy", secs(20)).unwrap();
    let addr = format!("{}:8080", ctr.ip());
    let (status, body) = http("GET", &addr, "/health", None, secs(2)).expect("httpd answers");
    assert_eq!((status, body.trim()), (200, "ok"));

    ctr.freeze();
    ctr.wait_health("unhealthy", secs(20)).unwrap();
    assert!(ctr.running(), "frozen, not stopped");
    ctr.thaw();
    ctr.wait_health("healthy", secs(20)).unwrap();
}
