//! The container task's loop: messages in, observations to the core in order, the core's
//! effects carried out (the order first, before anything is written down).

use super::dispatch::Dispatcher;
use super::evidence::EvidenceCollector;
use super::link::DependentsLink;
use super::probe::ProbeLink;
use super::record::IncidentRecorder;
use super::view::{Shown, ViewPublisher};
use super::{slot, ContainerHandle, Context, Msg, INBOX};
use crate::docker::ContainerInfo;
use crate::journal::Incident;
use crate::swarm::SwarmBinding;
use selfheal_core::{
    Backoff, DockerHealth, Effect, Observation, OrderOutcome, PolicySpec, RecoveryResult,
    RestartCondition, State, Supervisor, Verdict, WatchSpec,
};
use tokio::sync::{mpsc, oneshot};
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

/// The healing core's settings for a container.
fn policy_spec(spec: &WatchSpec, info: &ContainerInfo, backoff: Backoff) -> PolicySpec {
    PolicySpec {
        failures: spec.failures,
        start_period: spec.start_period,
        stop_timeout: spec.stop_timeout,
        container_stop_timeout: info.stop_timeout,
        restart_max: spec.restart_max,
        restart_window: spec.restart_window,
        backoff,
        restart_policy: info.restart_policy(),
        has_probe: spec.probe.is_some(),
        has_docker_health: info.has_healthcheck,
        swarm: None,
        ladder: spec.ladder,
    }
}

