//! The process's descriptor limit (RLIMIT_NOFILE). `selfheal watch` raises its soft limit to
//! the hard limit at start, so the admin server, the probes and the Docker client share the
//! most descriptors the system grants without privileges.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The descriptor limit before and after [`raise_nofile_to_hard`]; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit found at start.
    pub soft_before: Option<u64>,
    /// The soft limit in force now.
    pub soft: Option<u64>,
    /// The hard limit (the most the soft limit may be raised to).
    pub hard: Option<u64>,
}

/// Raising the soft limit failed; the process goes on with the limit it had.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot raise the descriptor soft limit from {soft:?} to the hard limit {hard:?}: {source}"
)]
pub struct RaiseError {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    #[source]
    pub source: std::io::Error,
}

/// The current soft and hard descriptor limits.
pub fn nofile() -> (Option<u64>, Option<u64>) {
    let l = getrlimit(Resource::Nofile);
    (l.current, l.maximum)
}

/// Raises the soft descriptor limit to the hard limit. A soft limit already at the hard limit
/// is left alone; so is an unlimited hard limit (not a value a soft limit may take on every
/// system).
pub fn raise_nofile_to_hard() -> Result<NofileLimit, RaiseError> {
    let (soft, hard) = nofile();
    let unchanged = NofileLimit {
        soft_before: soft,
        soft,
        hard,
    };
    if hard.is_none() || soft == hard {
        return Ok(unchanged);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    )
    .map_err(|e| RaiseError {
        soft,
        hard,
        source: e.into(),
    })?;
    Ok(NofileLimit {
        soft: nofile().0,
        ..unchanged
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The soft limit ends at the hard limit, which itself is untouched.
    #[test]
    fn raises_the_soft_limit_to_the_hard_limit() {
        let (_, hard_before) = nofile();
        let raised = raise_nofile_to_hard().expect("raising to the hard limit is allowed");
        assert_eq!(raised.hard, hard_before);
        if hard_before.is_some() {
            assert_eq!(raised.soft, hard_before);
        }
        assert_eq!(nofile(), (raised.soft, raised.hard));
    }
}
