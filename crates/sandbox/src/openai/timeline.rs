//! The life of a batch as a pure function of the clock.
//!
//! With `step` = s and creation time c: `validating` during [c, c+s); at c+s the input's
//! validation is revealed: `failed` (with `failed_at` = c+s), or `in_progress` during
//! [c+s, c+2s) with requests processed in proportion to the time elapsed, `finalizing` during
//! [c+2s, c+3s), and `completed` from c+3s. A cancel at time t freezes processing at t, shows
//! `cancelling` during [t, t+s) and `cancelled` from t+s. A batch that would finish after its
//! 24-hour window (only with a step over 8 hours) is `expired` at c+24h, with the requests
//! processed by then. With s = 0 every interval is empty: a batch is `completed` (or `failed`)
//! at any time after it was created.
//!
//! Injected faults bend the schedule: a batch that expires by fault injection processes only
//! its first `expire_keep` share of requests and is `expired` at c+2s, when it would have
//! started finalizing (not at its 24-hour `expires_at`, so that it can be seen without
//! waiting a day); a long-finalizing batch stays `finalizing` for `extra_finalizing` more
//! steps.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The completion window of every batch.
pub(crate) const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A batch's status, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Validating => "validating",
            Status::Failed => "failed",
            Status::InProgress => "in_progress",
            Status::Finalizing => "finalizing",
            Status::Completed => "completed",
            Status::Expired => "expired",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
        }
    }

    /// Whether the batch will not change any more.
    pub(crate) fn is_final(self) -> bool {
        matches!(
            self,
            Status::Failed | Status::Completed | Status::Expired | Status::Cancelled
        )
    }
}

/// What validation of the input file found, once it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validation {
    /// Not known yet (the work is still running, or the batch is not that far).
    Pending,
    Failed,
    /// The input is valid and holds this many requests.
    Passed {
        requests: usize,
    },
}

/// The schedule of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    pub created: SystemTime,
    pub step: Duration,
    pub cancelled_at: Option<SystemTime>,
    /// Injected expiry: the share (0 to 1) of the requests processed before it.
    pub expire_keep: Option<f64>,
    /// Injected long finalizing: steps spent finalizing beyond the first.
    pub extra_finalizing: u32,
}

/// A batch as seen at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub status: Status,
    pub in_progress_at: Option<SystemTime>,
    pub finalizing_at: Option<SystemTime>,
    pub completed_at: Option<SystemTime>,
    pub failed_at: Option<SystemTime>,
    pub expired_at: Option<SystemTime>,
    pub cancelling_at: Option<SystemTime>,
    pub cancelled_at: Option<SystemTime>,
    /// Requests in the batch (0 until validation has passed).
    pub total: usize,
    /// Requests that have a result, counted from the start of the processing order.
    pub processed: usize,
}

impl Snapshot {
    /// Requests that never got a result because the batch was cancelled or expired first.
    pub(crate) fn unprocessed(&self) -> usize {
        match self.status {
            Status::Cancelled | Status::Expired => self.total - self.processed,
            _ => 0,
        }
    }

    /// When the batch reached its final status, if it has.
    pub(crate) fn ended_at(&self) -> Option<SystemTime> {
        self.completed_at
            .or(self.failed_at)
            .or(self.expired_at)
            .or(self.cancelled_at)
    }
}

impl Timeline {
    /// When validation ends and its outcome is revealed.
    pub(crate) fn validated_at(&self) -> SystemTime {
        self.created + self.step
    }

    pub(crate) fn expires_at(&self) -> SystemTime {
        self.created + WINDOW
    }

    /// Whether the state at `now` depends on the outcome of validation.
    pub(crate) fn needs_validation(&self, now: SystemTime) -> bool {
        now >= self.validated_at()
    }

