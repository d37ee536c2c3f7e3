//! Webhooks: the Standard Webhooks signature batchdrop checks on events it receives (OpenAI's
//! batch events) and puts on the events it sends; and the sending: `address` (where a webhook
//! may go), `outbox` (the webhooks to send, kept in the bucket), `send` (signing, posting,
//! retrying).

pub mod address;
pub mod outbox;
pub mod send;
pub mod signature;

pub use send::{Delivery, SendError, Webhooks};
pub use signature::{SignatureError, SignedHeaders, WebhookSecret};
