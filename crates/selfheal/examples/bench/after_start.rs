//! Faults soon after a start, on the demo-app and on a third-party image (busybox httpd):
//! `reaction-soon` (HEALTHCHECK unhealthy -> restart begun), `hang-soon` (own probe only:
//! freeze -> serving again) and `refault` (a service that freezes again 5 s after every
//! recovery: what the restart backoff adds).
//!
//! The soon-after-start cases use a fresh container per round, so the watchdog has never
//! restarted it (no backoff in play), and freeze it (`SIGSTOP`) 1-3 s after it first answered,
//! inside the watchdog's default 10 s start period. Every container is removed (`rm -f`, which
//! kills a frozen one too) at the end of its round, also when the round fails.

use crate::docker_benches::{freeze, push, restart, s, Series, EVENT_WAIT};
use crate::harness::{
    dist, env_num, now_ns, p50, secs, wall_ns, Recorder, Run, Watchdog, BUSYBOX_IMAGE, IMAGE,
};
use selfheal::journal::Timestamp;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// One image the cases run on.
#[derive(Debug, Clone, Copy)]
struct Target {
    key: &'static str,
    image: &'static str,
}

const TARGETS: [Target; 2] = [
    Target {
        key: "demo-app",
        image: IMAGE,
    },
    Target {
        key: "busybox",
        image: BUSYBOX_IMAGE,
    },
];

/// `BENCH_IMAGES` (comma-separated keys, default `demo-app,busybox`).
fn targets() -> Result<Vec<Target>, String> {
    let wanted = std::env::var("BENCH_IMAGES").unwrap_or_else(|_| "demo-app,busybox".into());
    wanted
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            TARGETS
                .iter()
                .find(|t| t.key == k)
                .copied()
                .ok_or_else(|| format!("BENCH_IMAGES: unknown image {k:?} (demo-app, busybox)"))
        })
        .collect()
}

/// Rounds per image of the soon-after-start cases: `BENCH_SOON_ROUNDS`, default 8.
fn soon_rounds() -> usize {
    env_num("BENCH_SOON_ROUNDS", 8).clamp(1, 1000) as usize
}

/// How long after the first answer round `i` of `n` freezes: spread evenly over 1-3 s.
fn soon_delay(i: usize, n: usize) -> Duration {
    Duration::from_secs_f64(1.0 + 2.0 * (i as f64 + 0.5) / n as f64)
}

