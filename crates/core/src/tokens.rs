//! Counting a request's tokens offline: for `batchdrop estimate`, and for the estimates planning
//! records per chunk when a route has a spending cap or an admission limit (the `spend` module).
//!
//! Input tokens: OpenAI models are counted with their own BPE (o200k_base for the gpt-4o /
//! gpt-4.1 / gpt-5 / o-series families, cl100k_base for gpt-4, gpt-3.5 and the
//! text-embedding-3 models), plus the chat framing OpenAI documents (3 tokens per message,
//! 1 per name, 3 to prime the reply). That is exact for text; images, tool definitions and the
//! Responses API's framing are approximations, and said so. Claude's tokenizer is not public:
//! Anthropic requests are counted with o200k_base and reported as approximate.
//!
//! Output tokens cannot be known before the model answers: the output bound is each request's
//! `max_tokens` (or the endpoint's default).

use crate::provider::Dialect;
use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// The BPE for a model's input, its name, and whether it is the model's own.
fn tokenizer_for(public: bool, model: &str) -> (&'static CoreBPE, &'static str, bool) {
    use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
    if !public {
        return (tiktoken_rs::o200k_base_singleton(), "o200k_base", false);
    }
    match get_tokenizer(model) {
        Some(Tokenizer::O200kBase) => (tiktoken_rs::o200k_base_singleton(), "o200k_base", true),
        Some(Tokenizer::O200kHarmony) => (
            tiktoken_rs::o200k_harmony_singleton(),
            "o200k_harmony",
            true,
        ),
        Some(Tokenizer::Cl100kBase) => (tiktoken_rs::cl100k_base_singleton(), "cl100k_base", true),
        Some(Tokenizer::P50kBase) | Some(Tokenizer::P50kEdit) => {
            (tiktoken_rs::p50k_base_singleton(), "p50k_base", true)
        }
        Some(Tokenizer::R50kBase) | Some(Tokenizer::Gpt2) => {
            (tiktoken_rs::r50k_base_singleton(), "r50k_base", true)
        }
        None => (tiktoken_rs::o200k_base_singleton(), "o200k_base", false),
    }
}

/// Counts the input of one request.
struct Counter {
    bpe: &'static CoreBPE,
    tokens: u64,
    notes: Vec<&'static str>,
}

impl Counter {
    fn text(&mut self, s: &str) {
        self.tokens += self.bpe.count_ordinary(s) as u64;
    }
    fn note(&mut self, n: &'static str) {
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }
    /// A message `content`: a string, or parts of which text ones count.
    fn content(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.text(s),
            Value::Array(parts) => {
                for p in parts {
                    match p.get("text").and_then(Value::as_str) {
                        Some(t) => self.text(t),
                        None => match p.get("type").and_then(Value::as_str) {
                            Some(kind) if kind.contains("image") || kind.contains("file") => {
                                self.note("images and files not counted")
                            }
                            _ => {
                                self.text(&p.to_string());
                                self.note("non-text content counted as its JSON");
                            }
                        },
                    }
                }
            }
            Value::Null => {}
            other => self.text(&other.to_string()),
        }
    }
    /// OpenAI chat messages with their framing.
    fn chat_messages(&mut self, messages: &[Value]) {
        for m in messages {
            self.tokens += 3;
            if let Some(role) = m.get("role").and_then(Value::as_str) {
                self.text(role);
            }
            if let Some(c) = m.get("content") {
                self.content(c);
            }
            if let Some(name) = m.get("name").and_then(Value::as_str) {
                self.text(name);
                self.tokens += 1;
            }
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    let f = &call["function"];
                    self.text(f["name"].as_str().unwrap_or(""));
                    self.text(f["arguments"].as_str().unwrap_or(""));
                    self.tokens += 1;
                }
            }
        }
        self.tokens += 3;
    }
    fn tools(&mut self, body: &Value) {
        for field in ["tools", "functions"] {
            if let Some(t) = body.get(field).filter(|t| !t.is_null()) {
                self.text(&t.to_string());
                self.note("tool definitions counted as their JSON");
            }
        }
    }
    /// `input` of embeddings and moderations: text, texts, or token arrays.
    fn inputs(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.text(s),
            Value::Array(items) if items.iter().all(Value::is_number) => {
                self.tokens += items.len() as u64
            }
            Value::Array(items) => {
                for i in items {
                    self.inputs(i);
                }
            }
            Value::Null => {}
            other => self.text(&other.to_string()),
        }
    }
}

