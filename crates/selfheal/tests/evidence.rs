//! Evidence on incidents, against the real engine: containers print known lines to stdout
//! and stderr, then fail their HEALTHCHECK, fail the watchdog's probe, exit, or are OOM-killed.
//! Their incidents show those lines, the health output, the probe's answer and the exit, in
//! the API (`GET /api/v1/incidents/{id}`) and in the CLI (`selfheal incidents show ID`); a
//! container with `--log-driver none` gets a note; a container printing huge lines stays
//! within the bounds. Every container runs the third-party busybox image.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::*;

/// A HEALTHCHECK that fails (saying so on its output) while `/tmp/broken` exists; each run of
/// the container removes the file first, so a restart heals it.
const BREAKABLE_HEALTH: &[&str] = &[
    "--health-cmd",
    "test ! -e /tmp/broken || { echo health-said-no; exit 1; }",
    "--health-interval",
    "500ms",
    "--health-timeout",
    "1s",
    "--health-retries",
    "1",
];
const OPT_IN: &[&str] = &["--label", "selfheal.enable=true"];
const WAIT: Duration = Duration::from_secs(60);

/// `sh -c` of busybox: `prelude`, then its httpd serving `/www` (has `/health`).
fn serving_after(prelude: &str) -> String {
    format!("rm -f /tmp/broken; {prelude}; exec httpd -f -p 8080 -h /www")
}

fn sh(env: &TestEnv, name: &str, args: &[&str], script: &str) -> Ctr {
    env.run_image_cmd(name, BUSYBOX, args, &["sh", "-c", script])
}

