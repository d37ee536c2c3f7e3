//! Prompt-cache-aware chunking: which requests share a long common prefix, so that planning
//! puts them in the same chunk where the limits allow (providers cache a prompt's prefix:
//! OpenAI automatically from 1,024 tokens, Anthropic up to a `cache_control` breakpoint; the
//! requests of one batch that share a prefix run close together and read each other's cache).
//!
//! A request's prefix is everything a provider renders before its last message: `tools`,
//! `system` (Anthropic) or `instructions` (Responses), and every message but the last
//! (`messages`, or a Responses `input` list). Requests whose prefix is at least
//! [`MIN_PREFIX_BYTES`] long (about 1,024 tokens, the providers' smallest cacheable prompt) get
//! a class: a hash of the prefix. Shorter lines are not even parsed, so files of small
//! requests cost nothing more. A segment of planning gives classes to at most
//! [`MAX_CLASSES`] prefixes per group (the first it meets); the rest are planned as before.

use crate::provider::Dialect;
use crate::types::Group;
use serde_json::Value;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The shortest prefix worth a chunk of its own, in bytes of JSON: about 1,024 tokens.
pub const MIN_PREFIX_BYTES: usize = 4096;
/// The most prefixes of one group given a class in one planning segment: each may leave a
/// partly filled chunk behind, so a file with many distinct long prefixes is not split into as
/// many batches.
pub const MAX_CLASSES: usize = 8;

/// The class of the prefix of each request of a segment (0: no class).
#[derive(Debug, Default)]
pub struct PrefixClasses {
    by_group: HashMap<Group, Vec<u64>>,
}

impl PrefixClasses {
    /// The class `request` (a request line of `dialect`) is planned in within `group`.
    pub fn class(&mut self, dialect: &dyn Dialect, group: &Group, request: &[u8]) -> u64 {
        let Some(hash) = prefix_hash(dialect, request) else {
            return 0;
        };
        let seen = self.by_group.entry(group.clone()).or_default();
        if seen.contains(&hash) {
            return hash;
        }
        if seen.len() < MAX_CLASSES {
            seen.push(hash);
            return hash;
        }
        0
    }
}

/// A hash of the request's long prefix (never 0), or None when it has none.
pub fn prefix_hash(dialect: &dyn Dialect, request: &[u8]) -> Option<u64> {
    if request.len() < MIN_PREFIX_BYTES {
        return None;
    }
    let line: Value = serde_json::from_slice(request).ok()?;
    let (_, body) = dialect.request_parts(&line);
    let prefix = prefix_of(body)?;
    let text = prefix.to_string();
    if text.len() < MIN_PREFIX_BYTES {
        return None;
    }
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    Some(hasher.finish().max(1))
}

/// The parts of a request body rendered before its last message.
fn prefix_of(body: &Value) -> Option<Value> {
    let mut prefix = serde_json::Map::new();
    for field in ["tools", "system", "instructions"] {
        if let Some(value) = body.get(field) {
            prefix.insert(field.to_string(), value.clone());
        }
    }
    for field in ["messages", "input"] {
        if let Some(Value::Array(items)) = body.get(field)
            && items.len() > 1
        {
            prefix.insert(
                field.to_string(),
                Value::Array(items[..items.len() - 1].to_vec()),
            );
        }
    }
    (!prefix.is_empty()).then_some(Value::Object(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect() -> &'static dyn Dialect {
        crate::providers::dialect("anthropic").expect("anthropic is registered")
    }

    fn line(system: &str, question: &str) -> Vec<u8> {
        serde_json::json!({"custom_id": "a", "params": {"model": "m", "max_tokens": 5,
            "system": system, "messages": [{"role": "user", "content": question}]}})
        .to_string()
        .into_bytes()
    }

    fn group() -> Group {
        Group {
            endpoint: "/v1/messages".into(),
            model: String::new(),
        }
    }

    #[test]
    fn requests_sharing_a_long_system_prompt_share_a_class() {
        let long = "rules ".repeat(1000);
        let a = prefix_hash(dialect(), &line(&long, "one"));
        let b = prefix_hash(dialect(), &line(&long, "two, a longer question"));
        assert!(a.is_some());
        assert_eq!(a, b);
        let other = "other ".repeat(1000);
        assert_ne!(a, prefix_hash(dialect(), &line(&other, "one")));
    }

    #[test]
    fn a_short_prefix_has_no_class() {
        let question = "q ".repeat(3000);
        assert_eq!(prefix_hash(dialect(), &line("be brief", &question)), None);
    }

    #[test]
    fn classes_are_capped_per_group() {
        let mut classes = PrefixClasses::default();
        let g = group();
        let given: Vec<u64> = (0..MAX_CLASSES + 2)
            .map(|i| {
                let system = format!("{i} {}", "rules ".repeat(1000));
                classes.class(dialect(), &g, &line(&system, "q"))
            })
            .collect();
        assert!(given[..MAX_CLASSES].iter().all(|c| *c != 0));
        assert_eq!(&given[MAX_CLASSES..], &[0, 0]);
        let first = format!("0 {}", "rules ".repeat(1000));
        assert_eq!(
            classes.class(dialect(), &g, &line(&first, "again")),
            given[0]
        );
    }
}
