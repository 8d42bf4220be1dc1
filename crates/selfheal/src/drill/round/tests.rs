use super::*;

fn ev(ms: u64, action: &str, signal: Option<&str>) -> Ev {
    Ev {
        at: UNIX_EPOCH + Duration::from_millis(1_000_000 + ms),
        action: action.into(),
        attrs: signal
            .map(|s| HashMap::from([("signal".to_string(), s.to_string())]))
            .unwrap_or_default(),
    }
}

#[test]
fn timeline_skips_own_signal_and_counts_starts() {
    let fault = UNIX_EPOCH + Duration::from_millis(1_000_000);
    let injected = fault + Duration::from_millis(5);
    let events = vec![
        ev(3, "kill", Some("19")),
        ev(2100, "health_status: unhealthy", None),
        ev(2110, "kill", Some("15")),
        ev(4110, "kill", Some("9")),
        ev(4120, "die", None),
        ev(4300, "start", None),
        ev(5300, "health_status: healthy", None),
    ];
    let t = Timeline::from_events(&events, fault, injected);
    let off = |s: Option<SystemTime>| s.map(|s| s.duration_since(fault).unwrap().as_millis());
    assert_eq!(off(t.unhealthy), Some(2100));
    assert_eq!(off(t.kill), Some(2110));
    assert_eq!(off(t.die), Some(4120));
    assert_eq!(off(t.started), Some(4300));
    assert_eq!(off(t.healthy), Some(5300));
    assert_eq!(t.starts, 1);
    assert_eq!(t.phase(), "healthy, waiting for the incident to close");
}
