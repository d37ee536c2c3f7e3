//! The object store conformance suite: every [`ObjectStore`] implementation must pass it.
//!
//! Each check is a public async function over `&dyn ObjectStore`; the
//! [`store_conformance_tests!`](crate::store_conformance_tests) macro turns them into one test
//! each for a backend, given an async setup function returning `(Arc<dyn ObjectStore>, guard)`.

use super::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, StoreError, ext::bytes_stream};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;

pub type CheckResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn fail(msg: String) -> CheckResult {
    Err(msg.into())
}

pub async fn put_then_get_returns_same_bytes(store: &dyn ObjectStore) -> CheckResult {
    let meta = store
        .put(
            "conf/a.txt",
            Bytes::from_static(b"hello"),
            PutMode::Overwrite,
        )
        .await?;
    let got = store.get_bytes("conf/a.txt").await?;
    assert_eq!(&got[..], b"hello");
    let head = store.head("conf/a.txt").await?;
    assert_eq!(head.size, 5);
    assert_eq!(head.etag, meta.etag, "head and put agree on the ETag");
    Ok(())
}

pub async fn get_from_an_offset_returns_the_rest(store: &dyn ObjectStore) -> CheckResult {
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let meta = store
        .put_stream(
            "conf/ranged.bin",
            bytes_stream(Bytes::from(body.clone())),
            PutMode::Overwrite,
        )
        .await?;
    for offset in [0u64, 1, 1_048_577, 2_999_999] {
        let got = store.get_from("conf/ranged.bin", offset).await?;
        assert_eq!(got.meta.size, body.len() as u64, "size of the whole object");
        assert_eq!(got.meta.etag, meta.etag);
        let mut rest = Vec::new();
        let mut stream = got.body;
        while let Some(piece) = stream.next().await {
            rest.extend_from_slice(&piece?);
        }
        if rest != body[offset as usize..] {
            return fail(format!(
                "from offset {offset}: {} bytes, expected {}",
                rest.len(),
                body.len() as u64 - offset
            ));
        }
    }
    Ok(())
}

pub async fn missing_object_is_not_found(store: &dyn ObjectStore) -> CheckResult {
    match store.get("conf/missing").await {
        Err(StoreError::NotFound { .. }) => {}
        other => return fail(format!("get: expected NotFound, got {other:?}")),
    }
    match store.head("conf/missing").await {
        Err(StoreError::NotFound { .. }) => Ok(()),
        other => fail(format!("head: expected NotFound, got {other:?}")),
    }
}

pub async fn create_fails_when_object_exists(store: &dyn ObjectStore) -> CheckResult {
    store
        .put("conf/c", Bytes::from_static(b"1"), PutMode::Create)
        .await?;
    match store
        .put("conf/c", Bytes::from_static(b"2"), PutMode::Create)
        .await
    {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => return fail(format!("expected AlreadyExists, got {other:?}")),
    }
    assert_eq!(
        &store.get_bytes("conf/c").await?[..],
        b"1",
        "first write kept"
    );
    Ok(())
}

pub async fn update_succeeds_only_with_current_etag(store: &dyn ObjectStore) -> CheckResult {
    let first = store
        .put("conf/u", Bytes::from_static(b"v1"), PutMode::Create)
        .await?;
    let second = store
        .put(
            "conf/u",
            Bytes::from_static(b"v2"),
            PutMode::Update(first.etag.clone()),
        )
        .await?;
    assert_ne!(first.etag, second.etag, "a write changes the ETag");
    match store
        .put(
            "conf/u",
            Bytes::from_static(b"v3"),
            PutMode::Update(first.etag),
        )
        .await
    {
        Err(StoreError::Precondition { .. }) => {}
        other => return fail(format!("stale ETag: expected Precondition, got {other:?}")),
    }
    assert_eq!(&store.get_bytes("conf/u").await?[..], b"v2");
    Ok(())
}

pub async fn update_of_missing_object_fails(store: &dyn ObjectStore) -> CheckResult {
    match store
        .put(
            "conf/none",
            Bytes::from_static(b"x"),
            PutMode::Update("\"abc\"".into()),
        )
        .await
    {
        Err(StoreError::Precondition { .. }) | Err(StoreError::NotFound { .. }) => Ok(()),
        other => fail(format!("expected Precondition, got {other:?}")),
    }
}

