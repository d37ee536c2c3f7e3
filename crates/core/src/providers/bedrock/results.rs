//! Bedrock batch result lines (`<input>.jsonl.out`): `{"recordId","modelInput"?,"modelOutput"}`
//! for a success, `{"recordId","modelInput"?,"error":{"errorCode","errorMessage"}}` for a
//! failure. What batchdrop reads of them (success, which errors are worth another attempt,
//! usage), the line written for a request that got no result, and the line output.jsonl holds.
//!
//! output.jsonl holds each result line with the user's id first as `custom_id` (the recordId
//! sent stays, as `recordId`), and without the `modelInput` Bedrock echoes: it would double
//! the output, and the user has their input.

use crate::provider::ResultFacts;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

#[derive(Deserialize)]
struct BedrockLine<'a> {
    #[serde(borrow, rename = "recordId")]
    record_id: Cow<'a, str>,
    #[serde(default, rename = "modelOutput")]
    model_output: Option<ModelOutput>,
    #[serde(default)]
    error: Option<BedrockError>,
}

/// What batchdrop reads of a model's output: its token counts, in the shape of its family.
#[derive(Deserialize, Default)]
struct ModelOutput {
    #[serde(default)]
    usage: Option<Usage>,
    /// Titan embeddings.
    #[serde(default, rename = "inputTextTokenCount")]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize, Default)]
struct Usage {
    /// Claude.
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// Amazon Nova.
    #[serde(rename = "inputTokens")]
    nova_input_tokens: Option<u64>,
    #[serde(rename = "outputTokens")]
    nova_output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct BedrockError {
    #[serde(default, rename = "errorCode")]
    code: Option<Value>,
}

/// Whether an error code says the request may succeed another time: HTTP 429 or 5xx, or a
/// name of throttling, an unavailable or failing service, or a model that timed out or was
/// not ready.
pub fn retryable(code: &Value) -> bool {
    let status = match code {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    if let Some(status) = status {
        return status == 429 || (500..600).contains(&status);
    }
    let name: String = code
        .as_str()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    [
        "throttl",
        "serviceunavailable",
        "internalserver",
        "modeltimeout",
        "modelnotready",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Reads a Bedrock result line: a success has `modelOutput` and no `error`.
pub fn read(line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
    let l: BedrockLine = serde_json::from_slice(line)?;
    let succeeded = l.error.is_none() && l.model_output.is_some();
    let retryable = l
        .error
        .as_ref()
        .and_then(|e| e.code.as_ref())
        .is_some_and(retryable);
    let output = l.model_output.unwrap_or_default();
    let usage = output.usage.unwrap_or_default();
    Ok(ResultFacts {
        custom_id: l.record_id.into_owned(),
        succeeded,
        retryable,
        // A stopped job's unprocessed records are in no file at all.
        not_run: false,
        input_tokens: usage
            .input_tokens
            .or(usage.nova_input_tokens)
            .or(output.input_text_token_count)
            .unwrap_or(0),
        output_tokens: usage
            .output_tokens
            .or(usage.nova_output_tokens)
            .unwrap_or(0),
        // Not read from Bedrock's outputs yet: priced as plain input.
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        model: None,
    })
}

/// The failure line of a request that got no result, in Bedrock's error shape.
pub fn missing(record_id: &str, code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "recordId": record_id,
        "error": {"errorCode": code, "errorMessage": message},
    }))
    .unwrap_or_default()
}

/// The line output.jsonl holds for a result line: `custom_id` first (`user_id`, else the
/// line's `recordId`), then the line's fields less `modelInput`. A line that is no JSON object
/// is kept as it is.
pub fn output_line(line: &[u8], user_id: Option<&str>) -> Vec<u8> {
    let Ok(mut fields) = serde_json::from_slice::<Map<String, Value>>(line) else {
        return line.to_vec();
    };
    fields.shift_remove("modelInput");
    fields.shift_remove("custom_id");
    let id = match user_id {
        Some(id) => Some(Value::String(id.to_string())),
        None => fields.get("recordId").filter(|v| v.is_string()).cloned(),
    };
    let mut out = Map::new();
    if let Some(id) = id {
        out.insert("custom_id".into(), id);
    }
    out.extend(fields);
    serde_json::to_vec(&out).unwrap_or_else(|_| line.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    #[test]
    fn a_claude_output_is_a_success_with_its_usage() -> Result {
        let facts = read(
            br#"{"recordId":"r1","modelInput":{"messages":[]},"modelOutput":{"type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":12,"output_tokens":3}}}"#,
        )?;
        assert_eq!(
            facts,
            ResultFacts {
                custom_id: "r1".into(),
                succeeded: true,
                retryable: false,
                not_run: false,
                input_tokens: 12,
                output_tokens: 3,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                model: None,
            }
        );
        Ok(())
    }

    #[test]
    fn a_nova_output_has_its_usage_read() -> Result {
        let facts = read(
            br#"{"recordId":"r2","modelOutput":{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"usage":{"inputTokens":7,"outputTokens":2,"totalTokens":9}}}"#,
        )?;
        assert!(facts.succeeded);
        assert_eq!((facts.input_tokens, facts.output_tokens), (7, 2));
        Ok(())
    }

    #[test]
    fn a_titan_embedding_counts_its_input_tokens() -> Result {
        let facts =
            read(br#"{"recordId":"e","modelOutput":{"embedding":[0.1],"inputTextTokenCount":4}}"#)?;
        assert_eq!((facts.input_tokens, facts.output_tokens), (4, 0));
        Ok(())
    }

    #[test]
    fn an_error_line_is_a_failure() -> Result {
        let facts = read(
            br#"{"recordId":"r3","modelInput":{},"error":{"errorCode":400,"errorMessage":"bad input"}}"#,
        )?;
        assert!(!facts.succeeded);
        assert!(!facts.retryable);
        assert_eq!(facts.custom_id, "r3");
        Ok(())
    }

    #[test]
    fn throttling_server_errors_and_unready_models_are_retryable() {
        for code in [
            json!(429),
            json!(500),
            json!(503),
            json!("429"),
            json!("ThrottlingException"),
            json!("ServiceUnavailableException"),
            json!("InternalServerException"),
            json!("ModelTimeoutException"),
            json!("ModelNotReadyException"),
        ] {
            assert!(retryable(&code), "{code}");
        }
    }

    #[test]
    fn client_errors_are_not_retryable() {
        for code in [
            json!(400),
            json!(403),
            json!("ValidationException"),
            json!("AccessDeniedException"),
            json!(null),
        ] {
            assert!(!retryable(&code), "{code}");
        }
    }

    #[test]
    fn a_missing_result_is_an_error_line() -> Result {
        let line = missing("bd_3", "batch_expired", "the batch expired");
        assert_eq!(
            serde_json::from_slice::<Value>(&line)?,
            json!({"recordId": "bd_3",
                "error": {"errorCode": "batch_expired", "errorMessage": "the batch expired"}})
        );
        assert!(!read(&line)?.succeeded);
        Ok(())
    }

    #[test]
    fn the_output_line_drops_model_input_and_puts_the_user_id_first() -> Result {
        let line =
            br#"{"recordId":"bd_4","modelInput":{"messages":[]},"modelOutput":{"usage":{}}}"#;
        assert_eq!(
            std::str::from_utf8(&output_line(line, Some("has.dots")))?,
            r#"{"custom_id":"has.dots","recordId":"bd_4","modelOutput":{"usage":{}}}"#
        );
        Ok(())
    }

    #[test]
    fn the_output_line_of_an_unmapped_id_takes_the_record_id() -> Result {
        let line =
            br#"{"recordId":"r5","modelInput":{},"error":{"errorCode":400,"errorMessage":"m"}}"#;
        assert_eq!(
            std::str::from_utf8(&output_line(line, None))?,
            r#"{"custom_id":"r5","recordId":"r5","error":{"errorCode":400,"errorMessage":"m"}}"#
        );
        Ok(())
    }
}
