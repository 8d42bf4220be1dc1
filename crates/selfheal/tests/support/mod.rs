//! Helpers for tests against the real Docker engine: unique names, a private network per
//! test, containers of the demo app or of a third-party image (busybox), a watchdog process
//! scoped to the test's containers, and cleanup on drop.
#![allow(dead_code)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const IMAGE: &str = "selfheal/demo-app:latest";
/// A third-party image with nothing of this project inside: static busybox whose default
/// command is `httpd -f -p 8080 -h /www`, serving `/health` (docker/offline/build.sh).
pub const BUSYBOX: &str = "selfheal/busybox:latest";
/// A HEALTHCHECK for [`BUSYBOX`]: wget of `/health` every 1 s, unhealthy after 2 failures.
/// No `wget -T`: Debian 12's static busybox 1.35 segfaults with it; Docker's timeout applies.
pub const BUSYBOX_HEALTH: &[&str] = &[
    "--health-cmd",
    "wget -q -O /dev/null http://127.0.0.1:8080/health || exit 1",
    "--health-interval",
    "1s",
    "--health-timeout",
    "1s",
    "--health-retries",
    "2",
    "--health-start-period",
    "1s",
];
/// Opted in, with the watchdog's own HTTP probe of `/health` on port 8080 (both test images).
pub const OPT_IN_HTTP_PROBE: &[&str] = &[
    "--label",
    "selfheal.enable=true",
    "--label",
    "selfheal.probe.http=:8080/health",
];

/// A demo app seen only through the watchdog's own fast HTTP probe (no HEALTHCHECK): 500 ms
/// interval, 300 ms timeout, 2 failures, a 2 s stop timeout, Docker's `unless-stopped`.
pub const PROBE_ONLY_FAST: &[&str] = &[
    "--no-healthcheck",
    "--restart",
    "unless-stopped",
    "--label",
    "selfheal.enable=true",
    "--label",
    "selfheal.probe.http=:8080/health",
    "--label",
    "selfheal.probe.interval=500ms",
    "--label",
    "selfheal.probe.timeout=300ms",
    "--label",
    "selfheal.probe.failures=2",
    "--label",
    "selfheal.stop-timeout=2",
];

