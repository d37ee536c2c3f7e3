//! The benchmark inputs: realistic JSONL request files, generated deterministically (a fixed
//! seed per file, a generator of our own so that no dependency upgrade changes a byte).
//!
//! A file is generated once and reused while its sidecar `<file>.meta.json` matches the
//! parameters asked for and the file still has the recorded size; otherwise it is written again
//! (to `<file>.tmp`, then renamed, so an interrupted run never leaves a short file behind).
//!
//! Shapes:
//! - [`Kind::Chat`]: OpenAI batch lines for `/v1/chat/completions`, a mix of tasks
//!   (classification, extraction, summaries, long-document questions, multi-turn chats) with
//!   lengths from ~300 bytes to ~10 KB (about 1.6 KB on average, like the reference
//!   file), three models, a few parameters, some non-ASCII text, quotes and newlines.
//! - [`Kind::Prompts`]: prompt lines (`{"prompt", "custom_id"?, "system"?, overrides}`).
//! - [`Kind::Bad`]: chat lines of which 1% are bad, in turn: truncated JSON, no `body`, a
//!   `custom_id` already used.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bumped whenever the generator's output changes, so cached files are regenerated.
const GENERATOR_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Chat,
    Prompts,
    Bad,
}

/// How much to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// Lines until the file has at least this many bytes.
    Bytes(u64),
    /// Exactly this many lines.
    Lines(u64),
}

/// One input file to have on disk.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub kind: Kind,
    pub amount: Amount,
    pub seed: u64,
}

/// What the sidecar records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub version: u32,
    pub kind: Kind,
    pub amount: Amount,
    pub seed: u64,
    pub bytes: u64,
    pub lines: u64,
}

/// A file ready for measuring.
#[derive(Debug, Clone, Serialize)]
pub struct Input {
    pub name: String,
    pub path: PathBuf,
    pub kind: Kind,
    pub bytes: u64,
    pub lines: u64,
    /// False when this run wrote it.
    pub cached: bool,
    /// Seconds spent generating it (0 when cached).
    pub generate_secs: f64,
}

/// The file of `spec` under `dir`, generated unless a matching one is there.
pub fn ensure(dir: &Path, spec: &Spec) -> io::Result<Input> {
    fs::create_dir_all(dir)?;
    let path = dir.join(&spec.name);
    let meta_path = dir.join(format!("{}.meta.json", spec.name));
    if let Some(meta) = cached(&path, &meta_path, spec) {
        return Ok(Input {
            name: spec.name.clone(),
            path,
            kind: spec.kind,
            bytes: meta.bytes,
            lines: meta.lines,
            cached: true,
            generate_secs: 0.0,
        });
    }
    let started = Instant::now();
    let tmp = dir.join(format!("{}.tmp", spec.name));
    let (bytes, lines) = write_file(&tmp, spec)?;
    fs::rename(&tmp, &path)?;
    let meta = Meta {
        version: GENERATOR_VERSION,
        kind: spec.kind,
        amount: spec.amount,
        seed: spec.seed,
        bytes,
        lines,
    };
    fs::write(&meta_path, serde_json::to_vec_pretty(&meta)?)?;
    Ok(Input {
        name: spec.name.clone(),
        path,
        kind: spec.kind,
        bytes,
        lines,
        cached: false,
        generate_secs: started.elapsed().as_secs_f64(),
    })
}

fn cached(path: &Path, meta_path: &Path, spec: &Spec) -> Option<Meta> {
    let meta: Meta = serde_json::from_slice(&fs::read(meta_path).ok()?).ok()?;
    let size = fs::metadata(path).ok()?.len();
    let matches = meta.version == GENERATOR_VERSION
        && meta.kind == spec.kind
        && meta.amount == spec.amount
        && meta.seed == spec.seed
        && meta.bytes == size;
    matches.then_some(meta)
}

fn write_file(path: &Path, spec: &Spec) -> io::Result<(u64, u64)> {
    let mut out = BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    let mut lines = Lines::new(spec.kind, spec.seed);
    let mut line = Vec::with_capacity(32 * 1024);
    let (mut bytes, mut count) = (0u64, 0u64);
    loop {
        let done = match spec.amount {
            Amount::Bytes(target) => bytes >= target,
            Amount::Lines(target) => count >= target,
        };
        if done {
            break;
        }
        line.clear();
        lines.next_line(&mut line)?;
        line.push(b'\n');
        out.write_all(&line)?;
        bytes += line.len() as u64;
        count += 1;
    }
    out.flush()?;
    Ok((bytes, count))
}

