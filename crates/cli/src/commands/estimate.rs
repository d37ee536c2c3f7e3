//! `batchdrop estimate`: what a file will cost, before anything is sent.
//!
//! The file is read line by line through the same validation as a real job, so the requests
//! counted are exactly those batchdrop would send (prompt lines built with the route's
//! defaults, Anthropic lines translated for an OpenAI route, …), and rejected lines are named.
//!
//! Input tokens are counted offline (see [`batchdrop_core::tokens`]): exact for OpenAI models on text,
//! approximate for Claude, images, tool definitions and the Responses API's framing.
//!
//! Output tokens cannot be known before the model answers: the estimate uses each request's
//! `max_tokens` (an upper bound), or `--output-tokens N` per request when given.

use crate::bucket::load_config;
use crate::error::Error;
use crate::text::usd;
use batchdrop_core::config::Route;
use batchdrop_core::cost::{self, PRICES_AS_OF, Tally};
use batchdrop_core::input::{Outcome, Validator};
use batchdrop_core::tokens::{Counted, count_request};
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    pub provider: String,
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

/// Reads and estimates a file for a route.
pub async fn estimate_file(
    file: &std::path::Path,
    route_name: &str,
    route: &Route,
    prices: &cost::PriceTable,
    output_tokens: Option<u64>,
) -> Result<Estimate, Error> {
    let read_error = |source| Error::File {
        action: "read",
        path: file.to_path_buf(),
        source,
    };
    let f = tokio::fs::File::open(file).await.map_err(read_error)?;
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, f);
    let dialect =
        batchdrop_core::providers::dialect(&route.provider).map_err(|e| Error::Config {
            source: batchdrop_core::config::ConfigError::Route {
                route: route_name.to_string(),
                message: e.to_string(),
            },
            hint: "",
        })?;
    let mut validator = Validator::new(route, dialect);
    let mut models: BTreeMap<String, ModelEstimate> = BTreeMap::new();
    let mut est = Estimate {
        file: file.display().to_string(),
        route: route_name.to_string(),
        provider: route.provider.clone(),
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
            .map_err(read_error)?;
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
                }) = count_request(dialect, &acc.request)
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
        est.file, est.route, est.provider, est.lines, est.requests, est.rejected
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

pub async fn run(args: EstimateArgs) -> Result<(), Error> {
    let config = load_config(args.config.as_deref())?;
    let Some(route) = config.route(&args.route) else {
        return Err(Error::usage(format!(
            "unknown route {:?}: the routes are {} (add one with --config)",
            args.route,
            config.route_names().join(", ")
        )));
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
        println!("{}", serde_json::to_string_pretty(&est)?);
    } else {
        print!("{}", render(&est));
    }
    Ok(())
}