/// A Docker HEALTHCHECK that notices a fault within about two seconds.
pub const FAST_HEALTH: &[&str] = &[
    "--health-interval",
    "1s",
    "--health-timeout",
    "1s",
    "--health-retries",
    "2",
    "--health-start-period",
    "1s",
];

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `a` followed by `b`.
pub fn with<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    a.iter().chain(b).copied().collect()
}
pub const TOKEN: &str = "drill-token";

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn require_image(image: &str) {
    assert!(
        docker_ok(&["image", "inspect", image]),
        "{image} is missing: run `make images` first (make test does)"
    );
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One test's world: a network, its containers, a scope label and a temp dir.
pub struct TestEnv {
    pub id: String,
    pub network: String,
    pub dir: tempfile::TempDir,
    containers: Mutex<Vec<String>>,
}

impl TestEnv {
    pub fn new(test: &str) -> Self {
        let id = format!(
            "sh-{test}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let network = format!("{id}-net");
        docker(&[
            "network",
            "create",
            "--label",
            &format!("selfheal-test.run={id}"),
            &network,
        ]);
        Self {
            id,
            network,
            dir: tempfile::tempdir().expect("temp dir"),
            containers: Mutex::new(Vec::new()),
        }
    }

    /// The label the watchdog of this test is scoped to.
    pub fn scope(&self) -> String {
        format!("selfheal-test.run={}", self.id)
    }

    /// `docker run -d` of the demo app (chaos on with [`TOKEN`], ready at once) on the test
    /// network with the scope label. `args` are `docker run` options; if they name [`IMAGE`],
    /// what follows it is the command.
    pub fn run(&self, name: &str, args: &[&str]) -> Ctr {
        let (options, cmd) = match args.iter().position(|a| *a == IMAGE) {
            Some(i) => (&args[..i], &args[i + 1..]),
            None => (args, &[][..]),
        };
        let token = format!("CHAOS_TOKEN={TOKEN}");
        let env = ["-e", token.as_str(), "-e", "READY_DELAY=0s"];
        self.run_image_cmd(name, IMAGE, &with(&env, options), cmd)
    }

    /// `docker run -d [args] image` on the test network with the scope label; removed on drop.
    pub fn run_image(&self, name: &str, image: &str, args: &[&str]) -> Ctr {
        self.run_image_cmd(name, image, args, &[])
    }

    /// As [`TestEnv::run_image`], with a command (and its arguments) after the image.
    pub fn run_image_cmd(&self, name: &str, image: &str, args: &[&str], cmd: &[&str]) -> Ctr {
        self.run_on(&self.network.clone(), name, image, args, cmd)
    }

    /// As [`TestEnv::run_image_cmd`], inside `parent`'s network namespace
    /// (`--network container:PARENT`): it serves on `parent`'s address.
    pub fn run_in_namespace_of(
        &self,
        parent: &Ctr,
        name: &str,
        image: &str,
        args: &[&str],
        cmd: &[&str],
    ) -> Ctr {
        let mut c = self.run_on(
            &format!("container:{}", parent.name),
            name,
            image,
            args,
            cmd,
        );
        c.network = parent.network.clone();
        c
    }

    /// As [`TestEnv::run_image_cmd`], on `network` (e.g. one the test made with a subnet, for
    /// static addresses) instead of the test network.
    pub fn run_on(
        &self,
        network: &str,
        name: &str,
        image: &str,
        args: &[&str],
        cmd: &[&str],
    ) -> Ctr {
        require_image(image);
        let full = format!("{}-{name}", self.id);
        let scope = self.scope();
        let mut all = vec![
            "run",
            "-d",
            "--name",
            &full,
            "--network",
            network,
            "--label",
            &scope,
        ];
        all.extend_from_slice(args);
        all.push(image);
        all.extend_from_slice(cmd);
        // Recorded before it runs: a failed `docker run` may still leave a created container.
        self.containers.lock().expect("lock").push(full.clone());
        let id = docker(&all);
        Ctr {
            name: full,
            id,
            network: network.to_string(),
        }
    }

    pub fn watchdog(&self, extra: &[&str]) -> Watchdog {
        Watchdog::spawn(self, extra, None)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let names = self
            .containers
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        for n in names {
            let _ = Command::new("docker").args(["rm", "-f", "-v", &n]).output();
        }
        // Whatever else carries the test's label: a container recreated under another name,
        // one parked aside by a recreate that a failing test interrupted.
        let filter = format!("label={}", self.scope());
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// A container of a test.
pub struct Ctr {
    pub name: String,
    pub id: String,
    pub network: String,
}

impl Ctr {
    pub fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.name])
    }
    pub fn started_at(&self) -> String {
        self.inspect("{{.State.StartedAt}}")
    }
    pub fn health(&self) -> String {
        self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")
    }
    pub fn running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }
    /// SIGSTOP to the main process (`docker kill -s STOP`): Docker still says running, but
    /// it answers nothing, so its HEALTHCHECK or a probe times out.
    pub fn freeze(&self) {
        docker(&["kill", "-s", "STOP", &self.name]);
    }
    /// Undoes [`Ctr::freeze`] (`docker kill -s CONT`).
    pub fn thaw(&self) {
        docker(&["kill", "-s", "CONT", &self.name]);
    }
    pub fn restart_count(&self) -> u32 {
        self.inspect("{{.RestartCount}}").parse().unwrap_or(0)
    }
    pub fn ip(&self) -> String {
        self.inspect(&format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.network
        ))
    }
    /// Calls a chaos endpoint of the demo app.
    pub fn chaos(&self, fault: &str) {
        let addr = format!("{}:8080", self.ip());
        let r = http(
            "POST",
            &addr,
            &format!("/chaos/{fault}"),
            Some(TOKEN),
            Duration::from_secs(2),
        );
        // A crash or hang may cut the answer short; any other failure is the test's problem.
        if !matches!(fault, "crash" | "hang") {
            let (status, body) =
                r.unwrap_or_else(|e| panic!("chaos {fault} on {}: {e}", self.name));
            assert!(status < 300, "chaos {fault}: {status} {body}");
        }
    }
    pub fn wait_health(&self, want: &str, timeout: Duration) -> Result<(), String> {
        wait_for(&format!("{} to be {want}", self.name), timeout, || {
            (self.health() == want).then_some(())
        })
    }
}

