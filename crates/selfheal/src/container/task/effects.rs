//! Carrying out the core's effects for a task: an order is dispatched first, before anything
//! is written down; then state, incidents, metrics, a recreate's or a Swarm slot's hand-over,
//! and the inspects the core asks for. What the task learns from them (the executor's
//! verdict, whether it goes on watching) goes back to the caller.

use super::{ContainerTask, Fed, Watching};
use crate::container::{slot, Msg, Successor};
use selfheal_core::{Effect, Observation, RecoveryResult};
use tokio::sync::oneshot;
use tokio::time::Instant;

impl ContainerTask {
    /// Feeds one observation to the core and carries out what it returns.
    pub(super) fn feed(&mut self, obs: Observation, at: Instant) -> Fed {
        let open_before = self.incidents.open.as_ref().map(|i| i.id);
        let (effects, now) = self.core.handle(obs, at);
        self.carry_out_all(effects, now, open_before)
    }

    /// Carries out the core's effects: an order first, before anything is written down.
    pub(super) fn carry_out_all(
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
                let successor = Successor {
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
}
