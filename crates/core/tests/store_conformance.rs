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
}

mod memory {
    use batchdrop_core::store::{MemoryStore, ObjectStore};
    use std::sync::Arc;

    async fn setup() -> (Arc<dyn ObjectStore>, ()) {
        (Arc::new(MemoryStore::new()), ())
    }

    batchdrop_core::store_conformance_tests!(setup);
}
