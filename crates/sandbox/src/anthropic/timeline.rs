//! The life of a message batch as a pure function of the clock.
//!
//! With `step` = s and creation time c, a batch is `in_progress` during [c, c+3s) with its
//! requests processed in proportion to the time elapsed, and `ended` from c+3s. A cancel at
//! time t freezes processing at t, shows `canceling` during [t, t+s) and `ended` from t+s; the
//! requests not processed by t are `canceled`. A batch that would end after its 24-hour window
//! (only with a step over 8 hours) is `ended` at c+24h, and the requests not processed by then
//! are `expired`. With s = 0 a batch has ended at any time after it was created (its create
//! call alone answers `in_progress`, see [`Timeline::as_created`]).
//!
//! Injected faults bend the schedule: a batch that expires by fault injection processes only
//! its first `expire_keep` share of requests and ends at c+3s with the rest `expired`; a
//! batch with `extra_steps` stays `in_progress` that many steps after its last request is
//! processed (Anthropic's counterpart of OpenAI's long `finalizing`).

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// How long a batch may take before its unprocessed requests expire.
pub(crate) const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// A batch is processed over this many steps.
const PROCESSING_STEPS: u32 = 3;

/// A batch's `processing_status`, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    InProgress,
    Canceling,
    Ended,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Canceling => "canceling",
            Status::Ended => "ended",
        }
    }
}

/// What became of the requests that were not processed when a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unprocessed {
    /// None are left: the batch ran to its end.
    None,
    Canceled,
    Expired,
}

/// The schedule of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    pub created: SystemTime,
    pub step: Duration,
    pub cancel_initiated: Option<SystemTime>,
    /// Injected expiry: the share (0 to 1) of the requests processed before it.
    pub expire_keep: Option<f64>,
    /// Injected delay: steps between the last request processed and the end.
    pub extra_steps: u32,
}

/// A batch as seen at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub status: Status,
    pub ended_at: Option<SystemTime>,
    /// Requests that have a result, counted from the start of the processing order.
    pub processed: usize,
    /// Set once the batch has ended: the fate of the requests past `processed`.
    pub unprocessed: Unprocessed,
}

impl Timeline {
    pub(crate) fn expires_at(&self) -> SystemTime {
        self.created + WINDOW
    }

    /// When processing would be over without a cancel.
    fn processing_ends_at(&self) -> SystemTime {
        self.created + self.step * PROCESSING_STEPS
    }

    /// The batch as its create call answers it: `in_progress`, nothing processed.
    pub(crate) fn as_created(&self) -> Snapshot {
        Snapshot {
            status: Status::InProgress,
            ended_at: None,
            processed: 0,
            unprocessed: Unprocessed::None,
        }
    }