    /// The batch at `now`. With `Validation::Pending` where the outcome is needed, the batch
    /// is shown as still `validating`.
    pub(crate) fn at(&self, now: SystemTime, validation: Validation) -> Snapshot {
        let step = self.step;
        let validated_at = self.validated_at();
        let mut snap = Snapshot {
            status: Status::Validating,
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            total: 0,
            processed: 0,
        };

        if let Some(cancel) = self.cancelled_at.filter(|&at| at < validated_at) {
            snap.cancelling_at = Some(cancel);
            snap.status = Status::Cancelling;
            if now >= cancel + step {
                snap.status = Status::Cancelled;
                snap.cancelled_at = Some(cancel + step);
            }
            return snap;
        }
        if now < validated_at {
            return snap;
        }
        let requests = match validation {
            Validation::Pending => return snap,
            Validation::Failed => {
                snap.status = Status::Failed;
                snap.failed_at = Some(validated_at);
                return snap;
            }
            Validation::Passed { requests } => requests,
        };

        snap.total = requests;
        snap.in_progress_at = Some(validated_at);
        let finalizing_at = validated_at + step;
        let completed_at = finalizing_at + step * (1 + self.extra_finalizing);
        // The requests processed before an injected expiry: all of them otherwise.
        let kept = self.expire_keep.map_or(requests, |keep| {
            ((requests as f64 * keep.clamp(0.0, 1.0)).floor() as usize).min(requests)
        });
        let processed_by = |at: SystemTime| -> usize {
            if at >= finalizing_at {
                return kept;
            }
            // Here validated_at <= at < validated_at + step, so step > 0.
            let elapsed = at.duration_since(validated_at).unwrap_or_default();
            ((requests as u128 * elapsed.as_nanos() / step.as_nanos()) as usize).min(kept)
        };

        if let Some(cancel) = self.cancelled_at {
            snap.processed = processed_by(cancel);
            if cancel >= finalizing_at {
                snap.finalizing_at = Some(finalizing_at);
            }
            snap.cancelling_at = Some(cancel);
            snap.status = Status::Cancelling;
            if now >= cancel + step {
                snap.status = Status::Cancelled;
                snap.cancelled_at = Some(cancel + step);
            }
            return snap;
        }
        let expires_at = self.expires_at();
        if self.expire_keep.is_some() && finalizing_at <= expires_at && now >= finalizing_at {
            snap.processed = kept;
            snap.status = Status::Expired;
            snap.expired_at = Some(finalizing_at);
            return snap;
        }
        if expires_at < completed_at && now >= expires_at {
            snap.processed = processed_by(expires_at);
            if expires_at >= finalizing_at {
                snap.finalizing_at = Some(finalizing_at);
            }
            snap.status = Status::Expired;
            snap.expired_at = Some(expires_at);
            return snap;
        }
        if now < finalizing_at {
            snap.status = Status::InProgress;
            snap.processed = processed_by(now);
            return snap;
        }
        snap.processed = requests;
        snap.finalizing_at = Some(finalizing_at);
        if now < completed_at {
            snap.status = Status::Finalizing;
        } else {
            snap.status = Status::Completed;
            snap.completed_at = Some(completed_at);
        }
        snap
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
            cancelled_at: None,
            expire_keep: None,
            extra_finalizing: 0,
        }
    }

    const TEN: Validation = Validation::Passed { requests: 10 };

    #[test]
    fn a_valid_batch_walks_through_every_state_one_step_each() {
        let t = timeline(10);
        assert_eq!(t.at(at(9), TEN).status, Status::Validating);
        let running = t.at(at(10), TEN);
        assert_eq!(running.status, Status::InProgress);
        assert_eq!(running.in_progress_at, Some(at(10)));
        assert_eq!(running.processed, 0);
        assert_eq!(t.at(at(15), TEN).processed, 5);
        let finalizing = t.at(at(20), TEN);
        assert_eq!(finalizing.status, Status::Finalizing);
        assert_eq!(finalizing.processed, 10);
        let done = t.at(at(30), TEN);
        assert_eq!(done.status, Status::Completed);
        assert_eq!(
            (done.finalizing_at, done.completed_at),
            (Some(at(20)), Some(at(30)))
        );
    }

    #[test]
    fn an_invalid_batch_fails_when_validation_ends() {
        let snap = timeline(10).at(at(10), Validation::Failed);
        assert_eq!(snap.status, Status::Failed);
        assert_eq!(snap.failed_at, Some(at(10)));
        assert_eq!(snap.in_progress_at, None);
    }

    #[test]
    fn with_a_zero_step_a_batch_is_completed_at_once() {
        let snap = timeline(0).at(at(0), TEN);
        assert_eq!(snap.status, Status::Completed);
        assert_eq!(snap.completed_at, Some(at(0)));
        assert_eq!(snap.processed, 10);
    }

    #[test]
    fn an_unknown_validation_outcome_shows_the_batch_validating() {
        assert_eq!(
            timeline(0).at(at(5), Validation::Pending).status,
            Status::Validating
        );
    }

    #[test]
    fn a_cancel_freezes_processing_then_ends_cancelled_a_step_later() {
        let t = Timeline {
            cancelled_at: Some(at(13)),
            ..timeline(10)
        };
        let cancelling = t.at(at(14), TEN);
        assert_eq!(cancelling.status, Status::Cancelling);
        assert_eq!(cancelling.processed, 3);
        let cancelled = t.at(at(23), TEN);
        assert_eq!(cancelled.status, Status::Cancelled);
        assert_eq!(cancelled.cancelled_at, Some(at(23)));
        assert_eq!((cancelled.processed, cancelled.unprocessed()), (3, 7));
        assert_eq!(cancelled.finalizing_at, None);
    }

    #[test]
    fn a_cancel_while_validating_processes_nothing() {
        let t = Timeline {
            cancelled_at: Some(at(2)),
            ..timeline(10)
        };
        let snap = t.at(at(12), Validation::Pending);
        assert_eq!(snap.status, Status::Cancelled);
        assert_eq!((snap.total, snap.processed), (0, 0));
    }

    #[test]
    fn an_injected_expiry_keeps_its_share_and_ends_when_finalizing_would_start() {
        let t = Timeline {
            expire_keep: Some(0.5),
            ..timeline(10)
        };
        assert_eq!(t.at(at(18), TEN).processed, 5);
        let snap = t.at(at(20), TEN);
        assert_eq!(snap.status, Status::Expired);
        assert_eq!(snap.expired_at, Some(at(20)));
        assert_eq!(snap.finalizing_at, None);
        assert_eq!((snap.processed, snap.unprocessed()), (5, 5));
    }

    #[test]
    fn a_long_finalizing_batch_finalizes_for_its_extra_steps() {
        let t = Timeline {
            extra_finalizing: 3,
            ..timeline(10)
        };
        // finalizing from 20 s for 1 + 3 steps
        assert_eq!(t.at(at(59), TEN).status, Status::Finalizing);
        let done = t.at(at(60), TEN);
        assert_eq!(done.status, Status::Completed);
        assert_eq!(done.completed_at, Some(at(60)));
    }

    #[test]
    fn a_batch_too_slow_for_its_window_expires_with_what_it_processed() {
        let hours = 60 * 60;
        let t = timeline(10 * hours);
        // in progress from 10 h to 20 h; the window closes at 24 h, during finalizing.
        let snap = t.at(at(24 * hours), TEN);
        assert_eq!(snap.status, Status::Expired);
        assert_eq!(snap.expired_at, Some(at(24 * hours)));
        assert_eq!(snap.processed, 10);
        let slower = timeline(16 * hours).at(at(24 * hours), TEN);
        assert_eq!((slower.status, slower.processed), (Status::Expired, 5));
        assert_eq!(slower.unprocessed(), 5);
    }
}
