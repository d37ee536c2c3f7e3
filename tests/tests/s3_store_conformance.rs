//! The S3 store against a moto server: the port's conformance suite, then what is specific to
//! S3 (multipart uploads and their conditions, error mapping). Each test starts its own server.

use batchdrop_core::store::{ByteStream, ObjectStore, ObjectStoreExt, PutMode, StoreError};
use batchdrop_s3::{MIN_PART_SIZE, S3Store};
use batchdrop_tests::TestResult;
use batchdrop_tests::moto::{MotoServer, client_for};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;

const BUCKET: &str = "batchdrop-test";
const MIB: usize = 1024 * 1024;

/// A store on a fresh bucket of a fresh server: 5 MiB parts (the 20 MiB conformance check goes
/// multipart) and 7 keys per listing page (the 26-key listing check takes 4 pages).
async fn started() -> (S3Store, MotoServer) {
    let server = MotoServer::start();
    server
        .create_bucket(BUCKET)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = S3Store::new(server.client(), BUCKET)
        .with_part_size(MIN_PART_SIZE)
        .with_list_page_size(7);
    (store, server)
}

async fn setup() -> (Arc<dyn ObjectStore>, MotoServer) {
    let (store, server) = started().await;
    (Arc::new(store), server)
}

mod conformance {
    use super::setup;

    batchdrop_core::store_conformance_tests!(setup);
}

/// A stream of `total` bytes (`i % 251` at offset `i`) in chunks of `chunk` bytes.
fn pattern_stream(total: usize, chunk: usize) -> ByteStream {
    let data = Bytes::from((0..total).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let chunks: Vec<_> = (0..total)
        .step_by(chunk)
        .map(|start| Ok(data.slice(start..(start + chunk).min(total))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn is_pattern(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8)
}

/// Multipart uploads started and neither completed nor aborted.
async fn open_uploads(store: &S3Store) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let out = store
        .client()
        .list_multipart_uploads()
        .bucket(store.bucket())
        .send()
        .await?;
    Ok(out.uploads().len())
}

#[tokio::test]
async fn multipart_create_on_existing_key_fails_with_already_exists() -> TestResult {
    // GIVEN an object
    let (store, _server) = started().await;
    store
        .put("big", Bytes::from_static(b"first"), PutMode::Create)
        .await?;
    // WHEN a create of the same key streams more than a part
    let result = store
        .put_stream("big", pattern_stream(11 * MIB, MIB), PutMode::Create)
        .await;
    // THEN it fails with AlreadyExists, the object is untouched and the upload is aborted
    assert!(
        matches!(result, Err(StoreError::AlreadyExists { .. })),
        "{result:?}"
    );
    assert_eq!(&store.get_bytes("big").await?[..], b"first");
    assert_eq!(open_uploads(&store).await?, 0);
    Ok(())
}

#[tokio::test]
async fn multipart_update_with_current_etag_replaces_the_object() -> TestResult {
    let (store, _server) = started().await;
    let first = store
        .put("big", Bytes::from_static(b"first"), PutMode::Create)
        .await?;
    let meta = store
        .put_stream(
            "big",
            pattern_stream(11 * MIB, MIB),
            PutMode::Update(first.etag.clone()),
        )
        .await?;
    assert_eq!(meta.size, 11 * MIB as u64);
    assert_ne!(meta.etag, first.etag);
    assert_eq!(store.head("big").await?, meta);
    assert!(is_pattern(&store.get_bytes("big").await?));
    Ok(())
}

#[tokio::test]
#[ignore = "moto 5.2.1 does not check If-Match on CompleteMultipartUpload (S3 does)"]
async fn multipart_update_with_stale_etag_fails_with_precondition() -> TestResult {
    let (store, _server) = started().await;
    let first = store
        .put("big", Bytes::from_static(b"first"), PutMode::Create)
        .await?;
    store
        .put("big", Bytes::from_static(b"second"), PutMode::Overwrite)
        .await?;
    let result = store
        .put_stream(
            "big",
            pattern_stream(11 * MIB, MIB),
            PutMode::Update(first.etag),
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::Precondition { .. })),
        "{result:?}"
    );
    assert_eq!(&store.get_bytes("big").await?[..], b"second");
    assert_eq!(open_uploads(&store).await?, 0);
    Ok(())
}

