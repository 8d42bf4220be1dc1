use super::*;
use clap::Parser;

fn args(file: Option<&str>) -> (WatchArgs, Option<tempfile::NamedTempFile>) {
    let tmp = file.map(|text| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    });
    (
        WatchArgs {
            config: tmp.as_ref().map(|f| f.path().into()),
            ..WatchArgs::default()
        },
        tmp,
    )
}

#[test]
fn defaults_file_and_flags_merge_in_order() {
    let (mut a, _f) = args(Some(
        "probe-interval = \"3s\"\nrestart-max = 7\nwatch-all = true\n",
    ));
    a.restart_max = Some(2);
    let c = a.resolve().unwrap();
    assert_eq!(c.defaults.interval, Duration::from_secs(3));
    assert_eq!(c.defaults.restart_max, 2, "flag beats file");
    assert!(c.watch_all);
    assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
    assert_eq!(c.admin_max_connections, 256);
}

#[derive(clap::Parser, Debug)]
struct Cmd {
    #[command(flatten)]
    args: WatchArgs,
}

/// Parses `watch` flags as the binary does. Clap also reads the process environment for
/// the `env` fallbacks, so these tests cover flags and file; the environment's place in
/// the order is tested through the binary (tests/features.rs).
fn parse(flags: &[&str]) -> WatchArgs {
    Cmd::try_parse_from(std::iter::once("watch").chain(flags.iter().copied()))
        .unwrap()
        .args
}

#[test]
fn boolean_flags_turn_off_what_the_file_turns_on() {
    let file = "dry-run = true\nwatch-all = true\n";
    let resolve = |flags: &[&str]| {
        let (a, _f) = args(Some(file));
        let mut p = parse(flags);
        p.config = a.config.clone();
        let c = p.resolve().unwrap();
        (c.dry_run, c.watch_all)
    };
    assert_eq!(resolve(&[]), (true, true), "file alone");
    assert_eq!(
        resolve(&["--dry-run=false", "--watch-all=false"]),
        (false, false),
        "flag =false beats file true"
    );
    assert_eq!(resolve(&["--dry-run=0"]), (false, true));
    let (a, _f) = args(Some("dry-run = false\n"));
    let mut p = parse(&["--dry-run"]);
    p.config = a.config.clone();
    assert!(p.resolve().unwrap().dry_run, "bare flag means true");
    let mut p = parse(&["--watch-all=true"]);
    p.config = a.config.clone();
    let c = p.resolve().unwrap();
    assert!(c.watch_all && !c.dry_run);
    let (a, _f) = args(None);
    let c = a.resolve().unwrap();
    assert!(!c.dry_run && !c.watch_all, "neither given: false");
}

#[test]
fn boolean_flags_take_only_booleans_after_an_equals_sign() {
    assert!(Cmd::try_parse_from(["watch", "--dry-run=maybe"]).is_err());
    // No positional arguments: a value needs `=`, so `--dry-run false` is an error, not a
    // silent `true`.
    assert!(Cmd::try_parse_from(["watch", "--dry-run", "false"]).is_err());
    assert_eq!(parse(&["--dry-run", "--watch-all"]).dry_run, Some(true));
    assert_eq!(parse(&[]).dry_run, None);
}

/// The help states each default by hand (clap cannot: defaults apply after the file), so
/// this keeps it true: giving the stated default changes nothing.
#[test]
fn help_states_the_defaults_that_apply() {
    use clap::CommandFactory;
    let help = Cmd::command().render_long_help().to_string();
    let stated = [
        ("--listen", "127.0.0.1:9100"),
        ("--admin-max-connections", "256"),
        ("--state-dir", "selfheal-state"),
        ("--watch-all", "false"),
        ("--dry-run", "false"),
        ("--max-concurrent-restarts", "4"),
        ("--probe-interval", "1s"),
        ("--probe-timeout", "500ms"),
        ("--probe-failures", "2"),
        ("--start-period", "10s"),
        ("--restart-max", "10"),
        ("--restart-window", "1h"),
        ("--backoff-initial", "1s"),
        ("--backoff-max", "60s"),
        ("--backoff-reset", "60s"),
    ];
    let defaults = format!("{:?}", parse(&[]).resolve().unwrap());
    for (flag, value) in stated {
        let start = help.find(&format!("  {flag}")).expect(flag);
        let section = &help[start..];
        let section = &section[..section[2..]
            .find("\n      --")
            .map_or(section.len(), |i| i + 2)];
        assert!(
            section.contains(&format!("(default {value})")),
            "{flag}: help does not say (default {value}):\n{section}"
        );
        let given = parse(&[&format!("{flag}={value}")]).resolve().unwrap();
        assert_eq!(
            format!("{given:?}"),
            defaults,
            "{flag}={value} is not the default"
        );
    }
}

