//! 9: the watchdog's start on a large incident journal (issue 21: a 1 GB journal, start under
//! 3 s, RSS under 40 MiB). Generates a journal of the current record format (each incident
//! twice, as the watchdog appends it: open without evidence, then recovered with about 4 KiB
//! of evidence, until the file reaches `BENCH_JOURNAL_MIB`), then starts the release watchdog
//! on a fresh copy of it, and a second time on what the first start left (compacted to the
//! newest 10,000 incidents and the open ones).
//!
//! Start = spawn -> its `listening on` line (the journal is read before the admin server
//! binds) and -> the first `/healthz` answer. RSS, peak RSS and CPU time (utime + stime) are
//! read right after `/healthz` answers, and RSS again after a settle. `BENCH_JOURNAL_KEEP=PATH`
//! keeps the generated journal at PATH, and reuses it when it is there.

use crate::harness::{
    binary_info, cpu_seconds, env_num, load_average, memory_parts, round1, Watchdog,
};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Every this many incidents, one stays open (its only copy is the open one).
const OPEN_EVERY: u64 = 1_000;
/// How long after `/healthz` the RSS is read a second time.
const SETTLE: Duration = Duration::from_secs(3);

pub async fn run() -> Result<Value, String> {
    let target = env_num("BENCH_JOURNAL_MIB", 1024) * 1024 * 1024;
    let rounds = env_num("BENCH_JOURNAL_ROUNDS", 3).max(1);
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    // BENCH_JOURNAL_KEEP=PATH: generate into PATH, or reuse it if it is there (to compare
    // binaries on the same journal without generating it again).
    let kept = std::env::var_os("BENCH_JOURNAL_KEEP").map(std::path::PathBuf::from);
    let source = kept
        .clone()
        .unwrap_or_else(|| work.path().join("generated.jsonl"));
    let began = std::time::Instant::now();
    let (incidents, lines, bytes) = match &kept {
        Some(p) if p.exists() => count(p)?,
        _ => generate(&source, target)?,
    };
    let generate_s = began.elapsed().as_secs_f64();
    eprintln!(
        "journal-start: generated {incidents} incidents, {lines} lines, {:.0} MiB in {generate_s:.0} s",
        bytes as f64 / 1048576.0
    );
    let mut results = Vec::new();
    for round in 0..rounds {
        let state = tempfile::tempdir_in(work.path()).map_err(|e| e.to_string())?;
        let journal = state.path().join("incidents.jsonl");
        std::fs::copy(&source, &journal).map_err(|e| format!("copy: {e}"))?;
        std::fs::File::open(&journal)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("sync: {e}"))?;
        let first = start_once(state.path()).await?;
        let second = start_once(state.path()).await?;
        eprintln!("journal-start: round {round}: first {first}, second {second}");
        results.push(json!({ "first_start": first, "second_start": second }));
    }
    Ok(json!({
        "journal": {
            "incidents": incidents,
            "lines": lines,
            "mib": round1(bytes as f64 / 1048576.0),
            "generated_in_s": generate_s.round(),
        },
        "rounds": results,
        "binary": binary_info(),
        "notes": "first start: a fresh copy of the generated journal (in the page cache, just \
                  written and synced); second start: the same state directory after the first \
                  (compacted). Times from the spawn; memory and CPU read when /healthz first \
                  answered, rss_settled after 3 s more",
        "goal": "1 GB journal: start under 3 s, RSS under 40 MiB",
    }))
}

/// Starts the watchdog on `state` (a filter no container matches), measures, stops it.
async fn start_once(state: &Path) -> Result<Value, String> {
    let load_before = load_average();
    let size_before = file_mib(state);
    let wd = Watchdog::start_in(state, "bench.selfheal.none=journal-start", &[]).await?;
    let pid = wd.pid();
    let mem = memory_parts(pid).ok_or("cannot read the watchdog's memory")?;
    let cpu = cpu_seconds(pid).ok_or("cannot read the watchdog's CPU time")?;
    let (listening, healthy) = (wd.listening_after, wd.healthy_after);
    tokio::time::sleep(SETTLE).await;
    let settled = memory_parts(pid).ok_or("cannot read the watchdog's memory")?;
    drop(wd);
    Ok(json!({
        "journal_mib_before": size_before,
        "journal_mib_after": file_mib(state),
        "listening_s": round3(listening.as_secs_f64()),
        "healthy_s": round3(healthy.as_secs_f64()),
        "cpu_s": round3(cpu),
        "rss_mib": round1(mem.rss),
        "peak_rss_mib": round1(mem.hwm),
        "anon_mib": round1(mem.anon),
        "rss_settled_mib": round1(settled.rss),
        "threads": mem.threads,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }))
}