pub async fn overwrite_changes_etag(store: &dyn ObjectStore) -> CheckResult {
    let a = store
        .put("conf/o", Bytes::from_static(b"same"), PutMode::Overwrite)
        .await?;
    let b = store
        .put("conf/o", Bytes::from_static(b"other"), PutMode::Overwrite)
        .await?;
    assert_ne!(a.etag, b.etag);
    Ok(())
}

/// 20 MiB in 1 MiB pieces: above the S3 store's multipart threshold.
pub async fn large_stream_put_round_trips(store: &dyn ObjectStore) -> CheckResult {
    let piece: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let piece = Bytes::from(piece);
    let pieces = 20;
    let body = futures::stream::iter((0..pieces).map(move |_| Ok(piece.clone())));
    let meta = store
        .put_stream("conf/big.bin", Box::pin(body), PutMode::Create)
        .await?;
    assert_eq!(meta.size, pieces * 1024 * 1024);
    let mut got = store.get("conf/big.bin").await?;
    assert_eq!(got.meta.size, meta.size);
    let mut total = 0u64;
    while let Some(chunk) = got.body.next().await {
        let chunk = chunk?;
        for (i, b) in chunk.iter().enumerate() {
            let pos = total + i as u64;
            if *b != ((pos % (1024 * 1024)) % 251) as u8 {
                return fail(format!("byte {pos} differs"));
            }
        }
        total += chunk.len() as u64;
    }
    assert_eq!(total, meta.size);
    Ok(())
}

pub async fn stream_put_honours_create(store: &dyn ObjectStore) -> CheckResult {
    store
        .put("conf/s", Bytes::from_static(b"first"), PutMode::Overwrite)
        .await?;
    match store
        .put_stream(
            "conf/s",
            bytes_stream(Bytes::from_static(b"second")),
            PutMode::Create,
        )
        .await
    {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => return fail(format!("expected AlreadyExists, got {other:?}")),
    }
    let etag = store.head("conf/s").await?.etag;
    store
        .put_stream(
            "conf/s",
            bytes_stream(Bytes::from_static(b"third")),
            PutMode::Update(etag),
        )
        .await?;
    assert_eq!(&store.get_bytes("conf/s").await?[..], b"third");
    Ok(())
}

/// Lists more keys than one page of a paginating backend configured with a small page size.
pub async fn list_returns_all_keys_under_prefix_in_order(store: &dyn ObjectStore) -> CheckResult {
    let mut expected = Vec::new();
    for i in (0..25).rev() {
        let key = format!("conf/list/k{i:03}");
        store
            .put(&key, Bytes::from(format!("{i}")), PutMode::Overwrite)
            .await?;
        expected.push(key);
    }
    store
        .put(
            "conf/listing-neighbour",
            Bytes::from_static(b"x"),
            PutMode::Overwrite,
        )
        .await?;
    store
        .put(
            "conf/list/sub/deep",
            Bytes::from_static(b"d"),
            PutMode::Overwrite,
        )
        .await?;
    expected.push("conf/list/sub/deep".into());
    expected.sort();
    let listed: Vec<String> = store
        .list("conf/list/")
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed, expected);
    let partial: Vec<String> = store
        .list("conf/list/k01")
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(partial.len(), 10, "k010..k019: {partial:?}");
    Ok(())
}

/// Reads a listing a page at a time, pages longer than a paginating backend's own.
pub async fn list_after_reads_one_page_from_a_key_on(store: &dyn ObjectStore) -> CheckResult {
    for i in 0..25 {
        store
            .put(
                &format!("conf/page/k{i:03}"),
                Bytes::from_static(b"p"),
                PutMode::Overwrite,
            )
            .await?;
    }
    store
        .put("conf/pages", Bytes::from_static(b"x"), PutMode::Overwrite)
        .await?;
    let keys =
        |metas: Vec<ObjectMeta>| -> Vec<String> { metas.into_iter().map(|m| m.key).collect() };
    let first = keys(store.list_after("conf/page/", None, 12).await?);
    assert_eq!(first.len(), 12);
    assert_eq!(first[0], "conf/page/k000");
    assert_eq!(first[11], "conf/page/k011");
    let next = keys(store.list_after("conf/page/", Some(&first[11]), 12).await?);
    assert_eq!(next.first().map(String::as_str), Some("conf/page/k012"));
    assert_eq!(next.last().map(String::as_str), Some("conf/page/k023"));
    let last = keys(store.list_after("conf/page/", Some(&next[11]), 12).await?);
    assert_eq!(last, vec!["conf/page/k024".to_string()]);
    // `after` need not be a key, and may sort before the prefix.
    let from = keys(
        store
            .list_after("conf/page/", Some("conf/page/k0095"), 2)
            .await?,
    );
    assert_eq!(from, vec!["conf/page/k010", "conf/page/k011"]);
    let all = keys(store.list_after("conf/page/", Some("a"), 100).await?);
    assert_eq!(all.len(), 25);
    Ok(())
}

