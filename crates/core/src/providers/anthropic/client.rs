//! The Anthropic Message Batches client (also the sandbox's Anthropic side).
//!
//! A chunk file holds one `{"custom_id","params"}` request per line; it is sent as the
//! `{"requests":[…]}` body of `POST /v1/messages/batches`, streamed from the store with the
//! newlines turned into commas on the way — the body is never built in memory. Results are read
//! from the batch's `results_url` (never built by hand). The synchronous lane sends a request
//! line at a time to `POST /v1/messages` and writes its answer as a results line (`sync`).

use super::sync;
use crate::provider::{
    BatchInfo, BatchLookup, BatchState, ChunkUpload, Leftovers, Provider, ProviderError,
    RequestCounts, ResultFile, Submitted,
};
use crate::providers::http::{Auth, CLOCK_SLACK_SECS, Http, describe_reqwest};
use crate::store::ByteStream;
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use secrecy::SecretString;
use serde::Deserialize;

/// The API version batchdrop speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// How far back `find_batch` looks, at most (pages of 100 batches).
const MAX_LIST_PAGES: usize = 20;

pub struct AnthropicProvider {
    http: Http,
}

crate::providers::http::http_provider_common!(AnthropicProvider);

impl AnthropicProvider {
    /// `base_url` without `/v1` (`https://api.anthropic.com`, as `ANTHROPIC_BASE_URL`).
    pub fn new(base_url: &str, key: Option<SecretString>) -> Self {
        Self {
            http: Http::new(
                base_url,
                Auth::Header {
                    name: "x-api-key",
                    key,
                    fixed: &[("anthropic-version", ANTHROPIC_VERSION)],
                },
            ),
        }
    }
}

#[derive(Debug, Deserialize)]
struct BatchList {
    #[serde(default)]
    data: Vec<MessageBatch>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageBatch {
    id: String,
    processing_status: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    request_counts: Counts,
    #[serde(default)]
    results_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Counts {
    #[serde(default)]
    processing: u64,
    #[serde(default)]
    succeeded: u64,
    #[serde(default)]
    errored: u64,
    #[serde(default)]
    canceled: u64,
    #[serde(default)]
    expired: u64,
}

impl MessageBatch {
    fn into_info(self) -> BatchInfo {
        let c = self.request_counts;
        // `ended` is the only final status; each request's own fate is in its result line.
        let state = if self.processing_status == "ended" {
            BatchState::Completed
        } else {
            BatchState::Pending
        };
        BatchInfo {
            id: self.id,
            status: self.processing_status,
            state,
            result_files: self
                .results_url
                .into_iter()
                .filter(|u| !u.is_empty())
                .map(ResultFile::Provider)
                .collect(),
            errors: Vec::new(),
            counts: RequestCounts {
                total: c.processing + c.succeeded + c.errored + c.canceled + c.expired,
                completed: c.succeeded,
                failed: c.errored + c.canceled + c.expired,
            },
        }
    }
}

/// `{"requests":[` + the lines joined by commas + `]}`, streaming.
fn requests_body(lines: ByteStream) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    // A comma is owed once a line with content has ended; whether the line being read has
    // content yet is kept across pieces (its newline may start the next piece).
    let mut pending_comma = false;
    let mut line_has_content = false;
    let middle = lines.map_ok(move |piece| {
        let mut out = BytesMut::with_capacity(piece.len() + 1);
        for part in piece.split_inclusive(|b| *b == b'\n') {
            let (content, ends_line) = match part.split_last() {
                Some((b'\n', rest)) => (rest, true),
                _ => (part, false),
            };
            if !content.is_empty() {
                if pending_comma {
                    out.put_u8(b',');
                    pending_comma = false;
                }
                out.extend_from_slice(content);
                line_has_content = true;
            }
            if ends_line {
                pending_comma |= line_has_content;
                line_has_content = false;
            }
        }
        out.freeze()
    });
    futures::stream::once(async { Ok(Bytes::from_static(b"{\"requests\":[")) })
        .chain(middle)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]}"))
        }))
}

#[async_trait]
impl Provider for AnthropicProvider {
    async fn submit(&self, chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        let http = &self.http;
        let resp = http
            .send_once_created("create message batch", || async {
                let lines = chunk.body.open().await?;
                Ok(http
                    .client
                    .post(http.url("/v1/messages/batches"))
                    .header("content-type", "application/json")
                    .body(reqwest::Body::wrap_stream(requests_body(lines))))
            })
            .await?;
        let batch: MessageBatch = Http::json("create message batch", resp).await?;
        Ok(Submitted {
            batch_id: batch.id,
            input_file_id: None,
        })
    }

