use super::*;

fn sample() -> Notification {
    Notification {
        severity: Severity::Info,
        host: "node-7".into(),
        container: "shop-web-1".into(),
        compose_project: Some("shop".into()),
        compose_service: Some("web".into()),
        trigger: NotifyTrigger::Incident(Trigger::Unhealthy),
        outcome: NotifyOutcome::Recovered {
            time_to_recover: Duration::from_millis(41_250),
            faults: 3,
        },
        incident_id: 12,
        attempts: 3,
        steps: Vec::new(),
        evidence: None,
    }
}

#[test]
fn every_rendering_names_host_container_compose_trigger_outcome() {
    let n = sample();
    for text in [
        n.text(),
        n.body(),
        n.slack()["text"].to_string(),
        n.discord().to_string(),
        n.gotify()["message"].to_string(),
    ] {
        for want in ["node-7", "shop-web-1", "shop/web", "unhealthy", "recovered"] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
    }
    assert!(n
        .body()
        .contains("time to recover: 41.2s (3 faults in a loop)"));
    assert!(
        !n.body().contains("evidence"),
        "no evidence line without evidence"
    );
    let with = Notification {
        evidence: Some("health check: exit 1: connection refused".into()),
        ..sample()
    };
    assert!(with.body().contains("evidence: health check: exit 1"));
    assert_eq!(
        with.json()["evidence"],
        "health check: exit 1: connection refused"
    );
}

#[test]
fn discord_stays_inside_its_limits() {
    let n = Notification {
        container: "x".repeat(3000),
        evidence: Some("y".repeat(5000)),
        ..sample()
    };
    let d = n.discord();
    assert!(d["content"].as_str().unwrap().chars().count() <= 2000);
    assert!(d["embeds"][0]["title"].as_str().unwrap().chars().count() <= 256);
    for f in d["embeds"][0]["fields"].as_array().unwrap() {
        assert!(f["value"].as_str().unwrap().chars().count() <= 1024);
    }
}

/// The webhook's JSON, exactly as receivers have it (the typed fields serialize as the
/// strings they always were, in the same order).
#[test]
fn webhook_json_is_pinned() {
    let n = Notification {
        evidence: Some("health check: exit 1".into()),
        ..sample()
    };
    assert_eq!(
        serde_json::to_string(&n).unwrap(),
        r#"{"event":"recovered","severity":"info","host":"node-7","container":"shop-web-1","compose_project":"shop","compose_service":"web","trigger":"unhealthy","outcome":"recovered in 41.2s and healthy since","incident_id":12,"attempts":3,"faults":3,"time_to_recover_seconds":41.25,"evidence":"health check: exit 1"}"#
    );
    let opened = Notification {
        severity: Severity::Warning,
        compose_project: None,
        compose_service: None,
        trigger: NotifyTrigger::Incident(Trigger::ProbeFailed),
        outcome: NotifyOutcome::Restarting {
            incident: 12,
            dry_run: false,
            action: Action::Restart,
        },
        ..sample()
    };
    assert_eq!(
        serde_json::to_string(&opened).unwrap(),
        r#"{"event":"opened","severity":"warning","host":"node-7","container":"shop-web-1","compose_project":null,"compose_service":null,"trigger":"probe_failed","outcome":"restarting; incident #12 opened","incident_id":12,"attempts":3}"#
    );
    // Each outcome's event and words, as they were sent before they were typed.
    for (outcome, event, words) in [
        (
            NotifyOutcome::Restarting {
                incident: 4,
                dry_run: true,
                action: Action::Restart,
            },
            "opened",
            "restarting (dry run); incident #4 opened",
        ),
        (
            NotifyOutcome::Restarting {
                incident: 4,
                dry_run: false,
                action: Action::Notify,
            },
            "opened",
            "not touched (selfheal.action=notify); incident #4 opened",
        ),
        (
            NotifyOutcome::RestartFailed { dry_run: false },
            "failed",
            "restart failed; it will be tried again after the backoff",
        ),
        (
            NotifyOutcome::Quarantined {
                attempts: 5,
                stopped: false,
            },
            "quarantined",
            "quarantined after 5 restart(s): the restart budget is spent, it needs a human",
        ),
        (
            NotifyOutcome::Quarantined {
                attempts: 3,
                stopped: true,
            },
            "quarantined",
            "quarantined after 3 restart(s): the restart budget is spent, stopped \
             (selfheal.on-quarantine=stop), it needs a human",
        ),
        (
            NotifyOutcome::Test,
            "test",
            "test message from `selfheal notify test`; no container was touched",
        ),
    ] {
        let v = Notification {
            outcome,
            trigger: NotifyTrigger::Test,
            ..sample()
        }
        .json();
        assert_eq!(
            (v["event"].as_str(), v["outcome"].as_str()),
            (Some(event), Some(words))
        );
        assert_eq!(v["trigger"], "test");
        assert!(v.get("faults").is_none() && v.get("time_to_recover_seconds").is_none());
    }
}

/// The ladder's steps travel with every message of an incident: the JSON's `steps` (left out
/// when nothing was done yet) and a `steps` line in the body.
#[test]
fn the_incidents_steps_are_named_in_order() {
    let n = Notification {
        steps: vec![VerbKind::Restart, VerbKind::Restart, VerbKind::Recreate],
        ..sample()
    };
    let v = serde_json::to_value(&n).unwrap();
    assert_eq!(
        v["steps"],
        serde_json::json!(["restart", "restart", "recreate"])
    );
    assert!(
        n.body().contains("steps: restart, restart, recreate"),
        "{}",
        n.body()
    );
    let none = serde_json::to_value(sample()).unwrap();
    assert!(none.get("steps").is_none(), "{none}");
}
