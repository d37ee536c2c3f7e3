//! Where Bedrock jobs read their input and write their output: a small port over a bucket
//! (read an object as a stream, put a local file or bytes, list keys under a prefix), with a
//! directory implementation here and an S3 one in `s3`.
//!
//! Objects are named by [`ObjectUri`] (`s3://bucket/key`). A directory root ignores the
//! bucket: `s3://<any bucket>/<key>` is `<root>/<key>`, as `batchdrop local` uses a directory
//! as its bucket. Keys that would leave the root (`..`, absolute parts) are refused.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncBufRead;

/// An object's address, `s3://bucket/key` (the key may be empty or a prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectUri {
    pub bucket: String,
    pub key: String,
}

impl ObjectUri {
    /// Parses `s3://bucket/key`; `None` if it is not of that form.
    pub(crate) fn parse(uri: &str) -> Option<ObjectUri> {
        let rest = uri.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| ObjectUri {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The object `name` under this prefix (a `/` is put between them if missing).
    pub(crate) fn join(&self, name: &str) -> ObjectUri {
        let key = if self.key.is_empty() || self.key.ends_with('/') {
            format!("{}{name}", self.key)
        } else {
            format!("{}/{name}", self.key)
        };
        ObjectUri {
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// The last part of the key: the object's file name.
    pub(crate) fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl fmt::Display for ObjectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// An object listed under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub uri: ObjectUri,
    pub bytes: u64,
}

/// Why an object could not be read, written or listed.
#[derive(Debug)]
pub(crate) enum ObjectsError {
    NotFound {
        uri: ObjectUri,
    },
    /// A key that would leave a directory root.
    BadKey {
        uri: ObjectUri,
    },
    Io {
        uri: ObjectUri,
        source: std::io::Error,
    },
    /// The S3 server refused or failed the call.
    Remote {
        uri: ObjectUri,
        reason: String,
    },
}

impl fmt::Display for ObjectsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectsError::NotFound { uri } => write!(f, "{uri} does not exist"),
            ObjectsError::BadKey { uri } => write!(f, "{uri} is not a valid object key"),
            ObjectsError::Io { uri, source } => write!(f, "{uri}: {source}"),
            ObjectsError::Remote { uri, reason } => write!(f, "{uri}: {reason}"),
        }
    }
}

impl std::error::Error for ObjectsError {}

/// A readable object: its bytes as a buffered stream.
pub(crate) type Reader = Box<dyn AsyncBufRead + Send + Unpin>;

/// A bucket as Bedrock jobs use it.
#[async_trait]
pub(crate) trait Objects: Send + Sync {
    /// The object's content, streamed.
    async fn get(&self, uri: &ObjectUri) -> Result<Reader, ObjectsError>;
    /// Writes `file` (a local file) as the object, replacing it.
    async fn put_file(&self, uri: &ObjectUri, file: &Path) -> Result<(), ObjectsError>;
    /// The objects whose key starts with `prefix.key`, by key.
    async fn list(&self, prefix: &ObjectUri) -> Result<Vec<Listed>, ObjectsError>;
}

/// A directory as the bucket: `s3://<any>/<key>` is `<root>/<key>`.
#[derive(Debug, Clone)]
pub(crate) struct Directory {
    root: PathBuf,
}

impl Directory {
    pub(crate) fn new(root: PathBuf) -> Self {
        Directory { root }
    }

    /// The path of `uri`'s key under the root, refusing keys that leave it.
    fn path(&self, uri: &ObjectUri) -> Result<PathBuf, ObjectsError> {
        let key = Path::new(&uri.key);
        if key
            .components()
            .any(|part| !matches!(part, Component::Normal(_)))
        {
            return Err(ObjectsError::BadKey { uri: uri.clone() });
        }
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl Objects for Directory {
    async fn get(&self, uri: &ObjectUri) -> Result<Reader, ObjectsError> {
        let path = self.path(uri)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) if path.is_file() => Ok(Box::new(tokio::io::BufReader::with_capacity(
                256 * 1024,
                file,
            ))),
            Ok(_) => Err(ObjectsError::NotFound { uri: uri.clone() }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(ObjectsError::NotFound { uri: uri.clone() })
            }
            Err(source) => Err(ObjectsError::Io {
                uri: uri.clone(),
                source,
            }),
        }
    }