#[test]
fn notify_targets_from_flags_or_file_with_webhook_url_first() {
    let file = "notify = [\"ntfy+https://ntfy.example.com/ops#name=phone\", \"slack+https://hooks.example.com/s/T/B/X\"]\nhost-name = \"node-9\"\n";
    let (mut a, _f) = args(Some(file));
    a.webhook_url = Some("https://hooks.example.com/generic".into());
    let c = a.resolve().unwrap();
    let names: Vec<&str> = c.notify.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["json-0", "phone", "slack-2"]);
    assert_eq!(c.host_name.as_deref(), Some("node-9"));
    let mut p = parse(&[
        "--notify",
        "discord+https://discord.example.com/api/webhooks/1/t",
    ]);
    p.config = a.config.clone();
    let c = p.resolve().unwrap();
    assert_eq!(c.notify.len(), 1, "flags replace the file's list");
    assert_eq!(c.notify[0].kind, crate::notify::Kind::Discord);
    // Several in one value (the environment variable's form), split at spaces.
    let p = parse(&[
        "--notify",
        "json+https://a.example.com/x json+https://b.example.com/y",
    ]);
    assert_eq!(p.resolve().unwrap().notify.len(), 2);
    let p = parse(&[
        "--notify",
        "json+https://a.example.com/x#name=same",
        "--notify",
        "slack+https://b.example.com/y#name=same",
    ]);
    let e = p.resolve().unwrap_err().to_string();
    assert!(e.contains("two targets are named \"same\""), "{e}");
    let p = parse(&["--notify", "gotify+https://u:topsecret@push.example.com/"]);
    let e = p.resolve().unwrap_err().to_string();
    assert!(
        e.contains("application token") && !e.contains("topsecret"),
        "{e}"
    );
}

#[test]
fn errors_name_the_key_and_value() {
    let (a, _f) = args(Some("probe-timeout = \"quick\"\n"));
    let e = a.resolve().unwrap_err().to_string();
    assert!(e.contains("probe-timeout") && e.contains("quick"), "{e}");
    let (a, _f) = args(Some("probe-intervall = \"1s\"\n"));
    let e = a.resolve().unwrap_err().to_string();
    assert!(e.contains("probe-intervall"), "{e}");
    let (mut a, _f) = args(None);
    a.webhook_url = Some("ftp://x".into());
    let e = a.resolve().unwrap_err().to_string();
    assert!(e.contains("webhook-url") && e.contains("ftp://x"), "{e}");
    let (mut a, _f) = args(None);
    a.max_concurrent_restarts = Some(0);
    assert!(a
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("max-concurrent-restarts"));
    let (a, _f) = args(Some("admin-max-connections = 0\n"));
    let e = a.resolve().unwrap_err().to_string();
    assert!(e.contains("admin-max-connections"), "{e}");
    // A bad token is named by its key; the secret itself is not repeated.
    let (a, _f) = args(Some("admin-token = \"two words\"\n"));
    let e = a.resolve().unwrap_err().to_string();
    assert!(e.contains("admin-token") && !e.contains("two words"), "{e}");
    let (mut a, _f) = args(Some("metrics-token = \"m\"\n"));
    a.admin_token = Some("t".into());
    let g = a.resolve().unwrap().admin_guard;
    assert_eq!(
        (g.admin, g.metrics),
        (Some(Token::new("t")), Some(Token::new("m")))
    );
    let (mut a, _f) = args(None);
    a.config = Some("/nonexistent/selfheal.toml".into());
    assert!(a
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("/nonexistent/selfheal.toml"));
}