/// splitmix64: small, fast, and fixed here for good.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn word(&mut self) -> &'static str {
        WORDS[(self.next() % WORDS.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "customer",
    "order",
    "delivery",
    "product",
    "quality",
    "price",
    "battery",
    "screen",
    "support",
    "refund",
    "package",
    "arrived",
    "broken",
    "excellent",
    "terrible",
    "recommend",
    "again",
    "service",
    "warranty",
    "shipping",
    "week",
    "months",
    "after",
    "before",
    "because",
    "however",
    "although",
    "company",
    "report",
    "quarter",
    "revenue",
    "growth",
    "market",
    "analysis",
    "research",
    "results",
    "method",
    "data",
    "model",
    "training",
    "evaluation",
    "performance",
    "increase",
    "decrease",
    "significant",
    "contract",
    "agreement",
    "party",
    "clause",
    "liability",
    "termination",
    "notice",
    "patient",
    "treatment",
    "symptoms",
    "dosage",
    "clinical",
    "study",
    "city",
    "council",
    "budget",
    "housing",
    "transport",
    "policy",
    "energy",
    "climate",
    "water",
    "school",
    "students",
    "teacher",
    "learning",
    "software",
    "release",
    "version",
    "bug",
    "feature",
    "user",
    "interface",
    "database",
    "latency",
    "request",
    "response",
    "server",
    "cloud",
    "storage",
    "network",
    "security",
    "password",
    "account",
    "email",
    "meeting",
    "schedule",
    "project",
    "deadline",
    "team",
    "manager",
    "budget",
    "invoice",
    "payment",
    "bank",
    "transfer",
    "fee",
    "interest",
    "loan",
    "café",
    "naïve",
    "Zürich",
    "São",
    "Paulo",
    "résumé",
    "東京",
    "データ",
    "😀",
    "👍",
];

const MODELS: &[(&str, f64)] = &[
    ("gpt-4o-mini", 0.60),
    ("gpt-4o", 0.25),
    ("gpt-4.1-nano", 0.15),
];

const SYSTEM_CLASSIFY: &str = "Classify the sentiment of the customer review as positive, negative or neutral. Answer with one word.";
const SYSTEM_EXTRACT: &str = "Extract every product, price and currency mentioned in the text. Answer with a JSON object {\"items\": [{\"product\", \"price\", \"currency\"}]}.";
const SYSTEM_SUMMARISE: &str =
    "Summarise the document in three bullet points for a busy executive. Keep numbers exact.";
const SYSTEM_ASSISTANT: &str = "You are a helpful assistant.";
const QUESTIONS: &[&str] = &[
    "What are the main obligations of each party?",
    "Which figures changed the most since the previous quarter, and why?",
    "List the risks the authors mention and how they propose to address them.",
    "Does the text support the claim in its title? Quote the relevant sentences.",
];

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'static str,
    messages: Vec<Message<'a>>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
}

#[derive(Serialize)]
struct ChatLine<'a> {
    custom_id: &'a str,
    method: &'static str,
    url: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<ChatBody<'a>>,
}

#[derive(Serialize)]
struct PromptLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_id: Option<&'a str>,
    prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'static str>,
}

/// Produces the lines of one file, in order.
struct Lines {
    kind: Kind,
    rng: Rng,
    n: u64,
    bad: u64,
    texts: [String; 3],
}

impl Lines {
    fn new(kind: Kind, seed: u64) -> Self {
        Self {
            kind,
            rng: Rng(seed),
            n: 0,
            bad: 0,
            texts: Default::default(),
        }
    }

    fn next_line(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.n += 1;
        match self.kind {
            Kind::Chat => self.chat(out, format!("req-{:09}", self.n), true),
            Kind::Prompts => self.prompt(out),
            Kind::Bad => {
                if !self.rng.chance(0.01) {
                    return self.chat(out, format!("req-{:09}", self.n), true);
                }
                self.bad += 1;
                match self.bad % 3 {
                    // A line cut short: invalid JSON.
                    0 => {
                        self.chat(out, format!("req-{:09}", self.n), true)?;
                        out.pop();
                        Ok(())
                    }
                    // No `body`: missing field.
                    1 => self.chat(out, format!("req-{:09}", self.n), false),
                    // An id used a few lines earlier: duplicate.
                    _ => {
                        let back = self.rng.range(1, 50).min(self.n - 1).max(1);
                        self.chat(out, format!("req-{:09}", self.n - back), true)
                    }
                }
            }
        }
    }

