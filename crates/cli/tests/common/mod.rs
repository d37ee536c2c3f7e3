//! Helpers of the operator-command tests: the real binary, `batchdrop local` on a temp root.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub type TestResult = Result<(), Error>;
pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary with no batchdrop/provider/AWS settings inherited from the test's environment.
pub fn batchdrop() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_batchdrop"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if ["BATCHDROP_", "OPENAI_", "ANTHROPIC_", "AWS_", "RUST_LOG"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            c.env_remove(&k);
        }
    }
    c.stdin(Stdio::null());
    c
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn ran(out: Output) -> Ran {
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `batchdrop ARGS` to the end.
pub fn run(args: &[&str]) -> Result<Ran, Error> {
    Ok(ran(batchdrop().args(args).output()?))
}

/// A running `batchdrop local`, killed when dropped.
pub struct Local {
    child: Child,
    log: PathBuf,
}

impl Local {
    pub fn start(root: &Path, config: &Path, step_ms: u64) -> std::io::Result<Local> {
        Self::start_with(root, config, step_ms, &[], &[])
    }

    pub fn start_with(
        root: &Path,
        config: &Path,
        step_ms: u64,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> std::io::Result<Local> {
        let log = root.with_extension("local.log");
        let out = std::fs::File::create(&log)?;
        let child = batchdrop()
            .args(["local", "--poll-interval", "0.2", "--sandbox-step-ms"])
            .arg(step_ms.to_string())
            .arg("--root")
            .arg(root)
            .arg("--config")
            .arg(config)
            .args(args)
            .envs(env.iter().copied())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(Local { child, log })
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        self.output()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for(path: &Path, local: &Local) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not appear; output:\n{}",
                path.display(),
                local.output()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

pub fn json_lines(text: &str) -> Result<Vec<Value>, Error> {
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// The job id `submit` printed (`job <id> starts on it; …`).
pub fn printed_job_id(stdout: &str) -> Result<String, Error> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("job "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| format!("no job id in {stdout:?}").into())
}

/// Drops `body` at `key` under `root` (written beside it, then renamed into place).
pub fn drop_text(root: &Path, key: &str, body: &str) -> std::io::Result<()> {
    let dest = root.join(key);
    std::fs::create_dir_all(dest.parent().expect("key has a parent"))?;
    let staging = root.with_extension("staging");
    std::fs::write(&staging, body)?;
    std::fs::rename(&staging, &dest)
}

pub fn wait_until(path: &Path, local: &Local, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not appear; output:\n{}",
                path.display(),
                local.output()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The embedded sandbox's statistics (its address is printed at start).
pub fn sandbox_stats(local: &Local) -> Result<Value, Error> {
    let printed = local.output();
    let url = printed
        .lines()
        .find_map(|l| l.strip_prefix("sandbox provider at "))
        .ok_or("the sandbox address was not printed")?
        .trim()
        .trim_end_matches("/v1")
        .to_string();
    // A plain HTTP/1.0 GET: the body is what follows the blank line.
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "GET /sandbox/stats HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let body = answer.split_once("\r\n\r\n").ok_or("no HTTP body")?.1;
    Ok(serde_json::from_str(body)?)
}