    /// Anthropic batches carry no metadata to find them by. The window this covers is the
    /// time between the create call answering and the manifest saving the batch id: a batch
    /// created since the submit began, not known to the job, with this chunk's request count,
    /// is taken as the lost one — only when exactly one such batch exists. Otherwise the chunk
    /// is submitted again (and the orphan, if any, is logged by the provider's console).
    async fn find_batch(
        &self,
        lookup: BatchLookup<'_>,
    ) -> Result<Option<Submitted>, ProviderError> {
        let http = &self.http;
        let mut candidates: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut url = http.url("/v1/messages/batches?limit=100");
            if let Some(a) = &after {
                url.push_str("&after_id=");
                url.push_str(a);
            }
            let resp = http
                .send("list message batches", || async {
                    Ok(http.client.get(&url))
                })
                .await?;
            let page: BatchList = Http::json("list message batches", resp).await?;
            let mut older = false;
            for b in &page.data {
                let created = b
                    .created_at
                    .as_deref()
                    .and_then(|t| {
                        time::OffsetDateTime::parse(
                            t,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    })
                    .map(|t| t.unix_timestamp())
                    .unwrap_or(0);
                if created < lookup.since - CLOCK_SLACK_SECS {
                    older = true;
                    continue;
                }
                let c = &b.request_counts;
                let total = c.processing + c.succeeded + c.errored + c.canceled + c.expired;
                if total == lookup.requests && !lookup.exclude.contains(&b.id) {
                    candidates.push(b.id.clone());
                }
            }
            if older || !page.has_more {
                break;
            }
            after = page
                .last_id
                .or_else(|| page.data.last().map(|b| b.id.clone()));
        }
        Ok(match candidates.as_slice() {
            [only] => Some(Submitted {
                batch_id: only.clone(),
                input_file_id: None,
            }),
            _ => None,
        })
    }

    async fn batch(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let url = self.http.url(&format!("/v1/messages/batches/{batch_id}"));
        let resp = self
            .http
            .send("retrieve message batch", || async {
                Ok(self.http.client.get(&url))
            })
            .await?;
        let batch: MessageBatch = Http::json("retrieve message batch", resp).await?;
        Ok(batch.into_info())
    }

    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let url = self
            .http
            .url(&format!("/v1/messages/batches/{batch_id}/cancel"));
        let resp = self
            .http
            .send("cancel message batch", || async {
                Ok(self.http.client.post(&url))
            })
            .await?;
        let batch: MessageBatch = Http::json("cancel message batch", resp).await?;
        Ok(batch.into_info())
    }

    /// Deletes the ended batch, and with it its results.
    async fn forget(&self, batch: Leftovers<'_>) -> Result<(), ProviderError> {
        self.http
            .delete(
                "delete message batch",
                &format!("/v1/messages/batches/{}", batch.batch_id),
            )
            .await
    }

    /// `file` is the batch's `results_url`.
    async fn download(&self, file: &str) -> Result<ByteStream, ProviderError> {
        let url = if file.starts_with("http://") || file.starts_with("https://") {
            file.to_string()
        } else {
            self.http.url(file)
        };
        let resp = self
            .http
            .send("download message batch results", || async {
                Ok(self.http.client.get(&url))
            })
            .await?;
        Ok(Box::pin(
            resp.bytes_stream()
                .map_err(|e| std::io::Error::other(describe_reqwest(&e))),
        ))
    }

    async fn invoke(&self, _model: &str, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
        sync::invoke(&self.http, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(pieces: &[&'static [u8]]) -> String {
        let stream: ByteStream = Box::pin(futures::stream::iter(
            pieces
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ));
        let all: Vec<Bytes> = requests_body(stream).try_collect().await.unwrap();
        String::from_utf8(all.concat()).unwrap()
    }

    #[tokio::test]
    async fn lines_become_a_json_array_even_split_across_pieces() {
        let body = body_of(&[b"{\"a\":1}\n{\"b\"", b":2}\n", b"{\"c\":3}\n"]).await;
        assert_eq!(body, r#"{"requests":[{"a":1},{"b":2},{"c":3}]}"#);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["requests"].as_array().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_newline_at_the_start_of_a_piece_still_ends_the_line_before() {
        let body = body_of(&[b"{\"a\":1}", b"\n{\"b\":2}", b"\n", b"\n{\"c\":3}\n"]).await;
        assert_eq!(body, r#"{"requests":[{"a":1},{"b":2},{"c":3}]}"#);
    }

    #[tokio::test]
    async fn last_line_without_newline_and_blank_lines() {
        assert_eq!(
            body_of(&[b"{\"a\":1}\n\n{\"b\":2}"]).await,
            r#"{"requests":[{"a":1},{"b":2}]}"#
        );
    }
}