    /// Fills `self.texts[slot]` with about `len` bytes of prose.
    fn text(&mut self, slot: usize, len: usize) {
        let mut text = std::mem::take(&mut self.texts[slot]);
        text.clear();
        let mut sentence_left = 0;
        while text.len() < len {
            if sentence_left == 0 {
                if !text.is_empty() {
                    text.push_str(if self.rng.chance(0.1) { "?" } else { "." });
                    text.push_str(if self.rng.chance(0.08) { "\n\n" } else { " " });
                }
                sentence_left = self.rng.range(6, 24);
                let word = self.rng.word();
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    text.extend(first.to_uppercase());
                    text.push_str(chars.as_str());
                }
            } else {
                text.push(' ');
                if self.rng.chance(0.01) {
                    text.push('"');
                    text.push_str(self.rng.word());
                    text.push('"');
                } else {
                    text.push_str(self.rng.word());
                }
                if self.rng.chance(0.02) {
                    text.push_str(&format!(" {}", self.rng.range(1, 99_999)));
                }
            }
            sentence_left -= 1;
        }
        text.push('.');
        self.texts[slot] = text;
    }

    fn model(&mut self) -> &'static str {
        let x = self.rng.unit();
        let mut acc = 0.0;
        for (model, weight) in MODELS {
            acc += weight;
            if x < acc {
                return model;
            }
        }
        MODELS[0].0
    }

    fn chat(&mut self, out: &mut Vec<u8>, custom_id: String, with_body: bool) -> io::Result<()> {
        let model = self.model();
        let task = self.rng.range(0, 99);
        let temperature = Some(self.rng.range(0, 10) as f64 / 10.0);
        let (system, turns, max_tokens, response_format, temperature) = match task {
            0..=44 => {
                let len = self.rng.range(80, 400) as usize;
                self.text(0, len);
                (
                    Some(SYSTEM_CLASSIFY),
                    1,
                    self.rng.range(3, 16),
                    None,
                    Some(0.0),
                )
            }
            45..=64 => {
                let len = self.rng.range(300, 1500) as usize;
                self.text(0, len);
                let format = ResponseFormat {
                    kind: "json_object",
                };
                (Some(SYSTEM_EXTRACT), 1, 256, Some(format), temperature)
            }
            65..=89 => {
                let len = self.rng.range(800, 3000) as usize;
                self.text(0, len);
                (Some(SYSTEM_SUMMARISE), 1, 512, None, temperature)
            }
            90..=96 => {
                let len = self.rng.range(3000, 10000) as usize;
                self.text(0, len);
                let question = *self.rng.pick(QUESTIONS);
                self.texts[0].push_str("\n\nQuestion: ");
                self.texts[0].push_str(question);
                (None, 1, 1024, None, temperature)
            }
            _ => {
                for slot in 0..3 {
                    let len = self.rng.range(50, 600) as usize;
                    self.text(slot, len);
                }
                (Some(SYSTEM_ASSISTANT), 3, 1024, None, temperature)
            }
        };
        let mut messages = Vec::with_capacity(4);
        if let Some(system) = system {
            messages.push(Message {
                role: "system",
                content: system,
            });
        }
        for (slot, role) in ["user", "assistant", "user"].iter().enumerate().take(turns) {
            messages.push(Message {
                role,
                content: &self.texts[slot],
            });
        }
        let line = ChatLine {
            custom_id: &custom_id,
            method: "POST",
            url: "/v1/chat/completions",
            body: with_body.then_some(ChatBody {
                model,
                messages,
                max_tokens,
                temperature,
                response_format,
            }),
        };
        serde_json::to_writer(out, &line).map_err(io::Error::other)
    }

    fn prompt(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let len = match self.rng.range(0, 99) {
            0..=59 => self.rng.range(60, 500),
            60..=94 => self.rng.range(500, 3000),
            _ => self.rng.range(3000, 10000),
        } as usize;
        self.text(0, len);
        let custom_id = format!("p-{:09}", self.n);
        let line = PromptLine {
            // A tenth of the lines leave the id to batchdrop (`line-<n>`).
            custom_id: (!self.rng.chance(0.1)).then_some(custom_id.as_str()),
            prompt: &self.texts[0],
            system: self.rng.chance(0.3).then_some(SYSTEM_SUMMARISE),
            temperature: self.rng.chance(0.25).then_some(0.0),
            max_tokens: self.rng.chance(0.4).then_some(self.rng.range(16, 512)),
            model: self.rng.chance(0.2).then_some("gpt-4o"),
        };
        serde_json::to_writer(out, &line).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(kind: Kind, seed: u64, n: usize) -> Vec<Vec<u8>> {
        let mut lines = Lines::new(kind, seed);
        (0..n)
            .map(|_| {
                let mut line = Vec::new();
                lines.next_line(&mut line).expect("generate");
                line
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_lines() {
        assert_eq!(lines_of(Kind::Chat, 7, 50), lines_of(Kind::Chat, 7, 50));
        assert_ne!(lines_of(Kind::Chat, 7, 50), lines_of(Kind::Chat, 8, 50));
    }

    #[test]
    fn chat_and_prompt_lines_are_json_objects() -> Result<(), serde_json::Error> {
        for kind in [Kind::Chat, Kind::Prompts] {
            for line in lines_of(kind, 1, 500) {
                let value: serde_json::Value = serde_json::from_slice(&line)?;
                assert!(value.is_object());
            }
        }
        Ok(())
    }

    #[test]
    fn about_one_line_in_a_hundred_of_the_bad_file_is_bad() {
        let lines = lines_of(Kind::Bad, 3, 20_000);
        let mut seen = std::collections::HashSet::new();
        let bad = lines
            .iter()
            .filter(
                |line| match serde_json::from_slice::<serde_json::Value>(line) {
                    Err(_) => true,
                    Ok(v) => {
                        v.get("body").is_none()
                            || !seen.insert(v["custom_id"].as_str().unwrap_or("").to_string())
                    }
                },
            )
            .count();
        assert!((150..=250).contains(&bad), "{bad} bad lines in 20,000");
    }
}
