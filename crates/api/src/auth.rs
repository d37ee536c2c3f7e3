//! Who is calling: API keys and the tenants they belong to.
//!
//! The keys file (TOML) lists the tenants; a key is stored only as the hex of its SHA-256:
//!
//! ```toml
//! [[tenant]]
//! name = "acme"                       # [a-z0-9_-]{1,64}: the tenant's prefix in the bucket
//! key_sha256 = "9f86d08…"             # sha256 of the key, 64 hex digits
//! routes = ["sandbox", "openai"]      # the routes its batches may run on
//! default_route = "sandbox"           # the route of /v1/…; /routes/<route>/v1/… picks another
//! # optional: a signed POST (Standard Webhooks) when each of its batches ends
//! webhook_url = "https://hooks.acme.example/batchdrop"
//! webhook_secret_env = "ACME_WEBHOOK_SECRET"   # whsec_…; or webhook_secret_arn = "arn:…"
//! webhook_events = ["job", "batch"]            # also one per provider batch collected
//! ```
//!
//! A tenant's webhook goes with every batch its key creates (the job keeps the URL; the secret
//! stays a reference, resolved by each process from its own keys file), besides any webhook of
//! the route.
//!
//! A request's key (`Authorization: Bearer <key>`, else `x-api-key: <key>`) is hashed and its
//! digest compared with every tenant's in constant time ([`subtle`]), all of them every time.
//! Keys are never logged and never kept: only their digests are.

use batchdrop_core::config::{WebhookTarget, webhook_of};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Bytes of randomness in a key made by [`new_key`].
const KEY_BYTES: usize = 24;
/// What every key made by [`new_key`] starts with.
pub const KEY_PREFIX: &str = "bdk_";

/// One tenant: its name (the prefix of its objects) and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub routes: BTreeSet<String>,
    pub default_route: String,
    /// Where the webhooks about its batches go, and the secret that signs them (by reference).
    pub webhook: Option<WebhookTarget>,
    digest: [u8; 32],
}

impl Tenant {
    /// Whether its batches may run on `route`.
    pub fn may_use(&self, route: &str) -> bool {
        self.routes.contains(route)
    }
}

/// Every tenant of the keys file.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    tenants: Vec<Arc<Tenant>>,
}

/// Why a keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the keys file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the keys file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("tenant name {name:?} must be 1 to 64 of a-z, 0-9, '_' and '-'")]
    BadName { name: String },
    #[error("tenant {name:?} is listed twice")]
    DuplicateName { name: String },
    #[error("tenant {name:?}: key_sha256 must be 64 hex digits (the SHA-256 of the key)")]
    BadDigest { name: String },
    #[error("tenants {first:?} and {second:?} have the same key")]
    DuplicateKey { first: String, second: String },
    #[error("tenant {name:?}: default_route {route:?} is not one of its routes")]
    DefaultNotAllowed { name: String, route: String },
    #[error(
        "tenant {name:?}: route name {route:?} must be 1 to 64 of a-z, A-Z, 0-9, '_', '-' and '.'"
    )]
    BadRoute { name: String, route: String },
    #[error("tenant {name:?}: {reason}")]
    BadWebhook { name: String, reason: String },
}

/// The keys file as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    tenant: Vec<TenantEntry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    name: String,
    key_sha256: String,
    routes: Vec<String>,
    default_route: String,
    webhook_url: Option<String>,
    webhook_secret_env: Option<String>,
    webhook_secret_arn: Option<String>,
    webhook_events: Option<Vec<String>>,
}

