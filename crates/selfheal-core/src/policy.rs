//! The vocabulary of the healing core: what the daemon observes ([`Observation`]), what the core
//! asks it to do or record ([`Effect`]), and the enums that travel end to end (journal records,
//! metric label values, API, webhook). The decisions themselves live in [`crate::supervisor`].

use crate::backoff::Backoff;
use crate::restart_policy::RestartPolicy;
use crate::swarm::{EndMode, RestartCondition, SlotCarry};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// Where a watched container stands, as shown on metrics and the API. Derived from the
    /// supervisor's phase and the container's signals, never stored on its own.
    State {
        /// Running, not yet shown healthy: inside its start period, or waiting for a first
        /// success of a check it has.
        Starting => "starting",
        Healthy => "healthy",
        /// Some failures counted, fewer than the probe's threshold.
        Failing => "failing",
        Unhealthy => "unhealthy",
        Restarting => "restarting",
        BackingOff => "backing_off",
        Quarantined => "quarantined",
        /// Stopped or killed by a user (or never seen running): left alone.
        Stopped => "stopped",
        /// Its process died; Docker's restart policy or the watchdog brings it back.
        Exited => "exited",
        /// Paused by a user: not probed, never restarted.
        Paused => "paused",
    }
);

label_enum!(
    /// What started an incident.
    Trigger {
        Unhealthy => "unhealthy",
        ProbeFailed => "probe_failed",
        Died => "died",
        Oom => "oom",
        /// A parent it depends on started again after it (see [`crate::dependents`]).
        Dependency => "dependency",
    }
);

label_enum!(
    /// The `result` label of `app_recovery_events_total`.
    RecoveryResult {
        Success => "success",
        Failed => "failed",
        Observed => "observed",
        DryRun => "dry_run",
    }
);

label_enum!(
    /// Why a probe says the container failed: evidence against the container.
    ProbeFailure {
        Timeout => "timeout",
        Connect => "connect",
        Status => "status",
        Body => "body",
    }
);

label_enum!(
    /// Why a probe could not look at the container: the watchdog's own trouble, never evidence
    /// against the container ("cannot observe" is not "failed").
    Unobservable {
        /// The probe's host name does not resolve.
        Resolve => "resolve",
        /// The container has no address the watchdog can reach.
        NoAddress => "no_address",
        /// The watchdog is out of file descriptors or memory.
        Resources => "resources",
    }
);

label_enum!(
    /// How an incident ended.
    Outcome {
        Recovered => "recovered",
        Quarantined => "quarantined",
        /// The container was stopped by a user or removed before it recovered.
        Abandoned => "abandoned",
    }
);

label_enum!(
    /// What a fault gets (`selfheal.action`).
    Action {
        /// The ladder: restart; once restarts do not keep the container healthy, recreate it
        /// from its own configuration; quarantine once the budget is spent.
        Restart => "restart",
        /// Always a fresh container from its own configuration.
        Recreate => "recreate",
        /// An incident and a notification, nothing touched (monitor only).
        Notify => "notify",
        /// An incident recorded, no notification, nothing touched.
        None => "none",
    }
);

label_enum!(
    /// What quarantine does to the container (`selfheal.on-quarantine`).
    OnQuarantine {
        /// Left running as it is.
        Leave => "leave",
        /// Stopped, so that a load balancer or an orchestrator fails over.
        Stop => "stop",
    }
);

label_enum!(
    /// What the watchdog did to a container, by name: the `verb` label of
    /// `app_recovery_events_total` and each attempt of an incident.
    VerbKind {
        Restart => "restart",
        Recreate => "recreate",
        Stop => "stop",
        Kill => "kill",
        /// Nothing: recorded only (Docker's restart policy brought it back, Swarm replaces
        /// it, or its action is `notify` or `none`).
        None => "none",
    }
);

label_enum!(
    /// Docker's view of the container's own HEALTHCHECK.
    DockerHealth {
        Starting => "starting",
        Healthy => "healthy",
        Unhealthy => "unhealthy",
    }
);

