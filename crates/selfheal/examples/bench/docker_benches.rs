//! Benchmarks against real demo-app containers: reaction and recovery (1, 2), own-probe hang
//! recovery (3), crash recovery (4) and mass failure (7). Each has a floor measured in the same
//! run: the same fault on twin containers that the benchmark itself heals with plain Docker
//! API calls, as fast as a client can.

use crate::harness::{dist, env_num, mean, now_ns, p50, secs, Recorder, Run, Watchdog, IMAGE};
use bollard::query_parameters::{
    EventsOptionsBuilder, KillContainerOptionsBuilder, RestartContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use selfheal::journal::IncidentOutcome;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

pub const EVENT_WAIT: Duration = Duration::from_secs(30);

pub type Series = HashMap<&'static str, Vec<f64>>;

pub fn push(m: &mut Series, key: &'static str, value: f64) {
    m.entry(key).or_default().push(value);
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub async fn restart(docker: &Docker, id: &str, t: i32) -> Result<(), String> {
    docker
        .restart_container(
            id,
            Some(RestartContainerOptionsBuilder::default().t(t).build()),
        )
        .await
        .map_err(|e| format!("restart {id}: {e}"))
}

/// The floor's healer: restarts a container of `label` the moment Docker says it is unhealthy.
fn reflex_healer(docker: Docker, label: String, stop_timeout: i32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("label", vec![label.as_str()]),
            ("event", vec!["health_status"]),
        ]);
        let mut stream = docker.events(Some(
            EventsOptionsBuilder::default().filters(&filters).build(),
        ));
        while let Some(Ok(ev)) = stream.next().await {
            if ev.action.as_deref() != Some("health_status: unhealthy") {
                continue;
            }
            if let Some(id) = ev.actor.and_then(|a| a.id) {
                let d = docker.clone();
                tokio::spawn(async move {
                    let _ = restart(&d, &id, stop_timeout).await;
                });
            }
        }
    })
}