/// One request line as it would be sent, counted.
#[derive(Debug)]
pub struct Counted {
    pub model: String,
    pub input: u64,
    /// The output bound (`max_tokens`); `Some(0)` for endpoints without text output.
    pub output: Option<u64>,
    pub tokenizer: &'static str,
    /// The model's own tokenizer.
    pub own: bool,
    /// Why the count is approximate.
    pub notes: Vec<&'static str>,
}

/// Counts one request line as it would be sent (`None` if it is not JSON).
pub fn count_request(dialect: &dyn Dialect, line: &[u8]) -> Option<Counted> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let (endpoint, body) = dialect.request_parts(&v);
    let endpoint = endpoint.to_string();
    let model = body["model"].as_str().unwrap_or("").to_string();
    let (bpe, tokenizer, own) = tokenizer_for(dialect.public_tokenizer(), &model);
    let mut c = Counter {
        bpe,
        tokens: 0,
        notes: Vec::new(),
    };
    if !own {
        c.note(if !dialect.public_tokenizer() {
            "the provider's tokenizer is not public: counted with o200k_base"
        } else {
            "no public tokenizer known for this model: counted with o200k_base"
        });
    }
    let uint = |v: &Value| v.as_u64();
    let output = match endpoint.as_str() {
        "/v1/chat/completions" => {
            c.chat_messages(body["messages"].as_array().map_or(&[], |m| m.as_slice()));
            c.tools(body);
            let n = uint(&body["n"]).unwrap_or(1);
            uint(&body["max_completion_tokens"])
                .or_else(|| uint(&body["max_tokens"]))
                .map(|m| m * n)
        }
        "/v1/embeddings" | "/v1/moderations" => {
            c.inputs(&body["input"]);
            Some(0)
        }
        "/v1/completions" => {
            c.inputs(&body["prompt"]);
            // OpenAI's default max_tokens for completions is 16.
            Some(uint(&body["max_tokens"]).unwrap_or(16))
        }
        "/v1/responses" => {
            if let Some(i) = body["instructions"].as_str() {
                c.text(i);
            }
            match &body["input"] {
                Value::Array(items) => c.chat_messages(items),
                other => c.content(other),
            }
            c.tools(body);
            c.note("Responses API framing approximated as chat framing");
            uint(&body["max_output_tokens"])
        }
        "/v1/messages" => {
            c.content(&body["system"]);
            for m in body["messages"]
                .as_array()
                .map_or(&[][..], |m| m.as_slice())
            {
                c.content(&m["content"]);
            }
            c.tools(body);
            uint(&body["max_tokens"])
        }
        _ => {
            c.text(&body.to_string());
            c.note("unknown endpoint: body counted as its JSON");
            None
        }
    };
    Some(Counted {
        model,
        input: c.tokens,
        output,
        tokenizer,
        own,
        notes: c.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect(name: &str) -> &'static dyn Dialect {
        crate::providers::dialect(name).expect("a registered provider")
    }

    #[test]
    fn chat_tokens_follow_openais_framing() {
        // "Hello" is 1 token in o200k_base, "user" is 1: 3 + 1 + 1 + 3 priming = 8
        let line = br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"max_tokens":7}}"#;
        let c = count_request(dialect("openai"), line).unwrap();
        assert_eq!(
            (c.model.as_str(), c.input, c.output, c.tokenizer, c.own),
            ("gpt-4o-mini", 8, Some(7), "o200k_base", true)
        );
        assert!(c.notes.is_empty());
    }

    #[test]
    fn embeddings_count_the_inputs_and_have_no_output() {
        let line = br#"{"custom_id":"e","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":["Hello","Hello"]}}"#;
        let c = count_request(dialect("openai"), line).unwrap();
        assert_eq!(
            (c.input, c.output, c.tokenizer, c.own),
            (2, Some(0), "cl100k_base", true)
        );
    }

    #[test]
    fn claude_requests_are_approximate() {
        let line = br#"{"custom_id":"c","params":{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}}"#;
        let c = count_request(dialect("anthropic"), line).unwrap();
        assert_eq!((c.input, c.output, c.own), (1, Some(64), false));
        assert!(c.notes[0].contains("not public"));
    }
}
