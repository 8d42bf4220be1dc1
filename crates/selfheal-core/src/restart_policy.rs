//! Docker's restart policy, as the engine applies it (moby `restartmanager`): what it will do
//! when a container's main process exits.

use crate::policy::Exit;

/// `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    /// `on-failure[:max_retries]`; 0 retries means no limit.
    OnFailure {
        max_retries: i64,
    },
}

impl RestartPolicy {
    /// Reads Docker's name (`no`, `always`, `unless-stopped`, `on-failure`) and retry count.
    pub fn from_docker(name: &str, max_retries: i64) -> Self {
        match name {
            "always" => Self::Always,
            "unless-stopped" => Self::UnlessStopped,
            "on-failure" => Self::OnFailure { max_retries },
            _ => Self::No,
        }
    }

    /// Will Docker start the container again after this exit by itself (not after a user's
    /// stop, which the caller tells apart)? `on-failure` restarts only non-zero exits, and
    /// gives up once `RestartCount` reaches its limit. An exit whose code is not known counts
    /// as a failure here (Docker knows the code; the supervisor looks before it acts).
    pub fn restarts_after(self, exit: &Exit) -> bool {
        match self {
            Self::No => false,
            Self::Always | Self::UnlessStopped => true,
            Self::OnFailure { max_retries } => {
                exit.code != Some(0) && (max_retries == 0 || exit.restart_count < max_retries)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i64, restart_count: i64) -> Exit {
        Exit {
            code: Some(code),
            oom_killed: false,
            restart_count,
        }
    }

    #[test]
    fn docker_semantics() {
        let on_failure = RestartPolicy::from_docker("on-failure", 0);
        assert!(on_failure.restarts_after(&exit(1, 50)));
        assert!(!on_failure.restarts_after(&exit(0, 0)));
        let three = RestartPolicy::from_docker("on-failure", 3);
        assert!(three.restarts_after(&exit(1, 2)));
        assert!(!three.restarts_after(&exit(1, 3)), "Docker gave up");
        assert!(!RestartPolicy::from_docker("no", 0).restarts_after(&exit(137, 0)));
        assert!(RestartPolicy::from_docker("unless-stopped", 0).restarts_after(&exit(0, 0)));
        assert!(RestartPolicy::from_docker("always", 0).restarts_after(&exit(0, 9)));
        assert_eq!(RestartPolicy::from_docker("bogus", 0), RestartPolicy::No);
    }
}