/// 1 and 2: HEALTHCHECK says unhealthy -> restart begun (reaction), and fault -> healthy again
/// (recovery), watchdog versus the reflex floor, rounds alternating.
pub async fn reaction() -> Result<serde_json::Value, String> {
    let rounds = env_num("BENCH_REACTION_ROUNDS", 20).max(2) as usize;
    let run = Run::new("reaction").await?;
    let (wg, fg) = (run.group("w"), run.group("f"));
    let health = s(&[
        "--health-interval",
        "500ms",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "--health-start-period",
        "100ms",
    ]);
    let watched: Vec<String> = (0..2).map(|i| run.name("w", i)).collect();
    let floor: Vec<String> = (0..2).map(|i| run.name("f", i)).collect();
    let mut wargs = health.clone();
    wargs.extend(s(&[
        "--label",
        "selfheal.enable=true",
        "--label",
        "selfheal.stop-timeout=1",
        "--label",
        "selfheal.start-period=100ms",
        "--label",
        "selfheal.restart.max=1000",
        // Every round restarts; the ladder's recreate (after 2 restarts by default) would
        // replace the container under the benchmark and is not the figure measured here.
        "--label",
        "selfheal.recreate-after=never",
        "--label",
        &wg,
    ]));
    let mut fargs = health.clone();
    fargs.extend(s(&["--label", &fg]));
    let rec = Recorder::start(&run.docker, &run.label()).await;
    run.create(&watched, &wargs).await?;
    run.create(&floor, &fargs).await?;
    let wd = Watchdog::start(
        &wg,
        &["--backoff-initial", "100ms", "--backoff-max", "200ms"],
    )
    .await?;
    let healer = reflex_healer(run.docker.clone(), fg.clone(), 1);
    let mut out: HashMap<&str, Series> = HashMap::new();
    for i in 0..rounds {
        for (side, names) in [("watchdog", &watched), ("floor", &floor)] {
            let name = &names[i % names.len()];
            let ip = run.wait_healthy(name, Duration::from_secs(30)).await?;
            let id = run.id_of(name).await.ok_or("container vanished")?;
            // The watchdog must have seen the start and the grace must be over.
            if side == "watchdog" {
                wait_incidents_closed(&wd, &run, Duration::from_secs(30)).await?;
            }
            let fault = now_ns();
            run.chaos(&ip, "unhealthy").await?;
            let unhealthy = rec
                .wait(&id, "health_status: unhealthy", fault, EVENT_WAIT)
                .await?;
            let kill = rec.wait(&id, "kill", unhealthy, EVENT_WAIT).await?;
            let start = rec.wait(&id, "start", kill, EVENT_WAIT).await?;
            let healthy = rec
                .wait(&id, "health_status: healthy", start, EVENT_WAIT)
                .await?;
            let m = out.entry(side).or_default();
            push(m, "reaction_s", secs(kill - unhealthy));
            push(m, "fault_to_unhealthy_s", secs(unhealthy - fault));
            push(m, "restart_s", secs(start - kill));
            push(m, "start_to_healthy_s", secs(healthy - start));
            push(m, "recover_s", secs(healthy - fault));
            push(m, "unhealthy_to_healthy_s", secs(healthy - unhealthy));
        }
        eprintln!("reaction: round {}/{rounds}", i + 1);
    }
    healer.abort();
    // Evidence is attached shortly after each incident opens; every incident is closed by now.
    let incidents = wd.incidents(&run.http).await.len();
    let with_logs = wd.incidents_with_captured_logs(&run.http).await;
    let own_sum = wd.metric(&run.http, "selfheal_reaction_seconds_sum").await;
    let own_count = wd
        .metric(&run.http, "selfheal_reaction_seconds_count")
        .await;
    let summarize = |side: &str| {
        let m = out.get(side).cloned().unwrap_or_default();
        let mut o = serde_json::Map::new();
        for (k, v) in m {
            o.insert(k.to_string(), dist(&v));
        }
        serde_json::Value::Object(o)
    };
    let above = |key: &str, stat: fn(&[f64]) -> f64| {
        let pct = (stat(&out["watchdog"][key]) / stat(&out["floor"][key]) - 1.0) * 100.0;
        (pct * 10.0).round() / 10.0
    };
    Ok(json!({
        "method": "Two watched and two floor containers, rounds alternating sides; fault = \
            POST /chaos/unhealthy once healthy and the incident closed; reaction = Docker \
            timeNano of the first `kill` after `health_status: unhealthy` minus that of the \
            unhealthy event; floor healed by an event-driven docker restart -t 1.",
        "image": IMAGE,
        "rounds_per_side": rounds,
        "healthcheck": "interval 500ms, retries 1; stop timeout 1s",
        "watchdog": summarize("watchdog"),
        "floor": summarize("floor"),
        "watchdog_own_reaction_histogram_mean_s": own_sum.zip(own_count).map(|(s, c)| s / c.max(1.0)),
        "evidence": {
            "capture_on": std::env::var("SELFHEAL_EVIDENCE").map_or(true, |v| v != "false"),
            "incidents": incidents,
            "incidents_with_captured_logs": with_logs,
        },
        "recover_above_floor_pct": {
            "fault_to_healthy_p50": above("recover_s", p50),
            "fault_to_healthy_mean": above("recover_s", mean),
            "unhealthy_to_healthy_p50": above("unhealthy_to_healthy_s", p50),
            "unhealthy_to_healthy_mean": above("unhealthy_to_healthy_s", mean),
        },
        "goals": "reaction p50 <= 0.050 s, p99 <= 0.250 s; recover <= 5% above floor",
    }))
}

