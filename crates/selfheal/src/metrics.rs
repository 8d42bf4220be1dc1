//! The watchdog's Prometheus metrics. Names are a contract with the dashboards, the alert rules
//! and users' queries (see ARCHITECTURE.md); `app_recovery_events_total` keeps its original name.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use selfheal_core::{
    ProbeFailure, ProbeKind, RecoveryResult, State, Trigger, Unobservable, VerbKind,
};

/// A bounded label value: one of the healing core's enums, encoded by its contract name
/// (`unhealthy`, `dry_run`, `backing_off`, ...). No string is parsed back into a decision.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Label<T>(pub T);

/// The core's enums that are label values.
pub trait LabelName: Copy {
    fn name(self) -> &'static str;
}

macro_rules! label_names {
    ($($t:ty),+) => {$(
        impl LabelName for $t {
            fn name(self) -> &'static str {
                self.as_str()
            }
        }
    )+};
}
label_names!(
    Trigger,
    RecoveryResult,
    VerbKind,
    State,
    ProbeFailure,
    Unobservable,
    Degraded
);

impl<T: LabelName> EncodeLabelValue for Label<T> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.0.name())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecoveryLabels {
    pub container: String,
    pub trigger: Label<Trigger>,
    pub result: Label<RecoveryResult>,
    /// What the watchdog did: restart, recreate, stop or kill (a Swarm task), or none
    /// (observed only).
    pub verb: Label<VerbKind>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub container: String,
    pub trigger: Label<Trigger>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub container: String,
    pub state: Label<State>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub container: String,
    pub kind: KindLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum KindLabel {
    Http,
    Tcp,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub container: String,
    pub reason: Label<ProbeFailure>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnobservableLabels {
    pub container: String,
    pub reason: Label<Unobservable>,
}

/// Why the watchdog reports itself degraded: its own trouble, never a container's.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Degraded {
    DockerUnreachable,
    /// Incidents in memory that could not be written to the journal yet.
    JournalUnpersisted,
    /// Containers its own probes cannot reach (DNS, no address, no descriptors).
    CannotObserve,
}

impl Degraded {
    pub const ALL: [Degraded; 3] = [
        Degraded::DockerUnreachable,
        Degraded::JournalUnpersisted,
        Degraded::CannotObserve,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Degraded::DockerUnreachable => "docker_unreachable",
            Degraded::JournalUnpersisted => "journal_unpersisted",
            Degraded::CannotObserve => "cannot_observe",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DegradedLabels {
    pub reason: Label<Degraded>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LabelErrorLabels {
    pub container: String,
    pub label: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

fn recovery_buckets() -> impl Iterator<Item = f64> {
    [
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ]
    .into_iter()
}

/// Every metric the watchdog exports.
#[derive(Debug)]
pub struct Metrics {
    pub recovery_events: Family<RecoveryLabels, Counter>,
    pub recovery_duration: Family<TriggerLabels, Histogram>,
    pub container_state: Family<StateLabels, Gauge>,
    pub probe_duration: Family<ProbeLabels, Histogram>,
    pub probe_failures: Family<FailureLabels, Counter>,
    pub probe_unobservable: Family<UnobservableLabels, Counter>,
    pub quarantined: Gauge,
    pub docker_up: Gauge,
    pub watched: Gauge,
    pub restarts_in_flight: Gauge,
    pub incidents_open: Gauge,
    pub label_errors: Family<LabelErrorLabels, Gauge>,
    pub docker_reconnects: Counter,
    pub event_to_action: Histogram,
    pub build_info: Family<VersionLabels, Gauge>,
    pub journal_write_failures: Counter,
    pub incidents_unpersisted: Gauge,
    pub degraded: Family<DegradedLabels, Gauge>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            recovery_events: Family::default(),
            recovery_duration: Family::new_with_constructor(|| Histogram::new(recovery_buckets())),
            container_state: Family::default(),
            probe_duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
            }),
            probe_failures: Family::default(),
            probe_unobservable: Family::default(),
            quarantined: Gauge::default(),
            docker_up: Gauge::default(),
            watched: Gauge::default(),
            restarts_in_flight: Gauge::default(),
            incidents_open: Gauge::default(),
            label_errors: Family::default(),
            docker_reconnects: Counter::default(),
            event_to_action: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            build_info: Family::default(),
            journal_write_failures: Counter::default(),
            incidents_unpersisted: Gauge::default(),
            degraded: Family::default(),
        };
        // Counters are registered without `_total`: the library appends it.
        registry.register(
            "app_recovery_events",
            "Recoveries the watchdog performed or observed, by container, trigger, result and verb",
            m.recovery_events.clone(),
        );
        registry.register_with_unit(
            "selfheal_recovery_duration",
            "Time from the first failure seen to healthy again",
            Unit::Seconds,
            m.recovery_duration.clone(),
        );
        registry.register(
            "selfheal_container_state",
            "1 for the state each watched container is in, 0 for the others",
            m.container_state.clone(),
        );
        registry.register_with_unit(
            "selfheal_probe_duration",
            "Duration of the watchdog's own probes",
            Unit::Seconds,
            m.probe_duration.clone(),
        );
        registry.register(
            "selfheal_probe_failures",
            "Failed probes by container and reason",
            m.probe_failures.clone(),
        );
        registry.register(
            "selfheal_probe_unobservable",
            "Probes that could not look at the container (the watchdog's own trouble: DNS, no address, no descriptors), by container and reason; never counted against the container",
            m.probe_unobservable.clone(),
        );
        registry.register(
            "selfheal_quarantined_containers",
            "Containers past their restart budget, left alone until healthy",
            m.quarantined.clone(),
        );
        registry.register(
            "selfheal_degraded",
            "1 for each reason the watchdog cannot see or record as it should (Docker unreachable, incidents not yet written, containers its probes cannot reach); never counted against a container",
            m.degraded.clone(),
        );
        for reason in Degraded::ALL {
            m.set_degraded(reason, false);
        }
        registry.register(
            "selfheal_docker_up",
            "1 while the Docker engine answers",
            m.docker_up.clone(),
        );
        registry.register(
            "selfheal_watched_containers",
            "Containers the watchdog watches",
            m.watched.clone(),
        );
        registry.register(
            "selfheal_restarts_in_flight",
            "Restarts issued and not yet finished",
            m.restarts_in_flight.clone(),
        );
        registry.register(
            "selfheal_incidents_open",
            "Incidents not yet closed",
            m.incidents_open.clone(),
        );
        registry.register(
            "selfheal_label_errors",
            "1 per container label the watchdog cannot use; that container is left alone",
            m.label_errors.clone(),
        );
        registry.register(
            "selfheal_docker_reconnects",
            "Times the Docker event stream was re-established",
            m.docker_reconnects.clone(),
        );
        registry.register_with_unit(
            "selfheal_reaction",
            "Time from detecting a failure (a Docker health_status unhealthy event, the probe failure that crossed the threshold, a death) to its restart being issued, backoff included",
            Unit::Seconds,
            m.event_to_action.clone(),
        );
        registry.register(
            "selfheal_build_info",
            "Build information",
            m.build_info.clone(),
        );
        registry.register(
            "selfheal_journal_write_failures",
            "Failed writes of the incident journal (appends, reopens, compactions)",
            m.journal_write_failures.clone(),
        );
        registry.register(
            "selfheal_incidents_unpersisted",
            "Incidents whose latest version is only in memory because a journal write failed",
            m.incidents_unpersisted.clone(),
        );
        m.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        m
    }

