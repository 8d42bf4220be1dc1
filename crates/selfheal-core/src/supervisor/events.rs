//! Lifecycle observations: a start, a probe result, Docker's health log, a death, an
//! inspect after a gap, a removal, a user's stop.

use super::*;

impl Supervisor {
    /// One observation, before the decisions every observation is followed by.
    pub(super) fn apply(&mut self, obs: Observation, now: Instant, out: &mut Vec<Effect>) {
        match obs {
            Observation::Started { at } => self.on_started(at.min(now), now, out),
            Observation::Probe(p) => self.on_probe(p, now),
            Observation::Health(h) => {
                if let Phase::Running { run, .. } = &mut self.phase {
                    self.docker = Some(h);
                    if h == DockerHealth::Healthy {
                        run.grace = Grace::Over;
                    }
                }
            }
            Observation::HealthFailingSince(at) => self.on_health_failing_since(at, out),
            // A Swarm task's end is the task's end, whoever caused it: seen at its `die`.
            Observation::Killed { .. } | Observation::Stopped if self.swarm().is_some() => {}
            // A stop or a freeze (Podman names no signal): its process's death tells which.
            Observation::Killed { signal: None } => self.unstated_kill = Some(now),
            Observation::Killed {
                signal: Some(signal),
            } => {
                // A reload or a freeze: the process goes on.
                if stops_process(signal) {
                    self.user_stopping(now);
                }
            }
            Observation::Died(exit) => {
                // Dead soon after a kill that named no signal: that kill was a user's stop,
                // read as one that named its signal would have been, just before this death.
                // A death long after it is the process's own.
                if self
                    .unstated_kill
                    .take()
                    .is_some_and(|at| now.duration_since(at) < USER_STOP_WITHIN)
                {
                    self.user_stopping(now);
                }
                self.on_died(exit, now, out)
            }
            Observation::Stopped => match self.phase {
                Phase::Restarting { .. } | Phase::Stopped | Phase::Gone => {}
                _ => self.stopped_by_user(now, out),
            },
            Observation::Paused => match self.phase {
                Phase::Running { run, hold } => self.phase = Phase::Paused { run, hold },
                // A user's pause while the watchdog looks again or waits for its turn: the
                // pause stands.
                Phase::Unknown {
                    last: Some(run), ..
                }
                | Phase::Ordered { of: Some(run) } => {
                    self.phase = Phase::Paused {
                        run,
                        hold: Hold::Free,
                    }
                }
                _ => {}
            },
            Observation::Unpaused => {
                if let Phase::Paused { run, hold } = self.phase {
                    // What Docker's health said while frozen is stale, and so is the streak.
                    self.reset_signals();
                    self.phase = Phase::Running { run, hold };
                }
            }
            Observation::Snapshot(s) => self.on_snapshot(s, now, out),
            Observation::Removed => self.on_removed(now, out),
            Observation::Turn { running } => self.on_turn(running, now, out),
            Observation::OrderEnded(outcome) => self.on_order_ended(outcome, now, out),
            Observation::Tick => self.on_tick(now, out),
            Observation::ParentWaiting { since } => {
                self.parent_waiting = self.run_before(since);
            }
            Observation::ParentStarted { at, recreated } => {
                self.parent_waiting = false;
                if self.run_before(at) && self.order.is_none() {
                    let stale = self.stale.get_or_insert(Stale {
                        since: at,
                        recreated: None,
                    });
                    stale.since = stale.since.min(at);
                }
                if let (Some(stale), Some(r)) = (&mut self.stale, recreated) {
                    stale.recreated = Some(r);
                }
            }
        }
    }

    /// A stopping signal was sent: the process is awaited to end, for [`USER_STOP_WITHIN`].
    fn user_stopping(&mut self, now: Instant) {
        let of = match &self.phase {
            Phase::Restarting { .. } | Phase::Stopped | Phase::Gone => return,
            Phase::Running { run, .. } | Phase::Paused { run, .. } => Some(*run),
            Phase::Ordered { of }
            | Phase::Stopping { of, .. }
            | Phase::Unknown { last: of, .. } => *of,
            Phase::Exited { .. } => None,
        };
        self.phase = Phase::Stopping {
            until: now + USER_STOP_WITHIN,
            of,
        }
    }

    /// Did the run going on (or, while looking again, the run known before) begin before `at`?
    pub(super) fn run_before(&self, at: Instant) -> bool {
        match &self.phase {
            Phase::Running { run, .. }
            | Phase::Unknown {
                last: Some(run), ..
            } => run.since < at,
            _ => false,
        }
    }

