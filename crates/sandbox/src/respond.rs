//! Deterministic synthetic answers: a reply text with token counts for a prompt, an embedding
//! vector and moderation scores for an input, ids, and the shuffle of a batch's output.
//!
//! Contract: the same input always gets the same output, in any batch, on any run and machine.
//! Everything is derived from SHA-256 of the request's content (never from `std`'s hasher,
//! whose output may change between Rust releases) through a fixed generator (SplitMix64).
//! Provider-neutral: the provider modules put these into their own wire shapes.
//!
//! Tokens are counted as words (runs of characters between spaces, tabs and line breaks): a
//! prompt of twelve words costs twelve input tokens, and a reply's output tokens are the words
//! of its text.

use sha2::{Digest, Sha256};

/// Words the replies are made of, picked by the request's hash.
const VOCABULARY: [&str; 32] = [
    "amber", "batch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "island", "juniper",
    "kernel", "lumen", "meadow", "nectar", "orbit", "prism", "quartz", "river", "summit", "tundra",
    "umbra", "vector", "willow", "xenon", "yonder", "zephyr", "atlas", "beacon", "canyon", "drift",
    "echo", "falcon",
];

/// How many words of the prompt a reply quotes back, so that answers can be told apart.
const QUOTED_WORDS: usize = 8;

/// SHA-256 over `parts`, each prefixed by its length so that `["ab", "c"]` and `["a", "bc"]`
/// differ.
pub fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// A deterministic stream of pseudo-random numbers (SplitMix64), seeded from a digest.
#[derive(Debug, Clone)]
pub struct Stream(u64);

