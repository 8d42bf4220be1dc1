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
            self.quarantine(of, now, out);
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
            counted: false,
        });
        self.phase = Phase::Ordered { of };
    }

    /// The budget is spent: quarantined, and with `on_quarantine` stop, a running container
    /// is stopped (Docker's restart policy does not start a stopped container again). The
    /// quarantine outlives the stop: the next start of the container is quarantined too.
    fn quarantine(&mut self, of: Option<Run>, now: Instant, out: &mut Vec<Effect>) {
        self.set_hold(Hold::Quarantine);
        out.push(Effect::Quarantined {
            restarts_in_window: self.budget.used(now),
        });
        let incident = self.incident.clone();
        self.close_incident(Outcome::Quarantined, now, out);
        let (Some(run), Some(incident), None) = (of, incident, self.swarm()) else {
            return;
        };
        if self.spec.ladder.on_quarantine != OnQuarantine::Stop {
            return;
        }
        self.carried_hold = Hold::Quarantine;
        out.push(Effect::Order(Order {
            verb: Verb::Stop,
            trigger: incident.trigger,
            attempt: incident.attempts,
            stop_timeout: self.spec.effective_stop_timeout(),
            detected: incident.detected,
        }));
        self.order = Some(InFlight {
            verb: Verb::Stop,
            sent_at: None,
            removed: false,
            counted: false,
        });
        self.phase = Phase::Ordered { of: Some(run) };
    }

    /// A plain container's verb, by its ladder (see the module docs). `None`: nothing is to
    /// be done.
    fn plain_verb(
        &mut self,
        trigger: Trigger,
        opened: bool,
        out: &mut Vec<Effect>,
    ) -> Option<Verb> {
        let ladder = self.spec.ladder;
        if matches!(ladder.action, Action::Notify | Action::None) {
            if opened {
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::Observed,
                    verb: VerbKind::None,
                });
            }
            return None;
        }
        match self.stale.as_ref().and_then(|s| s.recreated.as_ref()) {
            None => {}
            // Its network namespace went with its old parent: recreated in the new one's.
            Some(ParentRecreated::Follow { new_parent }) => {
                return Some(Verb::Recreate {
                    network_parent: Some(new_parent.clone()),
                })
            }
            // Its namespace is gone and it cannot follow its parent: a restart would fail on
            // the missing parent. Reported once, left alone until it starts again.
            Some(ParentRecreated::CannotFollow { why }) => {
                if opened {
                    let why = format!("not recreated: {why}");
                    self.order_failed(trigger, VerbKind::Recreate, why, out);
                }
                return None;
            }
        }
        let escalate = match ladder.action {
            // The executor cannot recreate it: the ladder's first step is what is left.
            _ if self.recreate_refused => false,
            Action::Recreate => true,
            // A dependent left behind by its parent's start failed through no fault of its
            // own layer: restarted, never escalated.
            _ if trigger == Trigger::Dependency => false,
            _ => ladder
                .recreate_after
                .is_some_and(|n| self.backoff.recent >= n),
        };
        Some(match escalate {
            true => Verb::Recreate {
                network_parent: None,
            },
            false => Verb::Restart,
        })
    }

    /// The executor's turn came: send the order, unless the container is no longer what it
    /// was decided for (a user stopped, paused or killed it meanwhile, or it is found not
    /// running any more): a user's action wins, for every verb.
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
        let verb = order.verb.kind();
        let of = match self.phase {
            Phase::Ordered { of } => of,
            _ => None,
        };
        self.phase = Phase::Restarting {
            of,
            verb,
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
        if order.verb == Verb::Stop {
            self.quarantine_stop_ended(outcome, now, out);
            return;
        }
        let verb = order.verb.kind();
        let trigger = self
            .incident
            .as_ref()
            .map_or(Trigger::Unhealthy, |i| i.trigger);
        let sent_at = order.sent_at.unwrap_or(now);
        let counted = order.counted;
        let count = |sup: &mut Self, at: Instant, out: &mut Vec<Effect>| {
            if !counted {
                sup.count_attempt(at, verb, out);
            }
        };
        let gone = outcome == OrderOutcome::Gone;
        match outcome {
            OrderOutcome::Done => {
                count(self, sent_at, out);
                if self.swarm().is_some() {
                    // The task is ending; its `die` hands the slot over.
                    out.push(Effect::Recovery {
                        trigger,
                        result: RecoveryResult::Success,
                        verb,
                    });
                }
                if let Phase::Restarting { deadline, .. } = &mut self.phase {
                    // Its `start` (or, for a Swarm task, its `die`) may lag the answer; look
                    // if it does not come.
                    *deadline = Some(now + START_AFTER_ANSWER);
                }
            }
            OrderOutcome::Failed(why) => {
                count(self, sent_at, out);
                self.order_failed(trigger, verb, why, out);
                self.look_again(None, out);
            }
            OrderOutcome::Refused(why) => {
                // Never sent: nothing spent. A dependent's refused recreate stays refused for
                // this run; a recreate from its own configuration, for this container.
                match (&order.verb, &mut self.stale) {
                    (Verb::Recreate { .. }, Some(stale)) if stale.recreated.is_some() => {
                        stale.recreated = Some(ParentRecreated::CannotFollow { why: why.clone() });
                    }
                    (Verb::Recreate { .. }, _) => self.recreate_refused = true,
                    _ => {}
                }
                self.order_failed(trigger, verb, why, out);
                self.look_again(None, out);
            }
            OrderOutcome::Skipped => {
                // A dry run paces itself like real restarts, so its log reads like one.
                count(self, now, out);
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::DryRun,
                    verb,
                });
                self.look_again(None, out);
            }
            OrderOutcome::Unreachable => self.look_again(Some(now + UNREACHABLE_RECHECK), out),
            OrderOutcome::Gone => {}
            OrderOutcome::Replaced { new_id } => {
                // This container is gone; its replacement, watched on its own, takes over the
                // incident (closed once it is healthy), the budget and the backoff.
                count(self, sent_at, out);
                out.push(Effect::Recovery {
                    trigger,
                    result: RecoveryResult::Success,
                    verb,
                });
                self.reset_signals();
                self.phase = Phase::Gone;
                let carry = crate::swarm::SlotCarry {
                    incident: self.incident.take(),
                    budget: self.budget.clone(),
                    recent: self.backoff.recent,
                    last: self.backoff.last,
                    quarantined: false,
                };
                out.push(Effect::Recreated {
                    new_id,
                    carry: Box::new(carry),
                });
                out.push(Effect::Unwatch);
                return;
            }
        }
        if order.removed || gone {
            self.on_removed(now, out);
        }
    }

    /// How quarantine's stop ended. Stopped: left stopped, and quarantined when started again.
    /// Otherwise it is looked at again, still quarantined (a stop is not retried: the
    /// quarantine's alert has gone out, and its reason is in the log).
    fn quarantine_stop_ended(
        &mut self,
        outcome: OrderOutcome,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        match outcome {
            // A user's start that came in meanwhile stands: that run is quarantined.
            OrderOutcome::Done if matches!(self.phase, Phase::Running { .. }) => {}
            OrderOutcome::Done => self.phase = Phase::Stopped,
            OrderOutcome::Gone => self.on_removed(now, out),
            OrderOutcome::Unreachable => self.look_again(Some(now + UNREACHABLE_RECHECK), out),
            other => {
                if let OrderOutcome::Failed(why) | OrderOutcome::Refused(why) = other {
                    let why = format!("quarantined, not stopped: {why}");
                    out.push(Effect::OrderFailed { why });
                }
                self.look_again(None, out);
            }
        }
    }

    /// One `success` recovery, by `verb`, for the open incident's trigger, if one is open.
    pub(super) fn record_success(&self, verb: VerbKind, out: &mut Vec<Effect>) {
        if let Some(i) = &self.incident {
            out.push(Effect::Recovery {
                trigger: i.trigger,
                result: RecoveryResult::Success,
                verb,
            });
        }
    }

    pub(super) fn order_failed(
        &mut self,
        trigger: Trigger,
        verb: VerbKind,
        why: String,
        out: &mut Vec<Effect>,
    ) {
        out.push(Effect::Recovery {
            trigger,
            result: RecoveryResult::Failed,
            verb,
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

    pub(super) fn count_attempt(&mut self, at: Instant, verb: VerbKind, out: &mut Vec<Effect>) {
        self.budget.record(at);
        self.backoff.recent = self.backoff.recent.saturating_add(1);
        self.backoff.last = Some(at);
        if let Some(i) = &mut self.incident {
            i.attempts += 1;
            i.steps.push(Attempt { verb, at });
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
