//! Time, health and the state shown: the start period and backoff running out, recovery,
//! the incident's open and close, the backoff reset, and the state derived from the phase.

use super::*;

impl Supervisor {
    pub(super) fn on_tick(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let expire = |hold: &mut Hold| {
            if matches!(hold, Hold::Backoff { until } if now >= *until) {
                *hold = Hold::Free;
            }
        };
        match &mut self.phase {
            Phase::Running { run, hold } => {
                if matches!(run.grace, Grace::Open { until } if now >= until) {
                    run.grace = Grace::Over;
                }
                expire(hold);
            }
            Phase::Paused { hold, .. } | Phase::Exited { hold, .. } => expire(hold),
            Phase::Restarting { deadline, .. } => {
                if deadline.is_some_and(|d| now >= d) {
                    *deadline = None;
                    out.push(Effect::Inspect);
                }
            }
            Phase::Stopping { until, .. } => {
                if now >= *until {
                    *until = now + USER_STOP_WITHIN;
                    out.push(Effect::Inspect);
                }
            }
            Phase::Unknown { recheck_at, .. } => {
                if recheck_at.is_some_and(|t| now >= t) {
                    *recheck_at = None;
                    out.push(Effect::Inspect);
                }
            }
            Phase::Ordered { .. } | Phase::Stopped | Phase::Gone => {}
        }
    }

    /// After every observation: close what recovered, decide, and report the state.
    pub(super) fn settle(&mut self, now: Instant, out: &mut Vec<Effect>) {
        self.check_recovered(now, out);
        self.publish_state(now, out);
        self.decide(now, out);
        self.publish_state(now, out);
    }

    /// Healthy for `backoff.reset_after` without a break: the restarts before no longer count
    /// for backoff (kube-runtime's reset timer).
    pub(super) fn forget_backoff(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.backoff_reset_at().is_some_and(|at| now >= at) {
            self.backoff.recent = 0;
            out.push(Effect::BackoffReset);
        }
    }

    pub(super) fn healthy(&self) -> bool {
        if !matches!(self.phase, Phase::Running { .. }) {
            return false;
        }
        let docker_ok = !self.spec.has_docker_health || self.docker == Some(DockerHealth::Healthy);
        let probe_ok = !self.spec.has_probe || self.probe == Streak::Passing;
        docker_ok
            && probe_ok
            && self.docker != Some(DockerHealth::Unhealthy)
            && self.stale.is_none()
    }

    pub(super) fn check_recovered(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if !self.healthy() {
            return;
        }
        if let Phase::Running { hold, .. } = &mut self.phase {
            if *hold == Hold::Quarantine {
                out.push(Effect::Released);
            }
            *hold = Hold::Free;
        }
        self.close_incident(Outcome::Recovered, now, out);
    }

    /// What the container's checks say, while it runs.
    pub(super) fn failing_trigger(&self) -> Option<Trigger> {
        if self.docker == Some(DockerHealth::Unhealthy) {
            return Some(Trigger::Unhealthy);
        }
        if self.stale.is_some() {
            return Some(Trigger::Dependency);
        }
        match self.probe {
            Streak::Failing { count, .. } if self.spec.has_probe && count >= self.spec.failures => {
                Some(Trigger::ProbeFailed)
            }
            _ => None,
        }
    }

    /// The earliest evidence of the failure now established.
    pub(super) fn first_evidence(&self, now: Instant) -> Instant {
        if let Some(at) = self
            .stale
            .as_ref()
            .map(|s| s.since)
            .filter(|_| self.docker != Some(DockerHealth::Unhealthy))
        {
            // Left behind when the parent started.
            return at.min(now);
        }
        match self.probe {
            Streak::Failing { first, .. } => first.min(now),
            _ => now,
        }
    }

    pub(super) fn open_incident(
        &mut self,
        trigger: Trigger,
        first_failure: Instant,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        if self.incident.is_some() {
            return;
        }
        let run_began = match &self.phase {
            Phase::Running { run, .. } | Phase::Paused { run, .. } => Some(run.since),
            _ => None,
        };
        let i = IncidentTimes {
            trigger,
            first_failure,
            detected: now,
            action_begun: None,
            last_restart: None,
            attempts: 0,
            run_began,
            steps: Vec::new(),
        };
        out.push(Effect::IncidentOpened(i.clone()));
        self.incident = Some(i);
    }

    pub(super) fn close_incident(&mut self, outcome: Outcome, now: Instant, out: &mut Vec<Effect>) {
        if let Some(incident) = self.incident.take() {
            let time_to_recover = (outcome == Outcome::Recovered)
                .then(|| now.saturating_duration_since(incident.first_failure));
            out.push(Effect::IncidentClosed {
                incident,
                outcome,
                time_to_recover,
            });
        }
    }

    pub(super) fn derive_state(&self) -> State {
        let held = |hold: &Hold, otherwise: State| match hold {
            Hold::Quarantine => State::Quarantined,
            Hold::Backoff { .. } => State::BackingOff,
            Hold::Free => otherwise,
        };
        let quarantine_stop = matches!(&self.order, Some(o) if o.verb == Verb::Stop);
        match &self.phase {
            // Quarantine with `on-quarantine=stop`: being stopped, stopped, or looked at again.
            Phase::Ordered { .. } | Phase::Restarting { .. } if quarantine_stop => {
                State::Quarantined
            }
            Phase::Stopped | Phase::Unknown { .. } if self.carried_hold == Hold::Quarantine => {
                State::Quarantined
            }
            Phase::Unknown { .. } if self.incident.is_some() => State::Unhealthy,
            Phase::Unknown { .. } => State::Starting,
            Phase::Running { hold, .. } => held(hold, self.running_state()),
            Phase::Paused { .. } => State::Paused,
            Phase::Exited { hold, .. } => held(hold, State::Exited),
            Phase::Ordered { .. } | Phase::Restarting { .. } => State::Restarting,
            Phase::Stopping { .. } | Phase::Stopped | Phase::Gone => State::Stopped,
        }
    }

    pub(super) fn running_state(&self) -> State {
        if self.failing_trigger().is_some() {
            State::Unhealthy
        } else if matches!(self.probe, Streak::Failing { .. }) {
            State::Failing
        } else if self.healthy() {
            State::Healthy
        } else {
            State::Starting
        }
    }

    pub(super) fn publish_state(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let to = self.derive_state();
        if to == self.state {
            return;
        }
        self.backoff.healthy_since = (to == State::Healthy).then_some(now);
        out.push(Effect::StateChanged {
            from: self.state,
            to,
        });
        self.state = to;
    }
}