/// One result of the watchdog's own probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    Passed,
    Failed(ProbeFailure),
    /// The watchdog could not look: counts neither for nor against the container.
    Unobservable(Unobservable),
}

/// How the executor's order ended, in the executor's words; the core judges what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// Docker answered the request: restarted, stopped or killed.
    Done,
    /// Docker's own error on a request it received (including no answer within its deadline).
    Failed(String),
    /// The executor found, before asking Docker anything that changes the container, that the
    /// order cannot be carried out (a recreate whose configuration cannot be copied safely).
    /// Docker was never asked: it spends no budget.
    Refused(String),
    /// Docker could not be reached, so the request never got to it: it spends no budget.
    Unreachable,
    /// `--dry-run`: decided and recorded, not done.
    Skipped,
    /// Docker answered 404: the container no longer exists.
    Gone,
    /// Recreated: the container is replaced by `new_id` (same name, configuration, volumes),
    /// which is watched as a container of its own.
    Replaced { new_id: String },
}

/// The core's answer when the executor's turn for an order comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Carry the order out now: from here on the container's kill, die and stop events are
    /// the order's own.
    Send,
    /// Drop it (a user stopped or paused the container meanwhile, or it went away): nothing
    /// is sent and nothing is spent.
    Drop,
}

/// A signal a `kill` event names (Docker's `signal` attribute: a Linux signal number, or a
/// name in some engines' dialects). Which ones end a process is the core's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Int,
    Quit,
    Kill,
    Usr1,
    Usr2,
    Term,
    /// SIGSTOP: freezes the process, does not end it.
    Stop,
    Cont,
    Other(i32),
    /// A name this code does not know.
    Unrecognized,
}

impl Signal {
    /// A Linux signal number (`"15"`), or a name with or without `SIG` (`"SIGTERM"`, `"term"`).
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if let Ok(n) = s.parse::<i32>() {
            return match n {
                1 => Self::Hup,
                2 => Self::Int,
                3 => Self::Quit,
                9 => Self::Kill,
                10 => Self::Usr1,
                12 => Self::Usr2,
                15 => Self::Term,
                18 => Self::Cont,
                19 => Self::Stop,
                n => Self::Other(n),
            };
        }
        let upper = s.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        match name {
            "HUP" => Self::Hup,
            "INT" => Self::Int,
            "QUIT" => Self::Quit,
            "KILL" => Self::Kill,
            "USR1" => Self::Usr1,
            "USR2" => Self::Usr2,
            "TERM" => Self::Term,
            "STOP" => Self::Stop,
            "CONT" => Self::Cont,
            _ => Self::Unrecognized,
        }
    }
}

/// A network dependent whose parent was recreated: the namespace it joined went with the old
/// parent, so a plain restart would fail on the missing parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentRecreated {
    /// Recreate it from its own configuration in the new parent's namespace.
    Follow { new_parent: String },
    /// It cannot be recreated safely (the reason): reported, left alone.
    CannotFollow { why: String },
}

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// `None`: the `die` event named no exit code (the core decides what that means).
    pub code: Option<i64>,
    pub oom_killed: bool,
    /// Docker's `RestartCount` at the time (for `on-failure:N`).
    pub restart_count: i64,
}

/// What an inspect shows of the container's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running {
        started_at: Instant,
        paused: bool,
    },
    /// Docker's restart policy is bringing it back.
    Restarting {
        exit: Exit,
    },
    Exited {
        exit: Exit,
    },
}

/// Fresh inspect data: when watching begins, after a reconnect, or when the core asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub status: RunStatus,
    pub health: Option<DockerHealth>,
}