/// Starts watching one container. `resumed` is an incident left open by a previous run. The
/// first message the task handles is a [`Msg::Snapshot`] of `info`.
pub fn spawn(
    ctx: Context,
    info: ContainerInfo,
    spec: WatchSpec,
    resumed: Option<Incident>,
    swarm: Option<SwarmBinding>,
    takes_over: bool,
    parent: &CancellationToken,
) -> ContainerHandle {
    let (tx, rx) = mpsc::channel(INBOX);
    let cancel = parent.child_token();
    // A Swarm task takes over what the task it replaces left in its slot.
    let handed = swarm
        .as_ref()
        .and_then(|b| ctx.slots.take(&b.task.slot_key()));
    let resumed = match &handed {
        // The journal's copy: evidence read back after the hand-over was added there.
        Some(h) => h.incident.as_ref().map(|i| {
            ctx.shared
                .journal
                .get(i.id)
                .filter(Incident::is_open)
                .unwrap_or_else(|| i.clone())
        }),
        None => resumed,
    };
    let times = resumed
        .as_ref()
        .and_then(|i| crate::incident::times_of(&ctx.shared, i));
    if let Some(i) = &resumed {
        tracing::info!(container = %info.name, incident = i.id, "resuming open incident");
    }
    ctx.shared
        .metrics
        .add_container(&info.name, spec.probe.as_ref().map(|p| p.kind));
    ctx.shared.metrics.set_state(&info.name, State::Starting);
    let evidence = EvidenceCollector::new(ctx.evidence);
    let (probe, probe_task) = ProbeLink::start(
        &ctx,
        &info,
        &spec,
        evidence.probe_log(),
        tx.clone(),
        &cancel,
    );
    if let Some(b) = &swarm {
        slot::ask_peers(&ctx, b, handed.is_some(), &tx, &cancel);
    }
    let now = Instant::now();
    let mut policy = policy_spec(&spec, &info, ctx.backoff);
    policy.swarm = swarm.as_ref().map(|b| b.condition);
    let resumed_since = times.as_ref().map(|t| t.first_failure);
    let sup = match handed {
        Some(h) => {
            tracing::info!(container = %info.name, incident = ?h.incident.as_ref().map(|i| i.id),
                "Swarm task replaces an ended one in its slot; taking over the slot");
            Supervisor::replacement(policy, h.carry, now)
        }
        None => Supervisor::new(policy, times, now),
    };
    let mut incidents = IncidentRecorder::new(
        ctx.shared.clone(),
        ctx.notifier.clone(),
        resumed,
        ctx.backoff.reset_after,
        (
            !spec.notify || spec.ladder.action == selfheal_core::Action::None,
            spec.ladder,
        ),
    );
    if let Some(since) = resumed_since {
        incidents.resume_story(since);
    }
    let mut task = ContainerTask {
        core: Core { sup, last_now: now },
        swarm,
        incidents,
        dispatch: Dispatcher::new(ctx.runtime.clone(), tx.clone()),
        ctx,
        target: Target {
            info: info.clone(),
            spec,
            probe,
        },
        evidence,
        link: DependentsLink::default(),
        view: ViewPublisher::default(),
    };
    let token = cancel.clone();
    let handle = tokio::spawn(async move {
        task.publish();
        task.run(rx, token.clone(), takes_over).await;
        // Ended (removed, or stopped): whatever else works for it (the probe, a question to
        // the peers) ends too.
        token.cancel();
        if let Some(p) = probe_task {
            p.abort();
        }
    });
    let _ = tx.try_send(Msg::Snapshot(Box::new(info)));
    ContainerHandle {
        tx,
        cancel,
        task: handle,
    }
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

    /// Feeds one observation to the core and carries out what it returns.
    fn feed(&mut self, obs: Observation, at: Instant) -> Fed {
        let open_before = self.incidents.open.as_ref().map(|i| i.id);
        let (effects, now) = self.core.handle(obs, at);
        self.carry_out_all(effects, now, open_before)
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
        match (s.incident, open_before) {
            (Some(mut record), None) => {
                record.container_id.clone_from(&self.target.info.id);
                self.incidents.adopt(record, s.carry.incident.as_ref());
            }
            (Some(mut record), Some(_)) => {
                let why = "its replacement failed by itself before it took the incident over";
                let closing = crate::incident::Closing::Abandoned {
                    why: Some(why.into()),
                };
                crate::incident::close(&self.ctx.shared, &mut record, &closing, &s.container);
            }
            (None, _) => {}
        }
        let now = Instant::now().max(self.core.last_now);
        self.core.last_now = now;
        let effects = self.core.sup.take_over(s.carry, now);
        self.carry_out_all(effects, now, open_before).watching
    }

    /// Carries out the core's effects: an order first, before anything is written down.
    fn carry_out_all(
        &mut self,
        effects: Vec<Effect>,
        now: Instant,
        open_before: Option<u64>,
    ) -> Fed {
        // Fires once the order is sent (or dropped): evidence is read from Docker only after.
        let mut sent = None;
        for e in &effects {
            if let Effect::Order(order) = e {
                let order = order.clone();
                sent = Some(
                    self.dispatch
                        .order(&self.ctx.shared, &self.target.info, order),
                );
            }
        }
        let mut fed = Fed {
            verdict: None,
            watching: Watching::On,
        };
        for e in effects {
            match e {
                Effect::Turn(v) => fed.verdict = Some(v),
                Effect::Unwatch if fed.watching == Watching::On => fed.watching = Watching::Done,
                Effect::Unwatch => {}
                e @ Effect::Recreated { .. } => {
                    fed.watching = Watching::HandedOver;
                    self.carry_out(e, now, &mut sent);
                }
                e => self.carry_out(e, now, &mut sent),
            }
        }
        self.target.probe.count(self.core.sup.wants_probes());
        let open_now = self.incidents.open.as_ref().map(|i| i.id);
        self.link.report_gate(
            &self.core.sup,
            &self.target.info,
            (open_before, open_now),
            &self.ctx.shared.clock,
            &self.ctx.gates,
        );
        fed
    }

    fn carry_out(
        &mut self,
        effect: Effect,
        now: Instant,
        sent: &mut Option<oneshot::Receiver<()>>,
    ) {
        let name = self.target.info.name.clone();
        let shared = self.ctx.shared.clone();
        match effect {
            Effect::StateChanged { from, to } => {
                tracing::info!(container = %name, %from, %to, "state");
                shared.metrics.set_state(&name, to);
            }
            Effect::IncidentOpened(t) => {
                let info = &self.target.info;
                let evidence = self.evidence.at_detection(t.trigger, info);
                let parent = self.link.take_parent(t.trigger);
                self.incidents.opened(&t, info, evidence, parent);
                if let Some(id) = self.incidents.open.as_ref().map(|i| i.id) {
                    let runtime = self.dispatch.runtime();
                    let tx = self.dispatch.inbox();
                    self.evidence
                        .read_back(id, runtime, info.id.clone(), sent.take(), tx);
                }
            }
            Effect::IncidentUpdated(t) => self.incidents.updated(&t),
            Effect::IncidentClosed {
                incident,
                outcome,
                time_to_recover,
            } => self
                .incidents
                .closed(&incident, outcome, time_to_recover, &name, now),
            // Dispatched before anything else; answered or ended by the caller.
            Effect::Order(_) | Effect::Turn(_) | Effect::Unwatch => {}
            Effect::OrderFailed { why } => self.incidents.restart_failed(now, Some(why)),
            Effect::BackoffReset => {
                tracing::debug!(container = %name, "healthy long enough: backoff forgotten")
            }
            Effect::Recovery {
                trigger,
                result,
                verb,
            } => {
                shared.metrics.recovery(&name, trigger, result, verb);
                match result {
                    RecoveryResult::Observed if self.swarm.is_some() => tracing::info!(
                        container = %name, %trigger,
                        "Swarm task failed; Swarm replaces it, recorded, not acted on"),
                    RecoveryResult::Observed => tracing::info!(container = %name, %trigger,
                        "restarted by Docker's restart policy; recorded, not repeated"),
                    _ => {}
                }
            }
            Effect::Quarantined { restarts_in_window } => tracing::error!(
                container = %name, restarts_in_window,
                "restart budget spent: quarantined, left alone until it is healthy again"
            ),
            Effect::Released => {
                tracing::info!(container = %name, "healthy again by itself: released from quarantine");
                self.incidents.released(now);
            }
            Effect::Recreated { new_id, carry } => {
                let successor = super::Successor {
                    new_id,
                    carry: *carry,
                    incident: self.incidents.open.take(),
                    container: name,
                };
                let tx = self.ctx.successors.clone();
                tokio::spawn(async move {
                    let _ = tx.send(successor).await;
                });
            }
            Effect::HandOver(carry) => {
                let Some(b) = &self.swarm else { return };
                let incident = self.incidents.open.take();
                let muted = !self.target.spec.notify;
                slot::hand_over(&self.ctx, b, *carry, incident, (&name, muted), now);
            }
            // Behind whatever is already in the inbox: looked at in order.
            Effect::Inspect => self.dispatch.send_self(Msg::Look { started: false }),
            Effect::ReadHealthLog => self.dispatch.look(&self.target.info.id, |info| {
                info.health_failing_since.map(Msg::HealthFailingSince)
            }),
        }
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
