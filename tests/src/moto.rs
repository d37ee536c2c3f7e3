//! A private moto S3 server for a test: started on a free loopback port, killed on drop.
//!
//! The `moto_server` executable is `$MOTO_SERVER` if set, else `<workspace>/.venv/bin/moto_server`,
//! else the first one on `PATH`. Each [`MotoServer`] is its own process with its own state, so
//! tests that each start one are isolated and may run in parallel (about a second to start).
//!
//! Clients are configured explicitly (static test credentials, `us-east-1`, the server's
//! endpoint, path-style addressing): nothing here reads or changes the process environment
//! except `MOTO_SERVER` and `PATH` to find the executable.
//!
//! Moto quirk worked around in [`client_for`]: moto 5.2.1 answers `CompleteMultipartUpload`
//! with a `<CompleteMultipartUploadResponse>` root element instead of S3's
//! `<CompleteMultipartUploadResult>` (getmoto/moto#10055), which aws-sdk-s3 refuses to parse.
//! The [`MotoQuirks`] interceptor turns such a 200 answer into the output S3 would have given.

use crate::BoxError;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::FinalizerInterceptorContextMut;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_smithy_runtime_api::client::interceptors::context::Output;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first request.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Region of every client and bucket.
pub const REGION: &str = "us-east-1";

/// A running moto server; dropping it kills and reaps the process.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    endpoint: String,
    log: PathBuf,
}

impl MotoServer {
    /// Starts a server and waits until it answers HTTP; panics with the reason (and the server's
    /// log) if it cannot.
    pub fn start() -> MotoServer {
        Self::try_start().unwrap_or_else(|e| panic!("cannot start moto_server: {e}"))
    }

    /// Starts a server and waits until it answers HTTP. A port taken between choosing it and
    /// the server binding it is retried on another port.
    pub fn try_start() -> Result<MotoServer, BoxError> {
        let program = moto_server_path()?;
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_once(&program) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("three attempts"))
    }

    fn start_once(program: &Path) -> Result<MotoServer, BoxError> {
        let port = free_port()?;
        let log =
            std::env::temp_dir().join(format!("batchdrop-moto-{}-{port}.log", std::process::id()));
        let out = File::create(&log)?;
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", program.display()))?;
        // From here on, dropping `server` kills the child, on every error path too.
        let mut server = MotoServer {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> Result<(), BoxError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "moto_server exited with {status} before answering; its log:\n{}",
                    self.log_tail()
                )
                .into());
            }
            if answers_http(self.port) {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "moto_server did not answer on port {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log_tail()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server's output goes (kept after a panicking test, removed otherwise).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// An S3 client for this server.
    pub fn client(&self) -> Client {
        client_for(&self.endpoint)
    }

    /// Creates a bucket (names are at least 3 characters).
    pub async fn create_bucket(&self, name: &str) -> Result<(), BoxError> {
        self.client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "creating bucket {name}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        Ok(())
    }

    /// Wipes every bucket and object (`POST /moto-api/reset`).
    pub fn reset(&self) -> Result<(), BoxError> {
        let status = http_status(self.port, "POST", "/moto-api/reset")?;
        if status != 200 {
            return Err(format!("moto reset answered HTTP {status}").into());
        }
        Ok(())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill(); // fails only if it already exited
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("moto_server log kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// An S3 client for any S3-compatible endpoint, configured only from its arguments.
pub fn client_for(endpoint: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "batchdrop-tests",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .interceptor(MotoQuirks)
        .build();
    Client::from_conf(config)
}

/// Repairs moto's answers where they differ from S3's in a way the SDK cannot read.
///
/// Only `CompleteMultipartUpload` so far: a 200 whose body has the root element
/// `CompleteMultipartUploadResponse` (getmoto/moto#10055) becomes the output the SDK would have
/// parsed from `CompleteMultipartUploadResult`: bucket, key, location and ETag. Any other
/// response, and any error S3 would also send (412, 404, ...), passes untouched.
#[derive(Debug)]
pub struct MotoQuirks;

impl Intercept for MotoQuirks {
    fn name(&self) -> &'static str {
        "MotoQuirks"
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let Some(response) = context.response() else {
            return Ok(());
        };
        if response.status().as_u16() != 200 {
            return Ok(());
        }
        let Some(body) = response
            .body()
            .bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
        else {
            return Ok(());
        };
        if !body.contains("<CompleteMultipartUploadResponse") {
            return Ok(());
        }
        let field = |name: &str| {
            let start = body.find(&format!("<{name}>"))? + name.len() + 2;
            let end = start + body[start..].find(&format!("</{name}>"))?;
            Some(
                body[start..end]
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&"),
            )
        };
        let output = CompleteMultipartUploadOutput::builder()
            .set_bucket(field("Bucket"))
            .set_key(field("Key"))
            .set_location(field("Location"))
            .set_e_tag(field("ETag"))
            .build();
        if let Some(slot) = context.output_or_error_mut() {
            *slot = Ok(Output::erase(output));
        }
        Ok(())
    }
}

/// The `moto_server` executable this harness runs.
pub fn moto_server_path() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.is_file() {
        return Ok(venv);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no moto_server: set MOTO_SERVER, create {} (pip install 'moto[server]'), or put it on PATH",
                venv.display()
            )
            .into()
        })
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn answers_http(port: u16) -> bool {
    http_status(port, "GET", "/").is_ok()
}

/// Sends one bodiless request and returns the response's status code.
fn http_status(port: u16, method: &str, path: &str) -> Result<u16, BoxError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    // The first request makes moto load its S3 backend: allow it a moment.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let line = std::str::from_utf8(&head)?;
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .ok_or_else(|| format!("not an HTTP response: {line:?}"))?;
    Ok(status.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reset_wipes_every_bucket() -> crate::TestResult {
        let server = MotoServer::start();
        server.create_bucket("wiped").await?;
        server.reset()?;
        let buckets = server.client().list_buckets().send().await?;
        assert!(buckets.buckets().is_empty(), "{buckets:?}");
        Ok(())
    }

    #[test]
    fn dropping_the_server_ends_its_process() -> crate::TestResult {
        let server = MotoServer::start();
        let pid = server.child.id();
        drop(server);
        // reaped: no /proc entry (a zombie would still have one)
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        Ok(())
    }
}
