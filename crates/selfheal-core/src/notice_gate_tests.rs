//! The notice gate over scenarios and random timed sequences. Each invariant is stated in
//! words above its check.

use super::*;
use proptest::prelude::*;

const QUIET: Duration = Duration::from_secs(20);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A crash loop of six faults, each restart healthy for 2 s before the next crash, sends one
/// message when it starts and one when it has been healthy for the quiet period.
#[test]
fn a_crash_loop_is_one_opened_and_one_recovered() {
    let t0 = Instant::now();
    let mut g = NoticeGate::new(QUIET);
    let mut sent = Vec::new();
    let mut t = t0;
    for _ in 0..6 {
        sent.extend(g.opened(t, t + secs(1)));
        t += secs(3);
        sent.extend(g.healthy(t));
        t += secs(2);
    }
    assert_eq!(sent, vec![Notice::Opened]);
    assert_eq!(g.wake_at(), Some(t - secs(2) + QUIET));
    assert!(g
        .tick(t - secs(2) + QUIET - Duration::from_millis(1))
        .is_empty());
    let last = g.tick(t - secs(2) + QUIET);
    assert_eq!(
        last,
        vec![Notice::Recovered {
            time_to_recover: secs(28),
            faults: 6
        }]
    );
    assert!(!g.in_loop());
    // The next fault is a new story.
    assert_eq!(g.opened(t + QUIET, t + QUIET), vec![Notice::Opened]);
}

/// Quarantine and a failed restart are each told once per loop, then the recovery.
#[test]
fn quarantine_and_failure_once_each() {
    let t = Instant::now();
    let mut g = NoticeGate::new(QUIET);
    assert_eq!(g.opened(t, t), vec![Notice::Opened]);
    assert_eq!(g.restart_failed(t + secs(1)), vec![Notice::RestartFailed]);
    assert!(g.restart_failed(t + secs(2)).is_empty());
    assert!(g.opened(t + secs(3), t + secs(3)).is_empty());
    assert_eq!(g.quarantined(t + secs(4)), vec![Notice::Quarantined]);
    assert!(g.quarantined(t + secs(5)).is_empty());
    assert!(g.healthy(t + secs(100)).is_empty());
    // A pending recovery goes out before the next input that comes after its time.
    let out = g.opened(t + secs(200), t + secs(200));
    assert_eq!(
        out,
        vec![
            Notice::Recovered {
                time_to_recover: secs(100),
                faults: 2
            },
            Notice::Opened
        ]
    );
}

/// A user's stop ends the loop without a recovery message; the next fault is announced.
#[test]
fn abandoned_loop_ends_untold() {
    let t = Instant::now();
    let mut g = NoticeGate::new(QUIET);
    assert_eq!(g.opened(t, t), vec![Notice::Opened]);
    assert!(g.abandoned(t + secs(1)).is_empty());
    assert_eq!(g.wake_at(), None);
    assert_eq!(g.opened(t + secs(2), t + secs(2)), vec![Notice::Opened]);
}

#[test]
fn severities_order_and_parse() {
    assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    assert_eq!(Severity::parse(" Critical"), Some(Severity::Critical));
    assert_eq!(Severity::parse("loud"), None);
    assert_eq!(Notice::Opened.severity(), Severity::Warning);
    assert_eq!(Notice::Quarantined.severity(), Severity::Critical);
    assert_eq!(Notice::RestartFailed.severity(), Severity::Critical);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Input {
    Wait(u64),
    Opened,
    Failed,
    Quarantined,
    Healthy,
    Abandoned,
    Tick,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (0u64..30_000).prop_map(Input::Wait),
        4 => Just(Input::Opened),
        1 => Just(Input::Failed),
        1 => Just(Input::Quarantined),
        4 => Just(Input::Healthy),
        1 => Just(Input::Abandoned),
        3 => Just(Input::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_sequences_keep_the_noise_down(inputs in prop::collection::vec(input(), 0..80)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut g = NoticeGate::new(QUIET);
        // Reference facts about the inputs, kept independently of the gate.
        let mut last_fault: Option<Instant> = None;
        let mut healthy_after_fault: Option<Instant> = None;
        // Messages since the last recovery message (or since the start).
        let mut story: Vec<Notice> = Vec::new();
        let mut calm = true;
        for i in inputs {
            let before_calm = calm;
            let out = match i {
                Input::Wait(ms) => { now += Duration::from_millis(ms); continue; }
                Input::Opened => g.opened(now, now),
                Input::Failed => g.restart_failed(now),
                Input::Quarantined => g.quarantined(now),
                Input::Healthy => g.healthy(now),
                Input::Abandoned => g.abandoned(now),
                Input::Tick => g.tick(now),
            };
            for n in &out {
                if let Notice::Recovered { .. } = n {
                    // A recovery is sent only for a loop that was announced, only after a
                    // healthy moment that came after the loop's last fault, and only once the
                    // quiet period after that moment is over.
                    prop_assert!(!story.is_empty(), "recovery of an untold loop");
                    let h = healthy_after_fault.expect("healthy after the last fault");
                    prop_assert!(last_fault.is_none_or(|f| f <= h));
                    prop_assert!(now.saturating_duration_since(h) >= QUIET);
                    story.clear();
                    calm = true;
                } else {
                    // Within one loop each kind of message is sent at most once.
                    prop_assert!(!story.contains(n), "{n:?} twice in one loop: {story:?}");
                    story.push(*n);
                    calm = false;
                }
            }
            // At most four messages per loop: opened, failed, quarantined, recovered.
            prop_assert!(story.len() <= 3);
            match i {
                Input::Opened | Input::Failed | Input::Quarantined => {
                    // A fault in a calm container is always told at once (after the recovery
                    // of the previous loop, if that was due).
                    let pending_done = out.iter().any(|n| matches!(n, Notice::Recovered { .. }));
                    if before_calm || pending_done {
                        prop_assert!(out.iter().any(|n| !matches!(n, Notice::Recovered { .. })),
                            "a fault after calm was not told: {out:?}");
                    }
                    last_fault = Some(now);
                    healthy_after_fault = None;
                }
                Input::Healthy => {
                    healthy_after_fault.get_or_insert(now);
                }
                Input::Abandoned => {
                    story.clear();
                    calm = true;
                    last_fault = None;
                    healthy_after_fault = None;
                }
                _ => {}
            }
            // The gate agrees with the reference on whether a story is open.
            prop_assert_eq!(g.in_loop(), !calm);
        }
        // Liveness: a told loop that ends healthy is closed by exactly one recovery once the
        // quiet period has passed.
        if !calm && healthy_after_fault.is_some() {
            let wake = g.wake_at().expect("a pending recovery has a wake time");
            prop_assert!(wake <= now + QUIET);
            let out = g.tick(wake.max(now));
            prop_assert_eq!(out.len(), 1);
            prop_assert!(matches!(out[0], Notice::Recovered { .. }), "{:?}", out);
            prop_assert!(g.tick(wake.max(now) + QUIET).is_empty());
        }
    }
}
