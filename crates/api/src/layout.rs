//! Where the Batch API keeps a tenant's files and batches in the bucket, the id of the engine
//! job a batch runs as, and where that job's results go.
//!
//! ```text
//! _batchdrop/api/<tenant>/files/<token>/content      an uploaded file, byte for byte
//! _batchdrop/api/<tenant>/files/<token>/file.json    what describes it (name, size, purpose)
//! _batchdrop/api/<tenant>/batches/<token>.json       a batch: its request, route and job
//! _batchdrop/api/<tenant>/uploads/<token>/upload.json an upload in parts (Uploads API)
//! _batchdrop/api/<tenant>/uploads/<token>/parts/<part token>   one part, byte for byte
//! results/<route>/api/<tenant>/<batch id>/            the job's output.jsonl, errors.jsonl,
//!                                                     summary.json
//! ```
//!
//! Nothing is written under `inbox/`. Tenant names and tokens are checked before they get
//! here (`auth`, `ids`), so every key stays under its tenant's prefix.

use batchdrop_core::layout::{RESULTS, STATE};
use sha2::{Digest, Sha256};

/// A tenant's keys.
#[derive(Debug, Clone)]
pub struct TenantKeys {
    dir: String,
}

impl TenantKeys {
    pub fn new(tenant: &str) -> Self {
        Self {
            dir: format!("{STATE}api/{tenant}/"),
        }
    }

    pub fn file_content(&self, token: &str) -> String {
        format!("{}files/{token}/content", self.dir)
    }

    pub fn file_record(&self, token: &str) -> String {
        format!("{}files/{token}/file.json", self.dir)
    }

    pub fn upload_record(&self, token: &str) -> String {
        format!("{}uploads/{token}/upload.json", self.dir)
    }

    /// The prefix of an upload's parts.
    pub fn upload_parts(&self, token: &str) -> String {
        format!("{}uploads/{token}/parts/", self.dir)
    }

    pub fn upload_part(&self, token: &str, part: &str) -> String {
        format!("{}{part}", self.upload_parts(token))
    }

    /// The prefix of every batch record: listed in key order, newest first (see `ids`).
    pub fn batches(&self) -> String {
        format!("{}batches/", self.dir)
    }

    pub fn batch_record(&self, token: &str) -> String {
        format!("{}batch_{token}.json", self.batches())
    }

    /// The token of a key listed under [`Self::batches`], if it is a batch record's.
    pub fn batch_token_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.batches())?
            .strip_prefix("batch_")?
            .strip_suffix(".json")
    }
}

/// The engine job of a tenant's batch: derived from both, so that one file used by two
/// batches makes two jobs, and a batch always names the same job.
pub fn job_id(tenant: &str, batch_id: &str) -> String {
    let mut h = Sha256::new();
    for part in ["batchdrop-api", tenant, batch_id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!("j{}", &hex::encode(h.finalize())[..23])
}

/// Where the job of a tenant's batch writes its results.
pub fn results_prefix(route: &str, tenant: &str, batch_id: &str) -> String {
    format!("{RESULTS}{route}/api/{tenant}/{batch_id}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_record_key_gives_back_its_token() {
        let keys = TenantKeys::new("acme");
        let key = keys.batch_record("00ff");
        assert_eq!(key, "_batchdrop/api/acme/batches/batch_00ff.json");
        assert_eq!(keys.batch_token_of(&key), Some("00ff"));
        assert_eq!(TenantKeys::new("other").batch_token_of(&key), None);
    }

    #[test]
    fn job_ids_differ_by_tenant_and_by_batch() {
        let a = job_id("acme", "batch_1");
        assert_eq!(a, job_id("acme", "batch_1"));
        assert_ne!(a, job_id("globex", "batch_1"));
        assert_ne!(a, job_id("acme", "batch_2"));
        assert_eq!(a.len(), 24);
    }
}
