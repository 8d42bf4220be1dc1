//! Orders: the decision to act and its verb, the executor's turn, and what each outcome
//! spends (only an order Docker received spends budget).

use super::*;

impl Supervisor {
    /// Restart now, wait, or give up.
    pub(super) fn decide(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.order.is_some() {
            return;
        }
        let (trigger, hold, of) = match &self.phase {
            Phase::Running { hold, run } => match self.failing_trigger() {
                Some(t) => (t, *hold, Some(*run)),
                None => return,
            },
            Phase::Exited {
                trigger,
                docker_restarts: false,
                hold,
            } => (*trigger, *hold, None),
            _ => return,
        };
        if hold == Hold::Quarantine {
            return;
        }
        let opened = self.incident.is_none();
        let first = self.first_evidence(now);
        self.open_incident(trigger, first, now, out);
        let verb = match self.swarm() {
            None => self.plain_verb(trigger, opened, out),
            Some(condition) => self.swarm_verb(condition, trigger, opened, out),
        };
        let Some(verb) = verb else {
            return;
        };
        if matches!(hold, Hold::Backoff { until } if now < until) {
            return;
        }
        if !self.budget.allows(now) {
            self.set_hold(Hold::Quarantine);
            out.push(Effect::Quarantined {
                restarts_in_window: self.budget.used(now),
            });
            self.close_incident(Outcome::Quarantined, now, out);
            return;
        }
        if let Some(last) = self.backoff.last {
            let allowed = last + self.spec.backoff.gap(self.backoff.recent);
            if now < allowed {
                self.set_hold(Hold::Backoff { until: allowed });
                return;
            }
        }
        let Some(incident) = &self.incident else {
            return;
        };
        let attempt = incident.attempts + 1;
        out.push(Effect::Order(Order {
            verb: verb.clone(),
            trigger: incident.trigger,
            attempt,
            stop_timeout: self.spec.effective_stop_timeout(),
            detected: incident.detected,
        }));
        if opened && incident.trigger == Trigger::Unhealthy {
            // Dates the first failing check; after the order, so it never delays it.
            out.push(Effect::ReadHealthLog);
        }
        self.order = Some(InFlight {
            verb,
            sent_at: None,
            removed: false,
        });
        self.phase = Phase::Ordered { of };
    }

    /// The executor's turn came: send the order, unless the container is no longer what it
    /// was decided for (a user stopped, paused or killed it meanwhile, or it is found not
    /// running any more): a user's action wins, for every verb.
    /// A plain container's verb: restart it, or recreate a network dependent in its new
    /// parent's namespace. `None`: nothing can be done.
    fn plain_verb(
        &mut self,
        trigger: Trigger,
        opened: bool,
        out: &mut Vec<Effect>,
    ) -> Option<Verb> {
        match self.stale.as_ref().and_then(|s| s.recreated.as_ref()) {
            None => Some(Verb::Restart),
            Some(ParentRecreated::Follow { new_parent }) => Some(Verb::Recreate {
                network_parent: Some(new_parent.clone()),
            }),
            // Its namespace is gone and it cannot follow its parent: a restart would fail on
            // the missing parent. Reported once, left alone until it starts again.
            Some(ParentRecreated::CannotFollow { why }) => {
                if opened {
                    let why = format!("not recreated: {why}");
                    self.order_failed(trigger, why, out);
                }
                None
            }
        }
    }

    pub(super) fn on_turn(&mut self, running: Option<bool>, now: Instant, out: &mut Vec<Effect>) {
        let Some(order) = self.order.as_mut().filter(|o| o.sent_at.is_none()) else {
            return;
        };
        let send = match self.phase {
            Phase::Ordered { of } => of.is_none() || running != Some(false),
            _ => false,
        };
        if !send {
            self.order = None;
            out.push(Effect::Turn(Verdict::Drop));
            self.look_again(None, out);
            return;
        }
        order.sent_at = Some(now);
        let of = match self.phase {
            Phase::Ordered { of } => of,
            _ => None,
        };
        self.phase = Phase::Restarting {
            of,
            sent_at: now,
            deadline: Some(
                now + Duration::from_secs(u64::from(self.spec.effective_stop_timeout()))
                    + RESTART_EVENTS_WITHIN,
            ),
        };
        if let Some(i) = &mut self.incident {
            i.action_begun.get_or_insert(now);
            i.last_restart = Some(now);
            out.push(Effect::IncidentUpdated(i.clone()));
        }
        out.push(Effect::Turn(Verdict::Send));
    }

