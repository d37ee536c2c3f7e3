//! A batch's bookkeeping per request, in processing order, on disk: the `custom_id` of each
//! request (one JSON string a line) and the running totals after each request (fixed-size
//! records of [`WORDS`] little-endian `u64`s), so that a batch of any size costs memory only
//! for its last totals.
//!
//! Totals are what a batch's counts and files are cut from when it stops part way (a cancel,
//! an expiry): after `k` requests, this many bytes of output, this many failed, this far into
//! the ids. Each provider says what its words mean.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use crate::disk;

/// The `u64`s of one totals record.
pub(crate) const WORDS: usize = 8;

/// Running totals that can be kept as a record.
pub(crate) trait Totals: Copy + Default {
    fn to_words(&self) -> [u64; WORDS];
    fn from_words(words: [u64; WORDS]) -> Self;
}

/// Writes the totals after each request, in order, to a new file at `path`.
pub(crate) fn write_totals<T: Totals>(
    path: &Path,
    totals: impl IntoIterator<Item = T>,
) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    for record in totals {
        for word in record.to_words() {
            out.write_all(&word.to_le_bytes())?;
        }
    }
    out.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(())
}

/// The totals after the first `requests` requests (the zero totals for none).
pub(crate) fn read_totals<T: Totals>(path: &Path, requests: usize) -> io::Result<T> {
    if requests == 0 {
        return Ok(T::default());
    }
    let size = WORDS * 8;
    let bytes = disk::read_at(&File::open(path)?, ((requests - 1) * size) as u64, size)?;
    let mut words = [0u64; WORDS];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(chunk);
        *word = u64::from_le_bytes(le);
    }
    Ok(T::from_words(words))
}

/// Appends `custom_id` as one line of an ids file; returns the bytes written.
pub(crate) fn write_id(out: &mut impl Write, custom_id: &str) -> io::Result<u64> {
    let mut line = serde_json::to_string(custom_id).map_err(io::Error::other)?;
    line.push('\n');
    out.write_all(line.as_bytes())?;
    Ok(line.len() as u64)
}

/// The ids of an ids file from byte `offset` (the totals' ids bytes after the requests to
/// skip), one at a time.
pub(crate) fn read_ids(
    path: &Path,
    offset: u64,
) -> io::Result<impl Iterator<Item = io::Result<String>> + use<>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let lines = BufReader::with_capacity(64 * 1024, file).lines();
    Ok(lines.map(|line| serde_json::from_str::<String>(&line?).map_err(io::Error::other)))
}

/// Appends the files of `parts`, in order, to `to`, and removes them.
pub(crate) fn concatenate(to: &Path, parts: &[std::path::PathBuf]) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(
        1 << 20,
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(to)?,
    );
    for part in parts {
        io::copy(&mut File::open(part)?, &mut out)?;
        disk::remove(part);
    }
    out.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(())
}