    /// Creates the label combinations of a new container so `rate()` works from its first event.
    pub fn add_container(&self, container: &str, probe: Option<ProbeKind>) {
        let keys = SeriesKeys::of(container);
        for k in keys.recovery() {
            let _ = self.recovery_events.get_or_create(&k);
        }
        for k in keys.trigger() {
            let _ = self.recovery_duration.get_or_create(&k);
        }
        for k in keys.state() {
            let _ = self.container_state.get_or_create(&k);
        }
        if let Some(kind) = probe {
            let _ = self
                .probe_duration
                .get_or_create(&probe_labels(container, kind));
            for k in keys.reason() {
                let _ = self.probe_failures.get_or_create(&k);
            }
            for k in keys.unobservable() {
                let _ = self.probe_unobservable.get_or_create(&k);
            }
        }
    }

    /// Drops every series of a container that is gone.
    pub fn remove_container(&self, container: &str) {
        let keys = SeriesKeys::of(container);
        for k in keys.every_recovery() {
            self.recovery_events.remove(&k);
        }
        for k in keys.trigger() {
            self.recovery_duration.remove(&k);
        }
        for k in keys.state() {
            self.container_state.remove(&k);
        }
        for kind in [ProbeKind::Http, ProbeKind::Tcp] {
            self.probe_duration.remove(&probe_labels(container, kind));
        }
        for k in keys.reason() {
            self.probe_failures.remove(&k);
        }
        for k in keys.unobservable() {
            self.probe_unobservable.remove(&k);
        }
    }