    /// The executor's report on its order. Only an order Docker received spends budget.
    pub(super) fn on_order_ended(
        &mut self,
        outcome: OrderOutcome,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(order) = self.order.take() else {
            return;
        };
        let trigger = self
            .incident
            .as_ref()
            .map_or(Trigger::Unhealthy, |i| i.trigger);
        let sent_at = order.sent_at.unwrap_or(now);
        let gone = outcome == OrderOutcome::Gone;
        match outcome {
            OrderOutcome::Done => {
                self.count_attempt(sent_at, out);
                if self.swarm().is_some() {
                    // The task is ending; its `die` hands the slot over.
                    out.push(Effect::Recovery {
                        trigger,
                        result: RecoveryResult::Success,
                    });
                }
                if let Phase::Restarting { deadline, .. } = &mut self.phase {
                    // Its `start` (or, for a Swarm task, its `die`) may lag the answer; look
                    // if it does not come.
                    *deadline = Some(now + START_AFTER_ANSWER);
                }
            }
            OrderOutcome::Failed(why) => {
                self.count_attempt(sent_at, out);
                self.order_failed(trigger, why, out);
                self.look_again(None, out);
            }
            OrderOutcome::Refused(why) => {
                // Never sent: nothing spent. A refused recreate stays refused for this run.
                if let (Verb::Recreate { .. }, Some(stale)) = (&order.verb, &mut self.stale) {
                    stale.recreated = Some(ParentRecreated::CannotFollow { why: why.clone() });
                }
                self.order_failed(trigger, why, out);
                self.look_again(None, out);
            }
            OrderOutcome::Skipped => {
                // A dry run paces itself like real restarts, so its log reads like one.
                self.count_attempt(now, out);
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::DryRun,
                });
                self.look_again(None, out);
            }
            OrderOutcome::Unreachable => self.look_again(Some(now + UNREACHABLE_RECHECK), out),
            OrderOutcome::Gone => {}
            OrderOutcome::Replaced { .. } => {
                // This container is gone and its replacement runs, watched on its own.
                self.count_attempt(sent_at, out);
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::Success,
                });
                self.close_incident(Outcome::Recovered, now, out);
                self.reset_signals();
                self.phase = Phase::Gone;
                out.push(Effect::Unwatch);
                return;
            }
        }
        if order.removed || gone {
            self.on_removed(now, out);
        }
    }

    pub(super) fn order_failed(&mut self, trigger: Trigger, why: String, out: &mut Vec<Effect>) {
        out.push(Effect::Recovery {
            trigger,
            result: RecoveryResult::Failed,
        });
        out.push(Effect::OrderFailed { why });
    }

    /// The order ended without the container's own events telling what it is doing: look
    /// (now, or at `at`). A user's stop or pause seen meanwhile stands.
    pub(super) fn look_again(&mut self, at: Option<Instant>, out: &mut Vec<Effect>) {
        let (Phase::Restarting { of, .. } | Phase::Ordered { of }) = self.phase else {
            return;
        };
        self.phase = Phase::Unknown {
            recheck_at: at,
            last: of,
        };
        if at.is_none() {
            out.push(Effect::Inspect);
        }
    }

    pub(super) fn count_attempt(&mut self, at: Instant, out: &mut Vec<Effect>) {
        self.budget.record(at);
        self.backoff.recent = self.backoff.recent.saturating_add(1);
        self.backoff.last = Some(at);
        if let Some(i) = &mut self.incident {
            i.attempts += 1;
            out.push(Effect::IncidentUpdated(i.clone()));
        }
    }

    pub(super) fn hold(&self) -> Hold {
        match &self.phase {
            Phase::Running { hold, .. }
            | Phase::Paused { hold, .. }
            | Phase::Exited { hold, .. } => *hold,
            _ => Hold::Free,
        }
    }

    pub(super) fn set_hold(&mut self, to: Hold) {
        match &mut self.phase {
            Phase::Running { hold, .. }
            | Phase::Paused { hold, .. }
            | Phase::Exited { hold, .. } => *hold = to,
            _ => {}
        }
    }
}
