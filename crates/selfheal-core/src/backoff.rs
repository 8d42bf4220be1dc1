//! Exponential backoff between restarts of one container.

use std::time::Duration;

/// `initial * factor^(n-1)` before the n-th restart after the first, capped at `max`; the first
/// restart of an incident-free container is immediate (an unhealthy service is already down, so
/// waiting only adds downtime).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: u32,
    /// Healthy this long without interruption and the count of recent restarts is forgotten.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            factor: 2,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The minimum gap before the next restart when `previous` restarts happened since the
    /// last reset.
    pub fn gap(&self, previous: u32) -> Duration {
        if previous == 0 {
            return Duration::ZERO;
        }
        let exp = (previous - 1).min(32);
        let mult = u64::from(self.factor.max(1)).saturating_pow(exp);
        let nanos = self.initial.as_nanos().saturating_mul(u128::from(mult));
        let capped = nanos.min(self.max.as_nanos());
        Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let b = Backoff::default();
        let gaps: Vec<u64> = (0..10).map(|n| b.gap(n).as_secs()).collect();
        assert_eq!(gaps, vec![0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.gap(u32::MAX), Duration::from_secs(60));
    }
}
