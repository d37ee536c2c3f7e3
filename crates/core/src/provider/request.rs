//! batchdrop's common request: what every chat dialect can say the same way — a system prompt,
//! user and assistant text messages, `max_tokens`, `temperature`, `top_p`, stop sequences, a
//! user id and the model. A line in one provider's format reaches another provider by way of
//! it: each dialect reads its own lines into it and writes it out as its own lines, so a new
//! provider needs two converters, not one per provider already here.
//!
//! Anything a dialect cannot express in it (images, tools, several choices, caching hints,
//! unknown fields) is refused by the dialect reading the line, as [`Untranslatable`] naming the
//! field: nothing is ever dropped silently.

pub use crate::types::Untranslatable;
use serde_json::Number;

/// One chat request, provider-neutral.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    /// The model the line named, if any: the target keeps it when it serves it, else uses the
    /// route's default.
    pub model: Option<String>,
    /// One system prompt, up front.
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<Number>,
    pub top_p: Option<Number>,
    pub stop: Option<Stop>,
    /// An end-user id (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Content,
}

/// Text content: a plain string, or text parts (kept as parts on the other side).
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text(String),
    Parts(Vec<String>),
}

impl Content {
    /// The text of every part, joined by newlines.
    pub fn joined(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts.join("\n"),
        }
    }
}

/// Stop sequences, with the field the line gave them in (for a target's refusal to name it).
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub sequences: Vec<String>,
    pub field: &'static str,
}