    async fn put_file(&self, uri: &ObjectUri, file: &Path) -> Result<(), ObjectsError> {
        let path = self.path(uri)?;
        let io = |source| ObjectsError::Io {
            uri: uri.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        // Copied to a sibling, then renamed: a reader never sees half an object.
        let partial = path.with_file_name(format!(
            ".{}.partial",
            path.file_name()
                .map(|name| name.to_string_lossy())
                .unwrap_or_default()
        ));
        tokio::fs::copy(file, &partial).await.map_err(io)?;
        tokio::fs::rename(&partial, &path).await.map_err(io)
    }

    async fn list(&self, prefix: &ObjectUri) -> Result<Vec<Listed>, ObjectsError> {
        // The directory the prefix's last `/` names; the rest filters file names.
        let (dir_key, _) = prefix.key.rsplit_once('/').unwrap_or(("", ""));
        let dir = self.path(&ObjectUri {
            bucket: prefix.bucket.clone(),
            key: dir_key.to_owned(),
        })?;
        let root = self.root.clone();
        let wanted = prefix.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            walk(&root, &dir, &wanted, &mut found)?;
            found.sort_by(|a: &Listed, b| a.uri.key.cmp(&b.uri.key));
            Ok::<_, std::io::Error>(found)
        })
        .await
        .map_err(|error| ObjectsError::Remote {
            uri: prefix.clone(),
            reason: error.to_string(),
        })?;
        listed.map_err(|source| ObjectsError::Io {
            uri: prefix.clone(),
            source,
        })
    }
}

/// Adds the files under `dir` whose key (path under `root`, `/`-separated) starts with
/// `prefix.key`; hidden files (partial writes) are skipped.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &ObjectUri,
    found: &mut Vec<Listed>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let key = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let as_prefix = format!("{key}/");
            if as_prefix.starts_with(&prefix.key) || prefix.key.starts_with(&as_prefix) {
                walk(root, &path, prefix, found)?;
            }
        } else if kind.is_file() && key.starts_with(&prefix.key) {
            found.push(Listed {
                uri: ObjectUri {
                    bucket: prefix.bucket.clone(),
                    key,
                },
                bytes: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_bucket_and_key() {
        let uri = ObjectUri::parse("s3://bucket/in/chunk-3.jsonl");
        assert_eq!(
            uri.as_ref()
                .map(|uri| (uri.bucket.as_str(), uri.key.as_str())),
            Some(("bucket", "in/chunk-3.jsonl"))
        );
        assert_eq!(
            uri.as_ref().map(ObjectUri::file_name),
            Some("chunk-3.jsonl")
        );
        assert_eq!(ObjectUri::parse("https://bucket/key"), None);
        let out = ObjectUri::parse("s3://b/out").map(|uri| uri.join("job/x.out").key);
        assert_eq!(out.as_deref(), Some("out/job/x.out"));
    }

    #[tokio::test]
    async fn a_directory_lists_by_key_prefix_and_refuses_keys_that_leave_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir_all(root.path().join("in/sub"))?;
        std::fs::write(root.path().join("in/a.jsonl"), "1\n")?;
        std::fs::write(root.path().join("in/sub/b.jsonl"), "22\n")?;
        std::fs::write(root.path().join("inbox.jsonl"), "")?;
        let objects = Directory::new(root.path().to_owned());
        let listed = objects
            .list(&ObjectUri::parse("s3://x/in/").ok_or("uri")?)
            .await?;
        let keys: Vec<&str> = listed.iter().map(|o| o.uri.key.as_str()).collect();
        assert_eq!(keys, ["in/a.jsonl", "in/sub/b.jsonl"]);
        let escaping = ObjectUri::parse("s3://x/../secret").ok_or("uri")?;
        assert!(matches!(
            objects.get(&escaping).await,
            Err(ObjectsError::BadKey { .. })
        ));
        Ok(())
    }
}
