//! The life of a Bedrock model invocation job as a pure function of the clock.
//!
//! With `step` = s and submit time c, a job is `Submitted` during [c, c+s), `Validating`
//! during [c+s, c+2s) (its input is judged at c+2s: a bad input makes it `Failed` then),
//! `Scheduled` during [c+2s, c+3s), `InProgress` during [c+3s, c+4s) with its records
//! processed in proportion to the time elapsed, and ended from c+4s (`Completed`, or
//! `PartiallyCompleted` when records failed on the service's side — decided by the caller,
//! which knows the answers). A stop at time t freezes processing at t, shows `Stopping` during
//! [t, t+s) and `Stopped` from t+s. A job that cannot end within its timeout
//! (`timeoutDurationInHours`) is `Expired` at c+timeout with the records processed by then.
//! With s = 0 a job has ended at any time after it was submitted.
//!
//! Injected faults bend the schedule: an expiring job processes only its first `expire_keep`
//! share of records and is `Expired` at c+4s; `extra_steps` keep a job `InProgress` that many
//! steps after its last record.

use std::time::{Duration, SystemTime};

/// A job's status, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Submitted,
    Validating,
    Scheduled,
    InProgress,
    Completed,
    PartiallyCompleted,
    Failed,
    Stopping,
    Stopped,
    Expired,
}

impl Status {
    pub(crate) const ALL: [Status; 10] = [
        Status::Submitted,
        Status::Validating,
        Status::Scheduled,
        Status::InProgress,
        Status::Completed,
        Status::PartiallyCompleted,
        Status::Failed,
        Status::Stopping,
        Status::Stopped,
        Status::Expired,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "Submitted",
            Status::Validating => "Validating",
            Status::Scheduled => "Scheduled",
            Status::InProgress => "InProgress",
            Status::Completed => "Completed",
            Status::PartiallyCompleted => "PartiallyCompleted",
            Status::Failed => "Failed",
            Status::Stopping => "Stopping",
            Status::Stopped => "Stopped",
            Status::Expired => "Expired",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Whether the job will not change any more.
    pub(crate) fn has_ended(self) -> bool {
        matches!(
            self,
            Status::Completed
                | Status::PartiallyCompleted
                | Status::Failed
                | Status::Stopped
                | Status::Expired
        )
    }
}

/// The phase a job is in, before its answers are known: what the clock alone says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Submitted,
    Validating,
    /// Past validation: the input's verdict decides what comes next.
    Validated(Run),
    /// Stopped before its input was judged.
    StoppedEarly {
        stopping: bool,
        at: SystemTime,
    },
}

/// A validated job's progress at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    Scheduled,
    InProgress,
    Stopping,
    /// Ended: `status` is `Completed` (maybe `PartiallyCompleted`, decided later), `Stopped`
    /// or `Expired`.
    Ended {
        status: Status,
        at: SystemTime,
    },
}

/// The schedule of one job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeline {
    pub submitted: SystemTime,
    pub step: Duration,
    pub timeout: Duration,
    pub stop_initiated: Option<SystemTime>,
    /// Injected expiry: the share (0 to 1) of the records processed before it.
    pub expire_keep: Option<f64>,
    /// Injected delay: steps between the last record processed and the end.
    pub extra_steps: u32,
}

impl Timeline {
    /// When the input is judged.
    pub(crate) fn validated_at(&self) -> SystemTime {
        self.submitted + self.step * 2
    }

    /// When the job expires if it has not ended.
    pub(crate) fn expires_at(&self) -> SystemTime {
        self.submitted + self.timeout
    }

    fn processing_starts_at(&self) -> SystemTime {
        self.submitted + self.step * 3
    }

    fn processing_ends_at(&self) -> SystemTime {
        self.submitted + self.step * 4
    }