    /// The batch of `requests` requests at `now`.
    pub(crate) fn at(&self, now: SystemTime, requests: usize) -> Snapshot {
        // The requests processed before an injected expiry: all of them otherwise.
        let kept = self.expire_keep.map_or(requests, |keep| {
            ((requests as f64 * keep.clamp(0.0, 1.0)).floor() as usize).min(requests)
        });
        let processed_by = |at: SystemTime| -> usize {
            let done_at = self.processing_ends_at();
            if at >= done_at {
                return kept;
            }
            // Here created <= at < created + 3·step, so the step is not zero.
            let elapsed = at.duration_since(self.created).unwrap_or_default();
            let run = done_at.duration_since(self.created).unwrap_or_default();
            ((requests as u128 * elapsed.as_nanos() / run.as_nanos().max(1)) as usize).min(kept)
        };
        let expires_at = self.expires_at();

        if let Some(cancel) = self.cancel_initiated {
            let processed = processed_by(cancel);
            let (end, unprocessed) = if cancel + self.step > expires_at {
                (expires_at, Unprocessed::Expired)
            } else {
                (cancel + self.step, Unprocessed::Canceled)
            };
            return if now >= end {
                Snapshot {
                    status: Status::Ended,
                    ended_at: Some(end),
                    processed,
                    unprocessed: if processed == requests {
                        Unprocessed::None
                    } else {
                        unprocessed
                    },
                }
            } else {
                Snapshot {
                    status: Status::Canceling,
                    ended_at: None,
                    processed,
                    unprocessed: Unprocessed::None,
                }
            };
        }

        let done_at = if self.expire_keep.is_some() {
            self.processing_ends_at()
        } else {
            self.processing_ends_at() + self.step * self.extra_steps
        };
        let (end, unprocessed) = if done_at > expires_at {
            (expires_at, Unprocessed::Expired)
        } else if self.expire_keep.is_some() {
            (done_at, Unprocessed::Expired)
        } else {
            (done_at, Unprocessed::None)
        };
        if now >= end {
            let processed = processed_by(end);
            Snapshot {
                status: Status::Ended,
                ended_at: Some(end),
                processed,
                unprocessed: if processed == requests {
                    Unprocessed::None
                } else {
                    unprocessed
                },
            }
        } else {
            Snapshot {
                status: Status::InProgress,
                ended_at: None,
                processed: processed_by(now),
                unprocessed: Unprocessed::None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + seconds)
    }

    fn timeline(step: u64) -> Timeline {
        Timeline {
            created: at(0),
            step: Duration::from_secs(step),
            cancel_initiated: None,
            expire_keep: None,
            extra_steps: 0,
        }
    }

    #[test]
    fn a_batch_is_in_progress_for_three_steps_then_ended() {
        let t = timeline(10);
        let running = t.at(at(15), 10);
        assert_eq!(running.status, Status::InProgress);
        assert_eq!(running.processed, 5);
        assert_eq!(t.at(at(29), 10).status, Status::InProgress);
        let ended = t.at(at(30), 10);
        assert_eq!(ended.status, Status::Ended);
        assert_eq!(ended.ended_at, Some(at(30)));
        assert_eq!(
            (ended.processed, ended.unprocessed),
            (10, Unprocessed::None)
        );
    }

    #[test]
    fn with_a_zero_step_a_batch_has_ended_at_once_but_is_created_in_progress() {
        let t = timeline(0);
        assert_eq!(t.as_created().status, Status::InProgress);
        let ended = t.at(at(0), 4);
        assert_eq!((ended.status, ended.processed), (Status::Ended, 4));
    }

    #[test]
    fn a_cancel_freezes_processing_and_ends_a_step_later_with_the_rest_canceled() {
        let t = Timeline {
            cancel_initiated: Some(at(6)),
            ..timeline(10)
        };
        let canceling = t.at(at(15), 10);
        assert_eq!(canceling.status, Status::Canceling);
        let ended = t.at(at(16), 10);
        assert_eq!(ended.status, Status::Ended);
        assert_eq!(ended.ended_at, Some(at(16)));
        assert_eq!(
            (ended.processed, ended.unprocessed),
            (2, Unprocessed::Canceled)
        );
    }

    #[test]
    fn an_injected_expiry_ends_on_time_with_the_rest_expired() {
        let t = Timeline {
            expire_keep: Some(0.3),
            ..timeline(10)
        };
        assert_eq!(t.at(at(29), 10).processed, 3);
        let ended = t.at(at(30), 10);
        assert_eq!(ended.status, Status::Ended);
        assert_eq!(
            (ended.processed, ended.unprocessed),
            (3, Unprocessed::Expired)
        );
    }

    #[test]
    fn extra_steps_keep_a_processed_batch_in_progress() {
        let t = Timeline {
            extra_steps: 2,
            ..timeline(10)
        };
        let waiting = t.at(at(49), 10);
        assert_eq!(
            (waiting.status, waiting.processed),
            (Status::InProgress, 10)
        );
        assert_eq!(t.at(at(50), 10).ended_at, Some(at(50)));
    }

    #[test]
    fn a_batch_too_slow_for_its_window_ends_at_24_hours_with_the_rest_expired() {
        let hours = 60 * 60;
        let ended = timeline(16 * hours).at(at(24 * hours), 10);
        assert_eq!(ended.status, Status::Ended);
        assert_eq!(ended.ended_at, Some(at(24 * hours)));
        assert_eq!(
            (ended.processed, ended.unprocessed),
            (5, Unprocessed::Expired)
        );
    }
}
