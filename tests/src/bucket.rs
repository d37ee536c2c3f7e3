//! Looking at a bucket the way a user would, with a plain S3 client (not batchdrop's store):
//! upload a file, read an object, list keys.

use crate::BoxError;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use std::path::Path;

/// Uploads the file at `path` under `key` with one `PutObject`; returns its ETag, unquoted.
pub async fn upload_file(
    client: &Client,
    bucket: &str,
    key: &str,
    path: &Path,
) -> Result<String, BoxError> {
    let body = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let out = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| format!("uploading {key}: {}", DisplayErrorContext(&e)))?;
    Ok(out
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string())
}

/// The object's body as text.
pub async fn read_text(client: &Client, bucket: &str, key: &str) -> Result<String, BoxError> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("reading {key}: {}", DisplayErrorContext(&e)))?;
    let bytes = out.body.collect().await?.into_bytes();
    Ok(String::from_utf8(bytes.to_vec())?)
}

/// Whether an object exists.
pub async fn exists(client: &Client, bucket: &str, key: &str) -> Result<bool, BoxError> {
    match client.head_object().bucket(bucket).key(key).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
        Err(e) => Err(format!("head {key}: {}", DisplayErrorContext(&e)).into()),
    }
}

/// Every key under `prefix` (`""` for the whole bucket), sorted.
pub async fn keys(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, BoxError> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("listing {prefix:?}: {}", DisplayErrorContext(&e)))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
    }
    keys.sort();
    Ok(keys)
}