    /// What the clock says at `now`, and how many of `records` have been processed (0 before
    /// the input is judged).
    pub(crate) fn at(&self, now: SystemTime, records: usize) -> (Phase, usize) {
        let stop = self.stop_initiated;
        let validated = self.validated_at();
        if let Some(stop) = stop
            && stop < validated
        {
            let end = stop + self.step;
            return (
                Phase::StoppedEarly {
                    stopping: now < end,
                    at: end,
                },
                0,
            );
        }
        if now < self.submitted + self.step {
            return (Phase::Submitted, 0);
        }
        if now < validated {
            return (Phase::Validating, 0);
        }
        let kept = self.expire_keep.map_or(records, |keep| {
            ((records as f64 * keep.clamp(0.0, 1.0)).floor() as usize).min(records)
        });
        let processed_by = |at: SystemTime| -> usize {
            let (start, done) = (self.processing_starts_at(), self.processing_ends_at());
            if at >= done {
                return kept;
            }
            let Ok(elapsed) = at.duration_since(start) else {
                return 0;
            };
            // Here start <= at < done, so the step is not zero.
            ((records as u128 * elapsed.as_nanos() / self.step.as_nanos().max(1)) as usize)
                .min(kept)
        };
        let expires_at = self.expires_at();
        if let Some(stop) = stop {
            let processed = processed_by(stop);
            let (end, status) = if stop + self.step > expires_at {
                (expires_at, Status::Expired)
            } else {
                (stop + self.step, Status::Stopped)
            };
            let run = if now >= end {
                Run::Ended { status, at: end }
            } else {
                Run::Stopping
            };
            return (Phase::Validated(run), processed);
        }
        let done = if self.expire_keep.is_some() {
            self.processing_ends_at()
        } else {
            self.processing_ends_at() + self.step * self.extra_steps
        };
        let (end, status) = if done > expires_at {
            (expires_at, Status::Expired)
        } else if self.expire_keep.is_some() {
            (done, Status::Expired)
        } else {
            (done, Status::Completed)
        };
        if now >= end {
            let processed = processed_by(end);
            let status = if status == Status::Expired && processed == records {
                Status::Completed
            } else {
                status
            };
            (Phase::Validated(Run::Ended { status, at: end }), processed)
        } else if now < self.processing_starts_at() {
            (Phase::Validated(Run::Scheduled), 0)
        } else {
            (Phase::Validated(Run::InProgress), processed_by(now))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn timeline(step: u64) -> Timeline {
        Timeline {
            submitted: at(0),
            step: Duration::from_secs(step),
            timeout: Duration::from_secs(168 * 3600),
            stop_initiated: None,
            expire_keep: None,
            extra_steps: 0,
        }
    }

    #[test]
    fn a_job_walks_submitted_validating_scheduled_in_progress_completed() {
        let t = timeline(10);
        assert_eq!(t.at(at(5), 100), (Phase::Submitted, 0));
        assert_eq!(t.at(at(15), 100), (Phase::Validating, 0));
        assert_eq!(t.at(at(25), 100), (Phase::Validated(Run::Scheduled), 0));
        assert_eq!(t.at(at(35), 100), (Phase::Validated(Run::InProgress), 50));
        assert_eq!(
            t.at(at(40), 100),
            (
                Phase::Validated(Run::Ended {
                    status: Status::Completed,
                    at: at(40)
                }),
                100
            )
        );
    }

    #[test]
    fn with_a_zero_step_a_job_has_ended_at_once() {
        let (phase, processed) = timeline(0).at(at(0), 7);
        assert!(matches!(phase, Phase::Validated(Run::Ended { .. })));
        assert_eq!(processed, 7);
    }

    #[test]
    fn a_stop_freezes_processing_and_ends_a_step_later() {
        let t = Timeline {
            stop_initiated: Some(at(33)),
            ..timeline(10)
        };
        assert_eq!(t.at(at(40), 100), (Phase::Validated(Run::Stopping), 30));
        assert_eq!(
            t.at(at(43), 100),
            (
                Phase::Validated(Run::Ended {
                    status: Status::Stopped,
                    at: at(43)
                }),
                30
            )
        );
    }

    #[test]
    fn a_stop_before_validation_ends_without_judging_the_input() {
        let t = Timeline {
            stop_initiated: Some(at(5)),
            ..timeline(10)
        };
        assert_eq!(
            t.at(at(14), 100).0,
            Phase::StoppedEarly {
                stopping: true,
                at: at(15)
            }
        );
    }

    #[test]
    fn an_injected_expiry_keeps_its_share() {
        let t = Timeline {
            expire_keep: Some(0.25),
            ..timeline(10)
        };
        assert_eq!(
            t.at(at(40), 100),
            (
                Phase::Validated(Run::Ended {
                    status: Status::Expired,
                    at: at(40)
                }),
                25
            )
        );
    }
}