impl Keys {
    /// Reads and checks a keys file.
    pub fn from_path(path: &Path) -> Result<Keys, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Keys::from_toml(&text)
    }

    /// Parses and checks the text of a keys file.
    pub fn from_toml(text: &str) -> Result<Keys, KeysError> {
        let file: KeysFile = toml::from_str(text)?;
        let mut tenants: Vec<Arc<Tenant>> = Vec::new();
        for entry in file.tenant {
            if !is_plain_name(&entry.name, false) {
                return Err(KeysError::BadName { name: entry.name });
            }
            if tenants.iter().any(|t| t.name == entry.name) {
                return Err(KeysError::DuplicateName { name: entry.name });
            }
            let mut digest = [0u8; 32];
            if hex::decode_to_slice(entry.key_sha256.trim(), &mut digest).is_err() {
                return Err(KeysError::BadDigest { name: entry.name });
            }
            if let Some(other) = tenants.iter().find(|t| t.digest == digest) {
                return Err(KeysError::DuplicateKey {
                    first: other.name.clone(),
                    second: entry.name,
                });
            }
            if let Some(route) = entry.routes.iter().find(|r| !is_plain_name(r, true)) {
                return Err(KeysError::BadRoute {
                    name: entry.name.clone(),
                    route: route.clone(),
                });
            }
            let routes: BTreeSet<String> = entry.routes.into_iter().collect();
            if !routes.contains(&entry.default_route) {
                return Err(KeysError::DefaultNotAllowed {
                    name: entry.name,
                    route: entry.default_route,
                });
            }
            let webhook = webhook_of(
                entry.webhook_url,
                entry.webhook_secret_env,
                entry.webhook_secret_arn,
                entry.webhook_events,
                None,
            )
            .map_err(|reason| KeysError::BadWebhook {
                name: entry.name.clone(),
                reason,
            })?;
            tenants.push(Arc::new(Tenant {
                name: entry.name,
                routes,
                default_route: entry.default_route,
                webhook,
                digest,
            }));
        }
        Ok(Keys { tenants })
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The tenants with a webhook, and their targets: what signs their webhooks
    /// (`Webhooks::with_tenants`).
    pub fn webhooks(&self) -> impl Iterator<Item = (&str, &WebhookTarget)> {
        self.tenants
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.webhook.as_ref()?)))
    }

    /// The tenant whose key is `key`, if any. Every tenant's digest is compared, in constant
    /// time, whichever matches.
    pub fn tenant_of(&self, key: &str) -> Option<Arc<Tenant>> {
        let digest = digest_of(key);
        let mut found = None;
        for tenant in &self.tenants {
            if bool::from(tenant.digest.ct_eq(&digest)) {
                found = Some(tenant.clone());
            }
        }
        found
    }
}

/// The key a request carries: `Authorization: Bearer <key>`, else `x-api-key`.
pub fn key_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        })
        .filter(|k| !k.is_empty())
}

/// The SHA-256 of a key: what the keys file holds.
pub fn digest_of(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random key and the hex of its SHA-256 (the `key_sha256` of the keys file).
pub fn new_key() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::getrandom(&mut bytes)?;
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let digest = hex::encode(digest_of(&key));
    Ok((key, digest))
}

/// The keys-file entry of a tenant with the key digest `digest`.
pub fn keys_file_entry(name: &str, digest: &str, routes: &[String], default_route: &str) -> String {
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[[tenant]]\nname = {name:?}\nkey_sha256 = {digest:?}\nroutes = [{}]\ndefault_route = {default_route:?}\n",
        routes.join(", ")
    )
}

/// The keys-file lines of a tenant's webhook (those given), to follow its entry.
pub fn webhook_entry_lines(
    url: Option<&str>,
    secret_env: Option<&str>,
    secret_arn: Option<&str>,
) -> String {
    [
        ("webhook_url", url),
        ("webhook_secret_env", secret_env),
        ("webhook_secret_arn", secret_arn),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some(format!("{name} = {:?}\n", value?)))
    .collect()
}

