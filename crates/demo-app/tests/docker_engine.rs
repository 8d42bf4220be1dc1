//! The app container on the real Docker engine (image from `make images`), driven through the
//! `docker` CLI: its own HEALTHCHECK, and what Docker's restart policy does and does not heal.
//!
//! Every container gets a unique name and is removed (with its volumes) when the test ends,
//! pass or fail. Health checks run every second so the tests take seconds, not minutes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IMAGE: &str = "selfheal/demo-app:latest";
const TOKEN: &str = "docker-test-token";

/// Runs `docker ARGS` and returns its trimmed stdout, or panics with stderr.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A container that is force-removed when dropped.
struct Container {
    name: String,
}

impl Container {
    /// `docker run -d` of the app image with a 1 s health interval, chaos enabled, port 8080
    /// published on a random loopback port, plus `extra` options.
    fn run(test: &str, extra: &[&str]) -> Self {
        let images = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output();
        assert!(
            images.is_ok_and(|o| o.status.success()),
            "{IMAGE} is missing: run `make images` first"
        );
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let name = format!("selfheal-test-{test}-{}-{nanos}", std::process::id());
        let container = Self { name };
        let token = format!("CHAOS_TOKEN={TOKEN}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &container.name,
            "--label",
            "selfheal.test=demo-app",
            "-p",
            "127.0.0.1::8080",
            "-e",
            &token,
            "-e",
            "READY_DELAY=0s",
            "--health-interval=1s",
            "--health-timeout=1s",
            "--health-retries=2",
            "--health-start-period=2s",
        ];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        docker(&args);
        container
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.name])
    }

    fn health(&self) -> String {
        self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")
    }

    fn restart_count(&self) -> u32 {
        self.inspect("{{.RestartCount}}").parse().expect("a number")
    }

    /// The loopback address Docker published port 8080 on.
    fn addr(&self) -> SocketAddr {
        let port = docker(&["port", &self.name, "8080/tcp"]);
        let first = port.lines().next().unwrap_or_default();
        first
            .parse()
            .unwrap_or_else(|_| panic!("unexpected `docker port` output {port:?}"))
    }

    /// Polls `condition` every 200 ms until it holds, or panics after `limit` naming `what`.
    fn wait_for(&self, what: &str, limit: Duration, mut condition: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !condition(self) {
            if Instant::now() > deadline {
                let logs = Command::new("docker")
                    .args(["logs", "--tail", "20", &self.name])
                    .output();
                let logs = logs.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
                panic!(
                    "{}: not {what} after {limit:?}; state {}; logs:\n{}",
                    self.name,
                    self.inspect("{{json .State}}"),
                    logs.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends an authorised `POST path` and returns the status code, or an error when the
    /// connection broke (expected for faults that kill the process mid-answer).
    fn chaos(&self, path: &str) -> std::io::Result<u16> {
        self.authorised("POST", path)
    }

    /// Sends `method path` with the chaos token.
    fn authorised(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {answer:?}")))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

#[test]
fn the_image_becomes_healthy_through_its_own_healthcheck() {
    let app = Container::run("healthy", &[]);
    // The test command is the image's own (`demo-app healthcheck`): no curl, no shell.
    assert_eq!(
        app.inspect("{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/usr/local/bin/demo-app","healthcheck"]"#
    );
    assert_eq!(app.inspect("{{.Config.User}}"), "10001:10001");
    app.wait_for("healthy", Duration::from_secs(30), |c| {
        c.health() == "healthy"
    });
    let status = demo_app::healthcheck::status_of(app.addr(), "/ready", Duration::from_secs(2));
    assert_eq!(status.expect("answers"), 200);
}

/// The gap the watchdog closes: Docker marks the container unhealthy and then does nothing.
#[test]
fn docker_never_restarts_an_unhealthy_container() {
    let app = Container::run("unhealthy", &["--restart", "unless-stopped"]);
    app.wait_for("healthy", Duration::from_secs(30), |c| {
        c.health() == "healthy"
    });
    let started_at = app.inspect("{{.State.StartedAt}}");
    assert_eq!(app.chaos("/chaos/unhealthy").expect("answers"), 202);
    app.wait_for("unhealthy", Duration::from_secs(30), |c| {
        c.health() == "unhealthy"
    });
    // Several more failed health checks after the verdict (2 retries made it unhealthy).
    app.wait_for("failing 8 checks in a row", Duration::from_secs(30), |c| {
        c.inspect("{{.State.Health.FailingStreak}}")
            .parse::<u32>()
            .is_ok_and(|n| n >= 8)
    });
    assert_eq!(app.inspect("{{.State.Status}}"), "running");
    assert_eq!(app.health(), "unhealthy");
    assert_eq!(
        app.restart_count(),
        0,
        "Docker restarted an unhealthy container"
    );
    assert_eq!(
        app.inspect("{{.State.StartedAt}}"),
        started_at,
        "the process was restarted"
    );
}

#[test]
fn a_crash_is_restarted_by_the_restart_policy() {
    let app = Container::run("crash", &["--restart", "unless-stopped"]);
    app.wait_for("healthy", Duration::from_secs(30), |c| {
        c.health() == "healthy"
    });
    assert_eq!(app.restart_count(), 0);
    // The answer may or may not arrive before the process exits.
    let _ = app.chaos("/chaos/crash");
    app.wait_for("restarted", Duration::from_secs(30), |c| {
        c.restart_count() >= 1
    });
    app.wait_for("healthy again", Duration::from_secs(30), |c| {
        c.inspect("{{.State.Status}}") == "running" && c.health() == "healthy"
    });
}

/// Fault injection changes state, so it takes POST only: a GET with the token (a link
/// followed, a prefetch) crashes nothing.
#[test]
fn a_get_of_a_fault_with_the_token_changes_nothing() {
    let app = Container::run("chaos-get", &[]);
    app.wait_for("healthy", Duration::from_secs(30), |c| {
        c.health() == "healthy"
    });
    let started = app.inspect("{{.State.StartedAt}}");
    for fault in ["/chaos/crash", "/chaos/hang", "/chaos/unhealthy"] {
        assert_eq!(
            app.authorised("GET", fault).expect("answers"),
            405,
            "{fault}"
        );
    }
    let answer = demo_app::healthcheck::status_of(app.addr(), "/health", Duration::from_secs(1));
    assert_eq!(answer.ok(), Some(200), "still serving");
    assert_eq!(app.inspect("{{.State.Status}}"), "running");
    assert_eq!(
        app.inspect("{{.State.StartedAt}}"),
        started,
        "never crashed"
    );
}

#[test]
fn a_hang_makes_the_healthcheck_time_out() {
    let app = Container::run("hang", &[]);
    app.wait_for("healthy", Duration::from_secs(30), |c| {
        c.health() == "healthy"
    });
    assert_eq!(app.chaos("/chaos/hang").expect("answers"), 202);
    app.wait_for("unhealthy", Duration::from_secs(30), |c| {
        c.health() == "unhealthy"
    });
    // Hung, not dead: the process is still running.
    assert_eq!(app.inspect("{{.State.Status}}"), "running");
    let answer = demo_app::healthcheck::status_of(app.addr(), "/health", Duration::from_secs(1));
    assert!(answer.is_err(), "a hung app answered: {answer:?}");
}

#[test]
fn a_leak_under_a_memory_limit_ends_in_an_oom_kill() {
    let app = Container::run("leak", &["--memory", "48m", "--memory-swap", "48m"]);
    app.wait_for("healthy", Duration::from_secs(30), |c| {
        c.health() == "healthy"
    });
    // The connection breaks when the kernel kills the process mid-allocation.
    let _ = app.chaos("/chaos/leak?mb=256");
    app.wait_for("exited", Duration::from_secs(30), |c| {
        c.inspect("{{.State.Status}}") == "exited"
    });
    assert_eq!(app.inspect("{{.State.OOMKilled}}"), "true");
    assert_eq!(app.inspect("{{.State.ExitCode}}"), "137");
}
