use super::*;

#[test]
fn each_kind_parses_and_names_itself() {
    let t = parse("json+https://example.com/hook?x=1", 0).unwrap();
    assert_eq!((t.kind, t.name.as_str()), (Kind::Json, "json-0"));
    let t = parse("https://example.com/hook", 1).unwrap();
    assert_eq!(t.kind, Kind::Json, "a bare URL is the generic JSON kind");
    let t = parse(
        "slack+https://hooks.slack.com/services/T/B/SECRET#name=ops",
        2,
    )
    .unwrap();
    assert_eq!((t.kind, t.name.as_str()), (Kind::Slack, "ops"));
    assert_eq!(t.redacted, "slack+https://hooks.slack.com/…");
    let t = parse("discord+https://discord.com/api/webhooks/1/tok", 3).unwrap();
    assert_eq!(t.kind, Kind::Discord);
    let t = parse("ntfy+http://127.0.0.1:8080/alerts#severity=warning", 4).unwrap();
    assert_eq!((t.kind, t.min_severity), (Kind::Ntfy, Severity::Warning));
    let t = parse("gotify+https://push.example.com/?token=AbC", 5).unwrap();
    match &t.endpoint {
        Endpoint::Http { url, token } => {
            assert_eq!(token.as_deref(), Some("AbC"));
            assert_eq!(url.as_str(), "https://push.example.com/");
        }
        other => panic!("gotify is HTTP: {other:?}"),
    }
    let t = parse(
        "smtp://me%40x.org:p%40ss@mail.example.com:2525?from=wd@x.org&to=a@x.org,b@x.org#severity=critical",
        6,
    )
    .unwrap();
    let Endpoint::Smtp(s) = &t.endpoint else {
        panic!("smtp")
    };
    assert_eq!(s.port, 2525);
    assert_eq!(
        s.credentials,
        Some(("me@x.org".to_string(), "p@ss".to_string()))
    );
    assert_eq!(s.to, vec!["a@x.org", "b@x.org"]);
    assert_eq!(t.min_severity, Severity::Critical);
    assert_eq!(t.redacted, "smtp://mail.example.com:2525/…");
    assert!(!format!("{t:?}").contains("p%40ss"));
}

#[test]
fn bad_targets_are_clear_and_hide_secrets() {
    let cases = [
        ("teams+https://x.example/hook", "unknown kind \"teams\""),
        ("gotify+https://push.example.com/", "application token"),
        ("ntfy+https://ntfy.sh/", "needs a topic"),
        ("smtp://u:pw@mail.example.com?to=a@x.org", "needs a sender"),
        (
            "smtp://u:pw@mail.example.com?from=a@x.org",
            "at least one recipient",
        ),
        (
            "smtp://mail.example.com?from=nobody&to=a@x.org",
            "not an email address",
        ),
        ("slack+https://h.example/x#name=a b", "name \"a b\""),
        (
            "slack+https://h.example/x#severity=loud",
            "expected info, warning or critical",
        ),
        ("slack+https://h.example/x#colour=red", "unknown option"),
        ("discord+ftp://h.example/x", "http:// or https://"),
        ("not a url", "expected KIND+https"),
    ];
    for (raw, want) in cases {
        let e = parse(raw, 7).unwrap_err().to_string();
        assert!(e.contains(want), "{raw}: {e}");
        assert!(e.contains("notify target 7"), "{e}");
        assert!(!e.contains(":pw@"), "secret shown: {e}");
    }
    let e = parse(
        "smtp://u:pw@mail.example.com?from=a@x.org&to=b@x.org&ca-file=/nope.pem",
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nope.pem") && !e.contains("pw"), "{e}");
}

/// Shoutrrr's URL of each kind becomes selfheal's own form (shoutrrr's documented
/// formats), keeping `#name=`; secrets stay out of what is shown.
#[test]
fn shoutrrr_urls_are_accepted_for_every_kind() {
    let http = |raw: &str| match parse(raw, 0).unwrap().endpoint {
        Endpoint::Http { url, token } => (url.to_string(), token),
        other => panic!("{raw}: {other:?}"),
    };
    let t = parse(
        "telegram://110201543:AAHdqTcv-CH1vGW@telegram?chats=@mychannel,-1001234#name=tg",
        0,
    )
    .unwrap();
    assert_eq!((t.kind, t.name.as_str()), (Kind::Telegram, "tg"));
    assert_eq!(t.redacted, "telegram://telegram/…");
    let Endpoint::Telegram { base, token, chats } = &t.endpoint else {
        panic!("{t:?}")
    };
    assert_eq!(base.as_str(), "https://api.telegram.org/");
    assert_eq!(token, "110201543:AAHdqTcv-CH1vGW");
    assert_eq!(chats, &["@mychannel", "-1001234"]);
    assert!(!format!("{t:?}").contains("AAHdqTcv"));

    let t = parse("pushover://shoutrrr:azGDORePK8gMaC0QOYAMyEEuzJnyUi@uQiRzpo4DXghDmr9QzzfQu27cmVRsG/?devices=phone,tablet", 1).unwrap();
    let Endpoint::Pushover {
        url,
        token,
        user,
        devices,
    } = &t.endpoint
    else {
        panic!("{t:?}")
    };
    assert_eq!(url.as_str(), "https://api.pushover.net/1/messages.json");
    assert_eq!(token, "azGDORePK8gMaC0QOYAMyEEuzJnyUi");
    assert_eq!(
        user, "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
        "the key keeps its case"
    );
    assert_eq!(devices.as_deref(), Some("phone,tablet"));

    assert_eq!(
        http("discord://tOkEn-x@123456789"),
        (
            "https://discord.com/api/webhooks/123456789/tOkEn-x".to_string(),
            None
        )
    );
    assert_eq!(
        http("gotify://push.example.com:8443/sub/AzyoeNS.D4iJLVa/?title=x"),
        (
            "https://push.example.com:8443/sub/".to_string(),
            Some("AzyoeNS.D4iJLVa".to_string())
        )
    );
    assert_eq!(
        http("gotify://gotify.lan/AzyoeNS?disabletls=yes").0,
        "http://gotify.lan/"
    );
    assert_eq!(
        http("ntfy://:tk_abc@ntfy.example.com/alerts").0,
        "https://:tk_abc@ntfy.example.com/alerts"
    );
    assert_eq!(http("ntfy:///alerts").0, "https://ntfy.sh/alerts");
    let t = parse("slack://bot@T000/B000/XXXX#severity=warning", 2).unwrap();
    assert_eq!((t.kind, t.min_severity), (Kind::Slack, Severity::Warning));
    assert_eq!(
        http("slack://T000/B000/XXXX").0,
        "https://hooks.slack.com/services/T000/B000/XXXX"
    );
    for (raw, want) in [
        ("slack://T000/B000", "three tokens"),
        ("telegram://123:abc@telegram", "at least one chat"),
        ("pushover://shoutrrr:@user", "application's token"),
        ("telegram+https://api.telegram.org/?chats=1", "bot's token"),
    ] {
        let e = parse(raw, 3).unwrap_err().to_string();
        assert!(e.contains(want), "{raw}: {e}");
        assert!(!e.contains("abc"), "{e}");
    }
}
