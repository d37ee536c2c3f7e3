//! A message batch's results, as Anthropic serves them: one JSONL stream of
//! `{"custom_id","result":{…}}` lines. First the job's output.jsonl (every accepted request, in
//! input order), translated from the route's provider's result shape where it is not
//! Anthropic's ([`crate::result_lines`]); then the lines validation refused (errors.jsonl) as
//! `errored` results of type `invalid_request_error`, the input line number at the head of the
//! message (under `line <n>` when the line had no readable id). Every input line is there
//! once. Streamed line by line.

use crate::result_lines;
use batchdrop_core::provider::Dialect;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncBufRead;

/// One line of errors.jsonl as the engine writes it.
#[derive(Debug, Deserialize)]
struct Rejected {
    line: u64,
    custom_id: Option<String>,
    error: RejectedError,
}

#[derive(Debug, Deserialize)]
struct RejectedError {
    code: String,
    message: String,
}

/// The Anthropic result line of one errors.jsonl line (the `n`th of the file).
pub fn rejected_line(n: u64, line: &[u8]) -> Vec<u8> {
    let (custom_id, message) = match serde_json::from_slice::<Rejected>(line) {
        Ok(r) => (
            r.custom_id.unwrap_or_else(|| format!("line {}", r.line)),
            format!("line {}: {}: {}", r.line, r.error.code, r.error.message),
        ),
        Err(_) => (
            format!("errors line {n}"),
            String::from_utf8_lossy(line).into_owned(),
        ),
    };
    let mut out = json!({"custom_id": custom_id, "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "invalid_request_error", "message": message}}}})
    .to_string()
    .into_bytes();
    out.push(b'\n');
    out
}

/// The results: `output` (output.jsonl of a `from` route, if there is one) in Anthropic's
/// shape, then `errors` (errors.jsonl, if there is one) as errored results.
pub fn results(
    output: Option<Box<dyn AsyncBufRead + Send + Unpin>>,
    errors: Option<Box<dyn AsyncBufRead + Send + Unpin>>,
    from: &'static dyn Dialect,
    api: &'static dyn Dialect,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let output = match output {
        Some(reader) => result_lines::translated(reader, from, api),
        None => futures::stream::empty().boxed(),
    };
    let errors = match errors {
        Some(reader) => result_lines::lines(reader)
            .map(|line| line.map(|(n, line)| Bytes::from(rejected_line(n, &line))))
            .boxed(),
        None => futures::stream::empty().boxed(),
    };
    output.chain(errors).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_refused_line_is_an_errored_result_under_its_id() -> Result<(), serde_json::Error> {
        let line = br#"{"line": 4, "custom_id": "r3", "error": {"code": "invalid_json", "message": "EOF"}}"#;
        let out: Value = serde_json::from_slice(&rejected_line(1, line))?;
        assert_eq!(out["custom_id"], "r3");
        assert_eq!(out["result"]["type"], "errored");
        assert_eq!(
            out["result"]["error"]["error"]["message"],
            "line 4: invalid_json: EOF"
        );
        Ok(())
    }
}