/// Incidents (the largest id), lines and bytes of a journal generated before.
fn count(path: &Path) -> Result<(u64, u64, u64), String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut lines, mut bytes, mut last) = (0u64, 0u64, String::new());
    for line in std::io::BufReader::with_capacity(1 << 20, file).lines() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        lines += 1;
        bytes += line.len() as u64 + 1;
        last = line;
    }
    let id = serde_json::from_str::<Value>(&last)
        .ok()
        .and_then(|v| v["id"].as_u64())
        .unwrap_or(0);
    Ok((id, lines, bytes))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn file_mib(state: &Path) -> f64 {
    std::fs::metadata(state.join("incidents.jsonl"))
        .map(|m| round1(m.len() as f64 / 1048576.0))
        .unwrap_or(0.0)
}

/// Writes incidents until the file holds `target` bytes; returns incidents, lines and bytes.
/// The first incident's records are checked to read back, through the watchdog's own record
/// type, to what was written, so a change of the format fails here instead of generating
/// lines the journal would skip.
fn generate(path: &Path, target: u64) -> Result<(u64, u64, u64), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let (mut id, mut lines, mut bytes) = (0u64, 0u64, 0u64);
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    while bytes < target {
        id += 1;
        let at = |s: u64| selfheal::journal::Timestamp::new(base + Duration::from_secs(s));
        let t0 = 30 * id;
        let open = json!({
            "id": id,
            "container": format!("app-{}", id % 50),
            "container_id": format!("{:064x}", id * 7919),
            "compose_project": "shop",
            "compose_service": format!("app-{}", id % 50),
            "trigger": "unhealthy",
            "first_failure": at(t0),
            "detected": at(t0 + 2),
            "action_begun": at(t0 + 2),
            "last_restart": at(t0 + 2),
            "healthy_again": null,
            "time_to_detect_seconds": 2.0,
            "time_to_recover_seconds": null,
            "attempts": 1,
            "outcome": "open",
            "dry_run": false,
            "steps": [{ "verb": "restart", "at": at(t0 + 2) }],
        });
        let mut records = vec![open.clone()];
        if !id.is_multiple_of(OPEN_EVERY) {
            let mut closed = open;
            closed["outcome"] = json!("recovered");
            closed["healthy_again"] = json!(at(t0 + 5));
            closed["time_to_recover_seconds"] = json!(5.0);
            closed["evidence"] = evidence(id, |s| at(t0 + s));
            records.push(closed);
        }
        for r in records {
            let text = serde_json::to_string(&r).map_err(|e| e.to_string())?;
            if id == 1 {
                check_reads_back(&text)?;
            }
            out.write_all(text.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            lines += 1;
            bytes += text.len() as u64 + 1;
        }
    }
    out.flush()
        .and_then(|()| out.get_ref().sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((id, lines, bytes))
}

/// Evidence as a restart leaves it: the last 40 log lines and 3 failed HEALTHCHECK results.
fn evidence(id: u64, at: impl Fn(u64) -> selfheal::journal::Timestamp) -> Value {
    let lines: Vec<Value> = (0..40)
        .map(|n| {
            json!({
                "stream": if n % 5 == 0 { "stderr" } else { "stdout" },
                "time": at(1),
                "text": format!(
                    "{n:02} GET /api/orders/{id} 200 12ms upstream=10.0.{}.{} request-id={:016x}",
                    n % 7, n % 250, id * 31 + n
                ),
            })
        })
        .collect();
    let health: Vec<Value> = (0..3)
        .map(|n| {
            json!({
                "exit_code": 1,
                "output": format!("wget: server returned error: HTTP/1.1 503 Service Unavailable (check {n})"),
                "start": at(n),
                "end": at(n),
            })
        })
        .collect();
    json!({ "health_log": health, "logs": { "lines": lines, "truncated": false, "note": null } })
}

fn check_reads_back(text: &str) -> Result<(), String> {
    let parsed: selfheal::journal::Incident =
        serde_json::from_str(text).map_err(|e| format!("a generated record does not read: {e}"))?;
    let again: Value = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
    let written: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if again != written {
        return Err(format!(
            "a generated record reads back differently:\n{written}\n{again}"
        ));
    }
    Ok(())
}
