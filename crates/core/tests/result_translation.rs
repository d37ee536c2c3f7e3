//! Result lines carried from one provider's shape to another through the common result: OpenAI
//! batch output lines to Anthropic result lines and back, Bedrock's to both, and what cannot
//! be carried becoming an error line that says why.

use batchdrop_core::provider::{Dialect, translate_result};
use batchdrop_core::providers::dialect;
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn translate(line: Value, from: &str, to: &str) -> Result<Value> {
    let from: &dyn Dialect = dialect(from)?;
    let to: &dyn Dialect = dialect(to)?;
    let out = translate_result(&serde_json::to_vec(&line)?, from, to, "fallback");
    Ok(serde_json::from_slice(&out)?)
}

fn openai_completion(finish: &str) -> Value {
    json!({"id": "batch_req_1", "custom_id": "r1", "response": {"status_code": 200,
        "request_id": "req_1", "body": {"id": "chatcmpl-1", "object": "chat.completion",
        "created": 1_767_225_600, "model": "gpt-4o-mini", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": "Hello.", "refusal": null},
        "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}},
        "error": null})
}

fn anthropic_message(stop: &str) -> Value {
    json!({"custom_id": "r1", "result": {"type": "succeeded", "message": {"id": "msg_1",
        "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello."}], "stop_reason": stop,
        "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 3}}}})
}

#[test]
fn an_openai_completion_becomes_a_succeeded_anthropic_result() -> Result {
    let out = translate(openai_completion("stop"), "openai", "anthropic")?;
    assert_eq!(out["custom_id"], "r1");
    assert_eq!(out["result"]["type"], "succeeded");
    let message = &out["result"]["message"];
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "gpt-4o-mini");
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "Hello."}])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(
        message["usage"],
        json!({"input_tokens": 12, "output_tokens": 3})
    );
    Ok(())
}

#[test]
fn finish_reasons_map_to_stop_reasons_both_ways() -> Result {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        let anthropic = translate(openai_completion(finish), "openai", "anthropic")?;
        assert_eq!(anthropic["result"]["message"]["stop_reason"], stop);
        let openai = translate(anthropic_message(stop), "anthropic", "openai")?;
        assert_eq!(
            openai["response"]["body"]["choices"][0]["finish_reason"],
            finish
        );
    }
    Ok(())
}

#[test]
fn an_anthropic_message_becomes_an_openai_chat_completion() -> Result {
    let out = translate(anthropic_message("max_tokens"), "anthropic", "openai")?;
    assert_eq!(out["custom_id"], "r1");
    assert_eq!(out["error"], Value::Null);
    assert_eq!(out["response"]["status_code"], 200);
    let body = &out["response"]["body"];
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello.");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    );
    Ok(())
}

