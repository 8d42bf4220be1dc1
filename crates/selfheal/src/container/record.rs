//! Incident recording: the core's incident times become journal records, metrics and
//! notifications. Nothing here decides anything.

use crate::docker::ContainerInfo;
use crate::evidence::Captured;
use crate::evidence::Evidence;
use crate::incident::{notice, Closing};
use crate::journal::{Incident, IncidentOutcome};
use crate::notify::Notifier;
use crate::shared::Shared;
use selfheal_core::{IncidentTimes, Ladder, Notice, NoticeGate, Outcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The journal record of a container's open incident, and of its last closed one.
#[derive(Debug)]
pub struct IncidentRecorder {
    shared: Arc<Shared>,
    notifier: Notifier,
    /// Which incident events are told: one message per crash loop, not one per restart.
    gate: NoticeGate,
    /// `selfheal.notify=false`, or action `none`: nothing is sent (the gate still follows the
    /// story).
    muted: bool,
    /// What the container's faults get, as its messages say.
    ladder: Ladder,
    pub open: Option<Incident>,
    pub last: Option<Incident>,
}

impl IncidentRecorder {
    /// `quiet`: the backoff reset period, after which a healthy container's loop is over.
    pub fn new(
        shared: Arc<Shared>,
        notifier: Notifier,
        resumed: Option<Incident>,
        quiet: Duration,
        (muted, ladder): (bool, Ladder),
    ) -> Self {
        Self {
            shared,
            notifier,
            gate: NoticeGate::new(quiet),
            muted,
            ladder,
            open: resumed,
            last: None,
        }
    }

    /// The open incident a previous run left (and announced) began at `first_failure`.
    pub fn resume_story(&mut self, first_failure: Instant) {
        self.gate.resumed(first_failure);
    }

    /// The open incident of the container this one replaced by a recreate (`times`: the
    /// core's copy): it goes on here, and its story was told from there.
    pub fn adopt(&mut self, mut record: Incident, times: Option<&IncidentTimes>) {
        if let Some(t) = times {
            self.gate.resumed(t.first_failure);
            self.fill(&mut record, t);
        }
        self.shared.journal.record(record.clone());
        self.open = Some(record);
    }

    /// When [`IncidentRecorder::tick`] has a message to send.
    pub fn wake_at(&self) -> Option<Instant> {
        self.gate.wake_at()
    }

    /// Time passed: a loop that stayed healthy long enough is told as recovered.
    pub fn tick(&mut self, now: Instant) {
        let out = self.gate.tick(now);
        self.tell(out, None);
    }

    /// A quarantined container is healthy again by itself.
    pub fn released(&mut self, now: Instant) {
        let out = self.gate.healthy(now);
        self.tell(out, None);
    }

    /// Sends what the gate let through. A recovery names the loop's last closed incident;
    /// anything else names `current`.
    fn tell(&self, notices: Vec<Notice>, current: Option<&Incident>) {
        if self.muted {
            return;
        }
        for n in notices {
            let about = match n {
                Notice::Recovered { .. } => self.last.as_ref().or(current),
                _ => current.or(self.open.as_ref()).or(self.last.as_ref()),
            };
            if let Some(i) = about {
                self.notifier.send(notice::notification(n, i, &self.ladder));
            }
        }
    }

    pub fn current(&self) -> Option<&Incident> {
        self.open.as_ref().or(self.last.as_ref())
    }

    /// Opens the incident with the evidence known at detection (probe failures, an exit).
    /// `parent`: for trigger `dependency`, the parent and its incident.
    pub fn opened(
        &mut self,
        t: &IncidentTimes,
        info: &ContainerInfo,
        evidence: Option<Evidence>,
        parent: Option<(String, Option<u64>)>,
    ) {
        let shared = &self.shared;
        let mut incident = Incident {
            id: shared.journal.next_id(),
            container: info.name.clone(),
            container_id: info.id.clone(),
            compose_project: info.compose_project(),
            compose_service: info.compose_service(),
            trigger: t.trigger,
            first_failure: shared.clock.wall(t.first_failure).into(),
            detected: shared.clock.wall(t.detected).into(),
            action_begun: None,
            last_restart: None,
            healthy_again: None,
            time_to_detect_seconds: None,
            time_to_recover_seconds: None,
            attempts: 0,
            outcome: IncidentOutcome::Open,
            dry_run: shared.dry_run,
            unpersisted: false,
            evidence: evidence.filter(|e| !e.is_empty()).map(Arc::new),
            parent: None,
            parent_incident: None,
            steps: Vec::new(),
            failure: None,
        };
        if let Some((name, id)) = parent {
            incident.parent = Some(name);
            incident.parent_incident = id;
        }
        self.fill(&mut incident, t);
        tracing::warn!(container = %info.name, trigger = %t.trigger, incident = incident.id,
            parent = ?incident.parent, parent_incident = ?incident.parent_incident, "incident opened");
        let out = self.gate.opened(t.first_failure, t.detected);
        self.tell(out, Some(&incident));
        self.shared.journal.record(incident.clone());
        self.open = Some(incident);
    }

    pub fn updated(&mut self, t: &IncidentTimes) {
        if let Some(mut i) = self.open.take() {
            self.fill(&mut i, t);
            self.shared.journal.record(i.clone());
            self.open = Some(i);
        }
    }

    /// The core closed the open incident (see [`crate::incident::close`]).
    pub fn closed(
        &mut self,
        t: &IncidentTimes,
        outcome: Outcome,
        time_to_recover: Option<Duration>,
        container: &str,
        now: Instant,
    ) {
        let Some(mut i) = self.open.take() else {
            return;
        };
        self.fill(&mut i, t);
        let closing = Closing::of(outcome, time_to_recover, now);
        crate::incident::close(&self.shared, &mut i, &closing, container);
        let out = match outcome {
            Outcome::Recovered => self.gate.healthy(now),
            Outcome::Quarantined => self.gate.quarantined(now),
            Outcome::Abandoned => self.gate.abandoned(now),
        };
        // Before `last` moves on: a recovery due from before names the incident it closed.
        self.tell(out, Some(&i));
        self.last = Some(i);
    }

    /// Adds what was read back from Docker to incident `id` (open, or already closed) and
    /// records the new copy.
    pub fn attach(&mut self, id: u64, captured: Captured) {
        let held = [self.open.as_mut(), self.last.as_mut()]
            .into_iter()
            .flatten()
            .find(|i| i.id == id);
        let mut from_journal = None;
        let Some(i) = held.or_else(|| from_journal.insert(self.shared.journal.get(id)).as_mut())
        else {
            return;
        };
        Arc::make_mut(i.evidence.get_or_insert_default()).merge(captured);
        self.shared.journal.record(i.clone());
    }

    /// Marks the exit in the open incident's evidence as OOM-killed (an `oom` event that came
    /// after the `die` that opened it).
    pub fn oom_after_death(&mut self) {
        let Some(i) = self.open.as_mut() else {
            return;
        };
        let Some(evidence) = i.evidence.as_mut() else {
            return;
        };
        if evidence.exit.as_ref().is_none_or(|e| e.oom_killed) {
            return;
        }
        if let Some(exit) = &mut Arc::make_mut(evidence).exit {
            exit.oom_killed = true;
        }
        self.shared.journal.record(i.clone());
    }

    /// `reason`: Docker's or the executor's word, kept in the record.
    pub fn restart_failed(&mut self, now: Instant, reason: Option<String>) {
        if let Some(i) = &mut self.open {
            if reason.is_some() {
                i.failure = reason;
                self.shared.journal.record(i.clone());
            }
        }
        let out = self.gate.restart_failed(now);
        self.tell(out, None);
    }

    fn fill(&self, i: &mut Incident, t: &IncidentTimes) {
        let clock = &self.shared.clock;
        i.trigger = t.trigger;
        i.first_failure = clock.wall(t.first_failure).into();
        i.detected = clock.wall(t.detected).into();
        i.action_begun = t.action_begun.map(|a| clock.wall(a).into());
        i.last_restart = t.last_restart.map(|a| clock.wall(a).into());
        i.time_to_detect_seconds = Some(
            t.detected
                .saturating_duration_since(t.first_failure)
                .as_secs_f64(),
        );
        i.attempts = t.attempts;
        i.steps = t
            .steps
            .iter()
            .map(|a| crate::journal::Step {
                verb: a.verb,
                at: clock.wall(a.at).into(),
            })
            .collect();
    }
}
