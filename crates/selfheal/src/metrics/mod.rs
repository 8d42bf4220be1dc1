//! The watchdog's Prometheus metrics. Names are a contract with the dashboards, the alert rules
//! and users' queries (see ARCHITECTURE.md); `app_recovery_events_total` keeps its original name.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use selfheal_core::{
    ProbeFailure, ProbeKind, RecoveryResult, State, Trigger, Unobservable, VerbKind,
};

mod labels;
pub use labels::*;

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
    /// Whether this watchdog runs dry ([`Metrics::dry_run`]): which recovery results its
    /// containers can have, so which series [`Metrics::add_container`] makes.
    dry_run: bool,
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
            dry_run: false,
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

    /// For a watchdog that runs dry (`--dry-run`): its containers' recoveries are `dry_run`,
    /// never `success` or `failed`.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Creates the label combinations a new container can produce, so `rate()` works from its
    /// first event: `dry_run` results in a dry run, `success` and `failed` otherwise.
    pub fn add_container(&self, container: &str, probe: Option<ProbeKind>) {
        let keys = SeriesKeys::of(container, self.dry_run);
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
        let keys = SeriesKeys::of(container, self.dry_run);
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
struct SeriesKeys {
    container: ContainerLabel,
    /// A dry run records `dry_run` where a real one records `success` or `failed`.
    dry_run: bool,
}

impl SeriesKeys {
    fn of(container: &str, dry_run: bool) -> Self {
        Self {
            container: container.into(),
            dry_run,
        }
    }
    /// The combinations a plain container can produce: its restarts and recreates with the
    /// results of this watchdog's mode (`dry_run`, or `success` and `failed`), and `observed`
    /// with verb `none`. A Swarm task's stop or kill series are made when they first happen
    /// (and removed with the container's others).
    fn recovery(&self) -> impl Iterator<Item = RecoveryLabels> + '_ {
        let acted: &'static [RecoveryResult] = if self.dry_run {
            &[RecoveryResult::DryRun]
        } else {
            &[RecoveryResult::Success, RecoveryResult::Failed]
        };
        Trigger::ALL.iter().flat_map(move |t| {
            let observed = std::iter::once((RecoveryResult::Observed, VerbKind::None));
            let acted = acted.iter().flat_map(|r| {
                [VerbKind::Restart, VerbKind::Recreate]
                    .into_iter()
                    .map(move |v| (*r, v))
            });
            acted
                .chain(observed)
                .map(move |(r, v)| self.recovery_labels(*t, r, v))
        })
    }

    /// Every combination, for removing a container's series.
    fn every_recovery(&self) -> impl Iterator<Item = RecoveryLabels> + '_ {
        Trigger::ALL.iter().flat_map(move |t| {
            RecoveryResult::ALL.iter().flat_map(move |r| {
                VerbKind::ALL
                    .iter()
                    .map(move |v| self.recovery_labels(*t, *r, *v))
            })
        })
    }

    fn recovery_labels(&self, t: Trigger, r: RecoveryResult, v: VerbKind) -> RecoveryLabels {
        RecoveryLabels {
            container: self.container.clone(),
            trigger: Label(t),
            result: Label(r),
            verb: Label(v),
        }
    }
    fn trigger(&self) -> impl Iterator<Item = TriggerLabels> + '_ {
        Trigger::ALL.iter().map(move |t| TriggerLabels {
            container: self.container.clone(),
            trigger: Label(*t),
        })
    }
    fn state(&self) -> impl Iterator<Item = StateLabels> + '_ {
        State::ALL.iter().map(move |s| StateLabels {
            container: self.container.clone(),
            state: Label(*s),
        })
    }
    fn unobservable(&self) -> impl Iterator<Item = UnobservableLabels> + '_ {
        Unobservable::ALL.iter().map(move |r| UnobservableLabels {
            container: self.container.clone(),
            reason: Label(*r),
        })
    }
    fn reason(&self) -> impl Iterator<Item = FailureLabels> + '_ {
        ProbeFailure::ALL.iter().map(move |r| FailureLabels {
            container: self.container.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition of a registry with one container added, in a dry run or not.
    fn exposition(dry_run: bool) -> String {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry).dry_run(dry_run);
        m.add_container("web", Some(ProbeKind::Http));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    fn recovery_series(text: &str, result: &str) -> usize {
        text.lines()
            .filter(|l| l.starts_with("app_recovery_events_total{"))
            .filter(|l| l.contains(&format!("result=\"{result}\"")))
            .count()
    }

    #[test]
    fn a_container_gets_the_series_of_the_watchdogs_mode_only() {
        let real = exposition(false);
        let triggers = Trigger::ALL.len();
        // Restart and recreate for each acting result, `none` for observed, per trigger.
        assert_eq!(recovery_series(&real, "success"), 2 * triggers);
        assert_eq!(recovery_series(&real, "failed"), 2 * triggers);
        assert_eq!(recovery_series(&real, "observed"), triggers);
        assert_eq!(recovery_series(&real, "dry_run"), 0);
        let dry = exposition(true);
        assert_eq!(recovery_series(&dry, "dry_run"), 2 * triggers);
        assert_eq!(
            recovery_series(&dry, "success") + recovery_series(&dry, "failed"),
            0
        );
        assert!(real.contains(r#"selfheal_container_state{container="web",state="healthy"} 0"#));
    }

    #[test]
    fn removing_a_container_drops_every_series_it_had() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.add_container("web", Some(ProbeKind::Tcp));
        // One made later, outside the pre-made set (a Swarm task's stop).
        m.recovery_events
            .get_or_create(&RecoveryLabels {
                container: "web".into(),
                trigger: Label(Trigger::Died),
                result: Label(RecoveryResult::Success),
                verb: Label(VerbKind::Stop),
            })
            .inc();
        m.remove_container("web");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(!out.contains("container=\"web\""), "{out}");
    }
}