/// Whether `name` is a tenant name (`[a-z0-9_-]{1,64}`) or, with `route`, a route name (also
/// upper case and `.`).
pub fn is_plain_name(name: &str, route: bool) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'_'
                || b == b'-'
                || (route && (b.is_ascii_uppercase() || b == b'.'))
        })
        && !(route && (name == "." || name == ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entries: &str) -> Result<Keys, KeysError> {
        Keys::from_toml(entries)
    }

    #[test]
    fn a_key_finds_its_tenant_and_only_its_tenant() -> Result<(), Box<dyn std::error::Error>> {
        let (a, a_digest) = new_key()?;
        let (b, b_digest) = new_key()?;
        let routes = vec!["sandbox".to_string()];
        let text = format!(
            "{}\n{}",
            keys_file_entry("acme", &a_digest, &routes, "sandbox"),
            keys_file_entry("globex", &b_digest, &routes, "sandbox")
        );
        let keys = keys(&text)?;
        assert_eq!(
            keys.tenant_of(&a).map(|t| t.name.clone()).as_deref(),
            Some("acme")
        );
        assert_eq!(
            keys.tenant_of(&b).map(|t| t.name.clone()).as_deref(),
            Some("globex")
        );
        assert!(keys.tenant_of("bdk_wrong").is_none());
        assert!(
            keys.tenant_of(&a_digest).is_none(),
            "the digest is not the key"
        );
        Ok(())
    }

    #[test]
    fn a_default_route_outside_the_routes_is_refused() {
        let text = format!(
            "[[tenant]]\nname = \"acme\"\nkey_sha256 = \"{}\"\nroutes = [\"openai\"]\ndefault_route = \"sandbox\"\n",
            "ab".repeat(32)
        );
        assert!(matches!(
            keys(&text),
            Err(KeysError::DefaultNotAllowed { .. })
        ));
    }

    #[test]
    fn tenant_names_that_could_leave_the_prefix_are_refused() {
        for name in ["../x", "a/b", "", "Acme", "a.b"] {
            let text = format!(
                "[[tenant]]\nname = {name:?}\nkey_sha256 = \"{}\"\nroutes = [\"s\"]\ndefault_route = \"s\"\n",
                "ab".repeat(32)
            );
            assert!(
                matches!(keys(&text), Err(KeysError::BadName { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_tenant_webhook_is_read_with_its_secret_by_reference() -> Result<(), KeysError> {
        let text = format!(
            "[[tenant]]\nname = \"acme\"\nkey_sha256 = \"{}\"\nroutes = [\"s\"]\ndefault_route = \"s\"\nwebhook_url = \"https://hooks.example.com/b\"\nwebhook_secret_env = \"ACME_SECRET\"\nwebhook_events = [\"job\", \"batch\"]\n",
            "ab".repeat(32)
        );
        let keys = keys(&text)?;
        let hooks: Vec<(&str, &WebhookTarget)> = keys.webhooks().collect();
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].0, "acme");
        assert_eq!(hooks[0].1.url, "https://hooks.example.com/b");
        assert_eq!(
            hooks[0].1.secret,
            batchdrop_core::config::KeySource::Env("ACME_SECRET".into())
        );
        assert!(hooks[0].1.batches);
        Ok(())
    }

    #[test]
    fn a_tenant_webhook_without_a_secret_or_to_a_metadata_address_is_refused() {
        for hook in [
            "webhook_url = \"https://hooks.example.com/b\"\n",
            "webhook_url = \"http://169.254.169.254/latest\"\nwebhook_secret_env = \"S\"\n",
            "webhook_url = \"ftp://hooks.example.com/\"\nwebhook_secret_env = \"S\"\n",
            "webhook_secret_env = \"S\"\n",
        ] {
            let text = format!(
                "[[tenant]]\nname = \"acme\"\nkey_sha256 = \"{}\"\nroutes = [\"s\"]\ndefault_route = \"s\"\n{hook}",
                "ab".repeat(32)
            );
            assert!(
                matches!(keys(&text), Err(KeysError::BadWebhook { .. })),
                "{hook}"
            );
        }
    }

    #[test]
    fn a_digest_that_is_not_64_hex_digits_is_refused() {
        let text = "[[tenant]]\nname = \"acme\"\nkey_sha256 = \"abc\"\nroutes = [\"s\"]\ndefault_route = \"s\"\n";
        assert!(matches!(keys(text), Err(KeysError::BadDigest { .. })));
    }

    #[test]
    fn the_bearer_header_wins_over_x_api_key() -> Result<(), Box<dyn std::error::Error>> {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-api-key", "from-x".parse()?);
        assert_eq!(key_of(&headers), Some("from-x"));
        headers.insert("authorization", "Bearer from-bearer".parse()?);
        assert_eq!(key_of(&headers), Some("from-bearer"));
        Ok(())
    }
}
