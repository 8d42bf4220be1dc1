//! The decision core of selfheal: label parsing, backoff, restart budget and the per-container
//! recovery policy. No I/O and no clock of its own: every function takes `now` as an argument,
//! so the whole policy is tested with paused time.

pub mod backoff;
pub mod budget;
pub mod duration;
pub mod labels;
pub mod policy;

pub use backoff::Backoff;
pub use budget::RestartBudget;
pub use duration::{format_duration, parse_duration, DurationError};
pub use labels::{LabelError, ProbeKind, ProbeTarget, WatchDefaults, WatchSpec};
pub use policy::{
    DockerHealth, Effect, Input, Outcome, ProbeFailure, RecoveryResult, State, Supervisor, Trigger,
};