    pub(super) fn on_started(&mut self, at: Instant, now: Instant, out: &mut Vec<Effect>) {
        match &self.phase {
            Phase::Restarting {
                sent_at: sent,
                verb,
                ..
            } => {
                if at + START_CLOCK_SLACK < *sent {
                    // A start from before the restart was sent: a stale report.
                    return;
                }
                let (sent, verb) = (*sent, *verb);
                // A recreate starts a new container, whose `start` comes under its own id: a
                // start of this one meanwhile is Docker's restart policy or a user's, not the
                // order's (counted, and its success recorded, when Docker answers `Replaced`).
                if verb != VerbKind::Recreate {
                    // The restart's start proves Docker carried it out: counted now, before
                    // the run can close the incident (Docker's answer may come after).
                    if let Some(o) = self
                        .order
                        .as_mut()
                        .filter(|o| !o.counted && o.verb != Verb::Stop)
                    {
                        o.counted = true;
                        self.count_attempt(sent, verb, out);
                    }
                    self.record_success(verb, out);
                }
            }
            Phase::Exited {
                docker_restarts: true,
                ..
            } => {
                // Docker's restart policy brought it back (layer 1): recorded, not repeated.
                if let Some(i) = &mut self.incident {
                    i.attempts += 1;
                    out.push(Effect::Recovery {
                        trigger: i.trigger,
                        result: RecoveryResult::Observed,
                        verb: VerbKind::None,
                    });
                    out.push(Effect::IncidentUpdated(i.clone()));
                }
            }
            Phase::Running { run, .. } | Phase::Paused { run, .. }
                if at <= run.since + START_CLOCK_SLACK =>
            {
                // The run already known.
                return;
            }
            Phase::Ordered { of: Some(run) } | Phase::Stopping { of: Some(run), .. }
                if at <= run.since + START_CLOCK_SLACK =>
            {
                return
            }
            Phase::Unknown {
                last: Some(run), ..
            } if at <= run.since + START_CLOCK_SLACK => {
                // Looked again: the same run goes on, and what its checks said still stands
                // (a quarantine whose stop did not happen too).
                self.phase = Phase::Running {
                    run: *run,
                    hold: std::mem::replace(&mut self.carried_hold, Hold::Free),
                };
                return;
            }
            _ => {}
        }
        let hold = self
            .hold()
            .max_with(std::mem::replace(&mut self.carried_hold, Hold::Free));
        self.reset_signals();
        self.parent_waiting = false;
        // A new run: a kill that named no signal was not a stop of it.
        self.unstated_kill = None;
        self.phase = Phase::Running {
            run: Run::new(at, self.spec.start_period, now),
            hold,
        };
    }

    pub(super) fn on_probe(&mut self, outcome: ProbeOutcome, now: Instant) {
        let Phase::Running { run, .. } = &mut self.phase else {
            return;
        };
        match outcome {
            ProbeOutcome::Passed => {
                run.grace = Grace::Over;
                self.probe = Streak::Passing;
                self.unobservable = None;
            }
            ProbeOutcome::Failed(_) => {
                self.unobservable = None;
                if run.in_grace(now) {
                    return;
                }
                self.probe = match self.probe {
                    Streak::Failing { count, first } => Streak::Failing {
                        count: count.saturating_add(1),
                        first,
                    },
                    _ => Streak::Failing {
                        count: 1,
                        first: now,
                    },
                };
            }
            ProbeOutcome::Unobservable(why) => self.unobservable = Some(why),
        }
    }

    pub(super) fn on_health_failing_since(&mut self, at: Instant, out: &mut Vec<Effect>) {
        let Some(i) = &mut self.incident else { return };
        // Not before the run that failed began.
        let at = i.run_began.map_or(at, |began| at.max(began));
        if i.trigger != Trigger::Unhealthy || at >= i.first_failure {
            return;
        }
        i.first_failure = at;
        out.push(Effect::IncidentUpdated(i.clone()));
    }

    pub(super) fn on_died(&mut self, exit: Exit, now: Instant, out: &mut Vec<Effect>) {
        if self.swarm().is_some() {
            self.task_ended(exit, now, out);
            return;
        }
        match self.phase {
            Phase::Restarting { .. } | Phase::Stopped | Phase::Gone | Phase::Exited { .. } => {
                return
            }
            // A paused process cannot die by itself: someone killed it.
            Phase::Stopping { .. } | Phase::Paused { .. } => {
                self.stopped_by_user(now, out);
                return;
            }
            _ => {}
        }
        // A death without a user's stop is a crash, whatever its code. Whether Docker's
        // `on-failure` brings it back depends on the code: not named, look.
        let docker_restarts = self.spec.restart_policy.restarts_after(&exit);
        self.crashed(death_trigger(&exit), docker_restarts, now, out);
        if exit.code.is_none()
            && matches!(self.spec.restart_policy, RestartPolicy::OnFailure { .. })
        {
            out.push(Effect::Inspect);
        }
    }

    /// The process ended without a user's stop.
    pub(super) fn crashed(
        &mut self,
        trigger: Trigger,
        docker_restarts: bool,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let hold = self.hold();
        if hold != Hold::Quarantine {
            self.open_incident(trigger, now, now, out);
        }
        let trigger = self.incident.as_ref().map_or(trigger, |i| i.trigger);
        self.reset_signals();
        self.phase = Phase::Exited {
            trigger,
            docker_restarts,
            hold,
        };
    }