/// Something the daemon saw. The daemon feeds each one with the time it was received.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A `start` event; `at` is Docker's `State.StartedAt`.
    Started {
        at: Instant,
    },
    Probe(ProbeOutcome),
    /// A `health_status` event.
    Health(DockerHealth),
    /// When the current run of failing HEALTHCHECK results began (`State.Health.Log`), read
    /// after the core asked with [`Effect::ReadHealthLog`].
    HealthFailingSince(Instant),
    /// A `kill` event, with the signal it names (`None`: it names none).
    Killed {
        signal: Option<Signal>,
    },
    /// A `die` event.
    Died(Exit),
    /// A `stop` event.
    Stopped,
    Paused,
    Unpaused,
    Snapshot(Snapshot),
    /// Destroyed, or no longer opted in.
    Removed,
    /// The executor's turn for the order came (behind the global bound of actions in flight):
    /// `running`, what it saw of the container then (`None`: it did not look, or could not).
    /// The core answers with [`Effect::Turn`].
    Turn {
        running: Option<bool>,
    },
    /// How the order ended.
    OrderEnded(OrderOutcome),
    /// A wake-up the core asked for through [`crate::Supervisor::wake_at`].
    Tick,
    /// A parent this container depends on started again at `since` and is not ready yet: a run
    /// of this container that began before waits on it.
    ParentWaiting {
        since: Instant,
    },
    /// A parent this container depends on started again at `at` and is running (and healthy)
    /// now: a run of this container that began before `at` is attached to the parent's old
    /// start (for a network dependent: its old namespace) and is restarted.
    ParentStarted {
        at: Instant,
        /// Set for a network dependent whose parent is a new container.
        recreated: Option<ParentRecreated>,
    },
}

/// An incident as the core sees it: every time in it is the core's.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentTimes {
    pub trigger: Trigger,
    /// The first evidence: the first failed probe of the streak, the first failing check in
    /// Docker's health log, or the death.
    pub first_failure: Instant,
    /// When the core decided the container had failed.
    pub detected: Instant,
    /// When the first restart of this incident was sent.
    pub action_begun: Option<Instant>,
    /// When the latest restart was sent.
    pub last_restart: Option<Instant>,
    /// Restarts attempted by the watchdog, plus restarts by Docker's policy observed.
    pub attempts: u32,
    /// When the run that failed began, if known: no evidence about it is older.
    pub run_began: Option<Instant>,
    /// The watchdog's orders Docker received for this incident, in order (its restarts,
    /// recreates and Swarm ends; not Docker's own policy restarts).
    pub steps: Vec<Attempt>,
}

/// One order of the watchdog's that Docker received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub verb: VerbKind,
    /// When it was sent.
    pub at: Instant,
}

/// What the executor is to do to the container: decided by the core, carried out as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `docker restart` (plain Docker).
    Restart,
    /// A fresh container from the old one's configuration, same name and volumes;
    /// `network_parent`: join that container's network namespace (the old parent is gone).
    Recreate { network_parent: Option<String> },
    /// A Swarm task, never restarted in place: end it this way so that Swarm replaces it.
    End(EndMode),
    /// `docker stop`: quarantine with `selfheal.on-quarantine=stop`, so that a balancer or an
    /// orchestrator fails over. Spends no budget.
    Stop,
}

impl Verb {
    pub fn kind(&self) -> VerbKind {
        match self {
            Verb::Restart => VerbKind::Restart,
            Verb::Recreate { .. } => VerbKind::Recreate,
            Verb::End(EndMode::Stop) | Verb::Stop => VerbKind::Stop,
            Verb::End(EndMode::Kill) => VerbKind::Kill,
        }
    }
}

/// An order the executor is to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub verb: Verb,
    pub trigger: Trigger,
    pub attempt: u32,
    /// Seconds Docker waits after SIGTERM before SIGKILL.
    pub stop_timeout: u32,
    /// When the failure was detected; the daemon measures its reaction from here.
    pub detected: Instant,
}