#[tokio::test]
async fn stream_in_chunks_not_aligned_to_parts_round_trips() -> TestResult {
    // 3 MiB + 1 byte chunks: parts are cut inside chunks, the last part is short
    let (store, _server) = started().await;
    let total = 12 * MIB + 5;
    let meta = store
        .put_stream(
            "odd.bin",
            pattern_stream(total, 3 * MIB + 1),
            PutMode::Overwrite,
        )
        .await?;
    assert_eq!(meta.size, total as u64);
    let got = store.get_bytes("odd.bin").await?;
    assert_eq!(got.len(), total);
    assert!(is_pattern(&got));
    // a multipart ETag ends in -<number of parts>
    assert!(meta.etag.ends_with("-3"), "{}", meta.etag);
    Ok(())
}

#[tokio::test]
async fn stream_shorter_than_a_part_is_a_single_put() -> TestResult {
    let (store, _server) = started().await;
    let meta = store
        .put_stream(
            "small.bin",
            pattern_stream(MIN_PART_SIZE - 1, MIB),
            PutMode::Create,
        )
        .await?;
    assert_eq!(meta.size, (MIN_PART_SIZE - 1) as u64);
    assert!(
        !meta.etag.contains('-'),
        "not a multipart ETag: {}",
        meta.etag
    );
    assert!(is_pattern(&store.get_bytes("small.bin").await?));
    Ok(())
}

