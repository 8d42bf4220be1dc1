//! 6: the watchdog's real probe loop (`selfheal::probe::schedule`) against 1,000 and 5,000
//! HTTP targets on loopback, every second, on one core: schedule lag and CPU. Floor: the same
//! number of bare tokio intervals doing nothing, on the same kind of runtime.
//!
//! The targets are served by a child process (`bench probe-server`), so its CPU is not the
//! prober's: 8 loopback addresses x 25 ports, a minimal HTTP/1.1 responder that closes every
//! connection (as the watchdog's probes never reuse one).

use crate::harness::{cpu_seconds, dist};
use selfheal::probe::{schedule, Prober};
use selfheal_core::{ProbeKind, ProbeOutcome, ProbeTarget};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const ADDRESSES: u8 = 8;
const PORTS_PER_ADDRESS: usize = 25;
const INTERVAL: Duration = Duration::from_secs(1);
const WARMUP: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(20);

/// `bench probe-server`: prints `ip:port` per listener, then `ready`; serves until stdin closes.
pub fn server_main(_args: &[String]) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("probe-server: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async {
        let mut out = std::io::stdout();
        for a in 1..=ADDRESSES {
            for _ in 0..PORTS_PER_ADDRESS {
                let Ok(l) = tokio::net::TcpListener::bind(format!("127.0.0.{a}:0")).await
                else {
                    eprintln!("probe-server: cannot bind on 127.0.0.{a}");
                    return ExitCode::from(2);
                };
                let Ok(addr) = l.local_addr() else {
                    return ExitCode::from(2);
                };
                let _ = writeln!(out, "{addr}");
                tokio::spawn(async move {
                    while let Ok((mut sock, _)) = l.accept().await {
                        tokio::spawn(async move {
                            let mut buf = [0u8; 2048];
                            let mut seen = Vec::new();
                            while let Ok(n) = sock.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                                seen.extend_from_slice(&buf[..n]);
                                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                    let _ = sock
                                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
                                        .await;
                                    break;
                                }
                            }
                            let _ = sock.shutdown().await;
                        });
                    }
                });
            }
        }
        let _ = writeln!(out, "ready");
        let _ = out.flush();
        // Serve until the parent closes our stdin.
        let mut stdin = tokio::io::stdin();
        let mut b = [0u8; 1];
        let _ = stdin.read(&mut b).await;
        ExitCode::SUCCESS
    })
}

pub async fn run() -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .arg("probe-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("probe-server: {e}"))?;
    let guard = KillOnDrop(&mut child);
    let stdout = guard.0.stdout.take().ok_or("probe-server: no stdout")?;
    let mut endpoints = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line == "ready" {
            break;
        }
        endpoints.push(line);
    }
    if endpoints.is_empty() {
        return Err("probe-server gave no endpoints".into());
    }
    let server_pid = guard.0.id();
    let mut results = Vec::new();
    for n in [1000usize, 5000] {
        for mode in ["floor", "probe"] {
            let eps = endpoints.clone();
            let server_cpu0 = cpu_seconds(server_pid).unwrap_or_default();
            let r = tokio::task::spawn_blocking(move || one_core(mode, n, &eps))
                .await
                .map_err(|e| e.to_string())??;
            let server_cpu = cpu_seconds(server_pid).unwrap_or_default() - server_cpu0;
            eprintln!("probe-scale: {n} targets, {mode}: {r}");
            let mut r = r;
            r["server_cpu_pct_of_one_core_incl_warmup"] =
                json!((server_cpu / (WARMUP + WINDOW).as_secs_f64() * 1000.0).round() / 10.0);
            results.push(r);
        }
    }
    drop(guard);
    Ok(json!({
        "interval_s": INTERVAL.as_secs_f64(),
        "window_s": WINDOW.as_secs_f64(),
        "runs": results,
        "notes": "one current-thread tokio runtime = one core; targets start spread over one interval",
        "goal": "1,000 targets on one core with lag p99 <= 100 ms",
    }))
}

