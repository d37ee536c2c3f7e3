//! The S3 object store.
