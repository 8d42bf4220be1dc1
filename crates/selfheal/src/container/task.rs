//! The container task's loop: messages in, observations to the core in order. Its parts:
//! `spawn` sets a task up (what it resumes or takes over, its probe, its supervisor), and
//! `effects` carries the core's effects out (the order first, before anything is written
//! down).

mod effects;
mod spawn;

pub use spawn::spawn;

use super::dispatch::Dispatcher;
use super::evidence::EvidenceCollector;
use super::link::DependentsLink;
use super::probe::ProbeLink;
use super::record::IncidentRecorder;
use super::view::{Shown, ViewPublisher};
use super::{Context, Msg};
use crate::docker::ContainerInfo;
use crate::swarm::SwarmBinding;
use selfheal_core::{
    Carried, DockerHealth, Effect, Observation, OrderOutcome, RestartCondition, Supervisor,
    Verdict, WatchSpec,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct ContainerTask {
    ctx: Context,
    target: Target,
    core: Core,
    incidents: IncidentRecorder,
    evidence: EvidenceCollector,
    link: DependentsLink,
    view: ViewPublisher,
    dispatch: Dispatcher,
    /// Set when the container is a Swarm task.
    swarm: Option<SwarmBinding>,
}

/// The container as watched: its latest inspect data (under the name it goes by now), its
/// labels' spec, and what its probe loop follows of it.
struct Target {
    info: ContainerInfo,
    spec: WatchSpec,
    probe: ProbeLink,
}

/// The container's supervisor, fed in order: an observation's time never goes back.
struct Core {
    sup: Supervisor,
    last_now: Instant,
}

impl Core {
    fn handle(&mut self, obs: Observation, at: Instant) -> (Vec<Effect>, Instant) {
        let now = at.max(self.last_now);
        self.last_now = now;
        (self.sup.handle(obs, now), now)
    }
}

/// How long a recreate's replacement waits for the old container's hand-over: the executor
/// sends it once the old container is removed, a moment after the new one started.
const TAKE_OVER_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the task goes on watching after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watching {
    On,
    /// Removed: the task ends, and the container's series go.
    Done,
    /// Replaced by a recreate: the task ends; the series under its name go on with the
    /// replacement (a counter that starts over would lose what this one counted).
    HandedOver,
}

/// What feeding one observation returned to the caller.
struct Fed {
    /// The core's answer to the executor's turn.
    verdict: Option<Verdict>,
    watching: Watching,
}

impl ContainerTask {
    /// `takes_over`: the container replaced another by a recreate, whose hand-over
    /// ([`Msg::TakeOver`]) comes first.
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Msg>,
        cancel: CancellationToken,
        takes_over: bool,
    ) {
        if takes_over {
            let Some(held) = self.await_take_over(&mut rx, &cancel).await else {
                return;
            };
            for msg in held {
                if !self.handle(msg).await {
                    return;
                }
            }
        }
        loop {
            let wake = self.core.sup.wake_at();
            let tell_at = self.incidents.wake_at();
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
                _ = sleep_until(wake) => Msg::Observe(Observation::Tick),
                _ = sleep_until(tell_at) => {
                    self.incidents.tick(Instant::now());
                    continue;
                }
            };
            if !self.handle(msg).await {
                return;
            }
        }
    }

    /// One message, then the view; `false`: the task ends.
    async fn handle(&mut self, msg: Msg) -> bool {
        let watching = self.on_msg(msg).await;
        if watching != Watching::On {
            let (shared, info) = (&self.ctx.shared, &self.target.info);
            shared.remove_view(&info.id);
            if watching == Watching::Done {
                shared.metrics.remove_container(&info.name);
            }
            tracing::info!(container = %info.name, "no longer watched");
            return false;
        }
        self.publish();
        true
    }

    /// A recreate's replacement takes over before it judges anything: a death of the new
    /// container right after its start is a crash under the carried incident, not a stop
    /// nobody explains. What arrives meanwhile is held, in order, and handled after. `None`:
    /// the task ended.
    async fn await_take_over(
        &mut self,
        rx: &mut mpsc::Receiver<Msg>,
        cancel: &CancellationToken,
    ) -> Option<Vec<Msg>> {
        let mut held = Vec::new();
        let deadline = tokio::time::sleep(TAKE_OVER_WITHIN);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = &mut deadline => {
                    tracing::warn!(container = %self.target.info.name, waited = ?TAKE_OVER_WITHIN,
                        "a recreate's replacement got no hand-over; watching it on its own");
                    return Some(held);
                }
                m = rx.recv() => match m {
                    None => return None,
                    Some(Msg::TakeOver(s)) => {
                        return self.handle(Msg::TakeOver(s)).await.then_some(held);
                    }
                    Some(m) => held.push(m),
                },
            }
        }
    }

    async fn on_msg(&mut self, msg: Msg) -> Watching {
        let now = Instant::now();
        let clock = self.ctx.shared.clock;
        let obs = match msg {
            // Inspected here and now, so what it shows comes in order with the events before
            // and after it (a start's inspect before that run's die).
            Msg::Look { started } => {
                let Some(info) = self.ctx.runtime.inspect(&self.target.info.id).await else {
                    return Watching::On;
                };
                let msg = match started {
                    true => Msg::Started(Box::new(info)),
                    false => Msg::Snapshot(Box::new(info)),
                };
                return Box::pin(self.on_msg(msg)).await;
            }
            Msg::Observe(obs) => obs,
            // Received before it waited in the inbox: the reaction is measured from there.
            Msg::Unhealthy { received } => {
                let obs = Observation::Health(DockerHealth::Unhealthy);
                return self.feed(obs, received).watching;
            }
            Msg::Oom => {
                self.evidence.oom();
                // Docker may send `oom` just after `die`: the death's evidence still learns it.
                self.incidents.oom_after_death();
                return Watching::On;
            }
            Msg::Died { exit_code } => {
                let restart_count = self.target.info.restart_count;
                Observation::Died(self.evidence.died(exit_code, restart_count))
            }
            Msg::Rename(name) => {
                self.rename(name);
                return Watching::On;
            }
            Msg::AdoptSlot { sent, recent, last } => {
                tracing::info!(container = %self.target.info.name, restarts = sent.len(), recent,
                    "Swarm slot's budget and backoff taken over from the node where its last task ended");
                self.core.sup.adopt_slot(sent, recent, last, Instant::now());
                return Watching::On;
            }
            Msg::TakeOver(s) => return self.take_over(*s),
            Msg::RestartCondition(c) => {
                self.learn_restart_condition(c);
                return Watching::On;
            }
            Msg::Started(info) => {
                self.update_info(*info);
                // A start happened even if the process already exited again: its die event
                // follows in the stream.
                if let Some(at) = self.target.info.started_at {
                    self.feed(
                        Observation::Started {
                            at: clock.instant(at),
                        },
                        now,
                    );
                }
                let info = &self.target.info;
                match info.health.filter(|_| info.running) {
                    Some(h) if self.core.sup.docker_health() != Some(h) => Observation::Health(h),
                    _ => return Watching::On,
                }
            }
            Msg::Snapshot(info) => {
                self.update_info(*info);
                Observation::Snapshot(self.target.info.snapshot(|t| clock.instant(t)))
            }
            Msg::HealthFailingSince(at) => Observation::HealthFailingSince(clock.instant(at)),
            Msg::Turn { running, reply } => {
                let fed = self.feed(Observation::Turn { running }, now);
                let _ = reply.send(fed.verdict.unwrap_or(Verdict::Drop));
                return fed.watching;
            }
            Msg::Ended(outcome) => {
                if let OrderOutcome::Replaced { new_id } = &outcome {
                    tracing::info!(container = %self.target.info.name, %new_id, "replaced by a recreate");
                }
                Observation::OrderEnded(outcome)
            }
            Msg::Removed => Observation::Removed,
            Msg::Evidence { incident, captured } => {
                self.incidents.attach(incident, *captured);
                return Watching::On;
            }
            Msg::ParentWaiting { parent, since } => {
                self.link.parent_waiting(parent);
                Observation::ParentWaiting {
                    since: clock.instant(since),
                }
            }
            Msg::ParentStarted {
                parent,
                at,
                incident,
                recreate,
            } => {
                tracing::info!(container = %self.target.info.name, %parent, "parent is ready again");
                self.link.parent_released(parent, incident);
                Observation::ParentStarted {
                    at: clock.instant(at),
                    recreated: recreate,
                }
            }
        };
        self.feed(obs, now).watching
    }

    fn learn_restart_condition(&mut self, c: RestartCondition) {
        self.core.sup.learn_restart_condition(c);
        if let Some(b) = self
            .swarm
            .as_mut()
            .filter(|b| b.condition == RestartCondition::Unknown)
        {
            tracing::info!(container = %self.target.info.name, condition = c.as_str(),
                "restart condition told by a manager's watchdog");
            b.condition = c;
        }
    }

    fn rename(&mut self, name: String) {
        let metrics = &self.ctx.shared.metrics;
        self.target.probe.rename(metrics, &name);
        tracing::info!(from = %self.target.info.name, to = %name, "container renamed");
        self.target.info.name = name;
        metrics.set_state(&self.target.info.name, self.core.sup.state());
    }

    fn update_info(&mut self, info: ContainerInfo) {
        self.target.info = ContainerInfo {
            name: self.target.info.name.clone(),
            ..info
        };
        self.target.probe.retarget(&self.ctx, &self.target.info);
    }

    /// This container replaced another by a recreate: its supervisor takes over what the
    /// other one carried, and the incident's record comes along (under this container's id,
    /// so that a restarted watchdog resumes it). If this container opened an incident of its
    /// own first, the carried one is closed `abandoned`.
    fn take_over(&mut self, s: super::Successor) -> Watching {
        let open_before = self.incidents.open.as_ref().map(|i| i.id);
        tracing::info!(container = %self.target.info.name, replaced = %s.container,
            incident = ?s.incident.as_ref().map(|i| i.id),
            "a recreate's replacement: taking over the incident, budget and backoff");
        let now = Instant::now().max(self.core.last_now);
        match (
            s.incident,
            Supervisor::carried_incident(Some(&self.core.sup)),
        ) {
            (Some(mut record), Carried::TakenOver) => {
                record.container_id.clone_from(&self.target.info.id);
                self.incidents.adopt(record, s.carry.incident.as_ref());
            }
            (Some(mut record), Carried::Closed { outcome, why }) => {
                let closing = crate::incident::Closing::carried(outcome, why, now);
                crate::incident::close(&self.ctx.shared, &mut record, &closing, &s.container);
            }
            (None, _) => {}
        }
        self.core.last_now = now;
        let effects = self.core.sup.take_over(s.carry, now);
        self.carry_out_all(effects, now, open_before).watching
    }

    fn publish(&mut self) {
        let shown = Shown {
            waiting_on: self.link.waiting_on(&self.core.sup),
            sup: &mut self.core.sup,
            info: &self.target.info,
            spec: &self.target.spec,
            incident: self.incidents.current(),
            swarm: self.swarm.as_ref(),
            reset_after: self.ctx.backoff.reset_after,
        };
        self.view.publish(&self.ctx.shared, shown);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
