//! One round: wait until the container is healthy and its incident closed, inject, then follow
//! Docker's events and the watchdog's incidents until it is healthy again or out of time.

use super::inject::{self, Chaos};
use super::report::RoundRecord;
use super::spacing::{self, Pacing, Spacing};
use super::split::StatesSeen;
use super::target::Target;
use super::{Progress, Scenario};
use crate::docker::{bounded, ContainerInfo};
use crate::journal::{Incident, IncidentOutcome};
use bollard::query_parameters::{EventsOptionsBuilder, InspectContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use super::watchdog_api::WatchdogApi;

const POLL: Duration = Duration::from_millis(100);
const API_POLL: Duration = Duration::from_millis(250);
/// Clock slack between the watchdog's incident times and the drill's.
const CLOCK_SLACK: Duration = Duration::from_millis(500);

/// One Docker event of the target container.
#[derive(Debug, Clone)]
pub struct Ev {
    pub at: SystemTime,
    pub action: String,
    pub attrs: HashMap<String, String>,
}

/// Follows the target's Docker events for the whole drill, resubscribing (from the last event
/// seen) if the stream drops.
#[derive(Debug)]
pub struct Observer {
    rx: mpsc::UnboundedReceiver<Ev>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Follows the container named `name`: Docker's `container` filter matches the name an
    /// event's container has, so a recreate's new container is followed and the old one,
    /// renamed aside, is not.
    pub fn start(docker: Docker, name: &str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = name.to_string();
        let task = tokio::spawn(async move {
            let mut since: Option<(SystemTime, i64)> = None;
            loop {
                let mut filters = HashMap::new();
                filters.insert("type", vec!["container"]);
                filters.insert("container", vec![id.as_str()]);
                let mut opts = EventsOptionsBuilder::default().filters(&filters);
                if let Some((t, _)) = since {
                    let secs = t
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64();
                    opts = opts.since(&format!("{secs:.9}"));
                }
                let mut stream = docker.events(Some(opts.build()));
                while let Some(Ok(ev)) = stream.next().await {
                    let nanos = ev.time_nano.unwrap_or_default();
                    // Resubscribing from `since` repeats the events at that instant.
                    if since.is_some_and(|(_, n)| nanos <= n) {
                        continue;
                    }
                    let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
                    since = Some((at, nanos));
                    let ev = Ev {
                        at,
                        action: ev.action.unwrap_or_default(),
                        attrs: ev.actor.and_then(|a| a.attributes).unwrap_or_default(),
                    };
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { rx, task }
    }

    pub fn drain(&mut self) -> Vec<Ev> {
        let mut out = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            out.push(e);
        }
        out
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Everything one round needs.
#[derive(Debug)]
pub struct RoundRun<'a> {
    pub docker: &'a Docker,
    pub http: &'a reqwest::Client,
    pub target: &'a Target,
    pub scenario: Scenario,
    pub number: u32,
    pub slo: Duration,
    pub settle: Duration,
    pub watchdog: Option<&'a WatchdogApi>,
    pub chaos: Option<&'a Chaos>,
    pub pacing: Pacing,
}

impl RoundRun<'_> {
    fn label(&self) -> String {
        format!("{} round {}", self.scenario, self.number)
    }

    /// Runs the round to its end; never leaves the container frozen.
    pub async fn run(&self, observer: &mut Observer, progress: &Progress) -> RoundRecord {
        let mut record = RoundRecord::new(self.scenario, self.number, self.slo);
        if let Err(e) = self.settle(progress).await {
            record.fail(format!("before the fault: {e}"));
            record.aborts = true;
            return record;
        }
        observer.drain();
        let fault_at = SystemTime::now();
        let clock = Instant::now();
        record.fault_wall = Some(fault_at);
        record.fault_at = Some(humantime::format_rfc3339_millis(fault_at).to_string());
        match inject::inject(
            self.docker,
            self.http,
            self.target,
            self.scenario,
            self.chaos,
        )
        .await
        {
            Ok(how) => record.injected_by = how.into(),
            Err(e) => {
                record.fail(format!("injecting the fault: {e}"));
                return record;
            }
        }
        let injected = SystemTime::now();
        let deadline = clock + self.slo;
        let mut events: Vec<Ev> = Vec::new();
        let mut incident: Option<Incident> = None;
        let mut api_error: Option<String> = None;
        let mut next_api = Instant::now();
        let mut app_healthy: Option<SystemTime> = None;
        let mut healthy_seen_at: Option<Instant> = None;
        let mut seen = StatesSeen::default();
        loop {
            events.extend(observer.drain());
            let t = Timeline::from_events(&events, fault_at, injected);
            if let Some(api) = self.watchdog {
                if Instant::now() >= next_api {
                    next_api = Instant::now() + API_POLL;
                    if let Ok(Some(v)) = api.container(&self.target.name).await {
                        seen.note(&v.state);
                    }
                    match api.incidents(&self.target.name).await {
                        Ok(list) => {
                            api_error = None;
                            incident = list
                                .into_iter()
                                .filter(|i| i.detected.system_time() + CLOCK_SLACK >= fault_at)
                                .min_by_key(|i| i.id);
                        }
                        Err(e) => api_error = Some(e),
                    }
                }
            }
            if !self.target.has_healthcheck
                && app_healthy.is_none()
                && t.started.is_some()
                && self.app_health().await.is_ok()
            {
                app_healthy = Some(SystemTime::now());
            }
            let healthy = if self.target.has_healthcheck {
                t.healthy
            } else {
                app_healthy
            };
            if healthy.is_some() && healthy_seen_at.is_none() {
                healthy_seen_at = Some(Instant::now());
            }
            let quarantined = incident
                .as_ref()
                .is_some_and(|i| i.outcome == IncidentOutcome::Quarantined);
            // Healthy by Docker's word; wait a little for the watchdog to close its incident
            // so the record has its times too.
            let incident_settled = self.watchdog.is_none()
                || incident.as_ref().is_some_and(|i| !i.is_open())
                || healthy_seen_at.is_some_and(|h| h.elapsed() >= Duration::from_secs(3));
            let now = Instant::now();
            if quarantined || (healthy.is_some() && incident_settled) || now >= deadline {
                record.fill(&t, incident.as_ref(), healthy, fault_at, seen);
                if quarantined {
                    record.fail("the watchdog quarantined the container (restart budget spent)");
                } else if healthy.is_none() {
                    let last = t
                        .last
                        .as_ref()
                        .map_or("no Docker event".to_string(), |e| e.action.clone());
                    let mut why = format!(
                        "not healthy again within {:?} (last Docker event: {last})",
                        self.slo
                    );
                    if let Some(e) = &api_error {
                        why.push_str(&format!("; watchdog API: {e}"));
                    }
                    record.fail(why);
                } else if healthy
                    .and_then(|h| h.duration_since(fault_at).ok())
                    .is_some_and(|d| d > self.slo)
                {
                    record.fail(format!("healthy again only after the {:?} limit", self.slo));
                }
                break;
            }
            progress.status(&self.label(), t.phase(), clock.elapsed());
            tokio::time::sleep(POLL).await;
        }
        if self.scenario == Scenario::Freeze {
            let restarted = Timeline::from_events(&events, fault_at, injected)
                .started
                .is_some();
            if !restarted {
                inject::thaw(self.docker, &self.target.name).await;
            }
        }
        record
    }

    /// The app's health endpoint answers 2xx (for containers without a HEALTHCHECK).
    async fn app_health(&self) -> Result<(), String> {
        let app = self
            .target
            .app_url(self.docker)
            .await
            .ok_or("no address to reach the app at (pass --app-url)")?;
        let url = format!("{app}{}", self.target.health_path);
        match self
            .http
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "waiting for {url} to answer 2xx (got {})",
                r.status()
            )),
            Err(_) => Err(format!("waiting for {url} to answer")),
        }
    }

    /// Waits until the container runs and is healthy, the watchdog has no open incident for
    /// it, and (rounds spaced, the default) no earlier restart can hold the next one. The
    /// settle timeout runs from the start, plus the backoff's reset period while that is
    /// what the drill waits for.
    async fn settle(&self, progress: &Progress) -> Result<(), String> {
        let started = Instant::now();
        let mut deadline = started + self.settle;
        let mut ready_since: Option<SystemTime> = None;
        let mut why;
        loop {
            why = self.not_ready().await;
            if why.is_none() {
                let since = *ready_since.get_or_insert_with(SystemTime::now);
                match self.spacing(since).await {
                    Ok((Spacing::Go, _)) => return Ok(()),
                    Ok((wait, reset_after)) => {
                        if let Spacing::WaitUntil { at, .. } = wait {
                            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                            deadline = deadline.max(Instant::now() + left + self.settle);
                        }
                        why = Some(wait.describe(reset_after, SystemTime::now()));
                    }
                    Err(e) => why = Some(e),
                }
            } else {
                ready_since = None;
            }
            if let Some(w) = &why {
                progress.status(&self.label(), w, started.elapsed());
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(API_POLL).await;
        }
        Err(format!(
            "{} still not ready after {:?}: {}",
            self.target.name,
            Instant::now() - started,
            why.unwrap_or_default()
        ))
    }

    /// Whether the watchdog's backoff could hold a fault injected now ([`spacing::decide`]),
    /// and its reset period. Without the watchdog's API there is nothing to go by: go.
    async fn spacing(&self, ready_since: SystemTime) -> Result<(Spacing, Duration), String> {
        let Some(api) = self.watchdog else {
            return Ok((Spacing::Go, Duration::ZERO));
        };
        let Some(view) = api
            .container(&self.target.name)
            .await
            .map_err(|e| format!("watchdog API: {e}"))?
        else {
            return Ok((Spacing::Go, Duration::ZERO));
        };
        let seen = view.backoff_seen(Some(ready_since));
        Ok((
            spacing::decide(self.pacing, &seen, SystemTime::now()),
            seen.reset_after,
        ))
    }

    async fn not_ready(&self) -> Option<String> {
        let c = match bounded(
            self.docker
                .inspect_container(&self.target.name, None::<InspectContainerOptions>),
        )
        .await
        {
            Ok(c) => ContainerInfo::from_inspect(c),
            Err(e) => return Some(format!("inspect: {e}")),
        };
        if !c.running {
            return Some("waiting for it to run".into());
        }
        // In the watchdog's start period failures don't count, so a fault injected then would
        // be timed from the end of the grace, not from the fault.
        let grace = c
            .labels
            .get(selfheal_core::labels::START_PERIOD)
            .and_then(|v| selfheal_core::parse_duration(v).ok())
            .unwrap_or(selfheal_core::WatchDefaults::default().start_period);
        if c.started_at.is_some_and(|t| t + grace > SystemTime::now()) {
            return Some("in the watchdog's start period".into());
        }
        if c.has_healthcheck {
            if c.health != Some(selfheal_core::DockerHealth::Healthy) {
                return Some("waiting for Docker to report it healthy".into());
            }
        } else if let Err(e) = self.app_health().await {
            return Some(e);
        }
        if let Some(api) = self.watchdog {
            match api.incidents(&self.target.name).await {
                Ok(list) if list.iter().any(Incident::is_open) => {
                    return Some("waiting for the watchdog's incident to close".into())
                }
                Ok(_) => {}
                Err(e) => return Some(format!("watchdog API: {e}")),
            }
        }
        None
    }
}

/// What Docker's events say about one round.
#[derive(Debug, Default)]
pub struct Timeline {
    pub unhealthy: Option<SystemTime>,
    /// A `kill` that was not the drill's own signal: a restart beginning.
    pub kill: Option<SystemTime>,
    pub die: Option<SystemTime>,
    pub oom: Option<SystemTime>,
    pub started: Option<SystemTime>,
    /// `health_status: healthy` after `started`.
    pub healthy: Option<SystemTime>,
    /// `start` events after the fault: restarts used.
    pub starts: u32,
    pub last: Option<Ev>,
}

impl Timeline {
    /// `injected` is when the drill's own action returned: its own `kill` event (SIGSTOP) comes
    /// before that.
    pub fn from_events(events: &[Ev], fault_at: SystemTime, injected: SystemTime) -> Self {
        let mut t = Timeline::default();
        for e in events.iter().filter(|e| e.at + CLOCK_SLACK >= fault_at) {
            let first = |slot: &mut Option<SystemTime>| {
                slot.get_or_insert(e.at);
            };
            match e.action.as_str() {
                "health_status: unhealthy" if t.started.is_none() => first(&mut t.unhealthy),
                "kill" => {
                    let own = matches!(
                        e.attrs.get("signal").map(String::as_str),
                        Some("19" | "18" | "SIGSTOP" | "SIGCONT")
                    ) && e.at <= injected + CLOCK_SLACK;
                    if !own && t.started.is_none() {
                        first(&mut t.kill);
                    }
                }
                "die" if t.started.is_none() => first(&mut t.die),
                "oom" if t.started.is_none() => first(&mut t.oom),
                "start" => {
                    t.starts += 1;
                    first(&mut t.started);
                }
                "health_status: healthy" if t.started.is_some() => first(&mut t.healthy),
                _ => {}
            }
            if !e.action.starts_with("exec_") {
                t.last = Some(e.clone());
            }
        }
        t
    }

    fn phase(&self) -> &'static str {
        if self.healthy.is_some() {
            "healthy, waiting for the incident to close"
        } else if self.started.is_some() {
            "restarted, waiting for healthy"
        } else if self.kill.is_some() || self.die.is_some() {
            "restarting"
        } else if self.unhealthy.is_some() {
            "unhealthy, waiting for the restart"
        } else {
            "fault injected, waiting for detection"
        }
    }
}

#[cfg(test)]
mod tests;
