//! Sizes of the Lambda binaries (`submit`, `poll`): the `cargo build --release` binaries as
//! built and after `strip` of a copy (the release profile already strips, so the two agree
//! unless the build was not stripped), and, when `cargo lambda build --release` has left one,
//! the size of its `target/lambda/<name>/bootstrap`.

use crate::error::{BenchError, Context};
use serde::Serialize;
use std::fs;
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Serialize)]
pub struct BinarySize {
    pub name: String,
    pub path: String,
    pub bytes: u64,
    pub stripped_bytes: u64,
    /// `target/lambda/<name>/bootstrap`, if present.
    pub lambda_bootstrap_bytes: Option<u64>,
}

/// Measures `bin_dir/name`; `work` holds the stripped copy for a moment.
pub fn measure(bin_dir: &Path, name: &str, work: &Path) -> Result<BinarySize, BenchError> {
    let path = bin_dir.join(name);
    let bytes = fs::metadata(&path)
        .context(|| {
            format!(
                "{} (build it: cargo build --release -p {name})",
                path.display()
            )
        })?
        .len();
    fs::create_dir_all(work).context(|| format!("creating {}", work.display()))?;
    let copy = work.join(format!("{name}.stripped"));
    fs::copy(&path, &copy).context(|| format!("copying {}", path.display()))?;
    let status = Command::new("strip")
        .arg(&copy)
        .status()
        .context(|| "running strip".into())?;
    let stripped = fs::metadata(&copy)
        .context(|| format!("reading {}", copy.display()))?
        .len();
    let _ = fs::remove_file(&copy);
    if !status.success() {
        return Err(BenchError::program(
            "strip",
            format!("exited with {status} on {name}"),
        ));
    }
    let bootstrap = bin_dir
        .parent()
        .map(|target| target.join("lambda").join(name).join("bootstrap"));
    Ok(BinarySize {
        name: name.to_string(),
        path: path.display().to_string(),
        bytes,
        stripped_bytes: stripped,
        lambda_bootstrap_bytes: bootstrap
            .and_then(|b| fs::metadata(b).ok())
            .map(|m| m.len()),
    })
}
