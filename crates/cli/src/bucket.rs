//! Where the operator's commands work: `--root DIR` (a local directory, as `batchdrop local`
//! watches) or `--bucket NAME` (S3, with the usual AWS settings, `AWS_ENDPOINT_URL` included),
//! and the config file (`--config`) for routes and prices.

use crate::error::Error;
use crate::text::shell_word;
use batchdrop_core::config::{Config, process_env};
use batchdrop_core::store::{LocalStore, ObjectStore, StoreError};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the bucket is: a local directory or an S3 bucket.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The directory that plays the bucket (as for `batchdrop local`).
    #[arg(long, default_value = "bucket", value_name = "DIR")]
    pub root: PathBuf,
    /// An S3 bucket instead of --root (AWS credentials, region and AWS_ENDPOINT_URL as usual).
    #[arg(long, value_name = "NAME", conflicts_with = "root")]
    pub bucket: Option<String>,
    /// Config file (TOML) for routes and prices. Default: $BATCHDROP_CONFIG, else built-ins.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// An opened bucket.
pub struct Bucket {
    pub store: Arc<dyn ObjectStore>,
    /// The bucket name job ids are derived from: the S3 bucket, or the root's absolute path.
    pub name: String,
    /// `--bucket NAME` or `--root DIR`, to repeat in hints.
    pub flag: String,
}

impl Target {
    /// Opens the bucket; a local root must exist unless `create`.
    pub async fn open(&self, create: bool) -> Result<Bucket, Error> {
        if let Some(bucket) = &self.bucket {
            if bucket.is_empty() {
                return Err(Error::EmptyBucketName);
            }
            let store = batchdrop_s3::S3Store::from_env(bucket.clone()).await;
            return Ok(Bucket {
                store: Arc::new(store),
                name: bucket.clone(),
                flag: format!(" --bucket {bucket}"),
            });
        }
        if !create && !self.root.is_dir() {
            return Err(Error::NoBucketDir {
                root: self.root.clone(),
            });
        }
        let store = LocalStore::new(&self.root).map_err(|source| Error::OpenRoot {
            root: self.root.clone(),
            source,
        })?;
        let name = store.root().display().to_string();
        let flag = if self.root == Path::new("bucket") {
            String::new()
        } else {
            format!(" --root {}", shell_word(&self.root.display().to_string()))
        };
        Ok(Bucket {
            store: Arc::new(store),
            name,
            flag,
        })
    }

    pub fn load_config(&self) -> Result<Config, Error> {
        load_config(self.config.as_deref())
    }
}

/// The config of `--config FILE`, else of `$BATCHDROP_CONFIG`, else the built-in one.
pub fn load_config(path: Option<&Path>) -> Result<Config, Error> {
    match path {
        Some(p) => Config::from_path(&p.to_string_lossy(), &process_env),
        None => Config::from_env(&process_env),
    }
    .map_err(Error::config)
}

impl Bucket {
    /// Whether this is an S3 bucket (`--bucket`) rather than a local root.
    pub fn is_s3(&self) -> bool {
        self.flag.starts_with(" --bucket")
    }

    /// The error of a store failure, with what to check.
    pub fn store_error(&self, what: &'static str, source: StoreError) -> Error {
        let hint = if self.is_s3() {
            "check the bucket name, AWS credentials and region (and AWS_ENDPOINT_URL for an S3-compatible server)"
        } else {
            "check --root"
        };
        Error::Store {
            what,
            location: self.store.describe(),
            source: Box::new(source),
            hint,
        }
    }
}
