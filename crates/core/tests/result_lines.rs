//! Result lines as each provider's dialect reads them: outcome, retryability, usage and model;
//! and the lines written for requests that got no result.

use batchdrop_core::providers::{anthropic, openai};

#[test]
fn anthropic_succeeded_line_with_usage() {
    let f = anthropic::results::read(br#"{"custom_id":"a","result":{"type":"succeeded","message":{"id":"msg_1","usage":{"input_tokens":12,"output_tokens":30}}}}"#).unwrap();
    assert!(f.succeeded);
    assert_eq!((f.input_tokens, f.output_tokens), (12, 30));
}

#[test]
fn results_name_the_model_that_answered() {
    let f = anthropic::results::read(br#"{"custom_id":"a","result":{"type":"succeeded","message":{"model":"claude-haiku-4-5-20251001","usage":{"input_tokens":1,"output_tokens":2}}}}"#).unwrap();
    assert_eq!(f.model.as_deref(), Some("claude-haiku-4-5-20251001"));
    let f = openai::results::read(br#"{"id":"b1","custom_id":"r1","response":{"status_code":200,"body":{"model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":1,"completion_tokens":2}}},"error":null}"#).unwrap();
    assert_eq!(f.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    let f = openai::results::read(br#"{"id":"b1","custom_id":"r1","response":{"status_code":200,"body":{"model":7}},"error":null}"#).unwrap();
    assert_eq!(f.model, None);
}

#[test]
fn anthropic_errored_expired_canceled_are_failures() {
    for kind in ["errored", "expired", "canceled"] {
        let line = format!(r#"{{"custom_id":"b","result":{{"type":"{kind}"}}}}"#);
        assert!(!anthropic::results::read(line.as_bytes()).unwrap().succeeded);
    }
}

#[test]
fn anthropic_missing_results_use_native_types() {
    let v: serde_json::Value =
        serde_json::from_slice(&anthropic::results::missing("x", "batch_expired", "m")).unwrap();
    assert_eq!(v["result"]["type"], "expired");
    let v: serde_json::Value =
        serde_json::from_slice(&anthropic::results::missing("x", "batch_failed", "why")).unwrap();
    assert_eq!(v["result"]["error"]["error"]["type"], "batch_failed");
}

#[test]
fn retryable_failures_are_told_from_permanent_ones() {
    let openai = |line: &str| openai::results::read(line.as_bytes()).unwrap().retryable;
    assert!(openai(
        r#"{"custom_id":"a","response":{"status_code":429,"body":{}},"error":null}"#
    ));
    assert!(openai(
        r#"{"custom_id":"a","response":{"status_code":503,"body":{}},"error":null}"#
    ));
    assert!(openai(
        r#"{"custom_id":"a","response":null,"error":{"code":"batch_expired","message":"m"}}"#
    ));
    assert!(!openai(
        r#"{"custom_id":"a","response":{"status_code":400,"body":{}},"error":null}"#
    ));
    assert!(!openai(
        r#"{"custom_id":"a","response":{"status_code":200,"body":{}},"error":null}"#
    ));
    assert!(!openai(
        r#"{"custom_id":"a","response":null,"error":{"code":"batch_cancelled","message":"m"}}"#
    ));
    let anthropic = |line: &str| anthropic::results::read(line.as_bytes()).unwrap().retryable;
    assert!(anthropic(
        r#"{"custom_id":"a","result":{"type":"expired"}}"#
    ));
    assert!(anthropic(
        r#"{"custom_id":"a","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"m"}}}}"#
    ));
    assert!(!anthropic(
        r#"{"custom_id":"a","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"m"}}}}"#
    ));
    assert!(!anthropic(
        r#"{"custom_id":"a","result":{"type":"canceled"}}"#
    ));
}

#[test]
fn custom_id_is_replaced_in_place() {
    let out = batchdrop_core::providers::dialect("anthropic")
        .unwrap()
        .with_custom_id(
            br#"{"custom_id":"bd_3","result":{"type":"succeeded"},"z":1}"#,
            "a.b c",
        );
    assert_eq!(
        out,
        br#"{"custom_id":"a.b c","result":{"type":"succeeded"},"z":1}"#
    );
}

#[test]
fn success_line_with_usage() {
    let f = openai::results::read(br#"{"id":"b1","custom_id":"r1","response":{"status_code":200,"request_id":"q","body":{"usage":{"prompt_tokens":12,"completion_tokens":30}}},"error":null}"#).unwrap();
    assert!(f.succeeded);
    assert_eq!((f.input_tokens, f.output_tokens), (12, 30));
}

#[test]
fn status_400_with_null_error_is_a_failure() {
    let f = openai::results::read(br#"{"id":"b","custom_id":"r3","response":{"status_code":400,"request_id":"q","body":{"error":{"message":"bad"}}},"error":null}"#).unwrap();
    assert!(!f.succeeded);
}

#[test]
fn error_object_is_a_failure() {
    let f = openai::results::read(br#"{"id":"b","custom_id":"r2","response":null,"error":{"code":"batch_expired","message":"x"}}"#).unwrap();
    assert!(!f.succeeded);
    assert_eq!(f.custom_id, "r2");
}

#[test]
fn missing_result_line_has_the_provider_shape() {
    let line = openai::results::missing("r9", "batch_expired", "expired");
    let f = openai::results::read(&line).unwrap();
    assert_eq!(f.custom_id, "r9");
    assert!(!f.succeeded);
}

#[test]
fn anthropic_cache_tokens_are_part_of_the_input_and_counted_apart() {
    let f = anthropic::results::read(br#"{"custom_id":"a","result":{"type":"succeeded","message":{"usage":{"input_tokens":12,"cache_read_input_tokens":900,"cache_creation_input_tokens":50,"output_tokens":30}}}}"#).unwrap();
    assert_eq!(f.input_tokens, 12 + 900 + 50);
    assert_eq!((f.cache_read_tokens, f.cache_write_tokens), (900, 50));
}

#[test]
fn openai_cached_tokens_are_read_from_chat_and_responses_usage() {
    let f = openai::results::read(br#"{"id":"b1","custom_id":"r1","response":{"status_code":200,"body":{"usage":{"prompt_tokens":1200,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1024}}}},"error":null}"#).unwrap();
    assert_eq!(
        (f.input_tokens, f.cache_read_tokens, f.cache_write_tokens),
        (1200, 1024, 0)
    );
    let f = openai::results::read(br#"{"id":"b1","custom_id":"r1","response":{"status_code":200,"body":{"usage":{"input_tokens":1500,"output_tokens":2,"input_tokens_details":{"cached_tokens":1280}}}},"error":null}"#).unwrap();
    assert_eq!((f.input_tokens, f.cache_read_tokens), (1500, 1280));
}
