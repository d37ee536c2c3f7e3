//! Stored answers: read by their byte range in a chunk's results, and written into a new
//! job's output as the provider's answer under the new line's `custom_id`, marked with where
//! it came from.

use crate::provider::Dialect;
use crate::store::{ObjectStore, StoreError};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The field of an output line that says it was reused, and from where.
pub const MARK: &str = "batchdrop";

/// Reads answers by (object, offset, length). An answer that starts where the last one ended
/// (the next line of the same results, as when the same file comes again) is read from the
/// same stream: a run of adjacent answers costs one read of the store.
pub struct Fetcher {
    store: Arc<dyn ObjectStore>,
    open: Option<Open>,
}

struct Open {
    key: String,
    /// The offset the stream is at.
    at: u64,
    body: Box<dyn AsyncRead + Send + Unpin>,
}

impl Fetcher {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, open: None }
    }

    /// The `len` bytes at `offset` of object `key`.
    pub async fn fetch(&mut self, key: &str, offset: u64, len: u32) -> Result<Vec<u8>, StoreError> {
        let reusable = self
            .open
            .as_ref()
            .is_some_and(|o| o.key == key && o.at <= offset && offset - o.at <= 64 * 1024);
        if !reusable {
            let got = self.store.get_from(key, offset).await?;
            self.open = Some(Open {
                key: key.to_string(),
                at: offset,
                body: Box::new(tokio_util::io::StreamReader::new(got.body)),
            });
        }
        let Some(open) = self.open.as_mut() else {
            return Err(StoreError::io_at(key, std::io::ErrorKind::NotFound.into()));
        };
        // Skip what lies between (the newline, answers not wanted).
        let gap = offset - open.at;
        if gap > 0 {
            tokio::io::copy(&mut (&mut open.body).take(gap), &mut tokio::io::sink())
                .await
                .map_err(|e| StoreError::io_at(key, e))?;
        }
        let mut answer = vec![0u8; len as usize];
        open.body
            .read_exact(&mut answer)
            .await
            .map_err(|e| StoreError::io_at(key, e))?;
        open.at = offset + u64::from(len);
        Ok(answer)
    }
}

/// The output line of a reused `answer` (an output line of job `job`, input line `line`):
/// the same answer under `custom_id`, with `"batchdrop": {"reused_from": {"job", "line"}}`.
pub fn marked(
    dialect: &dyn Dialect,
    answer: &[u8],
    custom_id: &str,
    job: &str,
    line: u64,
) -> Vec<u8> {
    let renamed = dialect.with_custom_id(answer, custom_id);
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&renamed) {
        Ok(mut map) => {
            map.insert(
                MARK.into(),
                serde_json::json!({"reused_from": {"job": job, "line": line}}),
            );
            serde_json::to_vec(&map).unwrap_or(renamed)
        }
        Err(_) => renamed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::openai;
    use crate::store::{MemoryStore, PutMode};
    use bytes::Bytes;

    #[tokio::test]
    async fn answers_are_read_by_range_adjacent_or_not() -> Result<(), StoreError> {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        store
            .put(
                "r",
                Bytes::from_static(b"aaa\nbb\ncccc\nd\n"),
                PutMode::Overwrite,
            )
            .await?;
        let mut f = Fetcher::new(store);
        assert_eq!(f.fetch("r", 4, 2).await?, b"bb");
        assert_eq!(f.fetch("r", 7, 4).await?, b"cccc");
        assert_eq!(f.fetch("r", 0, 3).await?, b"aaa");
        assert_eq!(f.fetch("r", 12, 1).await?, b"d");
        Ok(())
    }

    #[test]
    fn a_reused_answer_takes_the_new_id_and_says_where_it_came_from() {
        let answer = br#"{"id":"batch_req_1","custom_id":"old","response":{"status_code":200,"body":{}},"error":null}"#;
        let line = marked(&openai::DIALECT, answer, "new", "j1", 7);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
        assert_eq!(v["custom_id"], "new");
        assert_eq!(v["id"], "batch_req_1");
        assert_eq!(v["response"]["status_code"], 200);
        assert_eq!(v["batchdrop"]["reused_from"]["job"], "j1");
        assert_eq!(v["batchdrop"]["reused_from"]["line"], 7);
    }
}