    pub fn set_degraded(&self, reason: Degraded, on: bool) {
        self.degraded
            .get_or_create(&DegradedLabels {
                reason: Label(reason),
            })
            .set(i64::from(on));
    }

    pub fn set_state(&self, container: &str, current: State) {
        for state in State::ALL {
            self.container_state
                .get_or_create(&StateLabels {
                    container: container.into(),
                    state: Label(*state),
                })
                .set(i64::from(*state == current));
        }
    }

    pub fn recovery(
        &self,
        container: &str,
        trigger: Trigger,
        result: RecoveryResult,
        verb: VerbKind,
    ) {
        self.recovery_events
            .get_or_create(&RecoveryLabels {
                container: container.into(),
                trigger: Label(trigger),
                result: Label(result),
                verb: Label(verb),
            })
            .inc();
    }
}

/// Every per-container label set of the bounded families, for creating or removing them.
struct SeriesKeys<'a> {
    container: &'a str,
}

impl<'a> SeriesKeys<'a> {
    fn of(container: &'a str) -> Self {
        Self { container }
    }
    /// The combinations a plain container can produce: its restarts and recreates with every
    /// result but `observed`, and `observed` with verb `none`. A Swarm task's stop or kill
    /// series are made when they first happen (and removed with the container's others).
    fn recovery(&self) -> impl Iterator<Item = RecoveryLabels> + '_ {
        Trigger::ALL.iter().flat_map(move |t| {
            RecoveryResult::ALL.iter().flat_map(move |r| {
                let verbs: &[VerbKind] = match r {
                    RecoveryResult::Observed => &[VerbKind::None],
                    _ => &[VerbKind::Restart, VerbKind::Recreate],
                };
                verbs.iter().map(move |v| RecoveryLabels {
                    container: self.container.into(),
                    trigger: Label(*t),
                    result: Label(*r),
                    verb: Label(*v),
                })
            })
        })
    }

    /// Every combination, for removing a container's series.
    fn every_recovery(&self) -> impl Iterator<Item = RecoveryLabels> + '_ {
        Trigger::ALL.iter().flat_map(move |t| {
            RecoveryResult::ALL.iter().flat_map(move |r| {
                VerbKind::ALL.iter().map(move |v| RecoveryLabels {
                    container: self.container.into(),
                    trigger: Label(*t),
                    result: Label(*r),
                    verb: Label(*v),
                })
            })
        })
    }
    fn trigger(&self) -> impl Iterator<Item = TriggerLabels> + '_ {
        Trigger::ALL.iter().map(move |t| TriggerLabels {
            container: self.container.into(),
            trigger: Label(*t),
        })
    }
    fn state(&self) -> impl Iterator<Item = StateLabels> + '_ {
        State::ALL.iter().map(move |s| StateLabels {
            container: self.container.into(),
            state: Label(*s),
        })
    }
    fn unobservable(&self) -> impl Iterator<Item = UnobservableLabels> + '_ {
        Unobservable::ALL.iter().map(move |r| UnobservableLabels {
            container: self.container.into(),
            reason: Label(*r),
        })
    }
    fn reason(&self) -> impl Iterator<Item = FailureLabels> + '_ {
        ProbeFailure::ALL.iter().map(move |r| FailureLabels {
            container: self.container.into(),
            reason: Label(*r),
        })
    }
}

pub fn probe_labels(container: &str, kind: ProbeKind) -> ProbeLabels {
    ProbeLabels {
        container: container.into(),
        kind: match kind {
            ProbeKind::Http => KindLabel::Http,
            ProbeKind::Tcp => KindLabel::Tcp,
        },
    }
}
