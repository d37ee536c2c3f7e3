//! Webhooks out of the sandbox: when an OpenAI batch ends, the sandbox POSTs the event OpenAI
//! sends a project's webhook endpoint (`{"id","object":"event","created_at","type":
//! "batch.completed|failed|expired|cancelled","data":{"id"}}`), signed with Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "<id>.<timestamp>.<body>">`, the key being the base64 after `whsec_`), so that a receiver
//! can be exercised end to end without an account.
//!
//! A batch's end is noticed when the sandbox next settles its batches: on any OpenAI request,
//! on [`PushConfig::every`]'s timer, or on [`crate::Sandbox::push_ended`]. Faults, drawn per
//! event from [`PushConfig::seed`] and the event's number (counted from 1): `drop` (the event
//! is never sent), `duplicate` (the same delivery, same `webhook-id`, sent twice) and a fixed
//! `delay` before sending. A delivery is sent once (no retries; a refused or failed one is
//! counted in [`PushStats`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::unix_seconds;
use crate::faults::Rate;
use crate::openai::Ended;

/// Where and how the sandbox pushes batch webhooks.
#[derive(Clone)]
pub struct PushConfig {
    /// The receiver's URL (e.g. `http://127.0.0.1:8091/webhooks/openai/sandbox`).
    pub url: String,
    /// `whsec_<base64>` (or the bare base64): the key events are signed with.
    pub secret: String,
    /// How often ended batches are looked for on a timer; `None`: only when the sandbox
    /// settles its batches for a request, or on [`crate::Sandbox::push_ended`].
    pub every: Option<Duration>,
    /// Held before each delivery.
    pub delay: Duration,
    /// Events sent twice (same delivery, same `webhook-id`).
    pub duplicate: Rate,
    /// Events never sent.
    pub drop: Rate,
    /// Seeds the `duplicate` and `drop` draws.
    pub seed: u64,
}

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("every", &self.every)
            .field("delay", &self.delay)
            .field("duplicate", &self.duplicate.to_string())
            .field("drop", &self.drop.to_string())
            .field("seed", &self.seed)
            .finish()
    }
}

impl PushConfig {
    /// Pushes to `url`, signed with `secret`, without faults, looked for only on demand.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            every: None,
            delay: Duration::ZERO,
            duplicate: Rate::NEVER,
            drop: Rate::NEVER,
            seed: 0,
        }
    }

    /// Whether the secret can sign (`whsec_` + base64 of at least one byte).
    pub fn validate(&self) -> Result<(), String> {
        self.key().map(|_| ())
    }

    /// The secret's key bytes, or why it is not a secret.
    fn key(&self) -> Result<Vec<u8>, String> {
        key_of(&self.secret)
            .ok_or_else(|| "the webhook secret is whsec_ followed by base64".to_string())
    }
}

fn key_of(secret: &str) -> Option<Vec<u8>> {
    let text = secret.trim();
    let key = STANDARD
        .decode(text.strip_prefix("whsec_").unwrap_or(text))
        .ok()?;
    (!key.is_empty()).then_some(key)
}

/// What the pusher has done since the sandbox started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushStats {
    /// Deliveries answered 2xx (a duplicate counts twice).
    pub delivered: u64,
    /// Deliveries answered otherwise, or not answered.
    pub failed: u64,
    /// Events dropped by the `drop` fault.
    pub dropped: u64,
    /// Events sent twice by the `duplicate` fault.
    pub duplicated: u64,
}

/// Sends the webhooks of ended batches.
pub(crate) struct Pusher {
    config: PushConfig,
    key: Vec<u8>,
    client: reqwest::Client,
    events: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
}

/// One signed delivery.
pub(crate) struct Delivery {
    id: String,
    timestamp: i64,
    body: String,
    signature: String,
}

impl Pusher {
    pub(crate) fn new(config: PushConfig) -> Result<Self, String> {
        let key = config.key()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            key,
            client,
            events: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
        })
    }

    pub(crate) fn every(&self) -> Option<Duration> {
        self.config.every
    }

    pub(crate) fn delay(&self) -> Duration {
        self.config.delay
    }

    pub(crate) fn stats(&self) -> PushStats {
        PushStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
        }
    }

    /// Signs the event of `ended` at `now`, unless the `drop` fault takes it; how many times
    /// to send it (2 with the `duplicate` fault).
    pub(crate) fn prepare(
        &self,
        ended: &Ended,
        now: std::time::SystemTime,
    ) -> Option<(Delivery, u32)> {
        let n = self.events.fetch_add(1, Ordering::Relaxed) + 1;
        if self.config.drop.strikes(self.config.seed, b"push-drop", n) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(batch = %ended.id, "sandbox fault injection: batch webhook dropped");
            return None;
        }
        let times = if self
            .config
            .duplicate
            .strikes(self.config.seed, b"push-duplicate", n)
        {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let event = serde_json::json!({
            "id": crate::openai::new_id("evt_", 24),
            "object": "event",
            "created_at": ended.ended_at,
            "type": format!("batch.{}", ended.status),
            "data": {"id": ended.id},
        });
        let body = event.to_string();
        let id = crate::openai::new_id("wh_", 24);
        let timestamp = unix_seconds(now);
        let signature = self.sign(&id, timestamp, &body);
        Some((
            Delivery {
                id,
                timestamp,
                body,
                signature,
            },
            times,
        ))
    }

    fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// Sends one delivery once; counted either way.
    pub(crate) async fn send(&self, delivery: &Delivery) {
        let answer = self
            .client
            .post(&self.config.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", delivery.timestamp.to_string())
            .header("webhook-signature", &delivery.signature)
            .body(delivery.body.clone())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(status = %response.status(), webhook_id = %delivery.id, "batch webhook refused");
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, webhook_id = %delivery.id, "batch webhook not delivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_reproduces_the_standard_webhooks_example() -> Result<(), String> {
        // The example of the Standard Webhooks specification's reference libraries.
        let pusher = Pusher::new(PushConfig::new(
            "http://127.0.0.1:9/",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ))?;
        assert_eq!(
            pusher.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        Ok(())
    }

    #[test]
    fn a_secret_that_is_not_base64_is_refused() {
        assert!(
            PushConfig::new("http://x/", "whsec_not base64!")
                .validate()
                .is_err()
        );
    }
}