/// A minimal HTTP/1.0 client with a hard timeout, enough for tests.
pub fn http(
    method: &str,
    addr: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let sock_addr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let mut s = TcpStream::connect_timeout(&sock_addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The address in the last complete `listening on ADDR` line of `log` (what `selfheal watch`
/// logs once it has bound its listener).
fn listening_address(log: &str) -> Option<SocketAddr> {
    let complete = &log[..log.rfind('\n')?];
    complete
        .lines()
        .rev()
        .find_map(|l| l.split_once("listening on ")?.1.split_whitespace().next())
        .and_then(|a| a.parse().ok())
}

/// A `selfheal watch` process scoped to one test's containers.
pub struct Watchdog {
    child: Option<Child>,
    /// The port the running watchdog bound (`--listen 127.0.0.1:0`); changes at every start.
    pub port: u16,
    pub log: PathBuf,
    pub state_dir: PathBuf,
    args: Vec<String>,
    docker_host: Option<String>,
    /// A command the watchdog runs under (its program and arguments come last), e.g. one that
    /// sets its resource limits; empty: none.
    wrapper: Vec<String>,
}

impl Watchdog {
    pub fn spawn(env: &TestEnv, extra: &[&str], docker_host: Option<String>) -> Self {
        Self::spawn_under(env, extra, docker_host, &[])
    }

    /// As [`Watchdog::spawn`], run as the last arguments of `wrapper` (`sh -c '...; exec "$@"'
    /// sh`, `prlimit ... --`): the wrapper must exec the watchdog, so the child is the watchdog.
    pub fn spawn_under(
        env: &TestEnv,
        extra: &[&str],
        docker_host: Option<String>,
        wrapper: &[&str],
    ) -> Self {
        let mut w = Self {
            child: None,
            port: 0,
            log: env.dir.path().join("watchdog.log"),
            state_dir: env.dir.path().join("state"),
            args: extra.iter().map(|s| s.to_string()).collect(),
            docker_host,
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
        };
        let scope = env.scope();
        w.args.extend(["--filter-label".to_string(), scope]);
        w.start();
        w
    }

    /// Starts the process on a port the kernel picks (no race with parallel tests over a
    /// "free" port), reads that port from its log, and waits until its API answers.
    pub fn start(&mut self) {
        // The log is appended to across restarts: only what this start writes counts.
        let log_from = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let bin = env!("CARGO_BIN_EXE_selfheal");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("watch")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.args)
            .env("RUST_LOG", "info,selfheal=debug")
            .env_remove("SELFHEAL_CONFIG")
            .stdout(Stdio::null())
            .stderr(log);
        match &self.docker_host {
            Some(h) => cmd.env("DOCKER_HOST", h),
            None => cmd.env_remove("DOCKER_HOST"),
        };
        self.child = Some(cmd.spawn().expect("selfheal starts"));
        let bound = wait_for(
            "the watchdog to log its address",
            Duration::from_secs(20),
            || {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("the watchdog exited with {status}\n{}", self.log_tail());
                }
                let mut text = String::new();
                let mut f = std::fs::File::open(&self.log).ok()?;
                f.seek(SeekFrom::Start(log_from)).ok()?;
                f.read_to_string(&mut text).ok()?;
                listening_address(&text)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail()));
        self.port = bound.port();
        let port = self.port;
        wait_for("the watchdog to answer", Duration::from_secs(20), || {
            http(
                "GET",
                &format!("127.0.0.1:{port}"),
                "/api/v1/containers",
                None,
                Duration::from_secs(1),
            )
            .ok()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail()));
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn get(&self, path: &str) -> String {
        let (status, body) = http(
            "GET",
            &format!("127.0.0.1:{}", self.port),
            path,
            None,
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            status == 200 || path == "/healthz",
            "GET {path}: {status} {body}"
        );
        body
    }

    /// The status `/healthz` answers with.
    pub fn healthz_status(&self) -> u16 {
        http(
            "GET",
            &format!("127.0.0.1:{}", self.port),
            "/healthz",
            None,
            Duration::from_secs(2),
        )
        .expect("healthz answers")
        .0
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
    }

    pub fn container(&self, name: &str) -> Option<serde_json::Value> {
        self.json("/api/v1/containers")
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    pub fn state(&self, name: &str) -> String {
        self.container(name)
            .map(|c| c["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    pub fn incidents(&self, name: &str) -> Vec<serde_json::Value> {
        self.json(&format!("/api/v1/incidents?container={name}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The sum of the series of `name` that carry these labels (PromQL's `sum(name{labels})`;
    /// `None` when there is none): one series when the labels name it fully, every `verb` of
    /// a recovery when they leave it out.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.get("/metrics");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
    }

    /// Waits for a recovered incident of `name`; panics with the watchdog's log otherwise.
    pub fn wait_recovered(&self, name: &str, timeout: Duration) -> serde_json::Value {
        wait_for(&format!("a recovered incident of {name}"), timeout, || {
            self.incidents(name)
                .into_iter()
                .find(|i| i["outcome"] == "recovered")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail()))
    }

    pub fn wait_state(&self, name: &str, want: &str, timeout: Duration) -> Result<(), String> {
        wait_for(&format!("{name} in state {want}"), timeout, || {
            (self.state(name) == want).then_some(())
        })
        .map_err(|e| {
            format!(
                "{e} (state now {:?})\n{}",
                self.state(name),
                self.log_tail()
            )
        })
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(120);
        format!(
            "--- watchdog log (last 120 lines) ---\n{}",
            lines[from..].join("\n")
        )
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.kill();
    }
}