#[tokio::test]
async fn empty_stream_creates_an_empty_object() -> TestResult {
    let (store, _server) = started().await;
    let meta = store
        .put_stream("empty", Box::pin(futures::stream::empty()), PutMode::Create)
        .await?;
    assert_eq!(meta.size, 0);
    assert_eq!(store.head("empty").await?.size, 0);
    assert!(store.get_bytes("empty").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn failing_input_stream_aborts_the_upload_and_writes_nothing() -> TestResult {
    // GIVEN a body that fails after more than a part
    let (store, _server) = started().await;
    let good = pattern_stream(7 * MIB, MIB);
    let bad = futures::stream::once(async { Err(std::io::Error::other("source went away")) });
    // WHEN it is streamed
    let result = store
        .put_stream("broken", Box::pin(good.chain(bad)), PutMode::Create)
        .await;
    // THEN the caller gets the I/O error, and neither an object nor an upload is left
    assert!(matches!(result, Err(StoreError::Io { .. })), "{result:?}");
    assert!(!store.exists("broken").await?);
    assert_eq!(open_uploads(&store).await?, 0);
    Ok(())
}

#[tokio::test]
async fn cancelled_multipart_upload_is_aborted() -> TestResult {
    // GIVEN a multipart upload whose first part is stored and whose body then stalls
    let (store, _server) = started().await;
    let (stalled_tx, stalled) = tokio::sync::oneshot::channel();
    let body = futures::stream::iter([Ok(Bytes::from(vec![1u8; 6 * MIB]))]).chain(
        futures::stream::once(async move {
            let _ = stalled_tx.send(()); // polled again: part 1 is uploaded
            futures::future::pending::<std::io::Result<Bytes>>().await
        }),
    );
    let writer = store.clone();
    let task = tokio::spawn(async move {
        writer
            .put_stream("cancelled", Box::pin(body), PutMode::Create)
            .await
    });
    stalled.await?;
    assert_eq!(open_uploads(&store).await?, 1);
    // WHEN the writer's future is dropped
    task.abort();
    assert!(task.await.is_err(), "the task was cancelled");
    // THEN the upload is aborted in the background and no object appears
    wait_for_open_uploads(&store, 0).await?;
    assert!(!store.exists("cancelled").await?);
    Ok(())
}

/// Polls moto until `n` multipart uploads are open (10 s at most).
async fn wait_for_open_uploads(store: &S3Store, n: usize) -> TestResult {
    for _ in 0..1000 {
        if open_uploads(store).await? == n {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err(format!("never saw {n} open upload(s)").into())
}

#[tokio::test]
async fn etags_are_unquoted_and_agree_between_put_head_get_and_list() -> TestResult {
    let (store, _server) = started().await;
    let put = store
        .put("e/tag", Bytes::from_static(b"x"), PutMode::Create)
        .await?;
    assert!(!put.etag.contains('"'), "{}", put.etag);
    assert_eq!(store.head("e/tag").await?.etag, put.etag);
    assert_eq!(store.get("e/tag").await?.meta.etag, put.etag);
    assert_eq!(store.list("e/").await?, vec![put]);
    Ok(())
}

#[tokio::test]
async fn get_streams_a_large_object_in_several_chunks() -> TestResult {
    let (store, _server) = started().await;
    store
        .put("large", Bytes::from(vec![7u8; 6 * MIB]), PutMode::Overwrite)
        .await?;
    let mut body = store.get("large").await?.body;
    let (mut chunks, mut total) = (0, 0);
    while let Some(chunk) = body.next().await {
        chunks += 1;
        total += chunk?.len();
    }
    assert_eq!(total, 6 * MIB);
    assert!(chunks > 1, "the body arrived in {chunks} chunk(s)");
    Ok(())
}

#[tokio::test]
async fn missing_bucket_is_a_non_retryable_backend_error_not_not_found() -> TestResult {
    let (_store, server) = started().await;
    let absent = S3Store::new(server.client(), "no-such-bucket");
    match absent.get("k").await {
        Err(err @ StoreError::Backend { .. }) => {
            assert!(!err.is_retryable(), "{err}");
            assert!(err.to_string().contains("no-such-bucket"), "{err}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn unreachable_endpoint_is_a_retryable_backend_error() -> TestResult {
    // a port nothing listens on, and no SDK retries to wait for
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let client = client_for(&format!("http://127.0.0.1:{port}"));
    let config = client
        .config()
        .to_builder()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    let store = S3Store::new(aws_sdk_s3::Client::from_conf(config), BUCKET);
    let err = store.head("k").await.expect_err("nothing listens there");
    assert!(
        matches!(err, StoreError::Backend { .. }) && err.is_retryable(),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn describe_names_the_bucket() -> TestResult {
    let store = S3Store::new(client_for("http://127.0.0.1:9"), "my-bucket");
    assert_eq!(store.describe(), "s3://my-bucket");
    assert_eq!(store.bucket(), "my-bucket");
    Ok(())
}

#[tokio::test]
async fn part_and_page_sizes_are_clamped_to_s3_limits() -> TestResult {
    let store = S3Store::new(client_for("http://127.0.0.1:9"), "b")
        .with_part_size(1)
        .with_list_page_size(5000);
    assert_eq!(store.part_size(), MIN_PART_SIZE);
    assert_eq!(store.list_page_size(), 1000);
    Ok(())
}

#[tokio::test]
async fn a_download_url_gets_the_object_without_credentials() -> TestResult {
    let (store, _server) = started().await;
    store
        .put(
            "results/r/j/output.jsonl",
            Bytes::from("line 1\nline 2\n"),
            PutMode::Overwrite,
        )
        .await?;
    let url = store
        .download_url(
            "results/r/j/output.jsonl",
            std::time::Duration::from_secs(900),
        )
        .await?
        .ok_or("the S3 store gives download URLs")?;
    assert!(url.contains("X-Amz-Expires=900"), "{url}");
    // a plain GET, no signing client: the URL carries its signature
    let response = reqwest::get(&url).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "line 1\nline 2\n");
    Ok(())
}

#[tokio::test]
async fn a_download_url_valid_longer_than_s3_allows_is_refused() -> TestResult {
    let store = S3Store::new(client_for("http://127.0.0.1:9"), "b");
    let err = store
        .download_url("k", std::time::Duration::from_secs(8 * 24 * 3600))
        .await
        .expect_err("S3 presigns for 7 days at most");
    assert!(
        matches!(err, StoreError::Backend { .. }) && !err.is_retryable(),
        "{err:?}"
    );
    Ok(())
}
