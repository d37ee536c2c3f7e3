//! OpenAI's enqueued-token limit as the sandbox applies it (the `enqueued_token_limit` fault):
//! what a new batch would add to its model's queue, counted from its input file when it is
//! created, and the refusal of a batch that would pass the limit.
//!
//! A batch's enqueued tokens are the input tokens its requests are answered with (words, as
//! everywhere in the sandbox), so a client that counts them with a real tokenizer (at least
//! one token per word) never counts fewer. The queue of a model holds the batches of that
//! model that are `validating`, `in_progress` or `finalizing`; a batch that would take it past
//! the limit is created, then `failed` at the end of `validating` with `token_limit_exceeded`,
//! and never holds a place in the queue itself.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde_json::value::RawValue;

use super::BatchError;
use super::Endpoint;
use super::answer::{self, Str};
use super::input::request_body;
use crate::respond::Stream;

/// What one batch puts in its model's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Enqueued {
    /// The batch's model: the `body.model` of its first line (None without one).
    pub model: Option<String>,
    /// The input tokens of its requests; a line that cannot be read counts none (the batch
    /// fails validation anyway).
    pub tokens: u64,
}

/// A batch to admit against a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admission {
    pub limit: u64,
    pub batch: Enqueued,
}

/// Counts what the input file at `path` would enqueue as a batch to `endpoint`.
pub(crate) fn count(path: &Path, endpoint: Endpoint) -> io::Result<Enqueued> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(path)?);
    let mut enqueued = Enqueued {
        model: None,
        tokens: 0,
    };
    let mut first = true;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(body) = request_body(&line) else {
            continue;
        };
        if first {
            first = false;
            enqueued.model = body.model.and_then(model_name);
        }
        // The ids of a throwaway answer: only its token count is kept.
        let mut ids = Stream::new(&[0; 32]);
        if let Ok(answer) = answer::answer(endpoint, &body, &mut ids, 0) {
            enqueued.tokens += answer.input_tokens;
        }
    }
    Ok(enqueued)
}

fn model_name(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<Str>(raw.get())
        .ok()
        .map(|model| model.0.into_owned())
}

/// Whether a batch enqueuing `tokens` fits beside `queued` tokens of its model under `limit`.
pub(crate) fn fits(queued: u64, tokens: u64, limit: u64) -> bool {
    queued.saturating_add(tokens) <= limit
}

/// The validation error of a batch refused by the limit, worded as OpenAI's, with `line` null.
pub(crate) fn refusal(model: Option<&str>, limit: u64) -> BatchError {
    BatchError {
        code: "token_limit_exceeded",
        message: format!(
            "Enqueued token limit reached for {} in organization org-sandbox. Limit: {} enqueued tokens. Please try again once some in_progress batches have been completed. (sandbox enqueued_token_limit)",
            model.unwrap_or("this model"),
            thousands(limit)
        ),
        param: None,
        line: None,
    }
}

/// `2000000` as `2,000,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_fits_up_to_the_limit_inclusive() {
        assert!(fits(60, 40, 100));
        assert!(!fits(61, 40, 100));
        assert!(!fits(0, 101, 100));
    }

    #[test]
    fn the_refusal_names_the_model_and_the_limit_as_openai_does() {
        let error = refusal(Some("gpt-4o-mini"), 2_000_000);
        assert_eq!(error.code, "token_limit_exceeded");
        assert_eq!(error.line, None);
        assert!(
            error
                .message
                .starts_with("Enqueued token limit reached for gpt-4o-mini in organization"),
            "{}",
            error.message
        );
        assert!(error.message.contains("Limit: 2,000,000 enqueued tokens"));
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }

    #[test]
    fn a_batch_enqueues_the_input_tokens_its_answers_report() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("input.jsonl");
        let line = |id: &str, text: &str| {
            format!(
                r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"m1","messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"{text}"}}]}}}}"#
            )
        };
        let text = [line("a", "one two three"), String::new(), line("b", "four")].join("\n");
        std::fs::write(&path, text)?;
        let enqueued = count(&path, Endpoint::ChatCompletions)?;
        assert_eq!(enqueued.model.as_deref(), Some("m1"));
        assert_eq!(enqueued.tokens, (2 + 3) + (2 + 1));
        Ok(())
    }
}
