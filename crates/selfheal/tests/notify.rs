//! Notifications against real receivers on loopback: an HTTP receiver that checks each kind's
//! documented format (method, path, headers, JSON schema), a real SMTP server with STARTTLS
//! (aiosmtpd, trusting a CA this test makes), and the real Docker engine for the crash loop
//! and for receivers that hang or fail.

mod support;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use support::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} {}: body is not JSON: {e}", self.method, self.path))
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// An HTTP receiver on 127.0.0.1: paths under `/fail` answer 500, under `/hang` never answer,
/// everything else 200. Every request is recorded (a hanging one when it arrives). It stops
/// with the test (its runtime is dropped).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Req>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let got = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = got.clone();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let req = Req {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().map(String::from),
                        headers: headers
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                        body: body.to_vec(),
                    };
                    let path = req.path.clone();
                    state.lock().expect("lock").push(req);
                    if path.starts_with("/hang") {
                        std::future::pending::<()>().await;
                    }
                    if path.starts_with("/fail") {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            },
        );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            got,
            _runtime: runtime,
        }
    }

    fn url(&self, kind: &str, path: &str) -> String {
        format!("{kind}+http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self, path: &str) -> Vec<Req> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

/// `selfheal notify test ARGS`, with nothing from the environment.
fn notify_test(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .args(["notify", "test"])
        .args(args)
        .env_remove("SELFHEAL_CONFIG")
        .env_remove("SELFHEAL_NOTIFY")
        .env_remove("SELFHEAL_WEBHOOK_URL")
        .env_remove("SELFHEAL_HOST_NAME")
        .output()
        .expect("selfheal runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_str(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn notify_test_sends_each_kind_in_its_documented_format() {
    let r = Receiver::start();
    let targets = [
        r.url("json", "/json#name=generic"),
        r.url("slack", "/slack"),
        r.url("discord", "/discord"),
        format!("ntfy+http://bob:pw%21@127.0.0.1:{}/alerts", r.port),
        r.url("gotify", "/gotify/?token=S3CRETTOKEN"),
        r.url("json", "/fail#name=broken"),
    ];
    let mut args = vec!["--host-name", "node-a"];
    for t in &targets {
        args.extend(["--notify", t.as_str()]);
    }
    let (code, stdout, stderr) = notify_test(&args);
    assert_eq!(code, Some(1), "one target fails: exit 1\n{stdout}{stderr}");
    for name in ["generic", "slack-1", "discord-2", "ntfy-3", "gotify-4"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(name)),
            "{name} not ok:\n{stdout}{stderr}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("broken") && l.contains("500")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("S3CRETTOKEN")
            && !stderr.contains("S3CRETTOKEN")
            && !stdout.contains("pw%21"),
        "the token was shown:\n{stdout}{stderr}"
    );

    // The generic JSON: every field, with text and title.
    let [json] = &r.requests("/json")[..] else {
        panic!("one request to /json: {:?}", r.requests("/json"))
    };
    assert_eq!(json.method, "POST");
    assert!(json.header("content-type").starts_with("application/json"));
    let v = json.json();
    for key in [
        "event",
        "severity",
        "host",
        "container",
        "trigger",
        "outcome",
        "text",
        "title",
    ] {
        is_str(&v[key]);
    }
    assert_eq!(v["event"], "test");
    assert_eq!(v["host"], "node-a");
    // The typed trigger and outcome go out as the words they always were.
    assert_eq!(v["trigger"], "test");
    assert_eq!(
        v["outcome"],
        "test message from `selfheal notify test`; no container was touched"
    );
    assert!(
        v["evidence"].is_null(),
        "no evidence field without evidence"
    );

    // Slack and Mattermost: a JSON object whose `text` is the message.
    let [slack] = &r.requests("/slack")[..] else {
        panic!("one request to /slack")
    };
    assert_eq!(slack.method, "POST");
    assert!(slack.header("content-type").starts_with("application/json"));
    assert!(is_str(&slack.json()["text"]).contains("node-a"));

    // Discord: `content` (<= 2000) and `embeds` [{title (<= 256), description, color,
    // fields [{name, value (<= 1024), inline}]}].
    let [discord] = &r.requests("/discord")[..] else {
        panic!("one request to /discord")
    };
    assert_eq!(discord.method, "POST");
    assert!(discord
        .header("content-type")
        .starts_with("application/json"));
    let d = discord.json();
    assert!(is_str(&d["content"]).chars().count() <= 2000);
    let embeds = d["embeds"].as_array().expect("embeds is an array");
    assert_eq!(embeds.len(), 1);
    let e = &embeds[0];
    assert!(is_str(&e["title"]).contains("node-a") && is_str(&e["title"]).chars().count() <= 256);
    is_str(&e["description"]);
    assert!(e["color"].as_u64().is_some_and(|c| c <= 0xFF_FFFF));
    let fields = e["fields"].as_array().expect("fields is an array");
    assert!(fields
        .iter()
        .any(|f| f["name"] == "host" && f["value"] == "node-a"));
    for f in fields {
        is_str(&f["name"]);
        assert!(is_str(&f["value"]).chars().count() <= 1024);
        assert!(f["inline"].is_boolean());
    }
    assert!(
        d.get("text").is_none(),
        "a Slack payload sent to Discord fails"
    );

    // ntfy: POST to the topic, the message as the body, Title / Priority (1-5) / Tags headers.
    let [ntfy] = &r.requests("/alerts")[..] else {
        panic!("one request to /alerts")
    };
    assert_eq!(ntfy.method, "POST");
    assert!(ntfy.header("title").contains("node-a"), "{ntfy:?}");
    let prio: u8 = ntfy
        .header("priority")
        .parse()
        .expect("priority is a number");
    assert!((1..=5).contains(&prio));
    assert!(!ntfy.header("tags").is_empty());
    // A protected topic: the URL's user and password as HTTP basic auth ("bob:pw!").
    assert_eq!(ntfy.header("authorization"), "Basic Ym9iOnB3IQ==");
    assert!(String::from_utf8_lossy(&ntfy.body).contains("host: node-a"));

    // Gotify: POST /message with the app token in X-Gotify-Key, {title, message, priority}.
    let [gotify] = &r.requests("/gotify/message")[..] else {
        panic!(
            "one request to /gotify/message: {:?}",
            r.got.lock().map(|g| g.len())
        )
    };
    assert_eq!(gotify.method, "POST");
    assert_eq!(gotify.header("x-gotify-key"), "S3CRETTOKEN");
    assert_eq!(gotify.query, None, "the token is not left in the URL");
    let g = gotify.json();
    is_str(&g["title"]);
    assert!(is_str(&g["message"]).contains("node-a"));
    assert!(g["priority"].as_u64().is_some_and(|p| p <= 10));

    // `notify test` tries once: the failing target got exactly one request.
    assert_eq!(r.requests("/fail").len(), 1);
}

/// Telegram's Bot API (`sendMessage`, JSON, once per chat) and Pushover's `messages.json` (a
/// form), at a base URL of the test's own; neither token is shown.
#[test]
fn telegram_and_pushover_get_their_documented_requests() {
    let r = Receiver::start();
    let telegram = format!(
        "telegram+http://127.0.0.1:{}/tg/?token=123456:S3CRET-tg&chats=42,@ops",
        r.port
    );
    let pushover = format!(
        "pushover+http://127.0.0.1:{}/po/?token=APPS3CRET&user=uK3y&devices=phone",
        r.port
    );
    let (code, stdout, stderr) = notify_test(&[
        "--host-name",
        "node-a",
        "--notify",
        &telegram,
        "--notify",
        &pushover,
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for name in ["telegram-0", "pushover-1"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(name)),
            "{name} not ok:\n{stdout}{stderr}"
        );
    }
    assert!(
        !stdout.contains("S3CRET") && !stderr.contains("S3CRET"),
        "a token was shown:\n{stdout}{stderr}"
    );

    let sent = r.requests("/tg/bot123456:S3CRET-tg/sendMessage");
    let chats: Vec<serde_json::Value> = sent.iter().map(|q| q.json()["chat_id"].clone()).collect();
    assert_eq!(chats, ["42", "@ops"], "one sendMessage per chat: {sent:?}");
    for q in &sent {
        assert_eq!(q.method, "POST");
        assert!(q.header("content-type").starts_with("application/json"));
        let v = q.json();
        assert_eq!(v["parse_mode"], "HTML");
        let text = is_str(&v["text"]);
        assert!(
            text.starts_with("<b>[node-a] selfheal-test: test message</b>\n"),
            "{text}"
        );
        assert!(text.contains("trigger: test"), "{text}");
    }

    let [po] = &r.requests("/po/1/messages.json")[..] else {
        panic!("one request to /po/1/messages.json")
    };
    assert_eq!(po.method, "POST");
    assert_eq!(
        po.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let form: HashMap<String, String> =
        url::form_urlencoded::parse(&po.body).into_owned().collect();
    assert_eq!(form["token"], "APPS3CRET");
    assert_eq!(form["user"], "uK3y");
    assert_eq!(form["device"], "phone");
    assert_eq!(form["title"], "[node-a] selfheal-test: test message");
    assert_eq!(form["priority"], "1", "a test message is critical");
    assert!(form["message"].contains("host: node-a"), "{form:?}");
}

#[test]
fn bad_target_urls_are_clear_errors_at_startup() {
    let (code, stdout, stderr) = notify_test(&[
        "--notify",
        "gotify+https://push.example.com/?nottoken=x",
        "--notify",
        "smtp://bob:hunter2@mail.example.com?to=a@example.com",
    ]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("notify target 0") && stderr.contains("application token"),
        "{stderr}"
    );
    let (code, _, stderr) = notify_test(&[
        "--notify",
        "smtp://bob:hunter2@mail.example.com?to=a@example.com",
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("needs a sender"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password was shown: {stderr}"
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&with(
        &[
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=selfheal test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &with(
            &ec,
            &[
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        ),
    ));
    run(&with(
        &[
            "req",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        &ec,
    ));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

/// The SMTP server process; killed on drop.
struct SmtpSink {
    child: Child,
    port: u16,
}

impl SmtpSink {
    fn start(dir: &Path, out: &Path) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"))
            .arg(out)
            .args(["alice", "pa ss@word"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (aiosmtpd: .ci/prerequisites.sh test installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("smtp_sink.py did not print its port (is aiosmtpd installed?): {line:?}")
        });
        Self { child, port }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn email_goes_over_starttls_to_a_real_smtp_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("mail");
    std::fs::create_dir(&out).expect("mail dir");
    make_certs(dir.path());
    let sink = SmtpSink::start(dir.path(), &out);
    let ca = dir.path().join("ca.pem");
    let url = |ca: Option<&Path>| {
        let mut u = format!(
            "smtp://alice:pa%20ss%40word@127.0.0.1:{}?from=watchdog@example.org&to=ops@example.org,oncall@example.org",
            sink.port
        );
        if let Some(ca) = ca {
            u.push_str(&format!("&ca-file={}", ca.display()));
        }
        u + "#name=mail"
    };

    // Trusted through the CA file: delivered, over TLS, authenticated.
    let (code, stdout, stderr) =
        notify_test(&["--host-name", "node-a", "--notify", &url(Some(&ca))]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("ok    mail"), "{stdout}");
    assert!(
        !stdout.contains("pa%20ss") && !stdout.contains("alice"),
        "{stdout}"
    );
    let path = out.join("0.json");
    let record: serde_json::Value = serde_json::from_str(
        &wait_for("the email to arrive", secs(10), || {
            std::fs::read_to_string(&path).ok()
        })
        .unwrap(),
    )
    .expect("record");
    assert_eq!(record["tls"], true, "STARTTLS was used");
    assert_eq!(record["login"], "alice");
    assert_eq!(record["mail_from"], "watchdog@example.org");
    assert_eq!(
        record["rcpt_tos"],
        serde_json::json!(["ops@example.org", "oncall@example.org"])
    );
    let data = is_str(&record["data"]);
    assert!(
        data.lines()
            .any(|l| l.starts_with("Subject:") && l.contains("node-a")),
        "{data}"
    );
    assert!(data.contains("host: node-a"), "{data}");
    assert!(data.contains("container: selfheal-test"), "{data}");

    // Without the CA file the server's certificate is not trusted: nothing is sent in clear.
    let (code, stdout, _) = notify_test(&["--host-name", "node-a", "--notify", &url(None)]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  mail"), "{stdout}");
    assert!(!out.join("1.json").exists(), "a second email arrived");
}

/// Crashes (exit 1) two seconds after each of its first six starts, then serves. Run with
/// Docker's restart policy `on-failure`: a crash loop of six restarts by Docker (recorded by
/// the watchdog as `observed`), running for a moment between crashes.
const CRASH_SIX_TIMES: &str = "n=$(cat /tmp/starts 2>/dev/null || echo 0); \
    echo $((n + 1)) > /tmp/starts; \
    if [ \"$n\" -ge 6 ]; then exec httpd -f -p 8080 -h /www; fi; sleep 2; exit 1";

/// With [`BUSYBOX_HEALTH`]: healthy after each start, unhealthy 3 s later, for its first six
/// starts; then healthy for good. Each fault is an incident of its own, so each restart's
/// reaction is measured from its own detection.
const UNHEALTHY_SIX_TIMES: &str = "n=$(cat /tmp/starts 2>/dev/null || echo 0); \
    echo $((n + 1)) > /tmp/starts; mkdir -p /tmp/www; echo ok > /tmp/www/health; \
    if [ \"$n\" -lt 6 ]; then (sleep 3; rm -f /tmp/www/health) & fi; \
    exec httpd -f -p 8080 -h /tmp/www";

/// Opted in, healed on Docker's health, and stopped fast (busybox httpd as PID 1 ignores
/// SIGTERM, so Docker's stop waits for the timeout before SIGKILL).
const HEALTH_OPT_IN: &[&str] = &[
    "--label",
    "selfheal.enable=true",
    "--label",
    "selfheal.stop-timeout=1s",
];

/// Restarts of `name` for `trigger` with `result` (`success`: the watchdog's; `observed`:
/// Docker's restart policy's).
fn restarts(w: &Watchdog, name: &str, trigger: &str, result: &str) -> f64 {
    w.metric(
        "app_recovery_events_total",
        &[
            ("container", name),
            ("trigger", trigger),
            ("result", result),
        ],
    )
    .unwrap_or(0.0)
}

/// Fast backoff, and a loop ends after 5 s healthy (longer than the 2 s between crashes).
const LOOP_FLAGS: &[&str] = &[
    "--backoff-initial",
    "200ms",
    "--backoff-max",
    "500ms",
    "--backoff-reset",
    "5s",
];

#[test]
fn six_restarts_of_a_crash_loop_send_at_most_three_messages() {
    let env = TestEnv::new("notifyloop");
    let r = Receiver::start();
    let hook = r.url("json", "/loop");
    // Minimum severities: opened is a warning, recovered is info.
    let warnings = r.url("json", "/warning#severity=warning");
    let critical = r.url("json", "/critical#severity=critical");
    let w = env.watchdog(&with(
        LOOP_FLAGS,
        &[
            "--host-name",
            "node-a",
            "--notify",
            &hook,
            "--notify",
            &warnings,
            "--notify",
            &critical,
        ],
    ));
    let app = env.run_image_cmd(
        "looper",
        BUSYBOX,
        &["--restart", "on-failure", "--label", "selfheal.enable=true"],
        &["sh", "-c", CRASH_SIX_TIMES],
    );
    wait_for("six restarts", secs(90), || {
        (restarts(&w, &app.name, "died", "observed") >= 6.0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let recovered = wait_for("the loop's recovery message", secs(30), || {
        r.requests("/loop")
            .iter()
            .any(|q| q.json()["event"] == "recovered")
            .then_some(())
    });
    let messages: Vec<serde_json::Value> = r.requests("/loop").iter().map(Req::json).collect();
    let events: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["event"].as_str())
        .collect();
    recovered.unwrap_or_else(|e| panic!("{e}: {events:?}\n{}", w.log_tail()));
    assert_eq!(
        restarts(&w, &app.name, "died", "observed"),
        6.0,
        "{}",
        w.log_tail()
    );
    assert_eq!(app.restart_count(), 6, "Docker restarted it six times");
    assert!(
        w.incidents(&app.name).len() >= 6,
        "each crash is an incident of its own"
    );
    assert!(messages.len() <= 3, "{events:?}");
    assert_eq!(events, ["opened", "recovered"], "{messages:#?}");
    let rec = &messages[1];
    assert_eq!(rec["host"], "node-a");
    assert_eq!(rec["container"], app.name.as_str());
    assert_eq!(rec["trigger"], "died");
    assert!(
        is_str(&rec["outcome"]).starts_with("recovered in ")
            && is_str(&messages[0]["outcome"]).starts_with("restarting; incident #"),
        "{messages:#?}"
    );
    assert_eq!(rec["faults"], 6, "{rec}");
    assert!(
        rec["time_to_recover_seconds"]
            .as_f64()
            .is_some_and(|t| t > 5.0),
        "{rec}"
    );
    let at_least_warning: Vec<_> = r
        .requests("/warning")
        .iter()
        .map(|q| q.json()["event"].clone())
        .collect();
    assert_eq!(
        at_least_warning,
        ["opened"],
        "severity=warning gets no recovery"
    );
    assert!(
        r.requests("/critical").is_empty(),
        "severity=critical gets neither"
    );
}

#[test]
fn receivers_that_hang_or_fail_delay_no_restart_and_are_counted() {
    let env = TestEnv::new("notifyslow");
    let r = Receiver::start();
    let hang = r.url("json", "/hang#name=hangs");
    // Secrets in the user info and the query: never in the log, the metrics or the API.
    let fail = format!(
        "slack+http://hook:hunter2@127.0.0.1:{}/fail?token=QUERYTOKEN#name=fails",
        r.port
    );
    let other = r.url("json", "/other#name=other");
    let w = env.watchdog(&with(
        LOOP_FLAGS,
        &["--notify", &hang, "--notify", &fail, "--notify", &other],
    ));
    let app = env.run_image_cmd(
        "looper",
        BUSYBOX,
        &with(BUSYBOX_HEALTH, HEALTH_OPT_IN),
        &["sh", "-c", UNHEALTHY_SIX_TIMES],
    );
    let quiet = env.run_image_cmd(
        "quiet",
        BUSYBOX,
        &with(
            BUSYBOX_HEALTH,
            &with(HEALTH_OPT_IN, &["--label", "selfheal.notify=false"]),
        ),
        &["sh", "-c", UNHEALTHY_SIX_TIMES],
    );
    wait_for("six restarts", secs(120), || {
        (restarts(&w, &app.name, "unhealthy", "success") >= 6.0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    // Every restart was issued at once: the reaction histogram has all of them at or under
    // 0.5 s (the backoff cap), although one receiver never answers and one answers 500.
    let count = w
        .metric("selfheal_reaction_seconds_count", &[])
        .unwrap_or(0.0);
    let fast = w
        .metric("selfheal_reaction_seconds_bucket", &[("le", "0.5")])
        .unwrap_or(0.0);
    assert!(count >= 6.0, "{count}");
    assert_eq!(
        fast,
        count,
        "a restart waited on a notification\n{}",
        w.log_tail()
    );
    assert!(
        !r.requests("/hang").is_empty(),
        "the hanging receiver was reached"
    );
    // Without --host-name, messages name the engine (GET /info), not the watchdog's host.
    let engine = docker(&["info", "-f", "{{.Name}}"]);
    let named = wait_for("a message to the other target", secs(30), || {
        r.requests("/other")
            .first()
            .map(|q| q.json()["host"].clone())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    assert_eq!(named, engine.as_str());
    // The failing target is retried, then counted by name; never by its URL.
    wait_for("the failure to be counted", secs(30), || {
        (w.metric(
            "selfheal_notifications_failed_total",
            &[("target", "fails")],
        ) >= Some(1.0))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    assert!(r.requests("/fail").len() >= 3, "three attempts per message");
    let shown = [
        w.get("/metrics"),
        w.get("/api/v1/containers"),
        w.get(&format!("/api/v1/incidents?container={}", app.name)),
        std::fs::read_to_string(&w.log).unwrap_or_default(),
    ]
    .concat();
    assert!(shown.contains("fails"), "the target is named");
    for secret in ["hunter2", "QUERYTOKEN", "/fail"] {
        assert!(
            !shown.contains(secret),
            "{secret} shown in the log, metrics or API"
        );
    }
    // The muted container restarted too, and no message names it.
    wait_for("the muted container to be restarted", secs(30), || {
        (restarts(&w, &quiet.name, "unhealthy", "success") >= 1.0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", w.log_tail()));
    let named_quiet = r
        .got
        .lock()
        .expect("lock")
        .iter()
        .filter(|q| String::from_utf8_lossy(&q.body).contains(&quiet.name))
        .count();
    assert_eq!(named_quiet, 0, "selfheal.notify=false was not honoured");
    assert!(
        r.requests("/other")
            .iter()
            .any(|q| q.json()["container"] == app.name.as_str()),
        "the other container's messages were sent"
    );
}
