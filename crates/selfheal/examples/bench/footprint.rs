//! 5: the watchdog's RSS and CPU while it watches 0 (the floor), 10, 100 and 200 real
//! containers, each probed over HTTP every second, for a fixed window.

use crate::harness::{
    binary_info, cpu_seconds, env_num, load_average, memory_parts, round1, Run, Watchdog,
};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

pub async fn run() -> Result<serde_json::Value, String> {
    let max = env_num("BENCH_FOOTPRINT_MAX", 200) as usize;
    let window = Duration::from_secs(env_num("BENCH_FOOTPRINT_SECONDS", 60));
    let levels: Vec<usize> = [0, 10, 100, 200]
        .into_iter()
        .filter(|l| *l <= max)
        .collect();
    let run = Run::new("footprint").await?;
    let tier = |level: usize| run.group(&format!("tier{level}"));
    let names: Vec<String> = (0..max).map(|i| run.name("c", i)).collect();
    let created = Instant::now();
    // Each container carries the label of every level it belongs to; containers with the same
    // labels are created together (four at a time).
    let mut from = 0;
    for &bound in levels.iter().filter(|l| **l > 0) {
        let mut extra: Vec<String> = [
            "--no-healthcheck",
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.probe.http=:8080/health",
            "--label",
            "selfheal.probe.interval=1s",
        ]
        .map(String::from)
        .to_vec();
        for &l in levels.iter().filter(|l| **l >= bound) {
            extra.push("--label".into());
            extra.push(tier(l));
        }
        run.create(&names[from..bound], &extra).await?;
        eprintln!("footprint: {bound} containers created");
        from = bound;
    }
    let create_s = created.elapsed().as_secs_f64();
    let mut results = Vec::new();
    for &level in &levels {
        let wd = Watchdog::start(&tier(level), &[]).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while wd.watched(&run.http).await < level {
            if Instant::now() >= deadline {
                return Err(format!("the watchdog did not pick up {level} containers"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Past discovery and the first probes: steady state only.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let pid = wd.pid();
        let cpu0 = cpu_seconds(pid).ok_or("cannot read the watchdog's CPU time")?;
        let probes0 = probe_count(&wd, &run.http).await;
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        let cpu1 = cpu_seconds(pid).ok_or("cannot read the watchdog's CPU time")?;
        let probes1 = probe_count(&wd, &run.http).await;
        let elapsed = t0.elapsed().as_secs_f64();
        let mem = memory_parts(pid).ok_or("cannot read the watchdog's memory")?;
        let cpu_pct = (cpu1 - cpu0) / elapsed * 100.0;
        let load = load_average();
        eprintln!(
            "footprint: {level} containers: RSS {:.1} MiB (anon {:.1}, file {:.1}, {} threads), \
             CPU {cpu_pct:.2}%, load {load:?}",
            mem.rss, mem.anon, mem.file, mem.threads
        );
        results.push(json!({
            "containers": level,
            "rss_mib": round1(mem.rss),
            "peak_rss_mib": round1(mem.hwm),
            "anon_mib": round1(mem.anon),
            "file_mib": round1(mem.file),
            "threads": mem.threads,
            "load_average": load,
            "cpu_pct_of_one_core": (cpu_pct * 100.0).round() / 100.0,
            "probes_per_s": ((probes1 - probes0) / elapsed * 10.0).round() / 10.0,
            "window_s": elapsed.round(),
        }));
    }
    Ok(json!({
        "levels": results,
        "binary": binary_info(),
        "containers_created_in_s": create_s.round(),
        "notes": "containers without a Docker HEALTHCHECK, probed by the watchdog every 1 s; level 0 is the floor (the idle watchdog)",
        "goal": "at 100: RSS <= 20 MB, CPU <= 2% of one core",
    }))
}

/// Probes done so far: the sum of the probe-duration histogram's counts.
async fn probe_count(wd: &Watchdog, http: &reqwest::Client) -> f64 {
    wd.metric_sum(http, "selfheal_probe_duration_seconds_count", "")
        .await
}
