//! The clock port: what time it is, and waiting. Injected so that tests never sleep for real.

use async_trait::async_trait;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

#[async_trait]
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
    async fn sleep(&self, duration: Duration);
}

/// The wall clock and tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

/// A clock that only moves when told to; `sleep` advances it instead of waiting. With
/// [`ManualClock::tick_on_read`], every reading also moves it on (time passing while work is
/// done, for deadline tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
    slept: Mutex<Vec<Duration>>,
    tick: Mutex<Duration>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
            slept: Mutex::new(Vec::new()),
            tick: Mutex::new(Duration::ZERO),
        }
    }
    /// Moves the clock on by `step` after every [`Clock::now`] (zero: never).
    pub fn tick_on_read(&self, step: Duration) {
        *self.tick.lock().expect("clock lock") = step;
    }
    pub fn advance(&self, by: Duration) {
        *self.now.lock().expect("clock lock") += by;
    }
    /// Every duration passed to `sleep`, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept.lock().expect("clock lock").clone()
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let tick = *self.tick.lock().expect("clock lock");
        let mut now = self.now.lock().expect("clock lock");
        let read = *now;
        *now += tick;
        read
    }
    async fn sleep(&self, duration: Duration) {
        self.slept.lock().expect("clock lock").push(duration);
        self.advance(duration);
    }
}

/// Reads an RFC 3339 time (surrounding spaces ignored), in UTC; the error says what was read.
pub fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| format!("{:?} is not an RFC 3339 time ({e})", text.trim()))
}

/// RFC 3339 with second precision, as written in manifests and summaries.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
