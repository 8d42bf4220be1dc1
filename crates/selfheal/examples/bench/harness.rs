//! What every benchmark needs: containers labelled for this run (removed on drop), the real
//! watchdog binary as a child process, a recorder of Docker's events, and small probes of
//! processes and apps.

use bollard::query_parameters::{EventsOptionsBuilder, InspectContainerOptions};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

pub const IMAGE: &str = "selfheal/demo-app:latest";
/// The third-party image: Debian's static busybox, `httpd -f -p 8080 -h /www`, serving /health.
pub const BUSYBOX_IMAGE: &str = "selfheal/busybox:latest";
pub const TOKEN: &str = "bench-chaos-token";
/// Label key every container of a benchmark run carries (value: the run id).
pub const RUN_LABEL: &str = "bench.selfheal.run";

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

pub fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// A whole number from the environment, or `default`.
pub fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A time of the watchdog's journal in ns since the epoch.
pub fn wall_ns(t: selfheal::journal::Timestamp) -> Option<i64> {
    let d = t.system_time().duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// Containers of one benchmark run; all removed when dropped.
#[derive(Debug)]
pub struct Run {
    pub id: String,
    pub docker: Docker,
    pub http: reqwest::Client,
}

impl Run {
    pub async fn new(name: &str) -> Result<Self, String> {
        let docker = selfheal::docker::connect(None)
            .await
            .map_err(|e| format!("Docker: {e}"))?;
        let id = format!("{name}-{}-{}", std::process::id(), now_ns() % 1_000_000);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { id, docker, http })
    }

    /// `KEY=VALUE` that selects this run's containers.
    pub fn label(&self) -> String {
        format!("{RUN_LABEL}={}", self.id)
    }

    /// A label unique to this run for one group of its containers.
    pub fn group(&self, group: &str) -> String {
        format!("bench.selfheal.group.{group}={}", self.id)
    }

    pub fn name(&self, group: &str, i: usize) -> String {
        format!("shbench-{}-{group}-{i}", self.id)
    }

    /// Starts demo-app containers `names` with extra `docker run` arguments, four at a time.
    pub async fn create(&self, names: &[String], extra: &[String]) -> Result<(), String> {
        self.create_with(IMAGE, names, extra).await
    }

    /// Starts containers `names` of `image` with extra `docker run` arguments, four at a time.
    /// (The demo-app's environment variables are set for any image; others ignore them.)
    pub async fn create_with(
        &self,
        image: &str,
        names: &[String],
        extra: &[String],
    ) -> Result<(), String> {
        let label = self.label();
        let jobs = names.iter().map(|n| {
            let mut args: Vec<String> = vec![
                "run".into(),
                "-d".into(),
                "--name".into(),
                n.clone(),
                "--label".into(),
                label.clone(),
                "-e".into(),
                format!("CHAOS_TOKEN={TOKEN}"),
                "-e".into(),
                "READY_DELAY=0s".into(),
                "-e".into(),
                "RUST_LOG=warn".into(),
            ];
            args.extend(extra.iter().cloned());
            args.push(image.into());
            async move {
                let out = tokio::process::Command::new("docker")
                    .args(&args)
                    .output()
                    .await
                    .map_err(|e| format!("docker run: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "docker run {n}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            }
        });
        futures_util::stream::iter(jobs)
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    pub async fn inspect(&self, name: &str) -> Option<bollard::models::ContainerInspectResponse> {
        self.docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .ok()
    }

    pub async fn ip(&self, name: &str) -> Option<String> {
        let c = self.inspect(name).await?;
        c.network_settings?
            .networks?
            .into_values()
            .find_map(|n| n.ip_address.filter(|s| !s.is_empty()))
    }

    pub async fn id_of(&self, name: &str) -> Option<String> {
        self.inspect(name).await?.id
    }

    /// Removes one container at once (SIGKILL, so a frozen one goes too).
    pub async fn remove(&self, name: &str) -> Result<(), String> {
        self.docker
            .remove_container(
                name,
                Some(
                    bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
            .map_err(|e| format!("rm -f {name}: {e}"))
    }

    /// The app's /health answers 200 right now.
    pub async fn app_ok(&self, ip: &str) -> bool {
        self.http
            .get(format!("http://{ip}:8080/health"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    pub async fn chaos(&self, ip: &str, what: &str) -> Result<(), String> {
        let r = self
            .http
            .post(format!("http://{ip}:8080/chaos/{what}"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("chaos/{what} on {ip}: {e}"))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("chaos/{what} on {ip}: {}", r.status()))
        }
    }

    /// Polls until the container runs and its app answers (and Docker says healthy, if it has
    /// a HEALTHCHECK); returns its address.
    pub async fn wait_healthy(&self, name: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.inspect(name).await {
                let state = c.state.clone().unwrap_or_default();
                let health = state.health.and_then(|h| h.status).map(|s| s.to_string());
                let ip = self.ip(name).await;
                if state.running == Some(true)
                    && health
                        .as_deref()
                        .is_none_or(|h| h == "healthy" || h == "none")
                {
                    if let Some(ip) = ip {
                        if self.app_ok(&ip).await {
                            return Ok(ip);
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("{name} not healthy within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label());
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            eprintln!("bench: removing {} container(s)", ids.len());
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Copies the child's stderr lines to ours (as `Stdio::inherit` would) on a thread, and sends
/// the address of the first `listening on ADDR` line.
fn forward_stderr_until_bound(
    stderr: std::process::ChildStderr,
) -> tokio::sync::oneshot::Receiver<std::net::SocketAddr> {
    use std::io::BufRead;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let addr = line
                .split_once("listening on ")
                .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok());
            if let Some(addr) = addr {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
            eprintln!("{line}");
        }
    });
    rx
}

/// The real watchdog binary (`selfheal` beside the harness: `target/<triple>/release`, as
/// `make bench` builds it) as a child; killed on drop.
#[derive(Debug)]
pub struct Watchdog {
    child: Child,
    pub api: String,
    /// From the spawn to its `listening on` line (the journal is read before the admin
    /// server binds) and to its first `/healthz` answer.
    pub listening_after: Duration,
    pub healthy_after: Duration,
    _state: Option<tempfile::TempDir>,
}

pub fn watchdog_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SELFHEAL_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/examples/bench -> target/<profile>/selfheal
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.join("selfheal")))
        .unwrap_or_else(|| PathBuf::from("selfheal"))
}

impl Watchdog {
    /// Starts the binary on a port the kernel picks (`--listen 127.0.0.1:0`; a port probed
    /// free beforehand can be taken meanwhile) and learns it from the `listening on` log line.
    pub async fn start(filter: &str, extra: &[&str]) -> Result<Self, String> {
        let state = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut w = Self::start_in(state.path(), filter, extra).await?;
        w._state = Some(state);
        Ok(w)
    }

    /// As [`Watchdog::start`], on a state directory the caller keeps (and may fill).
    pub async fn start_in(state: &Path, filter: &str, extra: &[&str]) -> Result<Self, String> {
        let bin = watchdog_binary();
        let spawned = Instant::now();
        let mut child = Command::new(&bin)
            .args(["watch", "--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state)
            .args(["--filter-label", filter])
            .args(extra)
            // Errors only, as before, plus the one info line that names the bound address.
            .env("RUST_LOG", "error,selfheal::cli=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let bound = forward_stderr_until_bound(stderr);
        let mut w = Self {
            child,
            api: String::new(),
            listening_after: Duration::ZERO,
            healthy_after: Duration::ZERO,
            _state: None,
        };
        let addr = tokio::time::timeout(Duration::from_secs(30), bound)
            .await
            .map_err(|_| "the watchdog logged no `listening on` address within 30s".to_string())?
            .map_err(|_| "the watchdog exited before it was listening".to_string())?;
        w.listening_after = spawned.elapsed();
        w.api = format!("http://{addr}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = http
                .get(format!("{}/healthz", w.api))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                w.healthy_after = spawned.elapsed();
                return Ok(w);
            }
            if Instant::now() >= deadline {
                return Err("the watchdog did not become healthy within 30s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A metric's value (first sample whose line starts with `name`).
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> Option<f64> {
        let text = http
            .get(format!("{}/metrics", self.api))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// The sum of the samples whose line starts with `prefix` and contains `part`.
    pub async fn metric_sum(&self, http: &reqwest::Client, prefix: &str, part: &str) -> f64 {
        let Ok(r) = http.get(format!("{}/metrics", self.api)).send().await else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(part))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn incidents(&self, http: &reqwest::Client) -> Vec<selfheal::journal::Incident> {
        match http
            .get(format!("{}/api/v1/incidents", self.api))
            .timeout(Duration::from_secs(3))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// How many incidents carry evidence read back from Docker (`evidence.logs` or a note):
    /// shows whether capture was on in a run.
    pub async fn incidents_with_captured_logs(&self, http: &reqwest::Client) -> usize {
        let mut n = 0;
        for i in self.incidents(http).await {
            let url = format!("{}/api/v1/incidents/{}", self.api, i.id);
            let full: Option<selfheal::journal::Incident> = match http.get(url).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            if full.is_some_and(|f| f.evidence.is_some_and(|e| e.logs.is_some())) {
                n += 1;
            }
        }
        n
    }

    /// Polls `/api/v1/containers` until it lists container `id`.
    pub async fn wait_knows(
        &self,
        http: &reqwest::Client,
        id: &str,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let list: Vec<serde_json::Value> = match http
                .get(format!("{}/api/v1/containers", self.api))
                .timeout(Duration::from_secs(3))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            if list.iter().any(|c| c["id"].as_str() == Some(id)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the watchdog did not pick up {id} within {within:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn watched(&self, http: &reqwest::Client) -> usize {
        self.metric(http, "selfheal_watched_containers")
            .await
            .map_or(0, |v| v as usize)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Docker event of the run's containers.
#[derive(Debug, Clone)]
pub struct Ev {
    pub id: String,
    pub action: String,
    pub ns: i64,
    pub attrs: HashMap<String, String>,
}

/// Records every container event of the run's label.
#[derive(Debug)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Ev>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(docker: &Docker, label: &str) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let engine = docker.clone();
        let label = label.to_string();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let filters =
                HashMap::from([("type", vec!["container"]), ("label", vec![label.as_str()])]);
            let mut stream = engine.events(Some(
                EventsOptionsBuilder::default().filters(&filters).build(),
            ));
            let _ = ready_tx.send(());
            while let Some(Ok(ev)) = stream.next().await {
                let actor = ev.actor.unwrap_or_default();
                let e = Ev {
                    id: actor.id.unwrap_or_default(),
                    action: ev.action.unwrap_or_default(),
                    ns: ev.time_nano.unwrap_or_default(),
                    attrs: actor.attributes.unwrap_or_default(),
                };
                if let Ok(mut v) = sink.lock() {
                    v.push(e);
                }
            }
        });
        let _ = ready_rx.await;
        // The stream is open once the engine answered; give the subscription a round trip.
        let _ = docker.ping().await;
        Self { events, task }
    }

    pub fn all(&self) -> Vec<Ev> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// First event `action` of container `id` at or after `after` (ns).
    pub fn first(&self, id: &str, action: &str, after: i64) -> Option<i64> {
        self.events.lock().ok().and_then(|v| {
            v.iter()
                .filter(|e| e.id == id && e.action == action && e.ns >= after)
                .map(|e| e.ns)
                .min()
        })
    }

    /// The first `kill` event of container `id` at or after `after` that is not the fault's own
    /// SIGSTOP (19) or a SIGCONT (18): the SIGTERM with which a restart begins.
    pub fn first_restart_kill(&self, id: &str, after: i64) -> Option<i64> {
        self.events.lock().ok().and_then(|v| {
            v.iter()
                .filter(|e| e.id == id && e.action == "kill" && e.ns >= after)
                .filter(|e| !matches!(e.attrs.get("signal").map(String::as_str), Some("19" | "18")))
                .map(|e| e.ns)
                .min()
        })
    }

    /// Polls until `first_restart_kill(id, after)` exists.
    pub async fn wait_restart_kill(
        &self,
        id: &str,
        after: i64,
        within: Duration,
    ) -> Result<i64, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(t) = self.first_restart_kill(id, after) {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(format!("no restart (kill event) within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `first(id, action, after)` exists.
    pub async fn wait(
        &self,
        id: &str,
        action: &str,
        after: i64,
        within: Duration,
    ) -> Result<i64, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(t) = self.first(id, action, after) {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(format!("no {action:?} event within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// p50, p99 (nearest rank), min, max and n, as JSON.
pub fn dist(values: &[f64]) -> serde_json::Value {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return serde_json::json!({ "n": 0 });
    }
    let p = |q| (selfheal::drill::percentile(&v, q) * 1e4).round() / 1e4;
    serde_json::json!({
        "n": v.len(),
        "min": p(0.0),
        "p50": p(0.5),
        "p95": p(0.95),
        "p99": p(0.99),
        "max": p(1.0),
    })
}

pub fn p50(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    selfheal::drill::percentile(&v, 0.5)
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// utime + stime from a `/proc/.../stat` file, in seconds.
pub fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A process's memory as `/proc/PID/status` splits it, in MiB, and its thread count: what
/// RSS is made of (heap and other anonymous pages against the binary's and libraries' file
/// pages, which are clean and shared with the page cache).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryParts {
    pub rss: f64,
    pub hwm: f64,
    pub anon: f64,
    pub file: f64,
    pub threads: u32,
}

pub fn memory_parts(pid: u32) -> Option<MemoryParts> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(MemoryParts {
        rss: field("VmRSS:")? / 1024.0,
        hwm: field("VmHWM:")? / 1024.0,
        anon: field("RssAnon:")? / 1024.0,
        file: field("RssFile:")? / 1024.0,
        threads: field("Threads:")? as u32,
    })
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`): the machine is shared, so every
/// figure is reported next to the load it was measured under.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN));
    [(); 3].map(|_| it.next().unwrap_or(f64::NAN))
}

/// The watchdog binary the run uses and its size in bytes (code pages follow the size).
pub fn binary_info() -> serde_json::Value {
    let bin = watchdog_binary();
    let bytes = std::fs::metadata(&bin).map(|m| m.len()).ok();
    serde_json::json!({ "path": bin.display().to_string(), "bytes": bytes })
}

/// Rounds to one decimal (MiB, seconds in reports).
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