struct KillOnDrop<'a>(&'a mut std::process::Child);
impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `n` schedules (or bare intervals for the floor) on a current-thread runtime in this
/// thread and measures lag and this thread's CPU time.
fn one_core(mode: &str, n: usize, endpoints: &[String]) -> Result<serde_json::Value, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let lags: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(n * 30)));
        let failures: Arc<Mutex<std::collections::BTreeMap<&'static str, u64>>> = Arc::default();
        let cancel = CancellationToken::new();
        let prober = Prober::new().map_err(|e| e.to_string())?;
        let (_addr_tx, addr_rx) = tokio::sync::watch::channel(None);
        for i in 0..n {
            let (host, port) = endpoints[i % endpoints.len()]
                .rsplit_once(':')
                .ok_or("bad endpoint")?;
            let target = ProbeTarget {
                kind: ProbeKind::Http,
                host: Some(host.to_string()),
                port: port.parse().map_err(|_| "bad port")?,
                path: "/health".into(),
                expect_body: None,
            };
            let lags = lags.clone();
            let failures = failures.clone();
            let cancel = cancel.clone();
            let prober = prober.clone();
            let addr_rx = addr_rx.clone();
            let delay = INTERVAL.mul_f64(i as f64 / n as f64);
            let probe = mode == "probe";
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if probe {
                    schedule(
                        prober,
                        target,
                        INTERVAL,
                        Duration::from_millis(500),
                        addr_rx,
                        cancel,
                        |result, _took, lag, _detail| {
                            if let Ok(mut v) = lags.lock() {
                                v.push(lag.as_secs_f64());
                            }
                            let reason = match result {
                                ProbeOutcome::Passed => None,
                                ProbeOutcome::Failed(f) => Some(f.as_str()),
                                ProbeOutcome::Unobservable(u) => Some(u.as_str()),
                            };
                            if let Some(reason) = reason {
                                if let Ok(mut f) = failures.lock() {
                                    *f.entry(reason).or_default() += 1;
                                }
                            }
                            true
                        },
                    )
                    .await;
                } else {
                    let mut ticker = tokio::time::interval(INTERVAL);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        let due = tokio::select! {
                            _ = cancel.cancelled() => return,
                            due = ticker.tick() => due,
                        };
                        let lag = tokio::time::Instant::now().saturating_duration_since(due);
                        if let Ok(mut v) = lags.lock() {
                            v.push(lag.as_secs_f64());
                        }
                    }
                }
            });
        }
        tokio::time::sleep(WARMUP).await;
        if let Ok(mut v) = lags.lock() {
            v.clear();
        }
        if let Ok(mut f) = failures.lock() {
            f.clear();
        }
        let cpu0 = thread_cpu_seconds().ok_or("cannot read this thread's CPU time")?;
        let proc0 = cpu_seconds(std::process::id()).unwrap_or_default();
        let t0 = tokio::time::Instant::now();
        tokio::time::sleep(WINDOW).await;
        let cpu = thread_cpu_seconds().unwrap_or_default() - cpu0;
        let proc_cpu = cpu_seconds(std::process::id()).unwrap_or_default() - proc0;
        let elapsed = t0.elapsed().as_secs_f64();
        cancel.cancel();
        let lags = lags.lock().map(|v| v.clone()).unwrap_or_default();
        let failed = failures.lock().map(|f| f.clone()).unwrap_or_default();
        let ms: Vec<f64> = lags.iter().map(|l| l * 1000.0).collect();
        Ok(json!({
            "targets": n,
            "mode": mode,
            "samples": lags.len(),
            "per_s": (lags.len() as f64 / elapsed).round(),
            "failed": failed,
            "lag_ms": dist(&ms),
            "cpu_pct_of_one_core": (cpu / elapsed * 1000.0).round() / 10.0,
            "process_cpu_pct_all_threads": (proc_cpu / elapsed * 1000.0).round() / 10.0,
        }))
    })
}

/// utime + stime of the calling thread (the current-thread runtime runs on it).
fn thread_cpu_seconds() -> Option<f64> {
    crate::harness::stat_cpu_seconds("/proc/thread-self/stat")
}
