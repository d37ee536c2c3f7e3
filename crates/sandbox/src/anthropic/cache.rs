//! Anthropic's prompt cache as the sandbox keeps it, so that `usage.cache_read_input_tokens`
//! and `cache_creation_input_tokens` come out as the real API's do.
//!
//! A request caches its prompt up to its last `cache_control` breakpoint (a content block of
//! `system` or of a message that carries one), when that prefix is at least
//! [`MIN_CACHE_TOKENS`] tokens (words); shorter prefixes are not cached, silently. The entry is
//! keyed by the model and the prefix's JSON and lives 5 minutes (`"ttl": "1h"` on the
//! breakpoint: an hour), each read renewing it. A request that finds its entry alive reads it
//! (`cache_read_input_tokens` = the prefix's tokens); otherwise it writes it
//! (`cache_creation_input_tokens`); `input_tokens` counts the rest.
//!
//! Within one message batch, requests do not see each other's writes (the real API runs them
//! in parallel, so a cold batch reads next to nothing): a batch reads what was written before
//! it was created, by `/v1/messages` or by earlier batches, and what it writes serves later
//! batches and messages. `/v1/messages` reads and writes at once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// The shortest prefix cached, in tokens (Anthropic's minimum for Sonnet and Opus models).
pub(crate) const MIN_CACHE_TOKENS: u64 = 1024;
/// How long an entry lives without a read.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// The lifetime of an entry whose breakpoint says `"ttl": "1h"`.
pub(crate) const LONG_TTL: Duration = Duration::from_secs(60 * 60);

/// A request's last cache breakpoint: what it would cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Breakpoint {
    pub key: [u8; 32],
    /// The prompt's tokens up to and including the breakpoint.
    pub tokens: u64,
    pub ttl: Duration,
}

/// What a request did with the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheUse {
    pub read: u64,
    pub written: u64,
}

/// The sandbox's Anthropic prompt cache, shared by its batches and `/v1/messages`.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    expires: SystemTime,
    /// The batch that wrote it (None: a message): that batch does not read it.
    writer: Option<String>,
}

/// One request's way to the cache: when, and for which batch (None: `/v1/messages`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access<'a> {
    pub cache: &'a PromptCache,
    pub at: SystemTime,
    pub batch: Option<&'a str>,
}

impl Access<'_> {
    /// Reads or writes the entry of `breakpoint` (None: the request caches nothing).
    pub(crate) fn use_prefix(&self, breakpoint: Option<&Breakpoint>) -> CacheUse {
        let Some(point) = breakpoint.filter(|point| point.tokens >= MIN_CACHE_TOKENS) else {
            return CacheUse::default();
        };
        let mut entries = self
            .cache
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let expires = self.at + point.ttl;
        if let Some(entry) = entries.get_mut(&point.key)
            && entry.expires > self.at
            && (entry.writer.is_none() || entry.writer.as_deref() != self.batch)
        {
            entry.expires = entry.expires.max(expires);
            return CacheUse {
                read: point.tokens,
                written: 0,
            };
        }
        entries.insert(
            point.key,
            Entry {
                expires,
                writer: self.batch.map(str::to_owned),
            },
        );
        CacheUse {
            read: 0,
            written: point.tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn point(tokens: u64) -> Breakpoint {
        Breakpoint {
            key: [1; 32],
            tokens,
            ttl: DEFAULT_TTL,
        }
    }

    #[test]
    fn a_message_writes_then_a_later_batch_reads_until_the_entry_expires() {
        let cache = PromptCache::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let message = Access {
            cache: &cache,
            at: t0,
            batch: None,
        };
        assert_eq!(message.use_prefix(Some(&point(2000))).written, 2000);
        let batch = Access {
            at: t0 + Duration::from_secs(60),
            batch: Some("b1"),
            ..message
        };
        assert_eq!(batch.use_prefix(Some(&point(2000))).read, 2000);
        let late = Access {
            at: t0 + Duration::from_secs(60) + DEFAULT_TTL,
            batch: Some("b2"),
            ..message
        };
        assert_eq!(late.use_prefix(Some(&point(2000))).read, 0);
    }

    #[test]
    fn a_cold_batch_does_not_read_its_own_writes_but_the_next_batch_does() {
        let cache = PromptCache::default();
        let at = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = Access {
            cache: &cache,
            at,
            batch: Some("b1"),
        };
        assert_eq!(first.use_prefix(Some(&point(1500))).written, 1500);
        assert_eq!(first.use_prefix(Some(&point(1500))).written, 1500);
        let second = Access {
            batch: Some("b2"),
            ..first
        };
        assert_eq!(second.use_prefix(Some(&point(1500))).read, 1500);
    }

    #[test]
    fn a_prefix_below_the_minimum_is_not_cached() {
        let cache = PromptCache::default();
        let access = Access {
            cache: &cache,
            at: UNIX_EPOCH,
            batch: None,
        };
        assert_eq!(access.use_prefix(Some(&point(1023))), CacheUse::default());
        assert_eq!(access.use_prefix(None), CacheUse::default());
    }
}
