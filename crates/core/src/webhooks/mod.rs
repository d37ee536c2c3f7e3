//! Webhooks: the Standard Webhooks signature batchdrop checks on events it receives (OpenAI's
//! batch events) and puts on the events it sends; [`receive`]: what a received event does.

pub mod receive;
pub mod signature;

pub use receive::{Accepted, InboundSecrets, ReceiveError, Receiver, ReceiverStats};
pub use signature::{SignatureError, SignedHeaders, WebhookSecret};
