//! The bucket layout (see [DESIGN.md](../../../docs/DESIGN.md)): which key means what, and where each job keeps its state.
//!
//! ```text
//! inbox/<route>/<path>.jsonl             uploads; the only prefix that triggers work
//! results/<route>/<path>/{output.jsonl,errors.jsonl,summary.json}
//! cancel/<route>/<path>.jsonl            cancel requests
//! _batchdrop/jobs/<job_id>/...           one job's manifest, staged chunks and results
//! _batchdrop/active/<job_id>             index of unfinished jobs (what poll looks at)
//! _batchdrop/reuse/<route>/<job_id>/<chunk>.idx  answered requests (routes with reuse_results)
//! ```

use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};

pub const INBOX: &str = "inbox/";
pub const RESULTS: &str = "results/";
pub const CANCEL: &str = "cancel/";
pub const STATE: &str = "_batchdrop/";
pub const ACTIVE: &str = "_batchdrop/active/";
pub const SUFFIX: &str = ".jsonl";

/// Decodes an object key as it arrives in an S3 event: `+` is a space, then percent-decoding.
pub fn decode_event_key(raw: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
}

/// An upload under `inbox/`: `inbox/<route>/<path>.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxKey {
    pub route: String,
    /// The path below the route, without the `.jsonl` suffix.
    pub path: String,
}

impl InboxKey {
    /// Parses a decoded key; `None` for keys batchdrop must ignore (outside `inbox/`, not
    /// `.jsonl`, or without both a route and a path).
    pub fn parse(key: &str) -> Option<InboxKey> {
        Self::parse_under(key, INBOX)
    }

    /// Same rules under `cancel/`.
    pub fn parse_cancel(key: &str) -> Option<InboxKey> {
        Self::parse_under(key, CANCEL)
    }

    fn parse_under(key: &str, prefix: &str) -> Option<InboxKey> {
        let rest = key.strip_prefix(prefix)?.strip_suffix(SUFFIX)?;
        let (route, path) = rest.split_once('/')?;
        if route.is_empty() || path.is_empty() || path.ends_with('/') {
            return None;
        }
        Some(InboxKey {
            route: route.to_string(),
            path: path.to_string(),
        })
    }

    pub fn key(&self) -> String {
        format!("{INBOX}{}/{}{SUFFIX}", self.route, self.path)
    }

    /// `results/<route>/<path>/`
    pub fn results_prefix(&self) -> String {
        format!("{RESULTS}{}/{}/", self.route, self.path)
    }
}

/// The job id of one object version: the same upload always gets the same id.
pub fn job_id(bucket: &str, key: &str, etag: &str) -> String {
    let mut h = Sha256::new();
    for part in [bucket, key, etag] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    format!("j{}", &hex::encode(digest)[..23])
}

/// Keys of one job's state.
#[derive(Debug, Clone)]
pub struct JobKeys {
    dir: String,
}

impl JobKeys {
    pub fn new(job_id: &str) -> Self {
        Self {
            dir: format!("{STATE}jobs/{job_id}/"),
        }
    }
    pub fn manifest(&self) -> String {
        format!("{}manifest.json", self.dir)
    }
    /// Where a provider that writes to the bucket puts the output of one chunk's batch.
    pub fn provider_output(&self, index: u32) -> String {
        format!("{}output/{index:05}/", self.dir)
    }
    /// The request lines of one chunk, exactly as sent to the provider.
    pub fn chunk(&self, index: u32) -> String {
        format!("{}chunks/{index:05}.jsonl", self.dir)
    }
    /// A chunk's sidecar: the input line number of each request (and the user's custom_id when
    /// the request went out under another), one per line, in chunk order. Its format is
    /// `chunk_files`'s.
    pub fn chunk_line_numbers(&self, index: u32) -> String {
        format!("{}chunks/{index:05}.lines", self.dir)
    }
    /// A chunk's results in chunk order, one per request.
    pub fn chunk_results(&self, index: u32) -> String {
        format!("{}results/{index:05}.jsonl", self.dir)
    }
    /// Where the sorted runs of (custom_id hash, line) pairs of the duplicate check go.
    pub fn id_runs(&self) -> String {
        format!("{}ids/", self.dir)
    }
    /// Run `run` of planning segment `segment`.
    pub fn id_run(&self, segment: u32, run: u32) -> String {
        format!("{}ids/{segment:05}-{run:05}.bin", self.dir)
    }
    /// The rejected lines found by planning segment `segment`, in line order.
    pub fn rejected_part(&self, segment: u32) -> String {
        format!("{}rejected/{segment:05}.jsonl", self.dir)
    }
    /// The lines rejected as duplicates once the whole upload was planned, in line order.
    pub fn rejected_duplicates(&self) -> String {
        format!("{}rejected/duplicates.jsonl", self.dir)
    }
    /// Every part of the rejected lines (`rejected_part`s and `rejected_duplicates`).
    pub fn rejected_parts(&self) -> String {
        format!("{}rejected/", self.dir)
    }
    /// Where the sorted runs of (request content hash, line) pairs of a route with
    /// `reuse_results` go while the upload is planned (the `reuse` module).
    pub fn content_runs(&self) -> String {
        format!("{}content/", self.dir)
    }
    /// Planning's working files of reuse: the first line of each distinct content (sorted by
    /// hash), looked up in the route's index.
    pub fn reuse_leaders(&self) -> String {
        format!("{}reuse/leaders.bin", self.dir)
    }
    /// The lines whose content an earlier line of the file has, answered with its answer at
    /// the end of the job (JSON lines in line order).
    pub fn reuse_followers(&self) -> String {
        format!("{}reuse/followers.jsonl", self.dir)
    }
    /// Where a superseded job leaves its summary instead of `results/`.
    pub fn summary(&self) -> String {
        format!("{}summary.json", self.dir)
    }
}

pub fn active_key(job_id: &str) -> String {
    format!("{ACTIVE}{job_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_key_plus_is_space_then_percent_decoding() {
        assert_eq!(
            decode_event_key("inbox/sandbox/my+file%281%29.jsonl").unwrap(),
            "inbox/sandbox/my file(1).jsonl"
        );
        assert_eq!(decode_event_key("a%20b%2Bc").unwrap(), "a b+c");
    }

    #[test]
    fn inbox_key_needs_route_path_and_suffix() {
        let k = InboxKey::parse("inbox/sandbox/run1/requests.jsonl").unwrap();
        assert_eq!(k.route, "sandbox");
        assert_eq!(k.path, "run1/requests");
        assert_eq!(k.results_prefix(), "results/sandbox/run1/requests/");
        assert_eq!(k.key(), "inbox/sandbox/run1/requests.jsonl");
        assert!(InboxKey::parse("inbox/sandbox.jsonl").is_none());
        assert!(InboxKey::parse("inbox/sandbox/x.json").is_none());
        assert!(InboxKey::parse("results/sandbox/x.jsonl").is_none());
        assert!(InboxKey::parse("inbox//x.jsonl").is_none());
    }

    #[test]
    fn job_id_depends_on_every_part_of_the_identity() {
        let a = job_id("b", "k", "e1");
        assert_eq!(a, job_id("b", "k", "e1"));
        assert_ne!(a, job_id("b", "k", "e2"));
        assert_ne!(a, job_id("b2", "k", "e1"));
        assert_eq!(a.len(), 24);
    }
}
