//! boto3's `bedrock` client against the sandbox, its jobs reading and writing a moto S3
//! server: `bedrock_sdk_check.py` uploads inputs to moto, creates, follows, lists and stops
//! jobs through `boto3.client("bedrock", endpoint_url=...)`, reads their output back from
//! moto, and calls InvokeModel through `bedrock-runtime`.
//!
//! Needs the workspace venv (`make venv`: boto3 and moto) or `$BATCHDROP_PYTHON` and
//! `$MOTO_SERVER`; without them the test fails, it does not skip.

mod sdk;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use batchdrop_sandbox::{BedrockConfig, BedrockObjects, BedrockS3, Sandbox, SandboxConfig};

/// A moto S3 server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> sdk::Result<Moto> {
        let program = moto_server()?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                format!(
                    "cannot run {} ({error}): set MOTO_SERVER, or create the workspace venv: make venv",
                    program.display()
                )
            })?;
        // From here on, dropping `moto` kills the child, on every error path too.
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while !answers_http(port) {
            if let Some(status) = moto.child.try_wait()? {
                return Err(format!("moto_server exited with {status} before answering").into());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("moto_server did not answer within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(moto)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$MOTO_SERVER`, else the workspace venv's.
fn moto_server() -> sdk::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.is_file() {
        return Ok(venv);
    }
    Err(format!(
        "no moto_server: set MOTO_SERVER, or create {} (make venv)",
        venv.display()
    )
    .into())
}

fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
}

#[tokio::test]
async fn boto3_bedrock_works_against_the_sandbox_with_moto_s3() -> sdk::Result {
    // GIVEN a moto S3 server and a sandbox whose Bedrock jobs use it, with a short step so that
    // a stop is seen Stopping
    let moto = tokio::task::spawn_blocking(Moto::start).await??;
    let config = SandboxConfig {
        step: Duration::from_millis(300),
        bedrock: BedrockConfig {
            objects: Some(BedrockObjects::S3(BedrockS3 {
                endpoint: moto.endpoint.clone(),
                region: Some("us-east-1".to_owned()),
                credentials: Some(("testing".to_owned(), "testing".to_owned())),
            })),
            ..BedrockConfig::default()
        },
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into(), config).await?;
    let base_url = sandbox.anthropic_base_url();
    // WHEN the boto3 check script runs against both, THEN every check passed
    let result =
        sdk::run_check_with_args("bedrock", sandbox, &[base_url, moto.endpoint.clone()]).await;
    drop(moto);
    result
}
