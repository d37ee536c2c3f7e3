//! A batch's error file: the job's errors.jsonl (one line per input line refused by
//! validation) re-shaped as OpenAI's error-file lines,
//! `{"id", "custom_id", "response": null, "error": {"code", "message"}}`, the input line number
//! at the head of the message. Streamed line by line: memory holds one line, whatever the
//! file's size.

use bytes::Bytes;
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

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

/// The OpenAI error-file line of one errors.jsonl line of batch `token`; a line that is not
/// one the engine writes is passed on as the message of a `malformed_error_line`.
pub fn error_line(token: &str, line: &[u8]) -> Vec<u8> {
    let value = match serde_json::from_slice::<Rejected>(line.trim_ascii()) {
        Ok(r) => json!({
            "id": format!("batch_req_{token}_{}", r.line),
            "custom_id": r.custom_id,
            "response": Value::Null,
            "error": {"code": r.error.code, "message": format!("line {}: {}", r.line, r.error.message)},
        }),
        Err(_) => json!({
            "id": format!("batch_req_{token}"),
            "custom_id": Value::Null,
            "response": Value::Null,
            "error": {"code": "malformed_error_line", "message": String::from_utf8_lossy(line.trim_ascii())},
        }),
    };
    let mut out = value.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// The error file of batch `token`, read from errors.jsonl as it streams.
pub fn error_lines(
    token: String,
    reader: Box<dyn AsyncBufRead + Send + Unpin>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold((token, reader), |(token, mut reader)| async move {
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                return Ok(None);
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let out = Bytes::from(error_line(&token, &line));
        Ok(Some((out, (token, reader))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[test]
    fn a_rejected_line_becomes_an_openai_error_line() -> Result<(), serde_json::Error> {
        let line = br#"{"line": 4, "custom_id": "r3", "error": {"code": "invalid_json", "message": "EOF"}}"#;
        let out: Value = serde_json::from_slice(&error_line("t", line))?;
        assert_eq!(
            out,
            json!({"id": "batch_req_t_4", "custom_id": "r3", "response": null,
                   "error": {"code": "invalid_json", "message": "line 4: EOF"}})
        );
        Ok(())
    }

    #[tokio::test]
    async fn every_line_is_reshaped_and_blank_lines_are_skipped() -> std::io::Result<()> {
        let input = b"{\"line\":1,\"custom_id\":null,\"error\":{\"code\":\"a\",\"message\":\"m\"}}\n\n{\"line\":3,\"custom_id\":\"x\",\"error\":{\"code\":\"b\",\"message\":\"n\"}}\n";
        let reader: Box<dyn AsyncBufRead + Send + Unpin> = Box::new(&input[..]);
        let parts: Vec<Bytes> = error_lines("t".into(), reader).try_collect().await?;
        let text: String = parts.iter().map(|b| String::from_utf8_lossy(b)).collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("\"batch_req_t_1\"") && lines[1].contains("line 3: n"));
        Ok(())
    }
}
