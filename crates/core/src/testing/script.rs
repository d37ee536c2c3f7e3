//! [`Script`]: what one scripted batch does, from its submit to its end.

use crate::provider::BatchError;

/// How a batch ends once it stops being pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// `completed`: every request answered (some maybe with a 4xx, see [`Script::rejecting`]).
    Completed,
    /// `expired`: only the first `answered` requests (chunk order) have a result; the others
    /// appear in no file.
    Expired { answered: usize },
    /// `failed` validation with these `errors.data`; no output or error file.
    Failed { errors: Vec<BatchError> },
    /// `completed` with `output_file_id: null`: every request is in the error file with
    /// `status_code` 400 and `error: null`.
    AllFailed,
}

/// What happens to one batch, from its submit to its end.
///
/// Built from one of the constructors and refined with the `after_*` / `rejecting` methods:
/// `Script::complete().after_polls(2).rejecting(["r3"])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Submits answered with a retryable HTTP 500 before one is accepted.
    pub(super) submit_errors: u32,
    /// When set, every submit is refused with a non-retryable HTTP 400 and this message.
    pub(super) refusal: Option<String>,
    /// Lookups answered `in_progress` before the batch ends.
    pub(super) pending_polls: u32,
    pub(super) end: End,
    /// custom_ids answered in the output file with `status_code` 400 and `error: null`.
    pub(super) rejected: Vec<String>,
    /// Requests (the first ones, chunk order) answered by the time a cancel ends the batch.
    pub(super) answered_when_cancelled: usize,
}

impl Default for Script {
    fn default() -> Self {
        Self::complete()
    }
}

impl Script {
    /// Every request answered with status 200; `completed` at the first lookup.
    pub fn complete() -> Self {
        Self {
            submit_errors: 0,
            refusal: None,
            pending_polls: 0,
            end: End::Completed,
            rejected: Vec::new(),
            answered_when_cancelled: 0,
        }
    }

    /// `expired`, with only the first `answered` requests of the chunk answered; the rest are
    /// in no file at all.
    pub fn expire_after(answered: usize) -> Self {
        Self {
            end: End::Expired { answered },
            ..Self::complete()
        }
    }

    /// `failed` validation, reporting `errors` in `errors.data` (`line`: 1-based line of the
    /// chunk file).
    pub fn fail_validation(errors: impl IntoIterator<Item = BatchError>) -> Self {
        Self {
            end: End::Failed {
                errors: errors.into_iter().collect(),
            },
            ..Self::complete()
        }
    }

    /// `completed` although every request failed: no output file, only an error file whose
    /// lines carry `status_code` 400 and `error: null`.
    pub fn all_fail() -> Self {
        Self {
            end: End::AllFailed,
            ..Self::complete()
        }
    }

    /// The submit is refused for good: HTTP 400, not retryable. No batch is made.
    pub fn refuse_submit(message: impl Into<String>) -> Self {
        Self {
            refusal: Some(message.into()),
            ..Self::complete()
        }
    }

    /// Answers the first `polls` lookups with `in_progress`.
    pub fn after_polls(mut self, polls: u32) -> Self {
        self.pending_polls = polls;
        self
    }

    /// Fails the first `errors` submits of the chunk with a retryable HTTP 500.
    pub fn after_submit_errors(mut self, errors: u32) -> Self {
        self.submit_errors = errors;
        self
    }

    /// A cancel ends the batch with its first `answered` requests (chunk order) answered.
    pub fn answering_before_cancel(mut self, answered: usize) -> Self {
        self.answered_when_cancelled = answered;
        self
    }

    /// Answers these requests in the output file with `status_code` 400 and `error: null`.
    pub fn rejecting<I, S>(mut self, custom_ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rejected = custom_ids.into_iter().map(Into::into).collect();
        self
    }
}
