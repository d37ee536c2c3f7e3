//! The store conformance suite against the local-directory and in-memory stores.

mod local {
    use batchdrop_core::store::{LocalStore, ObjectStore};
    use std::sync::Arc;

    async fn setup() -> (Arc<dyn ObjectStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LocalStore::new(dir.path()).expect("local store");
        (Arc::new(store), dir)
    }

    batchdrop_core::store_conformance_tests!(setup);

    /// More files open at once than the blocking pool has threads (512): a merge of many
    /// chunks, a plan with many models. Every reader and writer still makes progress.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_open_readers_and_writers_than_blocking_threads_all_progress() {
        use batchdrop_core::store::{PutMode, stream_of};
        use bytes::Bytes;
        use futures::StreamExt;
        const OPEN: usize = 600;
        let (store, _dir) = setup().await;
        let body = Bytes::from(vec![b'x'; 40_000]);

        // Writers: every one open before any is finished.
        let mut senders = Vec::new();
        let mut writes = Vec::new();
        for i in 0..OPEN {
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store
                    .put_stream(&format!("many/{i}"), stream_of(rx), PutMode::Overwrite)
                    .await
            }));
            senders.push(tx);
        }
        for tx in &senders {
            tx.send(Ok(body.slice(..20_000)))
                .await
                .expect("writer alive");
        }
        for tx in senders {
            tx.send(Ok(body.slice(20_000..)))
                .await
                .expect("writer alive");
        }
        for w in writes {
            w.await.expect("task").expect("write");
        }

        // Readers: every one has given its first piece before any is read to the end.
        let mut readers = Vec::new();
        for i in 0..OPEN {
            let mut got = store.get(&format!("many/{i}")).await.expect("get").body;
            let first = got.next().await.expect("a piece").expect("read");
            readers.push((first.len(), got));
        }
        for (mut len, mut rest) in readers {
            while let Some(piece) = rest.next().await {
                len += piece.expect("read").len();
            }
            assert_eq!(len, body.len());
        }
    }
}

mod memory {
    use batchdrop_core::store::{MemoryStore, ObjectStore};
    use std::sync::Arc;

    async fn setup() -> (Arc<dyn ObjectStore>, ()) {
        (Arc::new(MemoryStore::new()), ())
    }

    batchdrop_core::store_conformance_tests!(setup);
}
