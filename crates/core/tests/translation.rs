//! Lines carried from one provider's format to another through the common request: OpenAI
//! chat bodies to Anthropic params and back, and what cannot be carried, named by its field.

use batchdrop_core::provider::Untranslatable;
use batchdrop_core::providers::{anthropic, openai};
use batchdrop_core::route::Defaults;
use serde_json::{Map, Value, json};

fn map(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// What a route fills in: its default model and max_tokens.
struct Fill {
    model: Option<&'static str>,
    max_tokens: Option<u64>,
}

const FILL: Fill = Fill {
    model: Some("claude-sonnet-4-5"),
    max_tokens: Some(1024),
};
const FILL_OPENAI: Fill = Fill {
    model: Some("gpt-4o-mini"),
    max_tokens: None,
};

fn defaults(fill: &Fill) -> Defaults {
    Defaults {
        model: fill.model.map(str::to_string),
        max_tokens: fill.max_tokens,
        ..Defaults::default()
    }
}

fn openai_to_anthropic(
    body: &Map<String, Value>,
    fill: &Fill,
) -> Result<Map<String, Value>, Untranslatable> {
    let request = openai::translate::to_common(body, "Anthropic")?;
    anthropic::translate::from_common(request, &defaults(fill))
}

fn anthropic_to_openai(
    params: &Map<String, Value>,
    fill: &Fill,
) -> Result<Map<String, Value>, Untranslatable> {
    let request = anthropic::translate::to_common(params, "OpenAI")?;
    openai::translate::from_common(request, &defaults(fill))
}

#[test]
fn openai_chat_translates_to_anthropic_params() {
    let body = map(json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"}
        ],
        "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END", "user": "u-1", "n": 1
    }));
    let params = openai_to_anthropic(&body, &FILL).unwrap();
    assert_eq!(
        Value::Object(params),
        json!({
            "model": "claude-sonnet-4-5",
            "temperature": 0.2, "top_p": 0.9, "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Bye"}
            ],
            "max_tokens": 50
        })
    );
}

#[test]
fn claude_model_is_kept_and_max_tokens_is_filled() {
    let body =
        map(json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}));
    let params = openai_to_anthropic(&body, &FILL).unwrap();
    assert_eq!(params["model"], "claude-haiku-4-5");
    assert_eq!(params["max_tokens"], 1024);
}

#[test]
fn openai_rejections_name_the_field() {
    let cases = [
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tools": []}),
            "tools",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
            "n",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true}),
            "logprobs",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 1.5}),
            "temperature",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x", "name": "bob"}]}),
            "messages[0].name",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 0.5}),
            "frequency_penalty",
        ),
        (json!({"messages": []}), "messages"),
    ];
    for (body, field) in cases {
        let err = openai_to_anthropic(&map(body.clone()), &FILL).unwrap_err();
        assert_eq!(err.field, field, "{body}");
    }
}

#[test]
fn max_tokens_is_required_without_a_default() {
    let body = map(json!({"model": "claude-x", "messages": [{"role": "user", "content": "x"}]}));
    let err = openai_to_anthropic(
        &body,
        &Fill {
            model: None,
            max_tokens: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.field, "max_tokens");
}

#[test]
fn anthropic_params_translate_to_openai_chat() {
    let params = map(json!({
        "model": "claude-sonnet-4-5", "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.5, "stop_sequences": ["A", "B"], "metadata": {"user_id": "u-2"}
    }));
    let body = anthropic_to_openai(&params, &FILL_OPENAI).unwrap();
    assert_eq!(
        Value::Object(body),
        json!({
            "model": "gpt-4o-mini", "max_tokens": 100, "temperature": 0.5, "stop": ["A", "B"], "user": "u-2",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        })
    );
}

#[test]
fn anthropic_rejections_name_the_field() {
    let base = || json!({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let cases = [
        (with("top_k", json!(5)), "top_k"),
        (with("tools", json!([])), "tools"),
        (with("thinking", json!({"type": "enabled"})), "thinking"),
        (
            with("stop_sequences", json!(["1", "2", "3", "4", "5"])),
            "stop_sequences",
        ),
        (with("metadata", json!({"other": 1})), "metadata.other"),
        (
            with(
                "system",
                json!([{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]),
            ),
            "system[0].cache_control",
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": [{"type": "image", "source": {}}]}]),
            ),
            "messages[0].content[0].type",
        ),
    ];
    for (params, field) in cases {
        let err = anthropic_to_openai(&map(params.clone()), &FILL_OPENAI).unwrap_err();
        assert_eq!(err.field, field, "{params}");
    }
}