/// The newest incident of `name` whose evidence has `part`, as `GET /api/v1/incidents/{id}`
/// serves it (evidence read from Docker arrives shortly after the incident opens).
fn incident_with(w: &Watchdog, name: &str, part: &str) -> Value {
    wait_for(&format!("an incident of {name} with {part}"), WAIT, || {
        w.incidents(name).into_iter().find_map(|i| {
            let full = w.json(&format!("/api/v1/incidents/{}", i["id"]));
            (!full["evidence"][part].is_null()).then_some(full)
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()))
}

fn log_lines(incident: &Value) -> Vec<(String, String)> {
    incident["evidence"]["logs"]["lines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap_or_default().to_string(),
                l["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The lines sorted: Docker copies the two streams separately, so lines written close
/// together on different streams may be logged in either order.
fn sorted(mut lines: Vec<(String, String)>) -> Vec<(String, String)> {
    lines.sort();
    lines
}

fn pair(stream: &str, text: &str) -> (String, String) {
    (stream.to_string(), text.to_string())
}

/// `selfheal incidents show ARGS`: (exit code, stdout, stderr).
fn show(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["incidents", "show"])
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_failed_healthcheck_shows_both_streams_and_the_health_output_in_api_and_cli() {
    let env = TestEnv::new("evidence-health");
    let args = with(OPT_IN, BREAKABLE_HEALTH);
    let web = sh(
        &env,
        "web",
        &args,
        &serving_after("echo out-marker; echo err-marker >&2"),
    );
    let quiet_args = with(&args, &["--log-driver", "none"]);
    let quiet = sh(&env, "quiet", &quiet_args, &serving_after("echo unseen"));
    let w = env.watchdog(&[]);
    for c in [&web, &quiet] {
        c.wait_health("healthy", WAIT).unwrap();
        docker(&["exec", &c.name, "touch", "/tmp/broken"]);
    }

    let i = incident_with(&w, &web.name, "logs");
    assert_eq!(i["trigger"], "unhealthy");
    // Each once: the lines of the run after the restart are not evidence of this fault.
    assert_eq!(
        sorted(log_lines(&i)),
        vec![pair("stderr", "err-marker"), pair("stdout", "out-marker")],
        "{i:#}"
    );
    assert_eq!(i["evidence"]["logs"]["truncated"], false);
    let health = i["evidence"]["health_log"].as_array().expect("health log");
    let last = health.last().expect("a health result");
    assert_eq!(last["exit_code"], 1, "{i:#}");
    assert_eq!(last["output"], "health-said-no\n");
    assert!(last["start"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(i["evidence"].get("exit").is_none(), "{i:#}");
    // The list leaves evidence out; the incident itself has it.
    assert!(w.incidents(&web.name)[0].get("evidence").is_none());

    let q = incident_with(&w, &quiet.name, "logs");
    let note = q["evidence"]["logs"]["note"].as_str().unwrap_or_default();
    assert!(note.contains("\"none\""), "{q:#}");
    assert!(log_lines(&q).is_empty());
    assert_eq!(
        q["evidence"]["health_log"].as_array().map(|h| h.is_empty()),
        Some(false),
        "the health log is there without logs: {q:#}"
    );

    // The CLI, from the API and from the journal file.
    let id = i["id"].to_string();
    let api = format!("http://127.0.0.1:{}", w.port);
    let (code, text, err) = show(&[&id, "--api", &api]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.starts_with(&format!("Incident #{id}: {} (unhealthy)", web.name)),
        "{text}"
    );
    assert!(text.contains(" stdout out-marker\n"), "{text}");
    assert!(text.contains(" stderr err-marker\n"), "{text}");
    assert!(text.contains("exit 1  health-said-no\n"), "{text}");
    let state_dir = w.state_dir.to_string_lossy().into_owned();
    let from_file = wait_for("the evidence in the journal file", WAIT, || {
        let (code, text, _) = show(&[&id, "--state-dir", &state_dir]);
        (code == 0 && text.contains("err-marker")).then_some(text)
    })
    .unwrap();
    assert!(from_file.contains("health-said-no"), "{from_file}");
    let (code, text, err) = show(&[&q["id"].to_string(), "--api", &api]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("Logs: no logs: the container's log driver is \"none\""),
        "{text}"
    );

    // Unknown and malformed ids.
    let (code, _, err) = show(&["999999", "--api", &api]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no incident 999999"), "{err}");
    let (code, _, err) = show(&["999999", "--state-dir", &state_dir]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = show(&["seven", "--api", &api]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"seven\""), "{err}");
    let (status, body) = http(
        "GET",
        &format!("127.0.0.1:{}", w.port),
        "/api/v1/incidents/999999",
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
}

#[test]
fn a_failed_probe_keeps_its_answer_and_huge_lines_stay_within_the_bounds() {
    let env = TestEnv::new("evidence-probe");
    let probed = sh(
        &env,
        "probed",
        &with(
            OPT_IN,
            &[
                "--label",
                "selfheal.probe.http=:8080/health",
                "--label",
                "selfheal.probe.interval=500ms",
            ],
        ),
        "mkdir -p /tmp/www && echo ok > /tmp/www/health && echo probe-marker \
         && exec httpd -f -p 8080 -h /tmp/www",
    );
    // 300 short lines, a 100 kB line (Docker splits it into 16 KiB entries), a line of
    // control characters and multi-byte text, and a last line to find.
    let loud_script = serving_after(
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done; \
         head -c 100000 /dev/zero | tr '\\0' x; echo; \
         printf '\\033[31mrouge é 日本\\033[0m\\n' >&2; echo last-line-marker",
    );
    let loud = sh(&env, "loud", &with(OPT_IN, BREAKABLE_HEALTH), &loud_script);
    let w = env.watchdog(&[]);
    loud.wait_health("healthy", WAIT).unwrap();
    w.wait_state(&probed.name, "healthy", WAIT).unwrap();
    docker(&["exec", &probed.name, "rm", "/tmp/www/health"]);
    docker(&["exec", &loud.name, "touch", "/tmp/broken"]);

    let p = incident_with(&w, &probed.name, "probe_failures");
    assert_eq!(p["trigger"], "probe_failed");
    let failures = p["evidence"]["probe_failures"].as_array().unwrap();
    // The default threshold is two failures in a row; both are kept.
    assert_eq!(failures.len(), 2, "{p:#}");
    for f in failures {
        assert_eq!(f["reason"], "status", "{p:#}");
        assert_eq!(f["http_status"], 404, "{p:#}");
        assert!(
            f["body_excerpt"]
                .as_str()
                .unwrap_or_default()
                .contains("404"),
            "{p:#}"
        );
        assert!(f["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    }
    let p = incident_with(&w, &probed.name, "logs");
    assert_eq!(log_lines(&p), vec![pair("stdout", "probe-marker")], "{p:#}");

    let l = incident_with(&w, &loud.name, "logs");
    let logs = &l["evidence"]["logs"];
    let lines = log_lines(&l);
    assert!(lines.len() <= 50, "{} lines", lines.len());
    assert_eq!(logs["truncated"], true);
    let last_stdout = lines.iter().rev().find(|(s, _)| s == "stdout");
    assert_eq!(last_stdout, Some(&pair("stdout", "last-line-marker")));
    let colour = pair("stderr", "\u{1b}[31mrouge é 日本\u{1b}[0m");
    assert!(lines.contains(&colour), "{lines:?}");
    let json_len = |s: &str| serde_json::to_string(s).unwrap().len() - 2;
    let total: usize = lines.iter().map(|(_, t)| json_len(t)).sum();
    assert!(total <= 16 * 1024, "{total} bytes of log text");
    assert!(lines.iter().all(|(_, t)| json_len(t) <= 4096));
    assert!(
        lines
            .iter()
            .any(|(_, t)| t.starts_with("xxxx") && t.ends_with('…')),
        "a cut line of the huge one: {lines:?}"
    );
    let evidence = serde_json::to_string(&l["evidence"]).unwrap();
    assert!(evidence.len() <= 32 * 1024, "{} bytes", evidence.len());
}

#[test]
fn a_death_and_an_oom_kill_show_their_exit_and_last_lines() {
    let env = TestEnv::new("evidence-death");
    let wait_then =
        |then: &str| format!("while [ ! -e /tmp/die ]; do sleep 0.2; done; rm -f /tmp/die; {then}");
    let dies = sh(
        &env,
        "dies",
        OPT_IN,
        &format!(
            "echo dying-out; echo dying-err >&2; {}",
            wait_then("exit 3")
        ),
    );
    let oom_args = with(OPT_IN, &["--memory", "16m"]);
    let oom = sh(
        &env,
        "oom",
        &oom_args,
        &format!(
            "echo before-oom; {}",
            wait_then("x=$(head -c 100000000 /dev/zero | tr '\\0' a)")
        ),
    );
    let w = env.watchdog(&[]);
    for c in [&dies, &oom] {
        w.wait_state(&c.name, "healthy", WAIT).unwrap();
        docker(&["exec", &c.name, "touch", "/tmp/die"]);
    }

    let d = incident_with(&w, &dies.name, "logs");
    assert_eq!(d["trigger"], "died");
    assert_eq!(d["evidence"]["exit"]["exit_code"], 3, "{d:#}");
    assert_eq!(d["evidence"]["exit"]["oom_killed"], false);
    assert!(d["evidence"]["exit"].get("signal").is_none(), "{d:#}");
    assert_eq!(
        sorted(log_lines(&d)),
        vec![pair("stderr", "dying-err"), pair("stdout", "dying-out")],
        "{d:#}"
    );

    let o = incident_with(&w, &oom.name, "logs");
    assert_eq!(o["trigger"], "oom", "{o:#}");
    let exit = &o["evidence"]["exit"];
    assert_eq!(
        (&exit["exit_code"], &exit["oom_killed"], &exit["signal"]),
        (
            &Value::from(137),
            &Value::from(true),
            &Value::from("SIGKILL")
        ),
        "{o:#}"
    );
    assert_eq!(log_lines(&o), vec![pair("stdout", "before-oom")], "{o:#}");
    let (code, text, err) = show(&[
        &o["id"].to_string(),
        "--api",
        &format!("http://127.0.0.1:{}", w.port),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("\nExit: code 137 (SIGKILL), OOM-killed\n"),
        "{text}"
    );
}