    pub(super) fn on_snapshot(&mut self, s: Snapshot, now: Instant, out: &mut Vec<Effect>) {
        if let (Some(_), RunStatus::Restarting { exit } | RunStatus::Exited { exit }) =
            (self.swarm(), s.status)
        {
            self.task_ended(exit, now, out);
            return;
        }
        match s.status {
            RunStatus::Running { started_at, paused } => {
                let started_at = started_at.min(now);
                match self.phase {
                    Phase::Restarting {
                        sent_at: sent,
                        deadline,
                        ..
                    } if started_at + START_CLOCK_SLACK < sent => {
                        // Still the run from before the restart.
                        if deadline.is_some_and(|d| now < d) {
                            return;
                        }
                        self.reset_signals();
                        self.phase = Phase::Running {
                            run: Run::new(started_at, self.spec.start_period, now),
                            hold: Hold::Free,
                        };
                    }
                    // A user's stop still under way.
                    Phase::Stopping { until, .. } if now < until => return,
                    Phase::Stopping { .. } => {
                        // The stopping signal did not end it: running as before.
                        self.reset_signals();
                        self.phase = Phase::Running {
                            run: Run::new(started_at, self.spec.start_period, now),
                            hold: Hold::Free,
                        };
                    }
                    _ => self.on_started(started_at, now, out),
                }
                match (&self.phase, paused) {
                    (Phase::Running { .. }, true) => self.apply(Observation::Paused, now, out),
                    (Phase::Paused { .. }, false) => self.apply(Observation::Unpaused, now, out),
                    _ => {}
                }
                if let Some(h) = s.health {
                    if self.docker != Some(h) {
                        self.apply(Observation::Health(h), now, out);
                    }
                }
            }
            RunStatus::Restarting { exit } => match self.phase {
                Phase::Exited { .. } | Phase::Stopped | Phase::Gone | Phase::Restarting { .. } => {}
                Phase::Stopping { .. } => self.stopped_by_user(now, out),
                _ => self.crashed(death_trigger(&exit), true, now, out),
            },
            RunStatus::Exited { exit } => self.on_found_exited(exit, now, out),
        }
    }

    /// The container is found down after a gap in what the watchdog saw. The rule: down after
    /// a restart of ours is ours to finish; otherwise a death by OOM or by an exit code other
    /// than a stop's is a crash, healed once (unless Docker's policy would restart it, in which
    /// case Docker not doing so means a user stopped it); anything else is a user's stop.
    pub(super) fn on_found_exited(&mut self, exit: Exit, now: Instant, out: &mut Vec<Effect>) {
        // Down is what the open incident is about: a death, or a restart of ours.
        let ours = |i: &Option<IncidentTimes>| {
            i.as_ref().is_some_and(|i| {
                i.last_restart.is_some() || matches!(i.trigger, Trigger::Died | Trigger::Oom)
            })
        };
        match &mut self.phase {
            Phase::Exited {
                docker_restarts, ..
            } if *docker_restarts && !self.spec.restart_policy.restarts_after(&exit) => {
                // Docker is not bringing it back after all (a death whose code was not named
                // looked like one it would): the watchdog's to heal.
                *docker_restarts = false;
            }
            Phase::Stopped | Phase::Gone | Phase::Exited { .. } => {}
            Phase::Stopping { .. } => self.stopped_by_user(now, out),
            Phase::Restarting { deadline, .. } => {
                if deadline.is_some_and(|d| now < d) {
                    return;
                }
                let trigger = self.incident.as_ref().map_or(Trigger::Died, |i| i.trigger);
                self.crashed(trigger, false, now, out);
            }
            Phase::Unknown { .. } if self.incident.is_none() => {
                // Never seen running: not the watchdog's to start.
                self.phase = Phase::Stopped;
            }
            Phase::Unknown { .. } if ours(&self.incident) => {
                let trigger = self.incident.as_ref().map_or(Trigger::Died, |i| i.trigger);
                self.crashed(trigger, false, now, out);
            }
            _ => {
                if is_crash(&exit) && !self.spec.restart_policy.restarts_after(&exit) {
                    self.crashed(death_trigger(&exit), false, now, out);
                } else {
                    self.stopped_by_user(now, out);
                }
            }
        }
    }

    pub(super) fn on_removed(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if let Some(InFlight {
            verb: Verb::Recreate { .. },
            sent_at: Some(_),
            removed,
            ..
        }) = &mut self.order
        {
            // A recreate removes the old container as its last step: its `destroy` may come
            // before the executor's report, which says how the incident ended.
            *removed = true;
            return;
        }
        self.close_incident(Outcome::Abandoned, now, out);
        self.reset_signals();
        self.unstated_kill = None;
        self.phase = Phase::Gone;
        out.push(Effect::Unwatch);
    }

    pub(super) fn stopped_by_user(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.close_incident(Outcome::Abandoned, now, out);
        self.reset_signals();
        self.phase = Phase::Stopped;
    }

    pub(super) fn reset_signals(&mut self) {
        self.stale = None;
        self.docker = None;
        self.probe = Streak::NoSuccessYet;
        self.unobservable = None;
    }
}
