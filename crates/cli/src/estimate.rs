//! `batchdrop estimate`: what a file will cost, before anything is sent.
//!
//! The file is read line by line through the same validation as a real job, so the requests
//! counted are exactly those batchdrop would send (prompt lines built with the route's
//! defaults, Anthropic lines translated for an OpenAI route, …), and rejected lines are named.
//!
//! Input tokens: OpenAI models are counted offline with their own BPE (o200k_base for the
//! gpt-4o / gpt-4.1 / gpt-5 / o-series families, cl100k_base for gpt-4, gpt-3.5 and the
//! text-embedding-3 models), plus the chat framing OpenAI documents (3 tokens per message,
//! 1 per name, 3 to prime the reply). That is exact for text; images, tool definitions and the
//! Responses API's framing are approximations, and said so. Claude's tokenizer is not public:
//! Anthropic requests are counted with o200k_base and reported as approximate.
//!
//! Output tokens cannot be known before the model answers: the estimate uses each request's
//! `max_tokens` (an upper bound), or `--output-tokens N` per request when given.

use crate::ops::{self, usd};
use batchdrop_core::config::{Route, Wire};
use batchdrop_core::cost::{self, PRICES_AS_OF, Tally};
use batchdrop_core::input::{Outcome, Validator};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tiktoken_rs::CoreBPE;
use tokio::io::AsyncBufReadExt;

pub const AFTER_HELP: &str = concat!(
    "Examples:\n",
    "  batchdrop estimate examples/requests.jsonl --route sandbox\n",
    "  batchdrop estimate prompts.jsonl --route openai --output-tokens 200 --json\n\n",
    "Input tokens are exact for OpenAI models (their BPE, offline, with OpenAI's chat framing);\n",
    "Claude's tokenizer is not public, so Anthropic requests are an approximation (o200k_base).\n",
    "Output tokens are bounded by each request's max_tokens unless --output-tokens is given.\n",
    "Prices are USD per million tokens from the built-in list (taken 2025-11-24), overridable\n",
    "per model in the config file:\n\n",
    "  [prices.\"gpt-4o-mini\"]\n",
    "  input = 0.15          # synchronous, USD per 1M input tokens\n",
    "  output = 0.60         # synchronous, USD per 1M output tokens\n",
    "  batch_input = 0.075   # optional: half of input by default\n",
    "  batch_output = 0.30   # optional: half of output by default\n\n",
    "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
);

#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// The JSONL file to estimate (read locally; nothing is uploaded or sent).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The route the file would go to (its provider, defaults and limits).
    #[arg(long, value_name = "R")]
    route: String,
    /// Assume N output tokens per request instead of each request's max_tokens.
    #[arg(long, value_name = "N")]
    output_tokens: Option<u64>,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
    /// Config file (TOML) for routes and prices. Default: $BATCHDROP_CONFIG, else built-ins.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// How the input tokens of a model were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The model's own BPE on text only.
    Exact,
    /// Some part was not text, or no tokenizer of the model is public.
    Approximate,
}

/// One model's share of the file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelEstimate {
    pub model: String,
    pub requests: u64,
    pub input_tokens: u64,
    /// `max_tokens` added up, or --output-tokens × requests.
    pub output_tokens: u64,
    /// Requests that set no output bound (counted as 0 output tokens).
    pub unbounded_requests: u64,
    pub tokenizer: &'static str,
    pub input_method: Option<Method>,
    /// Why the count is approximate, if it is.
    pub notes: Vec<String>,
    pub batch: Option<f64>,
    pub synchronous: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub file: String,
    pub route: String,
    pub wire: &'static str,
    pub lines: u64,
    pub requests: u64,
    pub rejected: u64,
    pub rejections: Vec<(u64, String)>,
    pub models: Vec<ModelEstimate>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `max_tokens` or `assumed N per request`.
    pub output_basis: String,
    pub cost: cost::Cost,
    pub prices_as_of: &'static str,
}

