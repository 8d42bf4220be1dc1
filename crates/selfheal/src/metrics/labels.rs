//! The label sets of the watchdog's metrics: bounded values are the healing core's enums,
//! encoded by their contract names; a container's name is shared by all of its series.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use selfheal_core::{ProbeFailure, RecoveryResult, State, Trigger, Unobservable, VerbKind};
use std::sync::Arc;

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

/// A container's name as a label value, one allocation shared by all of its series: a watched
/// container has about fifty, and a `String` each cost about 2 KiB per container (BENCHMARKS.md,
/// "5: footprint").
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ContainerLabel(Arc<str>);

impl From<&str> for ContainerLabel {
    fn from(name: &str) -> Self {
        Self(name.into())
    }
}

impl EncodeLabelValue for ContainerLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecoveryLabels {
    pub container: ContainerLabel,
    pub trigger: Label<Trigger>,
    pub result: Label<RecoveryResult>,
    /// What the watchdog did: restart, recreate, stop or kill (a Swarm task), or none
    /// (observed only).
    pub verb: Label<VerbKind>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub container: ContainerLabel,
    pub trigger: Label<Trigger>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub container: ContainerLabel,
    pub state: Label<State>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub container: ContainerLabel,
    pub kind: KindLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum KindLabel {
    Http,
    Tcp,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub container: ContainerLabel,
    pub reason: Label<ProbeFailure>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnobservableLabels {
    pub container: ContainerLabel,
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