pub async fn keys_with_spaces_and_unicode_work(store: &dyn ObjectStore) -> CheckResult {
    let key = "conf/odd/my file+(1) é 日本.jsonl";
    store
        .put(key, Bytes::from_static(b"odd"), PutMode::Create)
        .await?;
    assert_eq!(&store.get_bytes(key).await?[..], b"odd");
    let listed = store.list("conf/odd/").await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    Ok(())
}

pub async fn delete_is_idempotent(store: &dyn ObjectStore) -> CheckResult {
    store
        .put("conf/d", Bytes::from_static(b"x"), PutMode::Overwrite)
        .await?;
    store.delete("conf/d").await?;
    store.delete("conf/d").await?;
    assert!(!store.exists("conf/d").await?);
    Ok(())
}

/// 16 concurrent creates of one key: exactly one wins.
pub async fn concurrent_creates_have_one_winner(store: Arc<dyn ObjectStore>) -> CheckResult {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put(
                        "conf/race-create",
                        Bytes::from(format!("writer {i}")),
                        PutMode::Create,
                    )
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => winners += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return fail(format!("unexpected error in race: {e}")),
        }
    }
    assert_eq!(winners, 1);
    Ok(())
}

/// 8 concurrent compare-and-swaps from the same ETag: exactly one wins.
pub async fn concurrent_updates_have_one_winner(store: Arc<dyn ObjectStore>) -> CheckResult {
    let base = store
        .put(
            "conf/race-cas",
            Bytes::from_static(b"0"),
            PutMode::Overwrite,
        )
        .await?;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let etag = base.etag.clone();
            tokio::spawn(async move {
                store
                    .put(
                        "conf/race-cas",
                        Bytes::from(format!("writer {i}")),
                        PutMode::Update(etag),
                    )
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => winners += 1,
            Err(StoreError::Precondition { .. }) => {}
            Err(e) => return fail(format!("unexpected error in race: {e}")),
        }
    }
    assert_eq!(winners, 1);
    Ok(())
}

/// Generates one `#[tokio::test]` per conformance check for a backend.
///
/// `$setup` is an async fn returning `(Arc<dyn ObjectStore>, G)`; `G` is kept alive for the
/// test's duration (a server guard, a temp dir).
#[macro_export]
macro_rules! store_conformance_tests {
    ($setup:path) => {
        $crate::store_conformance_tests!(@each $setup;
            put_then_get_returns_same_bytes,
            get_from_an_offset_returns_the_rest,
            missing_object_is_not_found,
            create_fails_when_object_exists,
            update_succeeds_only_with_current_etag,
            update_of_missing_object_fails,
            overwrite_changes_etag,
            large_stream_put_round_trips,
            stream_put_honours_create,
            list_returns_all_keys_under_prefix_in_order,
            list_after_reads_one_page_from_a_key_on,
            keys_with_spaces_and_unicode_work,
            delete_is_idempotent;
            concurrent_creates_have_one_winner,
            concurrent_updates_have_one_winner
        );
    };
    (@each $setup:path; $($check:ident),*; $($arc_check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() -> $crate::store::conformance::CheckResult {
                let (store, _guard) = $setup().await;
                $crate::store::conformance::$check(&*store).await
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $arc_check() -> $crate::store::conformance::CheckResult {
                let (store, _guard) = $setup().await;
                $crate::store::conformance::$arc_check(store).await
            }
        )*
    };
}
