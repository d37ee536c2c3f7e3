//! Backoff for provider calls: exponential with full jitter, never shorter than `retry-after`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// How long to wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        // Full jitter in [exp/2, exp].
        let jittered = exp / 2 + exp.mul_f64(fastrand::f64() / 2.0);
        match retry_after {
            Some(asked) => asked.max(jittered.min(asked)).min(Duration::from_secs(600)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(1, None) <= Duration::from_millis(500));
        assert!(p.delay(3, None) >= Duration::from_secs(1));
        assert!(p.delay(20, None) <= Duration::from_secs(30));
    }

    #[test]
    fn retry_after_is_honoured() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }
}