#[test]
fn tool_calls_and_tool_use_blocks_carry_their_arguments() -> Result {
    let line = json!({"custom_id": "t", "result": {"type": "succeeded", "message": {
        "id": "msg_2", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather",
                     "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}}}});
    let openai = translate(line.clone(), "anthropic", "openai")?;
    let call = &openai["response"]["body"]["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap_or(""))?,
        json!({"city": "Paris"})
    );
    let back = translate(openai, "openai", "anthropic")?;
    assert_eq!(
        back["result"]["message"]["content"],
        line["result"]["message"]["content"]
    );
    Ok(())
}

#[test]
fn an_openai_error_response_becomes_an_errored_result_of_its_status() -> Result {
    let line = json!({"id": "batch_req_2", "custom_id": "r2", "response": {"status_code": 429,
        "request_id": "req_2", "body": {"error": {"message": "slow down",
        "type": "rate_limit_error", "code": "rate_limit_exceeded"}}}, "error": null});
    let out = translate(line, "openai", "anthropic")?;
    assert_eq!(out["result"]["type"], "errored");
    assert_eq!(out["result"]["error"]["type"], "error");
    assert_eq!(out["result"]["error"]["error"]["type"], "rate_limit_error");
    assert_eq!(
        out["result"]["error"]["error"]["message"],
        "rate_limit_exceeded: slow down"
    );
    Ok(())
}

#[test]
fn cancelled_and_expired_requests_keep_their_meaning_both_ways() -> Result {
    for (code, kind) in [
        ("batch_cancelled", "canceled"),
        ("batch_expired", "expired"),
    ] {
        let openai = json!({"id": null, "custom_id": "r", "response": null,
            "error": {"code": code, "message": "m"}});
        let anthropic = translate(openai, "openai", "anthropic")?;
        assert_eq!(anthropic["result"], json!({"type": kind}));
        let back = translate(anthropic, "anthropic", "openai")?;
        assert_eq!(back["error"]["code"], code);
        assert_eq!(back["response"], Value::Null);
    }
    Ok(())
}

#[test]
fn an_anthropic_error_becomes_an_openai_error_response_under_its_status() -> Result {
    let line = json!({"custom_id": "r3", "result": {"type": "errored", "error": {"type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}}});
    let out = translate(line, "anthropic", "openai")?;
    assert_eq!(out["response"]["status_code"], 400);
    assert_eq!(
        out["response"]["body"]["error"]["code"],
        "invalid_request_error"
    );
    assert_eq!(
        out["response"]["body"]["error"]["message"],
        "max_tokens: too large"
    );
    Ok(())
}

#[test]
fn an_embedding_on_the_anthropic_api_is_an_error_saying_why() -> Result {
    let line = json!({"id": "batch_req_3", "custom_id": "e1", "response": {"status_code": 200,
        "request_id": "r", "body": {"object": "list", "data": [{"object": "embedding",
        "index": 0, "embedding": [0.1]}], "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "total_tokens": 2}}}, "error": null});
    let out = translate(line, "openai", "anthropic")?;
    assert_eq!(out["custom_id"], "e1");
    assert_eq!(out["result"]["type"], "errored");
    let message = out["result"]["error"]["error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(message.contains("embeddings result"), "{message}");
    Ok(())
}

#[test]
fn a_bedrock_claude_output_becomes_both_api_shapes() -> Result {
    let line = json!({"custom_id": "b1", "recordId": "b1", "modelOutput": {"id": "msg_b",
        "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi."}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 2}}});
    let anthropic = translate(line.clone(), "bedrock", "anthropic")?;
    assert_eq!(anthropic["custom_id"], "b1");
    assert_eq!(anthropic["result"]["type"], "succeeded");
    assert_eq!(anthropic["result"]["message"]["content"][0]["text"], "Hi.");
    let openai = translate(line, "bedrock", "openai")?;
    assert_eq!(
        openai["response"]["body"]["choices"][0]["message"]["content"],
        "Hi."
    );
    assert_eq!(openai["response"]["body"]["usage"]["prompt_tokens"], 5);
    Ok(())
}

#[test]
fn a_bedrock_nova_output_and_a_bedrock_error_translate() -> Result {
    let nova = json!({"custom_id": "n", "recordId": "n", "modelOutput": {"output": {"message":
        {"role": "assistant", "content": [{"text": "Yo."}]}}, "stopReason": "max_tokens",
        "usage": {"inputTokens": 7, "outputTokens": 2}}});
    let openai = translate(nova, "bedrock", "openai")?;
    let choice = &openai["response"]["body"]["choices"][0];
    assert_eq!(choice["message"]["content"], "Yo.");
    assert_eq!(choice["finish_reason"], "length");
    let error = json!({"custom_id": "x", "recordId": "x",
        "error": {"errorCode": 400, "errorMessage": "bad input"}});
    let anthropic = translate(error, "bedrock", "anthropic")?;
    assert_eq!(
        anthropic["result"]["error"]["error"]["type"],
        "invalid_request_error"
    );
    Ok(())
}

#[test]
fn a_line_of_the_api_format_passes_through_byte_for_byte() -> Result {
    let line = br#"{"custom_id":"a",  "result":{"type":"canceled"}}"#;
    let anthropic = dialect("anthropic")?;
    assert_eq!(
        translate_result(line, anthropic, anthropic, "x"),
        line.to_vec()
    );
    let openai_sync = dialect("openai-sync")?;
    let openai = dialect("openai")?;
    let out = br#"{"custom_id":"a","response":null,"error":{"code":"c"}}"#;
    assert_eq!(
        translate_result(out, openai_sync, openai, "x"),
        out.to_vec()
    );
    Ok(())
}

#[test]
fn a_line_that_is_no_result_becomes_an_error_line_under_the_fallback_id() -> Result {
    let out = translate_result(b"not json", dialect("openai")?, dialect("anthropic")?, "l7");
    let out: Value = serde_json::from_slice(&out)?;
    assert_eq!(out["custom_id"], "l7");
    assert_eq!(out["result"]["type"], "errored");
    Ok(())
}
