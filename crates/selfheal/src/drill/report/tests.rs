use super::*;
use crate::drill::round::Timeline;
use crate::drill::split::StatesSeen;

fn round(s: Scenario, n: u32, detect: f64, recover: Option<f64>) -> RoundRecord {
    let mut r = RoundRecord::new(s, n, Duration::from_secs(30));
    r.detected_s = Some(detect);
    r.time_to_detect_seconds = Some(detect);
    r.restart_begun_s = Some(detect + 0.01);
    r.started_s = recover.map(|h| h - 0.5);
    r.healthy_s = recover;
    r.time_to_recover_seconds = recover;
    r.split = Split::of(r.detected_s, r.restart_begun_s, r.healthy_s);
    r.restarts = 1;
    if recover.is_none() {
        r.fail("not healthy again within 30s");
    }
    r
}

#[test]
fn stats_use_nearest_rank() {
    let s = Stats::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
    assert_eq!((s.min, s.p50, s.p95, s.max, s.n), (1.0, 3.0, 5.0, 5.0, 5));
    let v: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(percentile(&v, 0.95), 19.0);
    assert_eq!(percentile(&v, 0.99), 20.0);
    assert!(Stats::of(&[]).is_none());
}

#[test]
fn report_names_failed_rounds_and_renders() {
    let rounds = vec![
        round(Scenario::Crash, 1, 0.2, Some(1.1)),
        round(Scenario::Crash, 2, 0.3, None),
        RoundRecord::skipped(Scenario::Oom, 1, "no memory limit"),
    ];
    let r = DrillReport::new(
        "app-1",
        SystemTime::now(),
        rounds,
        |_| Duration::from_secs(30),
        true,
        false,
    );
    assert!(!r.ok);
    assert_eq!(
        r.failures,
        vec!["crash round 2: not healthy again within 30s"]
    );
    let crash = &r.summary[0];
    assert_eq!((crash.recovered, crash.failed, crash.restarts), (1, 1, 2));
    assert_eq!(crash.time_to_recover.unwrap().n, 1);
    assert_eq!(r.summary[1].skipped, 1);
    let table = r.table();
    assert!(
        table.contains("result: FAILED\n  crash round 2: not healthy"),
        "{table}"
    );
    assert!(
        table.contains("crash round 1  0.20      0.01    0.89"),
        "{table}"
    );
    assert!(table.contains("skipped oom: no memory limit"), "{table}");
    let md = r.markdown("t.svg");
    assert!(md.contains("![timeline of the rounds](t.svg)"));
    assert!(md.contains("| crash round 1 |"));
    let svg = r.svg();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("not recovered"));
    assert_eq!(svg.matches("<title>limit 30s</title>").count(), 2);
}

#[test]
fn a_held_round_is_marked_in_the_table_the_markdown_and_the_svg() {
    let fresh = round(Scenario::Freeze, 1, 2.0, Some(6.0));
    let mut held = RoundRecord::new(Scenario::Freeze, 2, Duration::from_secs(60));
    let t = Timeline::default();
    let fault = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let at = |s: f64| Some(fault + Duration::from_secs_f64(s));
    let t = Timeline {
        kill: at(34.0),
        started: at(37.5),
        healthy: at(39.0),
        starts: 1,
        ..t
    };
    let seen = StatesSeen {
        backing_off: true,
        quarantined: false,
    };
    held.fill(&t, None, t.healthy, fault, seen);
    held.detected_s = Some(2.0);
    held.split = Split::of(held.detected_s, held.restart_begun_s, held.healthy_s);
    held.hold = seen.hold(Some(32.0));
    let r = DrillReport::new(
        "app-1",
        SystemTime::now(),
        vec![fresh, held],
        |_| Duration::from_secs(60),
        false,
        false,
    );
    assert_eq!(r.summary[0].held, 1);
    assert!(r.ok && r.verdict.passed());
    let table = r.table();
    assert!(table.contains("32.00 backoff *"), "{table}");
    assert!(table.contains("rounds back to back"), "{table}");
    assert!(
        table.contains("result: every round recovered within its limit, but only because"),
        "{table}"
    );
    assert!(
        table.contains("freeze: round(s) 2 held by the watchdog's backoff"),
        "{table}"
    );
    let md = r.markdown("t.svg");
    assert!(md.contains("2.00 / 32.00 **held: backoff** / 5.00"), "{md}");
    let svg = r.svg();
    assert!(
        svg.contains("freeze round 2: held 32.0s (backoff)"),
        "{svg}"
    );
    assert!(
        svg.contains("<title>held by the watchdog (backoff / budget): 2.00s to 34.00s</title>"),
        "{svg}"
    );
    assert!(!svg.contains("freeze round 1: held"), "{svg}");
}