/// Something the daemon must do or record.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    StateChanged {
        from: State,
        to: State,
    },
    IncidentOpened(IncidentTimes),
    /// The open incident changed (an attempt, an earlier first failure).
    IncidentUpdated(IncidentTimes),
    IncidentClosed {
        incident: IncidentTimes,
        outcome: Outcome,
        /// Set when the outcome is [`Outcome::Recovered`].
        time_to_recover: Option<Duration>,
    },
    /// Carry out this order. Only the executor acts on this; it reports
    /// [`Observation::Turn`] when its turn comes, then [`Observation::OrderEnded`].
    Order(Order),
    /// The answer to [`Observation::Turn`].
    Turn(Verdict),
    /// The order could not heal the container (Docker's error, or a refusal): the reason, for
    /// the incident's record.
    OrderFailed {
        why: String,
    },
    /// The container was healthy for `backoff.reset_after` without a break: the restarts
    /// before no longer lengthen the backoff.
    BackoffReset,
    /// This container is done (removed, or replaced by a recreate): stop watching it.
    Unwatch,
    /// One increment of `app_recovery_events_total`.
    Recovery {
        trigger: Trigger,
        result: RecoveryResult,
        verb: VerbKind,
    },
    Quarantined {
        restarts_in_window: u32,
    },
    Released,
    /// Inspect the container and feed back an [`Observation::Snapshot`].
    Inspect,
    /// Read `State.Health.Log` and feed back [`Observation::HealthFailingSince`]. Never on the
    /// restart's path: it comes after the restart order.
    ReadHealthLog,
    /// A Swarm task's container ended: what its slot's next task takes over. This supervisor
    /// is done; the incident (if any) is closed by the replacement's.
    HandOver(Box<SlotCarry>),
    /// Recreated: the container `new_id` replaces this one and takes over what it carries
    /// ([`crate::Supervisor::take_over`]): the open incident, closed once the new container
    /// is healthy, and the budget and backoff. This supervisor is done.
    Recreated {
        new_id: String,
        carry: Box<SlotCarry>,
    },
}

/// The policy's settings for one container.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// Consecutive probe failures that make the container unhealthy.
    pub failures: u32,
    pub start_period: Duration,
    /// The `selfheal.stop-timeout` label.
    pub stop_timeout: Option<u32>,
    /// The container's own `StopTimeout`.
    pub container_stop_timeout: Option<u32>,
    pub restart_max: u32,
    pub restart_window: Duration,
    pub backoff: Backoff,
    pub restart_policy: RestartPolicy,
    /// The container runs the watchdog's own probe.
    pub has_probe: bool,
    /// The container has a Docker HEALTHCHECK.
    pub has_docker_health: bool,
    /// `Some`: the container is a Swarm task, and this is its service's restart condition.
    pub swarm: Option<RestartCondition>,
    pub ladder: Ladder,
}

/// What a plain container's faults get, step by step (the `selfheal.action`,
/// `selfheal.recreate-after` and `selfheal.on-quarantine` labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ladder {
    pub action: Action,
    /// With `action` restart: once this many restarts (counted since the backoff was last
    /// forgotten, i.e. since the container was last healthy for the stable period) have not
    /// kept it healthy, a fault gets a recreate instead. `None`: never.
    pub recreate_after: Option<u32>,
    pub on_quarantine: OnQuarantine,
}

/// `selfheal.recreate-after`'s default: restart twice, then recreate.
pub const DEFAULT_RECREATE_AFTER: u32 = 2;

impl Default for Ladder {
    fn default() -> Self {
        Self {
            action: Action::Restart,
            recreate_after: Some(DEFAULT_RECREATE_AFTER),
            on_quarantine: OnQuarantine::Leave,
        }
    }
}

impl Ladder {
    /// Restarts only, never a recreate: the ladder before its second step existed.
    pub const RESTART_ONLY: Ladder = Ladder {
        action: Action::Restart,
        recreate_after: None,
        on_quarantine: OnQuarantine::Leave,
    };
}

/// Docker's default stop timeout, used when neither the label nor the container sets one.
pub const DEFAULT_STOP_TIMEOUT: u32 = 10;

impl PolicySpec {
    /// The stop timeout a restart uses: the label, else the container's own, else Docker's 10 s.
    pub fn effective_stop_timeout(&self) -> u32 {
        self.stop_timeout
            .or(self.container_stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT)
    }
}
