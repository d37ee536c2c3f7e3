//! Webhooks: the Standard Webhooks signature batchdrop checks on events it receives (OpenAI's
//! batch events) and puts on the events it sends.

pub mod signature;

pub use signature::{SignatureError, SignedHeaders, WebhookSecret};
