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

/// `time` as an RFC 3339 UTC timestamp to the microsecond, trailing zeros of the fraction
/// dropped, as Anthropic's timestamps are: `2023-11-14T22:13:20Z`,
/// `2023-11-14T22:13:20.25Z` (the Unix epoch for earlier times).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let in_day = seconds % 86_400;
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    );
    let micros = since.subsec_micros();
    if micros > 0 {
        text.push('.');
        text.push_str(format!("{micros:06}").trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// The (year, month, day) of the proleptic Gregorian calendar `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(seconds, nanos)
    }

    #[test]
    fn rfc3339_timestamps_are_utc_to_the_microsecond() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_700_000_000, 0)), "2023-11-14T22:13:20Z");
        assert_eq!(
            rfc3339(at(1_700_000_000, 250_000_999)),
            "2023-11-14T22:13:20.25Z"
        );
        assert_eq!(
            rfc3339(at(951_782_400, 1000)),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(rfc3339(at(1_798_761_599, 0)), "2026-12-31T23:59:59Z");
    }
}