pub async fn wait_incidents_closed(
    wd: &Watchdog,
    run: &Run,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        if !wd.incidents(&run.http).await.iter().any(|i| i.is_open()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("an incident stayed open".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the app every 10 ms until it answers; returns when (ns).
pub async fn wait_app(run: &Run, name: &str, within: Duration) -> Result<i64, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(ip) = run.ip(name).await {
            if run.app_ok(&ip).await {
                return Ok(now_ns());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("{name}: app not answering within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the container has run `period` since its last start (the watchdog's start
/// period, during which probe failures do not count).
async fn wait_up_for(run: &Run, name: &str, period: Duration) -> Result<(), String> {
    let deadline = Instant::now() + period + Duration::from_secs(30);
    loop {
        let started = run
            .inspect(name)
            .await
            .and_then(|c| c.state?.started_at)
            .and_then(|s| humantime::parse_rfc3339_weak(&s).ok());
        if started
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|up| up >= period)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{name} did not stay up for {period:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 3: a frozen container (SIGSTOP) with only selfheal's HTTP probe at default settings and a
/// 2 s stop timeout: fault -> app answering again.
pub async fn hang() -> Result<serde_json::Value, String> {
    const ROUNDS: usize = 10;
    // `BENCH_HANG_IMAGE=selfheal/busybox:latest` runs the same case on the third-party image.
    let image = std::env::var("BENCH_HANG_IMAGE").unwrap_or_else(|_| IMAGE.to_string());
    let run = Run::new("hang").await?;
    let (wg, fg) = (run.group("w"), run.group("f"));
    let watched: Vec<String> = (0..2).map(|i| run.name("w", i)).collect();
    let floor = vec![run.name("f", 0)];
    run.create_with(&image, &watched, &crate::after_start::probe_args(&wg))
        .await?;
    run.create_with(&image, &floor, &s(&["--no-healthcheck", "--label", &fg]))
        .await?;
    let rec = Recorder::start(&run.docker, &run.label()).await;
    let wd = Watchdog::start(&wg, &[]).await?;
    let defaults = selfheal_core::WatchDefaults::default();
    let mut w = Series::new();
    let mut f_restart = Vec::new();
    for i in 0..ROUNDS {
        let name = &watched[i % watched.len()];
        run.wait_healthy(name, Duration::from_secs(60)).await?;
        wait_up_for(&run, name, defaults.start_period).await?;
        wait_incidents_closed(&wd, &run, Duration::from_secs(30)).await?;
        let id = run.id_of(name).await.ok_or("container vanished")?;
        let fault = now_ns();
        freeze(&run.docker, &id).await?;
        let start = rec.wait(&id, "start", fault, EVENT_WAIT).await?;
        let healthy = wait_app(&run, name, EVENT_WAIT).await?;
        let kill = rec
            .all()
            .iter()
            .filter(|e| e.id == id && e.action == "kill" && e.ns > fault)
            .filter(|e| e.attrs.get("signal").map(String::as_str) != Some("19"))
            .map(|e| e.ns)
            .min()
            .unwrap_or(start);
        push(&mut w, "fault_to_restart_begun_s", secs(kill - fault));
        push(&mut w, "restart_s", secs(start - kill));
        push(&mut w, "start_to_answering_s", secs(healthy - start));
        push(&mut w, "recover_s", secs(healthy - fault));

        // Floor: the same freeze, restarted by a plain `docker restart -t 2` at once.
        let fname = &floor[0];
        run.wait_healthy(fname, Duration::from_secs(60)).await?;
        let fid = run.id_of(fname).await.ok_or("container vanished")?;
        let ffault = now_ns();
        freeze(&run.docker, &fid).await?;
        restart(&run.docker, &fid, 2).await?;
        let fhealthy = wait_app(&run, fname, EVENT_WAIT).await?;
        f_restart.push(secs(fhealthy - ffault));
        eprintln!("hang: round {}/{ROUNDS}", i + 1);
    }
    let incidents = wd.incidents(&run.http).await;
    let detect: Vec<f64> = incidents
        .iter()
        .filter_map(|i| {
            let d = i.detected.system_time();
            let f = i.first_failure.system_time();
            d.duration_since(f).ok().map(|x| x.as_secs_f64())
        })
        .collect();
    // Earliest detection the defaults allow: `failures` probes one interval apart, the last
    // one timing out; on average the fault lands half an interval before the next probe.
    let detect_min = (defaults.failures - 1) as f64 * defaults.interval.as_secs_f64()
        + defaults.timeout.as_secs_f64();
    let detect_mean = detect_min + defaults.interval.as_secs_f64() / 2.0;
    let f_p50 = p50(&f_restart);
    Ok(json!({
        "method": "Two watched containers (own probe only), one round each in turn once up for \
            the start period and the incident closed; fault = benchmark clock before \
            docker kill -s STOP; restart begun = first `kill` event that is not the SIGSTOP; \
            serving = first 200 from /health (10 ms poll). Floor: same freeze on a twin, then \
            docker restart -t 2 at once, plus the mean detection the defaults allow.",
        "image": image,
        "rounds": ROUNDS,
        "settings": format!("probe every {:?}, timeout {:?}, {} failures; stop timeout 2 s",
            defaults.interval, defaults.timeout, defaults.failures),
        "watchdog": w.iter().map(|(k, v)| (k.to_string(), dist(v))).collect::<serde_json::Map<_, _>>(),
        "watchdog_incident_first_failure_to_detected_s": dist(&detect),
        "floor_freeze_then_docker_restart_s": dist(&f_restart),
        "floor_detection_min_s": detect_min,
        "floor_detection_mean_s": detect_mean,
        "floor_total_p50_s": detect_mean + f_p50,
        "goal": "fault -> healthy p50 <= 5 s",
    }))
}

pub async fn freeze(docker: &Docker, id: &str) -> Result<(), String> {
    docker
        .kill_container(
            id,
            Some(
                KillContainerOptionsBuilder::default()
                    .signal("SIGSTOP")
                    .build(),
            ),
        )
        .await
        .map_err(|e| format!("SIGSTOP {id}: {e}"))
}

/// 4: the app crashes (exit 3); Docker's restart policy restarts it (layer 1) and the
/// watchdog records it. One crash per container, so Docker's restart backoff never applies.
pub async fn crash() -> Result<serde_json::Value, String> {
    const N: usize = 10;
    let run = Run::new("crash").await?;
    let (wg, fg) = (run.group("w"), run.group("f"));
    let watched: Vec<String> = (0..N).map(|i| run.name("w", i)).collect();
    let floor: Vec<String> = (0..N).map(|i| run.name("f", i)).collect();
    let common = s(&["--no-healthcheck", "--restart", "unless-stopped"]);
    let mut wargs = common.clone();
    wargs.extend(s(&[
        "--label",
        "selfheal.enable=true",
        "--label",
        "selfheal.probe.http=:8080/health",
        "--label",
        &wg,
    ]));
    let mut fargs = common;
    fargs.extend(s(&["--label", &fg]));
    run.create(&watched, &wargs).await?;
    run.create(&floor, &fargs).await?;
    let rec = Recorder::start(&run.docker, &run.label()).await;
    let wd = Watchdog::start(&wg, &[]).await?;
    let mut out: HashMap<&str, Series> = HashMap::new();
    for i in 0..N {
        for (side, name) in [("watchdog", &watched[i]), ("floor", &floor[i])] {
            let ip = run.wait_healthy(name, Duration::from_secs(60)).await?;
            let id = run.id_of(name).await.ok_or("container vanished")?;
            let fault = now_ns();
            run.chaos(&ip, "crash").await?;
            let die = rec.wait(&id, "die", fault, EVENT_WAIT).await?;
            let start = rec.wait(&id, "start", die, EVENT_WAIT).await?;
            let healthy = wait_app(&run, name, EVENT_WAIT).await?;
            let m = out.entry(side).or_default();
            push(m, "fault_to_die_s", secs(die - fault));
            push(m, "die_to_start_s", secs(start - die));
            push(m, "start_to_answering_s", secs(healthy - start));
            push(m, "recover_s", secs(healthy - fault));
        }
        eprintln!("crash: round {}/{N}", i + 1);
    }
    // The watchdog's record: one `died` incident per container, recovered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let incidents = loop {
        let list = wd.incidents(&run.http).await;
        if list.len() >= N && list.iter().all(|i| !i.is_open()) || Instant::now() >= deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let recorded: Vec<f64> = incidents
        .iter()
        .filter_map(|i| i.time_to_recover_seconds)
        .collect();
    let observed = wd
        .metric_sum(
            &run.http,
            "app_recovery_events_total{",
            "result=\"observed\"",
        )
        .await;
    let summarize = |side: &str| {
        out.get(side)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_string(), dist(v)))
                    .collect::<serde_json::Map<_, _>>()
            })
            .unwrap_or_default()
    };
    Ok(json!({
        "method": "One crash (POST /chaos/crash, exit 3) per container, restart: \
            unless-stopped brings it back; fault = benchmark clock before the request; die and \
            start = Docker events; serving = first 200 from /health (10 ms poll).",
        "image": IMAGE,
        "containers_per_side": N,
        "watchdog": summarize("watchdog"),
        "floor": summarize("floor"),
        "incidents": incidents.len(),
        "incidents_recovered": incidents.iter().filter(|i| i.outcome == IncidentOutcome::Recovered).count(),
        "incident_triggers": incidents.iter().map(|i| i.trigger).collect::<Vec<_>>(),
        "watchdog_recorded_time_to_recover_s": dist(&recorded),
        "recovery_events_observed": observed,
        "goal": "fault -> healthy p50 <= 1.5 s",
    }))
}

/// 7: 50 containers made unhealthy at once; the watchdog restarts each exactly once, at most
/// `--max-concurrent-restarts` (4) at a time. Floor: the benchmark restarts the same 50, 4 at
/// a time, the moment the fault is injected (no detection at all).
pub async fn mass() -> Result<serde_json::Value, String> {
    const N: usize = 50;
    const IN_FLIGHT: usize = 4;
    let run = Run::new("mass").await?;
    let group = run.group("m");
    let names: Vec<String> = (0..N).map(|i| run.name("m", i)).collect();
    run.create(
        &names,
        &s(&[
            "--no-healthcheck",
            "--label",
            "selfheal.enable=true",
            "--label",
            "selfheal.probe.http=:8080/health",
            "--label",
            "selfheal.stop-timeout=2",
            "--label",
            "selfheal.restart.max=100",
            "--label",
            &group,
        ]),
    )
    .await?;
    let rec = Recorder::start(&run.docker, &run.label()).await;
    let mut ids = Vec::new();
    let mut ips = Vec::new();
    for n in &names {
        ips.push(run.wait_healthy(n, Duration::from_secs(60)).await?);
        ids.push(run.id_of(n).await.ok_or("container vanished")?);
    }

    // Floor, before any watchdog runs.
    let fault = now_ns();
    inject_all(&run, &ips).await?;
    let docker = run.docker.clone();
    futures_util::stream::iter(ids.clone())
        .map(|id| {
            let d = docker.clone();
            async move { restart(&d, &id, 2).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, String>>()?;
    let floor_all = wait_all_answering(&run, &names, &ids, &rec, fault, None).await?;

    // The watchdog.
    let wd = Watchdog::start(&group, &[]).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while wd.watched(&run.http).await < N {
        if Instant::now() >= deadline {
            return Err("the watchdog did not pick up all 50 containers".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let start_period = selfheal_core::WatchDefaults::default().start_period;
    let mut ips = Vec::new();
    for n in &names {
        ips.push(run.wait_healthy(n, Duration::from_secs(60)).await?);
        wait_up_for(&run, n, start_period).await?;
    }
    let fault = now_ns();
    inject_all(&run, &ips).await?;
    let all = wait_all_answering(&run, &names, &ids, &rec, fault, Some(&wd)).await?;
    // Every incident closed: no restart still to come.
    let deadline = Instant::now() + Duration::from_secs(60);
    let incidents = loop {
        let list = wd.incidents(&run.http).await;
        if (list.len() >= N && list.iter().all(|i| !i.is_open())) || Instant::now() >= deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let events = rec.all();
    let mut restarts: HashMap<&str, usize> = ids.iter().map(|i| (i.as_str(), 0)).collect();
    for e in events
        .iter()
        .filter(|e| e.ns >= fault && e.action == "restart")
    {
        if let Some(c) = restarts.get_mut(e.id.as_str()) {
            *c += 1;
        }
    }
    let lost = restarts.values().filter(|c| **c == 0).count();
    let doubled = restarts.values().filter(|c| **c > 1).count();
    // Restarts in flight by Docker's events: SIGTERM of the restart -> start.
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for id in &ids {
        let kill = events
            .iter()
            .filter(|e| e.id == *id && e.ns >= fault && e.action == "kill")
            .map(|e| e.ns)
            .min();
        let start = events
            .iter()
            .filter(|e| e.id == *id && e.ns >= fault && e.action == "start")
            .map(|e| e.ns)
            .min();
        if let (Some(k), Some(s)) = (kill, start) {
            edges.push((k, 1));
            edges.push((s, -1));
        }
    }
    edges.sort();
    let (mut cur, mut peak_events) = (0, 0);
    for (_, d) in edges {
        cur += d;
        peak_events = peak_events.max(cur);
    }
    Ok(json!({
        "method": "50 containers (own probe, defaults) made unhealthy through \
            /chaos/unhealthy, 16 requests at a time; done when each had a `start` event after \
            the fault and answers /health; in-flight peak from the gauge (50 ms samples) and \
            from kill -> start spans. Floor: the benchmark restarts the 50 itself, 4 at a \
            time, before the watchdog runs.",
        "image": IMAGE,
        "containers": N,
        "max_concurrent_restarts": IN_FLIGHT,
        "watchdog_fault_to_all_healthy_s": all.0,
        "watchdog_peak_restarts_in_flight_metric": all.1,
        "watchdog_peak_restarts_in_flight_events": peak_events,
        "restart_events_per_container": {
            "lost": lost,
            "doubled": doubled,
            "total": restarts.values().sum::<usize>(),
        },
        "incidents": incidents.len(),
        "incidents_recovered": incidents.iter().filter(|i| i.outcome == IncidentOutcome::Recovered).count(),
        "floor_fault_to_all_healthy_no_detection_s": floor_all.0,
        "floor_plus_detection_s": floor_all.0 + 2.0,
        "goal": "all healthy <= 20 s",
    }))
}

async fn inject_all(run: &Run, ips: &[String]) -> Result<(), String> {
    futures_util::stream::iter(ips.iter().cloned())
        .map(|ip| async move { run.chaos(&ip, "unhealthy").await })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, String>>()
        .map(|_| ())
}

/// Seconds from `fault` until every container restarted and answers; with a watchdog, also
/// the peak of its restarts-in-flight gauge, sampled every 50 ms.
async fn wait_all_answering(
    run: &Run,
    names: &[String],
    ids: &[String],
    rec: &Recorder,
    fault: i64,
    wd: Option<&Watchdog>,
) -> Result<(f64, f64), String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut pending: Vec<usize> = (0..names.len()).collect();
    let mut peak: f64 = 0.0;
    let mut last = fault;
    while !pending.is_empty() {
        if let Some(wd) = wd {
            if let Some(v) = wd.metric(&run.http, "selfheal_restarts_in_flight").await {
                peak = peak.max(v);
            }
        }
        let checks = pending.iter().map(|&i| async move {
            let started = rec.first(&ids[i], "start", fault).is_some();
            let ok = started && {
                match run.ip(&names[i]).await {
                    Some(ip) => run.app_ok(&ip).await,
                    None => false,
                }
            };
            (i, ok)
        });
        let results = futures_util::future::join_all(checks).await;
        let now = now_ns();
        for (i, ok) in results {
            if ok {
                pending.retain(|p| *p != i);
                last = now;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} container(s) not healthy within 180 s",
                pending.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((secs(last - fault), peak))
}
