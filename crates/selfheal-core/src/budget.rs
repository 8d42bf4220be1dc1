//! The restart budget: at most `max` restarts of one container within a sliding `window`.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct RestartBudget {
    max: u32,
    window: Duration,
    restarts: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            restarts: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&t) = self.restarts.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
    }

    /// Restarts counted within the window ending at `now`.
    pub fn used(&mut self, now: Instant) -> u32 {
        self.expire(now);
        u32::try_from(self.restarts.len()).unwrap_or(u32::MAX)
    }

    /// True while another restart fits in the window.
    pub fn allows(&mut self, now: Instant) -> bool {
        self.used(now) < self.max
    }

    pub fn record(&mut self, now: Instant) {
        self.expire(now);
        self.restarts.push_back(now);
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slides() {
        let mut b = RestartBudget::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(b.allows(t0));
        b.record(t0);
        b.record(t0 + Duration::from_secs(10));
        assert!(!b.allows(t0 + Duration::from_secs(59)));
        assert!(b.allows(t0 + Duration::from_secs(60)));
        assert_eq!(b.used(t0 + Duration::from_secs(71)), 0);
    }
}
