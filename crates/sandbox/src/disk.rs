//! Where the sandbox keeps the contents of files: one directory, given
//! ([`SandboxConfig::files_dir`](crate::SandboxConfig::files_dir)) or temporary (removed when
//! the sandbox stops). Memory holds only what describes the files (ids, sizes, counts).
//!
//! Names in the directory: an OpenAI file is its id (`file-…`); a batch's work files start
//! with its id (`batch_….output`, `msgbatch_….results`, …); uploads in flight start with
//! `upload-`. Contents are written by streaming and read back by streaming or at an offset.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use axum::body::Body;
use tempfile::TempDir;
use tokio_util::io::ReaderStream;

/// The files directory. A temporary one is removed when this is dropped.
pub(crate) struct Disk {
    dir: PathBuf,
    _temporary: Option<TempDir>,
}

impl Disk {
    /// `dir` (created if missing), or a fresh temporary directory.
    pub(crate) fn open(dir: Option<&Path>) -> io::Result<Disk> {
        match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                Ok(Disk {
                    dir: dir.to_path_buf(),
                    _temporary: None,
                })
            }
            None => {
                let temporary = tempfile::Builder::new()
                    .prefix("batchdrop-sandbox-")
                    .tempdir()?;
                Ok(Disk {
                    dir: temporary.path().to_path_buf(),
                    _temporary: Some(temporary),
                })
            }
        }
    }

    /// The path of the file called `name`.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Removes a file that may already be gone; other failures are logged (the file is then
/// left behind, nothing else is wrong).
pub(crate) fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "cannot remove a sandbox file")
        }
    }
}

/// Exactly `len` bytes of `file` from `offset`, whatever its cursor.
pub(crate) fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buffer = vec![0; len];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut buffer, offset)?;
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0;
        while done < len {
            match file.seek_read(&mut buffer[done..], offset + done as u64)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                read => done += read,
            }
        }
    }
    Ok(buffer)
}

/// An HTTP body that streams the first `len` bytes of `file`.
pub(crate) fn body(file: File, len: u64) -> Body {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::from_std(file).take(len);
    Body::from_stream(ReaderStream::with_capacity(file, 64 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_directory_is_removed_when_dropped() -> io::Result<()> {
        let disk = Disk::open(None)?;
        std::fs::write(disk.path("a"), b"x")?;
        let dir = disk.dir.clone();
        assert!(dir.join("a").exists());
        drop(disk);
        assert!(!dir.exists());
        Ok(())
    }

    #[test]
    fn a_given_directory_is_created_and_kept() -> io::Result<()> {
        let parent = tempfile::tempdir()?;
        let dir = parent.path().join("files");
        let disk = Disk::open(Some(&dir))?;
        std::fs::write(disk.path("a"), b"xyz")?;
        assert_eq!(read_at(&File::open(disk.path("a"))?, 1, 2)?, b"yz");
        drop(disk);
        assert!(dir.join("a").exists());
        Ok(())
    }
}
