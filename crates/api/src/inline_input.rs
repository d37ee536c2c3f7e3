//! A batch whose requests come inline, in the create request's body (Anthropic's
//! `{"requests":[…]}`, batchdrop's `{"prompts":[…]}`): the array's elements are written, one
//! line each and as they arrive ([`crate::array_body`]), as an upload of the tenant's
//! (`file-<token>`, purpose `batch`), which becomes the batch's input file like any other. A
//! body that turns out malformed, or empty, leaves no object behind.

use crate::array_body::ArrayBody;
use crate::ids::{self, FileId};
use crate::openai::errors::ApiError;
use crate::records::FileRecord;
use crate::tenant_store::TenantStore;
use axum::body::Body;
use batchdrop_core::store::ByteStream;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};

/// Pieces in flight between the request and the bucket.
const PIECES: usize = 4;

/// An inline input, written.
#[derive(Debug)]
pub struct Written {
    pub file_token: String,
    pub lines: u64,
    /// The body's other top-level fields.
    pub others: Map<String, Value>,
}

/// Writes the elements of the array field `field` of `body` as an upload named `filename`,
/// each turned into its line by `to_line`.
pub async fn write(
    tenant: &TenantStore,
    body: Body,
    field: &'static str,
    filename: &str,
    created_at: i64,
    to_line: fn(Vec<u8>) -> Vec<u8>,
) -> Result<Written, ApiError> {
    let token = ids::new_file_token()?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(PIECES);
    let stream: ByteStream =
        futures::stream::unfold(
            receiver,
            |mut r| async move { r.recv().await.map(|p| (p, r)) },
        )
        .boxed();
    let put = tokio::spawn({
        let tenant = tenant.clone();
        let token = token.clone();
        async move { tenant.put_content(&token, stream).await }
    });
    let mut reader = ArrayBody::new(field);
    let mut pieces = body.into_data_stream();
    let mut refused: Option<ApiError> = None;
    while let Some(piece) = pieces.next().await {
        let elements = piece
            .map_err(|e| ApiError::bad_request(format!("The body could not be read: {e}"), None))
            .and_then(|piece| {
                reader
                    .push(&piece)
                    .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}."), None))
            });
        let elements = match elements {
            Ok(elements) => elements,
            Err(e) => {
                refused = Some(e);
                break;
            }
        };
        if elements.is_empty() {
            continue;
        }
        let mut lines = Vec::new();
        for element in elements {
            lines.extend(to_line(element));
            lines.push(b'\n');
        }
        if sender.send(Ok(Bytes::from(lines))).await.is_err() {
            break; // the put stopped: its error says why
        }
    }
    let finished = match refused {
        Some(e) => Err(e),
        None => reader
            .finish()
            .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}."), None)),
    };
    let finished = finished.and_then(|(lines, others)| {
        if lines == 0 {
            Err(ApiError::bad_request(
                format!("`{field}` must hold at least one element."),
                Some(field),
            ))
        } else {
            Ok((lines, others))
        }
    });
    if finished.is_err() {
        // Fails the put: a refused body never becomes an object.
        let _ = sender
            .send(Err(std::io::Error::other("the body was refused")))
            .await;
    }
    drop(sender);
    let written = put.await?;
    let (lines, others) = finished?;
    let meta = written?;
    let record = FileRecord {
        id: FileId::Upload(token.clone()).id(),
        bytes: meta.size,
        created_at,
        filename: filename.to_string(),
        purpose: "batch".to_string(),
    };
    tenant.put_file(&token, &record).await?;
    Ok(Written {
        file_token: token,
        lines,
        others,
    })
}