/// When container `name` first serves `/health` (ns): a new request every 10 ms, each with a
/// 500 ms timeout, without waiting for the previous ones, so one request lost while the
/// container's network comes up (seen as 0.5-0.9 s outliers with one request at a time) does
/// not hold the measurement back.
async fn wait_serving(run: &Run, name: &str, within: Duration) -> Result<i64, String> {
    let deadline = Instant::now() + within;
    let ip = loop {
        if let Some(ip) = run.ip(name).await {
            break ip;
        }
        if Instant::now() >= deadline {
            return Err(format!("{name}: no address within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut tries = futures_util::stream::FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(ok) = futures_util::StreamExt::next(&mut tries) => {
                if ok {
                    return Ok(now_ns());
                }
            }
            _ = tick.tick() => {
                if Instant::now() >= deadline {
                    return Err(format!("{name}: not serving within {within:?}"));
                }
                if tries.len() < 64 {
                    tries.push(run.app_ok(&ip));
                }
            }
        }
    }
}

async fn sleep_until_ns(at: i64) {
    let left = at - now_ns();
    if left > 0 {
        tokio::time::sleep(Duration::from_nanos(left as u64)).await;
    }
}

/// The watchdog's closed incident of container `id` detected at or after `after` (ns).
async fn closed_incident(
    wd: &Watchdog,
    run: &Run,
    id: &str,
    after: i64,
    within: Duration,
) -> Option<selfheal::journal::Incident> {
    let deadline = Instant::now() + within;
    loop {
        let found = wd.incidents(&run.http).await.into_iter().find(|i| {
            i.container_id == id && !i.is_open() && wall_ns(i.detected).is_some_and(|d| d >= after)
        });
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seconds between two of an incident's RFC 3339 times.
fn span(from: Timestamp, to: Option<Timestamp>) -> Option<f64> {
    Some(secs(wall_ns(to?)? - wall_ns(from)?))
}

/// Starts a fresh container `name` of `image`, runs `body` with its id and removes it
/// afterwards (`rm -f`), whatever `body` returned.
async fn with_fresh<T, F, Fut>(
    run: &Run,
    image: &str,
    name: &str,
    args: &[String],
    body: F,
) -> Result<T, String>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    run.create_with(image, &[name.to_string()], args).await?;
    let result = match run.id_of(name).await {
        Some(id) => body(id).await,
        None => Err(format!("{name} vanished")),
    };
    let removed = run.remove(name).await;
    let value = result?;
    removed.map(|_| value)
}

fn summarize(m: &Series) -> serde_json::Map<String, serde_json::Value> {
    m.iter().map(|(k, v)| (k.to_string(), dist(v))).collect()
}

/// HEALTHCHECK, stop timeout and description for the reaction case on one image: the demo-app
/// as in `reaction` (500 ms, 1 retry, stop timeout 1 s); busybox as the outside check ran it
/// (wget every 1 s, timeout 1 s, 2 retries, stop timeout 2 s).
fn healthcheck(t: Target) -> (Vec<String>, &'static str, &'static str) {
    match t.key {
        "busybox" => (
            s(&[
                "--health-cmd",
                "wget -q -O /dev/null http://127.0.0.1:8080/health || exit 1",
                "--health-interval",
                "1s",
                "--health-timeout",
                "1s",
                "--health-retries",
                "2",
            ]),
            "2",
            "wget -q -O /dev/null http://127.0.0.1:8080/health every 1s, timeout 1s, retries 2, \
             no Docker start period; stop timeout 2 s",
        ),
        _ => (
            s(&[
                "--health-interval",
                "500ms",
                "--health-timeout",
                "1s",
                "--health-retries",
                "1",
                "--health-start-period",
                "100ms",
            ]),
            "1",
            "the image's `demo-app healthcheck` every 500ms, timeout 1s, retries 1, Docker start \
             period 100ms; stop timeout 1 s",
        ),
    }
}

/// 1b: `health_status: unhealthy` -> restart begun when the fault comes 1-3 s after the first
/// answer of a fresh container (inside the watchdog's default 10 s start period).
pub async fn reaction_soon() -> Result<serde_json::Value, String> {
    let rounds = soon_rounds();
    let run = Run::new("reaction-soon").await?;
    let rec = Recorder::start(&run.docker, &run.label()).await;
    let mut per_image = serde_json::Map::new();
    for t in targets()? {
        let group = run.group(&format!("rs-{}", t.key));
        let (health, stop, described) = healthcheck(t);
        let mut args = health;
        args.extend(s(&[
            "--label",
            "selfheal.enable=true",
            "--label",
            &format!("selfheal.stop-timeout={stop}"),
            "--label",
            "selfheal.restart.max=1000",
            "--label",
            // The restart path is what is measured: the ladder never recreates here.
            "selfheal.recreate-after=never",
            "--label",
            &group,
        ]));
        // A watchdog per image, at its defaults (start period 10 s, backoff 1 s doubling).
        let wd = Watchdog::start(&group, &[]).await?;
        let mut m = Series::new();
        let mut rows = Vec::new();
        let (mut inside, mut healthy_before) = (0, 0);
        for i in 0..rounds {
            let name = run.name(&format!("rs-{}", t.key), i);
            let (wd, rec, run, nm) = (&wd, &rec, &run, &name);
            let row = with_fresh(run, t.image, nm, &args, |id| async move {
                let (started, answered, fault) =
                    freeze_soon_after_start(rec, wd, run, nm, &id, soon_delay(i, rounds)).await?;
                let unhealthy = rec
                    .wait(&id, "health_status: unhealthy", fault, EVENT_WAIT)
                    .await?;
                let kill = rec.wait_restart_kill(&id, unhealthy, EVENT_WAIT).await?;
                let start = rec.wait(&id, "start", kill, EVENT_WAIT).await?;
                let healthy = rec
                    .wait(&id, "health_status: healthy", start, EVENT_WAIT)
                    .await?;
                let was_healthy = rec
                    .first(&id, "health_status: healthy", started)
                    .is_some_and(|h| h < fault);
                let incident = closed_incident(wd, run, &id, fault, Duration::from_secs(10)).await;
                Ok(json!({
                    "after_first_answer_s": secs(fault - answered),
                    "after_start_s": secs(fault - started),
                    "docker_healthy_before_fault": was_healthy,
                    "fault_to_unhealthy_s": secs(unhealthy - fault),
                    "unhealthy_after_start_s": secs(unhealthy - started),
                    "reaction_s": secs(kill - unhealthy),
                    "restart_begun_after_start_s": secs(kill - started),
                    "restart_s": secs(start - kill),
                    "start_to_healthy_s": secs(healthy - start),
                    "unhealthy_to_healthy_s": secs(healthy - unhealthy),
                    "recover_s": secs(healthy - fault),
                    "incident_detected_to_action_begun_s": incident.as_ref().and_then(|i|
                        span(i.detected, i.action_begun)),
                    // Where the watchdog's record starts, against Docker's unhealthy event.
                    "unhealthy_to_incident_detected_s": incident.as_ref()
                        .and_then(|i| wall_ns(i.detected))
                        .map(|d| secs(d - unhealthy)),
                }))
            })
            .await?;
            for key in [
                "after_first_answer_s",
                "after_start_s",
                "fault_to_unhealthy_s",
                "reaction_s",
                "restart_s",
                "start_to_healthy_s",
                "unhealthy_to_healthy_s",
                "recover_s",
                "incident_detected_to_action_begun_s",
                "unhealthy_to_incident_detected_s",
            ] {
                if let Some(v) = row[key].as_f64() {
                    push(&mut m, key, v);
                }
            }
            let start_period = selfheal_core::WatchDefaults::default().start_period;
            if row["after_start_s"].as_f64().unwrap_or(f64::MAX) < start_period.as_secs_f64() {
                inside += 1;
            }
            if row["docker_healthy_before_fault"].as_bool() == Some(true) {
                healthy_before += 1;
            }
            eprintln!(
                "reaction-soon {}: round {}/{rounds}: fault {:.2} s after first answer, \
                 unhealthy -> restart begun {:.3} s",
                t.key,
                i + 1,
                row["after_first_answer_s"].as_f64().unwrap_or(f64::NAN),
                row["reaction_s"].as_f64().unwrap_or(f64::NAN),
            );
            rows.push(row);
        }
        let own_sum = wd.metric(&run.http, "selfheal_reaction_seconds_sum").await;
        let own_count = wd
            .metric(&run.http, "selfheal_reaction_seconds_count")
            .await;
        per_image.insert(
            t.key.into(),
            json!({
                "image": t.image,
                "healthcheck": described,
                "rounds": rounds,
                "faults_inside_start_period": inside,
                "docker_healthy_before_fault": healthy_before,
                "watchdog": summarize(&m),
                // Only restarts issued on the unhealthy event itself are observed there.
                "watchdog_own_reaction_histogram": {
                    "count": own_count,
                    "mean_s": own_sum.zip(own_count).filter(|(_, c)| *c > 0.0).map(|(s, c)| s / c),
                },
                "per_round": rows,
            }),
        );
    }
    Ok(json!({
        "method": "Fresh container per round (never restarted, so no backoff), watched with the \
            watchdog's defaults (start period 10 s) and only the Docker HEALTHCHECK; frozen with \
            docker kill -s STOP 1-3 s (spread over the rounds) after its /health first answered \
            the benchmark's 10 ms poll. reaction_s = Docker event timeNano of the first `kill` \
            (not the SIGSTOP) after `health_status: unhealthy` minus that of the unhealthy \
            event, as in `reaction`. Container removed (rm -f) after each round.",
        "images": per_image,
        "goals": "reaction p50 <= 0.050 s, p99 <= 0.250 s (as reaction)",
    }))
}

/// Waits until the container has started, the watchdog knows it and it first answers, then
/// freezes it `delay` later. Returns the start, first answer and fault times (ns).
async fn freeze_soon_after_start(
    rec: &Recorder,
    wd: &Watchdog,
    run: &Run,
    name: &str,
    id: &str,
    delay: Duration,
) -> Result<(i64, i64, i64), String> {
    let started = rec.wait(id, "start", 0, EVENT_WAIT).await?;
    wd.wait_knows(&run.http, id, EVENT_WAIT).await?;
    let answered = wait_serving(run, name, EVENT_WAIT).await?;
    sleep_until_ns(answered + delay.as_nanos() as i64).await;
    let fault = now_ns();
    freeze(&run.docker, id).await?;
    Ok((started, answered, fault))
}

/// Probe-only watching (no HEALTHCHECK), stop timeout 2 s: the own-probe benchmarks' labels.
pub fn probe_args(group: &str) -> Vec<String> {
    s(&[
        "--no-healthcheck",
        "--label",
        "selfheal.enable=true",
        "--label",
        "selfheal.probe.http=:8080/health",
        "--label",
        "selfheal.stop-timeout=2",
        "--label",
        "selfheal.restart.max=1000",
        "--label",
        // The restart path is what is measured: the ladder never recreates here.
        "selfheal.recreate-after=never",
        "--label",
        group,
    ])
}

/// 3b: own probe only, defaults, stop timeout 2 s; a fresh container frozen 1-3 s after it
/// first answered: fault -> serving again. Floor: the same freeze on an unwatched twin,
/// followed at once by `docker restart -t 2`, plus the detection the defaults allow.
pub async fn hang_soon() -> Result<serde_json::Value, String> {
    let rounds = soon_rounds();
    let floor_rounds = rounds.div_ceil(2);
    let run = Run::new("hang-soon").await?;
    let rec = Recorder::start(&run.docker, &run.label()).await;
    let defaults = selfheal_core::WatchDefaults::default();
    let detect_min = (defaults.failures - 1) as f64 * defaults.interval.as_secs_f64()
        + defaults.timeout.as_secs_f64();
    let detect_mean = detect_min + defaults.interval.as_secs_f64() / 2.0;
    let mut per_image = serde_json::Map::new();
    for t in targets()? {
        let group = run.group(&format!("hs-{}", t.key));
        let args = probe_args(&group);
        let wd = Watchdog::start(&group, &[]).await?;
        let mut m = Series::new();
        let mut rows = Vec::new();
        let mut inside = 0;
        for i in 0..rounds {
            let name = run.name(&format!("hs-{}", t.key), i);
            let (wd, rec, run, nm) = (&wd, &rec, &run, &name);
            let row = with_fresh(run, t.image, nm, &args, |id| async move {
                let (started, answered, fault) =
                    freeze_soon_after_start(rec, wd, run, nm, &id, soon_delay(i, rounds)).await?;
                let kill = rec.wait_restart_kill(&id, fault, EVENT_WAIT).await?;
                let start = rec.wait(&id, "start", kill, EVENT_WAIT).await?;
                let serving = wait_serving(run, nm, EVENT_WAIT).await?;
                let incident = closed_incident(wd, run, &id, fault, Duration::from_secs(10)).await;
                let inc = |f: fn(&selfheal::journal::Incident) -> Option<f64>| {
                    incident.as_ref().and_then(f)
                };
                Ok(json!({
                    "after_first_answer_s": secs(fault - answered),
                    "after_start_s": secs(fault - started),
                    "fault_to_restart_begun_s": secs(kill - fault),
                    "restart_begun_after_start_s": secs(kill - started),
                    "restart_s": secs(start - kill),
                    "start_to_answering_s": secs(serving - start),
                    "recover_s": secs(serving - fault),
                    "fault_to_detected_s": incident.as_ref()
                        .and_then(|i| wall_ns(i.detected))
                        .map(|d| secs(d - fault)),
                    "incident_first_failure_to_detected_s":
                        inc(|i| span(i.first_failure, Some(i.detected))),
                    "incident_detected_to_action_begun_s":
                        inc(|i| span(i.detected, i.action_begun)),
                }))
            })
            .await?;
            for key in [
                "after_first_answer_s",
                "after_start_s",
                "fault_to_restart_begun_s",
                "restart_s",
                "start_to_answering_s",
                "recover_s",
                "fault_to_detected_s",
                "incident_first_failure_to_detected_s",
                "incident_detected_to_action_begun_s",
            ] {
                if let Some(v) = row[key].as_f64() {
                    push(&mut m, key, v);
                }
            }
            if row["after_start_s"].as_f64().unwrap_or(f64::MAX)
                < defaults.start_period.as_secs_f64()
            {
                inside += 1;
            }
            eprintln!(
                "hang-soon {}: round {}/{rounds}: fault {:.2} s after first answer, fault -> \
                 serving {:.2} s",
                t.key,
                i + 1,
                row["after_first_answer_s"].as_f64().unwrap_or(f64::NAN),
                row["recover_s"].as_f64().unwrap_or(f64::NAN),
            );
            rows.push(row);
        }
        drop(wd);

        // Floor: an unwatched twin, frozen as soon after its (re)start, restarted at once.
        let fname = run.name(&format!("hs-{}-floor", t.key), 0);
        let fgroup = run.group(&format!("hs-{}-floor", t.key));
        let mut floor = Vec::new();
        let r = &run;
        with_fresh(
            r,
            t.image,
            &fname,
            &s(&["--no-healthcheck", "--label", &fgroup]),
            |fid| {
                let floor = &mut floor;
                let fname = &fname;
                async move {
                    for i in 0..floor_rounds {
                        let answered = wait_serving(r, fname, EVENT_WAIT).await?;
                        sleep_until_ns(answered + soon_delay(i, floor_rounds).as_nanos() as i64)
                            .await;
                        let fault = now_ns();
                        freeze(&r.docker, &fid).await?;
                        restart(&r.docker, &fid, 2).await?;
                        let serving = wait_serving(r, fname, EVENT_WAIT).await?;
                        floor.push(secs(serving - fault));
                    }
                    Ok(())
                }
            },
        )
        .await?;
        let f_p50 = p50(&floor);
        per_image.insert(
            t.key.into(),
            json!({
                "image": t.image,
                "rounds": rounds,
                "faults_inside_start_period": inside,
                "watchdog": summarize(&m),
                "floor_rounds": floor_rounds,
                "floor_freeze_then_docker_restart_s": dist(&floor),
                "floor_detection_mean_s": detect_mean,
                "floor_total_p50_s": detect_mean + f_p50,
                "per_round": rows,
            }),
        );
        eprintln!("hang-soon {}: floor done", t.key);
    }
    Ok(json!({
        "method": "Fresh container per round (never restarted, so no backoff), no HEALTHCHECK, \
            labels selfheal.probe.http=:8080/health and selfheal.stop-timeout=2, watchdog \
            defaults; frozen with docker kill -s STOP 1-3 s (spread over the rounds) after its \
            /health first answered the benchmark's 10 ms poll. fault = benchmark clock just \
            before the SIGSTOP request; restart begun = Docker timeNano of the first `kill` \
            after it that is not the SIGSTOP; start = Docker `start` event; serving = first \
            200 from /health after the start (10 ms poll). Container removed (rm -f) after each \
            round. Floor: the same freeze on an unwatched twin, then docker restart -t 2 at \
            once, plus the mean detection the probe defaults allow.",
        "settings": format!("probe every {:?}, timeout {:?}, {} failures, start period {:?}; \
            stop timeout 2 s", defaults.interval, defaults.timeout, defaults.failures,
            defaults.start_period),
        "images": per_image,
        "goal": "fault -> serving p50 <= 5 s (as hang)",
    }))
}

/// 8: a service that freezes again 5 s after every recovery, `BENCH_REFAULT_CYCLES` (6)
/// times: each cycle's fault -> serving, and what the backoff added (restart begun minus
/// detection).
pub async fn refault() -> Result<serde_json::Value, String> {
    const AFTER: Duration = Duration::from_secs(5);
    let cycles = env_num("BENCH_REFAULT_CYCLES", 6).clamp(1, 20) as usize;
    let run = Run::new("refault").await?;
    let rec = Recorder::start(&run.docker, &run.label()).await;
    let backoff = selfheal_core::Backoff::default();
    // Up to the 60 s cap, a stop timeout of 2 s and the detection: more than enough.
    let restart_wait = backoff.max + Duration::from_secs(30);
    let mut per_image = serde_json::Map::new();
    for t in targets()? {
        let group = run.group(&format!("rf-{}", t.key));
        let name = run.name(&format!("rf-{}", t.key), 0);
        let wd = Watchdog::start(&group, &[]).await?;
        let mut rows = Vec::new();
        let mut m = Series::new();
        let (wd, rec, r) = (&wd, &rec, &run);
        let rows_ref = &mut rows;
        let m_ref = &mut m;
        let name_ref = &name;
        let t0 = now_ns();
        with_fresh(r, t.image, &name, &probe_args(&group), |id| async move {
            wd.wait_knows(&r.http, &id, EVENT_WAIT).await?;
            let mut serving = wait_serving(r, name_ref, EVENT_WAIT).await?;
            let mut previous_action: Option<i64> = None;
            for c in 0..cycles {
                sleep_until_ns(serving + AFTER.as_nanos() as i64).await;
                let fault = now_ns();
                freeze(&r.docker, &id).await?;
                let kill = rec.wait_restart_kill(&id, fault, restart_wait).await?;
                let start = rec.wait(&id, "start", kill, EVENT_WAIT).await?;
                serving = wait_serving(r, name_ref, EVENT_WAIT).await?;
                let inc = closed_incident(wd, r, &id, fault, Duration::from_secs(10))
                    .await
                    .ok_or("no closed incident for the cycle")?;
                let detected = wall_ns(inc.detected).ok_or("incident without detected")?;
                let action = inc
                    .action_begun
                    .and_then(wall_ns)
                    .ok_or("incident without action_begun")?;
                // The gap the policy asks for before this restart (c restarts before it).
                let gap = backoff.gap(c as u32).as_secs_f64();
                let expected = previous_action.map_or(0.0, |p| (secs(p - detected) + gap).max(0.0));
                let row = json!({
                    "cycle": c + 1,
                    "fault_to_detected_s": secs(detected - fault),
                    "backoff_added_s": secs(action - detected),
                    "detected_to_restart_begun_docker_s": secs(kill - detected),
                    "backoff_gap_s": gap,
                    "backoff_expected_added_s": expected,
                    "since_previous_restart_s": previous_action.map(|p| secs(action - p)),
                    "fault_to_restart_begun_s": secs(kill - fault),
                    "restart_s": secs(start - kill),
                    "start_to_answering_s": secs(serving - start),
                    "recover_s": secs(serving - fault),
                    "incident_attempts": inc.attempts,
                });
                for key in [
                    "fault_to_detected_s",
                    "backoff_added_s",
                    "fault_to_restart_begun_s",
                    "restart_s",
                    "recover_s",
                ] {
                    if let Some(v) = row[key].as_f64() {
                        push(m_ref, key, v);
                    }
                }
                eprintln!(
                    "refault {}: cycle {}/{cycles}: detected {:.2} s after the fault, backoff \
                     added {:.2} s, serving after {:.2} s",
                    t.key,
                    c + 1,
                    secs(detected - fault),
                    secs(action - detected),
                    secs(serving - fault),
                );
                rows_ref.push(row);
                previous_action = Some(action);
            }
            Ok(())
        })
        .await?;
        per_image.insert(
            t.key.into(),
            json!({
                "image": t.image,
                "cycles": cycles,
                "total_s": secs(now_ns() - t0),
                "watchdog": summarize(&m),
                "per_cycle": rows,
            }),
        );
    }
    Ok(json!({
        "method": "One container, no HEALTHCHECK, labels selfheal.probe.http=:8080/health, \
            selfheal.stop-timeout=2, selfheal.restart.max=1000 (so the budget never \
            quarantines), watchdog defaults (start period 10 s; backoff 1 s doubling to 60 s, \
            reset after 60 s healthy). 5 s after /health answers again (the first time: after \
            the first answer) it is frozen with docker kill -s STOP; repeated for each cycle. \
            fault = benchmark clock before the SIGSTOP; detected and restart begun = the \
            incident's `detected` and `action_begun` (the watchdog's clock, ms); backoff added \
            = action_begun - detected; restart begun (Docker) = first `kill` event after the \
            fault that is not the SIGSTOP; serving = first 200 from /health after the `start` \
            event (10 ms poll).",
        "images": per_image,
        "backoff": format!("initial {:?}, factor {}, max {:?}, reset after {:?} healthy",
            backoff.initial, backoff.factor, backoff.max, backoff.reset_after),
    }))
}