impl Stream {
    /// A stream seeded from the first eight bytes of `digest`.
    pub fn new(digest: &[u8; 32]) -> Self {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        Stream(u64::from_le_bytes(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `len` characters of `[0-9A-Za-z]`, for the random-looking part of an id.
    pub fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8; 62] =
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut token = Vec::with_capacity(len);
        let mut bits = 0u64;
        for at in 0..len {
            // Ten base-62 digits per 64-bit draw.
            if at % 10 == 0 {
                bits = self.next_u64();
            }
            token.push(ALPHABET[(bits % 62) as usize]);
            bits /= 62;
        }
        String::from_utf8(token).unwrap_or_default()
    }
}

/// Shuffles `items` in place (Fisher–Yates), the same way every time for the same `seed`.
pub fn shuffle<T>(items: &mut [T], seed: &[u8]) {
    let mut stream = Stream::new(&digest(&[b"shuffle", seed]));
    for i in (1..items.len()).rev() {
        let j = stream.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// The number of tokens `text` counts for: its words, the runs of characters between spaces,
/// tabs and line breaks.
pub fn count_tokens(text: &str) -> u64 {
    let is_separator = |byte: &u8| matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
    let bytes = text.as_bytes();
    let Some(start) = bytes.iter().position(|byte| !is_separator(byte)) else {
        return 0;
    };
    let end = bytes
        .iter()
        .rposition(|byte| !is_separator(byte))
        .map_or(start, |last| last + 1);
    let bytes = &bytes[start..end];
    // Words apart by single spaces or single line breaks are one more than their separators,
    // counted by memchr, which runs optimised even in debug builds: prompts can be long.
    let single_separators = memchr::memchr2(b'\t', b'\r', bytes).is_none()
        && ["  ", "\n\n", " \n", "\n "]
            .iter()
            .all(|pair| memchr::memmem::find(bytes, pair.as_bytes()).is_none());
    if single_separators {
        let separators =
            memchr::memchr_iter(b' ', bytes).count() + memchr::memchr_iter(b'\n', bytes).count();
        return separators as u64 + 1;
    }
    // Otherwise a word starts after every separator followed by a non-separator; the trimmed
    // text ends with a non-separator, so `at + 1` is in bounds.
    let word_starts = memchr::memchr3_iter(b' ', b'\t', b'\n', bytes)
        .chain(memchr::memchr_iter(b'\r', bytes))
        .filter(|&at| !is_separator(&bytes[at + 1]))
        .count();
    word_starts as u64 + 1
}

/// A conversation or prompt to reply to, fed piece by piece.
#[derive(Debug, Clone)]
pub struct Prompt {
    hasher: Sha256,
    tokens: u64,
    /// The first words of the last non-blank piece, quoted back in the reply.
    quote: String,
}

/// A synthetic reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// Output tokens: the words of `text`.
    pub tokens: u64,
    /// Whether the reply was cut at the caller's token limit (a `length` finish).
    pub truncated: bool,
}

impl Prompt {
    /// An empty prompt to `model`; the model is part of what the reply depends on.
    pub fn new(model: &str) -> Self {
        let mut prompt = Prompt {
            hasher: Sha256::new(),
            tokens: 0,
            quote: String::new(),
        };
        prompt.feed(b"model", model.as_bytes());
        prompt
    }

    /// Adds a piece of text said by `role` (`system`, `user`, …).
    pub fn push(&mut self, role: &str, text: &str) {
        self.feed(b"role", role.as_bytes());
        self.feed(b"text", text.as_bytes());
        let words = count_tokens(text);
        self.tokens += words;
        if words > 0 {
            self.quote = text
                .split_whitespace()
                .take(QUOTED_WORDS)
                .collect::<Vec<_>>()
                .join(" ");
        }
    }

    /// Input tokens: the words of every piece pushed so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The reply to this prompt. `variant` tells apart several replies to one prompt (the
    /// `n` choices of a chat request); `max_tokens` cuts the reply to that many words.
    pub fn reply(&self, variant: u64, max_tokens: Option<u64>) -> Reply {
        let mut hasher = self.hasher.clone();
        hasher.update(variant.to_le_bytes());
        let mut stream = Stream::new(&hasher.finalize().into());
        let mut text = if self.quote.is_empty() {
            String::from("Sandbox reply:")
        } else {
            format!("Sandbox reply to \"{}\":", self.quote)
        };
        let words = 6 + stream.below(19);
        for _ in 0..words {
            text.push(' ');
            text.push_str(VOCABULARY[stream.below(VOCABULARY.len() as u64) as usize]);
        }
        text.push('.');
        let tokens = count_tokens(&text);
        match max_tokens {
            Some(max) if tokens > max => {
                let cut: Vec<&str> = text.split_whitespace().take(max as usize).collect();
                Reply {
                    text: cut.join(" "),
                    tokens: cut.len() as u64,
                    truncated: true,
                }
            }
            _ => Reply {
                text,
                tokens,
                truncated: false,
            },
        }
    }

    fn feed(&mut self, tag: &[u8], bytes: &[u8]) {
        self.hasher.update(tag);
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }
}

/// A unit-length embedding of `input` (with `model`) in `dimensions` dimensions, each value
/// rounded to 7 decimals. A shorter embedding of the same input is not a prefix of a longer one
/// (it is renormalised), as with real embedding models that take `dimensions`.
pub fn embedding(model: &str, input: &[u8], dimensions: usize) -> Vec<f64> {
    let mut stream = Stream::new(&digest(&[b"embedding", model.as_bytes(), input]));
    let mut values: Vec<f64> = (0..dimensions).map(|_| stream.unit() * 2.0 - 1.0).collect();
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        for value in &mut values {
            *value = round7(*value / norm);
        }
    }
    values
}

/// `count` small scores in `[0, 0.01)` for `input`: a moderation verdict that flags nothing.
pub fn moderation_scores(input: &[u8], count: usize) -> Vec<f64> {
    let mut stream = Stream::new(&digest(&[b"moderation", input]));
    (0..count).map(|_| round7(stream.unit() * 0.01)).collect()
}

fn round7(value: f64) -> f64 {
    (value * 1e7).round() / 1e7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_prompt_gets_the_same_reply() {
        let mut a = Prompt::new("m");
        a.push("user", "What is two plus two?");
        let b = a.clone();
        assert_eq!(a.reply(0, None), b.reply(0, None));
        assert_eq!(a.tokens(), 5);
    }

    #[test]
    fn another_model_or_variant_gets_another_reply() {
        let mut a = Prompt::new("m1");
        let mut b = Prompt::new("m2");
        a.push("user", "hello there");
        b.push("user", "hello there");
        assert_ne!(a.reply(0, None).text, b.reply(0, None).text);
        assert_ne!(a.reply(0, None).text, a.reply(1, None).text);
    }

    #[test]
    fn a_reply_quotes_the_start_of_the_last_message_and_counts_its_words() {
        let mut prompt = Prompt::new("m");
        prompt.push("system", "Be brief.");
        prompt.push("user", "one two three four five six seven eight nine ten");
        let reply = prompt.reply(0, None);
        assert!(
            reply
                .text
                .starts_with("Sandbox reply to \"one two three four five six seven eight\":")
        );
        assert_eq!(reply.tokens, count_tokens(&reply.text));
        assert!(!reply.truncated);
    }

    #[test]
    fn tokens_are_the_words_between_spaces_tabs_and_line_breaks() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("  \n "), 0);
        assert_eq!(count_tokens("one"), 1);
        assert_eq!(count_tokens(" one  two\tthree\r\nfour "), 4);
        assert_eq!(count_tokens("one two three"), 3);
        assert_eq!(count_tokens("one\rtwo"), 2);
        assert_eq!(count_tokens(" one two\nthree "), 3);
        assert_eq!(count_tokens("one \n two"), 2);
    }

    #[test]
    fn a_reply_over_the_token_limit_is_cut_and_marked_truncated() {
        let prompt = Prompt::new("m");
        let reply = prompt.reply(0, Some(3));
        assert_eq!(reply.tokens, 3);
        assert_eq!(count_tokens(&reply.text), 3);
        assert!(reply.truncated);
    }

    #[test]
    fn embeddings_are_unit_length_and_deterministic() {
        let a = embedding("m", b"text", 8);
        assert_eq!(a, embedding("m", b"text", 8));
        assert_ne!(a, embedding("m", b"other", 8));
        let norm: f64 = a.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, b"batch_1");
        shuffle(&mut b, b"batch_1");
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
