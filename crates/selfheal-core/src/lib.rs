//! The decision core of selfheal: label parsing, backoff, restart budget, Docker's restart
//! policy and the per-container [`Supervisor`]. No I/O and no clock of its own: every function
//! takes `now` as an argument, so the whole policy is tested with paused time and with
//! property tests over random timed sequences.

pub mod backoff;
pub mod budget;
pub mod dependents;
pub mod duration;
pub mod labels;
pub mod notice_gate;
pub mod policy;
pub mod restart_policy;
pub mod supervisor;
pub mod swarm;

pub use backoff::Backoff;
pub use budget::RestartBudget;
pub use duration::{format_duration, parse_duration, DurationError};
pub use labels::{LabelError, ProbeKind, ProbeTarget, WatchDefaults, WatchSpec};
pub use notice_gate::{Notice, NoticeGate, Severity};
pub use policy::{
    Action, Attempt, DockerHealth, Effect, Exit, IncidentTimes, Ladder, Observation, OnQuarantine,
    Order, OrderOutcome, Outcome, ParentRecreated, PolicySpec, ProbeFailure, ProbeOutcome,
    RecoveryResult, RunStatus, Signal, Snapshot, State, Trigger, Unobservable, Verb, VerbKind,
    Verdict, DEFAULT_RECREATE_AFTER, DEFAULT_STOP_TIMEOUT,
};
pub use restart_policy::RestartPolicy;
pub use supervisor::{Carried, Phase, Supervisor, Unadopted};
pub use swarm::{
    EndMode, Followed, Handover, PeerTask, RestartCondition, Shortfall, SlotCarry, SwarmSlot,
    SwarmTask,
};