/// The BPE for a model's input, its name, and whether it is the model's own.
fn tokenizer_for(wire: Wire, model: &str) -> (&'static CoreBPE, &'static str, bool) {
    use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
    if wire == Wire::Anthropic {
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
struct Counted {
    model: String,
    input: u64,
    /// The output bound (`max_tokens`); `Some(0)` for endpoints without text output.
    output: Option<u64>,
    tokenizer: &'static str,
    /// The model's own tokenizer.
    own: bool,
    /// Why the count is approximate.
    notes: Vec<&'static str>,
}

fn count_request(wire: Wire, line: &[u8]) -> Option<Counted> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let (endpoint, body) = match wire {
        Wire::Openai => (v["url"].as_str().unwrap_or("").to_string(), &v["body"]),
        Wire::Anthropic => ("/v1/messages".to_string(), &v["params"]),
    };
    let model = body["model"].as_str().unwrap_or("").to_string();
    let (bpe, tokenizer, own) = tokenizer_for(wire, &model);
    let mut c = Counter {
        bpe,
        tokens: 0,
        notes: Vec::new(),
    };
    if !own {
        c.note(if wire == Wire::Anthropic {
            "Claude's tokenizer is not public: counted with o200k_base"
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

/// Reads and estimates a file for a route.
pub async fn estimate_file(
    file: &std::path::Path,
    route_name: &str,
    route: &Route,
    prices: &cost::PriceTable,
    output_tokens: Option<u64>,
) -> Result<Estimate, String> {
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, f);
    let mut validator = Validator::new(route);
    let mut models: BTreeMap<String, ModelEstimate> = BTreeMap::new();
    let mut est = Estimate {
        file: file.display().to_string(),
        route: route_name.to_string(),
        wire: route.wire.name(),
        lines: 0,
        requests: 0,
        rejected: 0,
        rejections: Vec::new(),
        models: Vec::new(),
        input_tokens: 0,
        output_tokens: 0,
        output_basis: match output_tokens {
            Some(n) => format!("assumed {n} per request (--output-tokens)"),
            None => "at most each request's max_tokens".into(),
        },
        cost: cost::Cost::zero(),
        prices_as_of: PRICES_AS_OF,
    };
    let mut line = Vec::with_capacity(64 * 1024);
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        match validator.check(line_no, &line) {
            Outcome::Blank => {}
            Outcome::Rejected(r) => {
                est.lines += 1;
                est.rejected += 1;
                if est.rejections.len() < 20 {
                    est.rejections.push((r.line, r.code.as_str().to_string()));
                }
            }
            Outcome::Accepted(acc) => {
                est.lines += 1;
                est.requests += 1;
                let Some(Counted {
                    model,
                    input,
                    output: bound,
                    tokenizer,
                    own,
                    notes,
                }) = count_request(route.wire, &acc.request)
                else {
                    continue;
                };
                let m = models
                    .entry(model.clone())
                    .or_insert_with(|| ModelEstimate {
                        model,
                        tokenizer,
                        ..ModelEstimate::default()
                    });
                m.requests += 1;
                m.input_tokens += input;
                let is_text_out = bound != Some(0);
                match (output_tokens, bound) {
                    (Some(n), _) if is_text_out => m.output_tokens += n,
                    (_, Some(b)) => m.output_tokens += b,
                    (_, None) => m.unbounded_requests += 1,
                }
                let method = if own && notes.is_empty() {
                    Method::Exact
                } else {
                    Method::Approximate
                };
                m.input_method = Some(match (m.input_method, method) {
                    (Some(Method::Approximate), _) | (_, Method::Approximate) => {
                        Method::Approximate
                    }
                    _ => Method::Exact,
                });
                for n in notes {
                    if !m.notes.iter().any(|x| x == n) {
                        m.notes.push(n.to_string());
                    }
                }
            }
        }
    }
    let mut tally = Tally::new();
    for m in models.values() {
        tally.add(&m.model, m.input_tokens, m.output_tokens);
    }
    est.cost = tally.cost(prices);
    for mut m in models.into_values() {
        if let Some(c) = est.cost.by_model.iter().find(|c| c.model == m.model) {
            m.batch = Some(c.batch);
            m.synchronous = Some(c.synchronous_equivalent);
        } else if m.input_tokens == 0 && m.output_tokens == 0 {
            m.batch = Some(0.0);
            m.synchronous = Some(0.0);
        }
        est.input_tokens += m.input_tokens;
        est.output_tokens += m.output_tokens;
        est.models.push(m);
    }
    Ok(est)
}

pub fn render(est: &Estimate) -> String {
    let mut out = format!(
        "{} on route {} ({}): {} lines, {} requests, {} rejected\n\n",
        est.file, est.route, est.wire, est.lines, est.requests, est.rejected
    );
    let bound = if est.output_basis.starts_with("assumed") {
        ""
    } else {
        "≤ "
    };
    let mut rows: Vec<[String; 6]> = vec![[
        "model".into(),
        "requests".into(),
        "input tokens".into(),
        "output tokens".into(),
        "batch".into(),
        "synchronous".into(),
    ]];
    let money = |v: Option<f64>| v.map(usd).unwrap_or_else(|| "no price".into());
    for m in &est.models {
        let method = match m.input_method {
            Some(Method::Exact) => "",
            _ => " ~",
        };
        rows.push([
            if m.model.is_empty() {
                "(no model)".into()
            } else {
                m.model.clone()
            },
            m.requests.to_string(),
            format!("{}{method}", m.input_tokens),
            format!("{bound}{}", m.output_tokens),
            money(m.batch),
            money(m.synchronous),
        ]);
    }
    rows.push([
        "total".into(),
        est.requests.to_string(),
        est.input_tokens.to_string(),
        format!("{bound}{}", est.output_tokens),
        usd(est.cost.batch),
        usd(est.cost.synchronous_equivalent),
    ]);
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for (n, r) in rows.iter().enumerate() {
        let mut line = format!("{:<w$}", r[0], w = widths[0]);
        for i in 1..6 {
            line.push_str(&format!("  {:>w$}", r[i], w = widths[i]));
        }
        if n == rows.len() - 1 {
            line.push_str(&format!("   saves {}", usd(est.cost.saved)));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
    for m in &est.models {
        let how = match m.input_method {
            Some(Method::Exact) => format!("exact ({}{})", m.tokenizer, chat_note(m)),
            _ => format!("approximate (~): {}", m.notes.join("; ")),
        };
        out.push_str(&format!("input tokens of {}: {how}\n", display_model(m)));
    }
    let unbounded: u64 = est.models.iter().map(|m| m.unbounded_requests).sum();
    out.push_str(&format!("output tokens: {}", est.output_basis));
    if unbounded > 0 {
        out.push_str(&format!(
            "; {unbounded} request(s) set no max_tokens and count 0 (pass --output-tokens N)"
        ));
    }
    out.push('\n');
    if !est.cost.unpriced.is_empty() {
        let names: Vec<&str> = est.cost.unpriced.iter().map(|u| u.model.as_str()).collect();
        out.push_str(&format!(
            "no price for: {} (add [prices.\"MODEL\"] to the config); left out of the totals\n",
            names.join(", ")
        ));
    }
    out.push_str(&format!(
        "prices: USD per million tokens, list prices of {} unless the config overrides them\n",
        est.prices_as_of
    ));
    if est.rejected > 0 {
        let shown: Vec<String> = est
            .rejections
            .iter()
            .map(|(l, c)| format!("line {l} {c}"))
            .collect();
        let more = if est.rejected as usize > shown.len() {
            format!(", … ({} in all)", est.rejected)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "rejected (would go to errors.jsonl): {}{more}\n",
            shown.join(", ")
        ));
    }
    out
}

fn display_model(m: &ModelEstimate) -> &str {
    if m.model.is_empty() {
        "(no model)"
    } else {
        &m.model
    }
}

fn chat_note(m: &ModelEstimate) -> &'static str {
    if m.model.contains("embedding") {
        ""
    } else {
        ", with OpenAI's chat framing"
    }
}

pub async fn run(args: EstimateArgs) -> Result<(), String> {
    let config = ops::load_config(args.config.as_deref())?;
    let Some(route) = config.route(&args.route) else {
        ops::usage_error(format!(
            "unknown route {:?}: the routes are {} (add one with --config)",
            args.route,
            config.route_names().join(", ")
        ));
    };
    let est = estimate_file(
        &args.file,
        &args.route,
        route,
        &config.prices,
        args.output_tokens,
    )
    .await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&est).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(&est));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_tokens_follow_openais_framing() {
        // "Hello" is 1 token in o200k_base, "user" is 1: 3 + 1 + 1 + 3 priming = 8
        let line = br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"max_tokens":7}}"#;
        let c = count_request(Wire::Openai, line).unwrap();
        assert_eq!(
            (c.model.as_str(), c.input, c.output, c.tokenizer, c.own),
            ("gpt-4o-mini", 8, Some(7), "o200k_base", true)
        );
        assert!(c.notes.is_empty());
    }

    #[test]
    fn embeddings_count_the_inputs_and_have_no_output() {
        let line = br#"{"custom_id":"e","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":["Hello","Hello"]}}"#;
        let c = count_request(Wire::Openai, line).unwrap();
        assert_eq!(
            (c.input, c.output, c.tokenizer, c.own),
            (2, Some(0), "cl100k_base", true)
        );
    }

    #[test]
    fn claude_requests_are_approximate() {
        let line = br#"{"custom_id":"c","params":{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}}"#;
        let c = count_request(Wire::Anthropic, line).unwrap();
        assert_eq!((c.input, c.output, c.own), (1, Some(64), false));
        assert!(c.notes[0].contains("not public"));
    }
}
