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

    /// The send times counted, oldest first (as of the last expiry).
    pub fn sent(&self) -> impl Iterator<Item = Instant> + '_ {
        self.restarts.iter().copied()
    }

    /// Counts restarts another holder of the same budget spent (a Swarm slot whose task ran on
    /// another node), in time order with this one's; what is already out of the window at
    /// `now` is dropped.
    pub fn merge(&mut self, sent: impl IntoIterator<Item = Instant>, now: Instant) {
        let mut all: Vec<Instant> = self.restarts.drain(..).chain(sent).collect();
        all.sort();
        self.restarts = all.into();
        self.expire(now);
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

    #[tokio::test(start_paused = true)]
    async fn merges_another_holders_restarts_in_time_order() {
        let t0 = Instant::now();
        let mut b = RestartBudget::new(3, Duration::from_secs(60));
        b.record(t0 + Duration::from_secs(30));
        let now = t0 + Duration::from_secs(70);
        b.merge([t0, t0 + Duration::from_secs(20)], now);
        assert_eq!(
            b.sent().collect::<Vec<_>>(),
            vec![t0 + Duration::from_secs(20), t0 + Duration::from_secs(30)]
        );
        assert!(b.allows(now));
        b.merge([t0 + Duration::from_secs(65)], now);
        assert!(!b.allows(now), "three within the window");
    }
}
