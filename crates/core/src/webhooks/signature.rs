//! The Standard Webhooks signature (<https://www.standardwebhooks.com>), both ways: OpenAI signs
//! the batch events it sends with it, and batchdrop signs the webhooks it sends.
//!
//! The signed content is `<webhook-id>.<webhook-timestamp>.<body>`; `webhook-signature` holds one
//! or more space-separated `v1,<base64 HMAC-SHA256>` entries (several while a secret rotates).
//! A secret is written `whsec_<base64 key>`. Verification compares in constant time and refuses
//! a timestamp more than [`TOLERANCE`] away from now, so a captured event cannot be replayed
//! later (a replay within the window is the caller's to refuse, by the id).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};

/// How far a webhook's timestamp may be from now, either way.
pub const TOLERANCE: Duration = Duration::minutes(5);

/// A signing key. Never printed: `Debug` shows only that it is there.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// Why a secret or a signed event was refused. Never retryable: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a webhook secret is `whsec_` followed by base64 (the prefix may be left out)")]
    BadSecret,
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp {0:?} is not a Unix time in seconds")]
    BadTimestamp(String),
    #[error("webhook-timestamp is {seconds} s away from now; at most 300 s are allowed")]
    Stale { seconds: i64 },
    #[error("no v1 signature in webhook-signature matches the body")]
    Mismatch,
}

impl WebhookSecret {
    /// Reads `whsec_<base64>` (or the bare base64, as some senders show it).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let text = text.trim();
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SignatureError::BadSecret)?;
        if key.is_empty() {
            return Err(SignatureError::BadSecret);
        }
        Ok(Self(SecretSlice::from(key)))
    }

    /// A new random secret, written `whsec_<base64 of 24 bytes>`.
    pub fn generate() -> String {
        let key: Vec<u8> = (0..24).map(|_| fastrand::u8(..)).collect();
        format!("whsec_{}", STANDARD.encode(key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for one event: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Checks a received event: the timestamp within [`TOLERANCE`] of `now`, and one of the
    /// `v1` signatures made with this secret over exactly these bytes.
    pub fn verify(
        &self,
        headers: &SignedHeaders<'_>,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), SignatureError> {
        let id = headers.id.ok_or(SignatureError::MissingHeader("webhook-id"))?;
        let stamp = headers
            .timestamp
            .ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
        let signatures = headers
            .signature
            .ok_or(SignatureError::MissingHeader("webhook-signature"))?;
        let timestamp: i64 = stamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp(stamp.chars().take(40).collect()))?;
        let seconds = now.unix_timestamp() - timestamp;
        if seconds.abs() > TOLERANCE.whole_seconds() {
            return Err(SignatureError::Stale { seconds });
        }
        let matched = signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| STANDARD.decode(encoded).ok())
            .any(|tag| self.mac(id, timestamp, body).verify_slice(&tag).is_ok());
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The three Standard Webhooks headers of a received event, as found (any may be missing).
#[derive(Debug, Clone, Copy, Default)]
pub struct SignedHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(timestamp: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(timestamp).unwrap()
    }

    fn headers<'a>(signature: &'a str, stamp: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            id: Some(ID),
            timestamp: Some(stamp),
            signature: Some(signature),
        }
    }

    #[test]
    fn signing_reproduces_the_specifications_example() -> Result<(), SignatureError> {
        let secret = WebhookSecret::parse(SECRET)?;
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        Ok(())
    }

    #[test]
    fn a_matching_signature_among_several_verifies() -> Result<(), SignatureError> {
        let secret = WebhookSecret::parse(SECRET)?;
        let both = format!("v1,bm90IGl0 {SIGNATURE}");
        secret.verify(&headers(&both, "1614265330"), BODY, at(TIMESTAMP + 10))
    }

    #[test]
    fn a_changed_body_is_refused() -> Result<(), SignatureError> {
        let secret = WebhookSecret::parse(SECRET)?;
        let outcome = secret.verify(
            &headers(SIGNATURE, "1614265330"),
            br#"{"test": 2432232315}"#,
            at(TIMESTAMP),
        );
        assert_eq!(outcome, Err(SignatureError::Mismatch));
        Ok(())
    }

    #[test]
    fn a_timestamp_older_than_five_minutes_is_refused() -> Result<(), SignatureError> {
        let secret = WebhookSecret::parse(SECRET)?;
        let outcome = secret.verify(&headers(SIGNATURE, "1614265330"), BODY, at(TIMESTAMP + 301));
        assert_eq!(outcome, Err(SignatureError::Stale { seconds: 301 }));
        Ok(())
    }

    #[test]
    fn missing_headers_and_bad_secrets_are_named() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let none = SignedHeaders::default();
        assert_eq!(
            secret.verify(&none, BODY, at(TIMESTAMP)),
            Err(SignatureError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!").map(|_| ()),
            Err(SignatureError::BadSecret)
        );
    }

    #[test]
    fn a_generated_secret_parses_and_signs() -> Result<(), SignatureError> {
        let text = WebhookSecret::generate();
        let secret = WebhookSecret::parse(&text)?;
        let signature = secret.sign(ID, 1, b"{}");
        secret.verify(&headers(&signature, "1"), b"{}", at(1))
    }
}
