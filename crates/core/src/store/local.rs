//! A directory as an object store: the embedded default for local mode.
//!
//! Keys map to paths under the root. Every write goes to a temporary file under
//! `<root>/.batchdrop-tmp/` and is then moved into place, so a reader never sees half an object:
//! - `PutMode::Overwrite`: `rename(2)`;
//! - `PutMode::Create`: `link(2)`, which fails atomically when the target exists;
//! - `PutMode::Update`: compare the ETag and `rename(2)` while holding an exclusive `flock` on
//!   `<root>/.batchdrop-tmp/lock`, so concurrent processes sharing the root serialise.
//!
//! The ETag is derived from the inode, modification time and size: each write creates a new
//! inode, so it changes on every write.

use super::{ByteStream, GetResult, ObjectMeta, ObjectStore, PutMode, StoreError, validate_key};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes read from a file at a time: a 64th of the file, between these bounds. Big uploads are
/// read in big pieces; small objects read many at once (the runs of a merge) hold little. The
/// upper bound stays under the allocator's mmap threshold (128 KiB), like [`WRITE_BUFFER`].
const READ_CHUNK_MIN: u64 = 16 * 1024;
const READ_CHUNK_MAX: u64 = 120 * 1024;
/// Bytes written to a file at a time: under the allocator's mmap threshold (128 KiB), so the
/// buffers are reused instead of growing the heap a little with every file.
const WRITE_BUFFER: usize = 120 * 1024;

