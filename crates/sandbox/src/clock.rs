//! Where the sandbox reads "now" from.
//!
//! Batch states are computed from the clock on every request (nothing runs on a timer), so a
//! clock that is moved forward moves every batch along at once: tests drive the state machine
//! with [`ManualClock`] (feature `testing`) and never sleep.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Unix seconds of `time` (0 before 1970), as the providers' timestamps are.
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(feature = "testing")]
pub use manual::ManualClock;

#[cfg(feature = "testing")]
mod manual {
    use std::sync::{Mutex, PoisonError};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::Clock;

    /// A clock that stands still until it is told to move.
    #[derive(Debug)]
    pub struct ManualClock {
        now: Mutex<SystemTime>,
    }

    impl ManualClock {
        /// A clock showing `start`.
        pub fn new(start: SystemTime) -> Self {
            ManualClock {
                now: Mutex::new(start),
            }
        }

        /// A clock showing `seconds` after the Unix epoch.
        pub fn at_unix(seconds: u64) -> Self {
            Self::new(UNIX_EPOCH + Duration::from_secs(seconds))
        }

        /// Moves the clock forward by `by`.
        pub fn advance(&self, by: Duration) {
            let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
            *now += by;
        }

        /// Sets the clock to `to` (which may be earlier than now).
        pub fn set(&self, to: SystemTime) {
            *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.now.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }
}