/// Name of the directory, directly under the root, that holds temporary files and the lock.
pub const TMP_DIR: &str = ".batchdrop-tmp";

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalStore {
    /// Opens (and creates if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(TMP_DIR))?;
        let root = root.canonicalize()?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn tmp_path(&self) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root.join(TMP_DIR).join(format!(
            "{}-{}-{:x}",
            std::process::id(),
            n,
            fastrand::u64(..)
        ))
    }

    fn meta_of(key: &str, md: &fs::Metadata) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size: md.len(),
            etag: etag_of(md),
        }
    }

    /// Moves a finished temporary file into place according to `mode`.
    fn commit(&self, tmp: &Path, key: &str, mode: &PutMode) -> Result<ObjectMeta, StoreError> {
        let dest = self.path_of(key);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| StoreError::io(key, e))?;
        }
        let md = fs::metadata(tmp).map_err(|e| StoreError::io(key, e))?;
        let result = match mode {
            PutMode::Overwrite => fs::rename(tmp, &dest).map_err(|e| StoreError::io(key, e)),
            PutMode::Create => match fs::hard_link(tmp, &dest) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(StoreError::AlreadyExists { key: key.into() })
                }
                Err(e) => Err(StoreError::io(key, e)),
            },
            PutMode::Update(expected) => {
                let lock = fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.root.join(TMP_DIR).join("lock"))
                    .map_err(|e| StoreError::io(key, e))?;
                lock.lock().map_err(|e| StoreError::io(key, e))?;
                let current = match fs::metadata(&dest) {
                    Ok(md) => Some(etag_of(&md)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(StoreError::io(key, e)),
                };
                let outcome = if current.as_deref() == Some(expected.as_str()) {
                    fs::rename(tmp, &dest).map_err(|e| StoreError::io(key, e))
                } else {
                    Err(StoreError::Precondition { key: key.into() })
                };
                drop(lock); // closing the descriptor releases the flock
                outcome
            }
        };
        let _ = fs::remove_file(tmp); // gone already after a rename; left after a link
        result?;
        Ok(Self::meta_of(key, &md))
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // Start the walk at the deepest directory the prefix names.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                Err(e) => return Err(StoreError::io(prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(prefix, e))?;
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let Some(key) = rel.to_str() else { continue };
                if key == TMP_DIR {
                    continue;
                }
                let md = match entry.metadata() {
                    Ok(md) => md,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::io(key, e)),
                };
                if md.is_dir() {
                    let as_dir = format!("{key}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        stack.push(path);
                    }
                } else if md.is_file() && key.starts_with(prefix) {
                    out.push(Self::meta_of(key, &md));
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

fn etag_of(md: &fs::Metadata) -> String {
    format!(
        "{:x}-{:x}-{:x}",
        md.ino(),
        md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        md.len()
    )
}

/// Streams a file `piece` bytes at a time, one piece ahead of the reader. Each read runs on the
/// blocking pool and holds a thread only while it reads: a reader left waiting (one of many
/// sources of a merge) holds none.
fn read_in_pieces(file: fs::File, piece: u64) -> ByteStream {
    type Read = tokio::task::JoinHandle<(fs::File, io::Result<Vec<u8>>)>;
    fn start(mut file: fs::File, piece: u64) -> Read {
        // Allocated here, on the runtime's thread, not on whichever blocking thread reads: the
        // allocator then reuses the same few arenas instead of growing one per thread.
        let mut buf = Vec::with_capacity(piece as usize);
        tokio::task::spawn_blocking(move || {
            let read = io::Read::take(&mut file, piece)
                .read_to_end(&mut buf)
                .map(|_| buf);
            (file, read)
        })
    }
    let first: Option<Read> = Some(start(file, piece));
    Box::pin(futures::stream::unfold(first, move |pending| async move {
        let (file, read) = match pending?.await {
            Ok(done) => done,
            Err(e) => return Some((Err(io::Error::other(e)), None)),
        };
        match read {
            Ok(buf) if buf.is_empty() => None,
            // The next read starts now, while this piece is being used.
            Ok(buf) => Some((Ok(Bytes::from(buf)), Some(start(file, piece)))),
            Err(e) => Some((Err(e), None)),
        }
    }))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io {
            key: String::new(),
            source: io::Error::other(e),
        })?
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        validate_key(key)?;
        let md = tokio::fs::metadata(self.path_of(key))
            .await
            .map_err(|e| StoreError::io(key, e))?;
        if !md.is_file() {
            return Err(StoreError::NotFound { key: key.into() });
        }
        Ok(Self::meta_of(key, &md))
    }

    async fn get_from(&self, key: &str, offset: u64) -> Result<GetResult, StoreError> {
        validate_key(key)?;
        let path = self.path_of(key);
        let owned_key = key.to_string();
        let (file, md) = blocking(move || {
            let mut file = fs::File::open(&path).map_err(|e| StoreError::io(&owned_key, e))?;
            let md = file.metadata().map_err(|e| StoreError::io(&owned_key, e))?;
            if !md.is_file() {
                return Err(StoreError::NotFound { key: owned_key });
            }
            if offset > 0 {
                file.seek(io::SeekFrom::Start(offset))
                    .map_err(|e| StoreError::io(&owned_key, e))?;
            }
            Ok((file, md))
        })
        .await?;
        let piece = (md.len() / 64).clamp(READ_CHUNK_MIN, READ_CHUNK_MAX);
        Ok(GetResult {
            meta: Self::meta_of(key, &md),
            body: read_in_pieces(file, piece),
        })
    }

    async fn put(&self, key: &str, body: Bytes, mode: PutMode) -> Result<ObjectMeta, StoreError> {
        validate_key(key)?;
        let this = self.clone();
        let key = key.to_string();
        blocking(move || {
            let tmp = this.tmp_path();
            let mut f = fs::File::create(&tmp).map_err(|e| StoreError::io(&key, e))?;
            f.write_all(&body).map_err(|e| StoreError::io(&key, e))?;
            drop(f);
            this.commit(&tmp, &key, &mode)
        })
        .await
    }

    async fn put_stream(
        &self,
        key: &str,
        mut body: ByteStream,
        mode: PutMode,
    ) -> Result<ObjectMeta, StoreError> {
        validate_key(key)?;
        let tmp = self.tmp_path();
        // Writes go to the blocking pool a buffer at a time; no thread is held while the
        // producer is slow (many files may be open at once: one per chunk being staged).
        let written = async {
            use tokio::io::AsyncWriteExt;
            let file = tokio::fs::File::create(&tmp).await?;
            let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
            while let Some(chunk) = body.next().await {
                out.write_all(&chunk?).await?;
            }
            out.flush().await?;
            io::Result::Ok(())
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(StoreError::io(key, e));
        }
        let this = self.clone();
        let key = key.to_string();
        blocking(move || this.commit(&tmp, &key, &mode)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let this = self.clone();
        let prefix = prefix.to_string();
        blocking(move || this.list_blocking(&prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        match tokio::fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(key, e)),
        }
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
