//! `cargo lambda watch` for a test: the local Lambda Runtime API emulator, serving this
//! workspace's functions (`functions/submit`, `functions/poll`) on a free loopback port.
//!
//! The executable is `$CARGO_LAMBDA` if set, else `<workspace>/.venv/bin/cargo-lambda`
//! (installed by `make venv`). When it is missing, [`LambdaWatch::start`] fails and says how to
//! install it: a test never skips for want of it.
//!
//! The emulator builds a function with `cargo run` on its first invocation, in the workspace's
//! target directory (so it may wait for the lock of another cargo run), then keeps it running
//! for the next ones: a first invocation may take minutes ([`FIRST_INVOKE_TIMEOUT`]), the next
//! ones seconds ([`INVOKE_TIMEOUT`]). It runs with `--ignore-changes`: an edit in the workspace
//! while a test runs does not restart (and rebuild) the functions. An invocation that waits on
//! an emulator that has exited fails at once with the emulator's log.
//!
//! Stopping: the emulator runs in a process group of its own, but starts each function instance
//! (`cargo run --bin NAME`, then the function itself) in a new session, so killing its group is
//! not enough. Dropping a [`LambdaWatch`] (on a panicking test too) notes every descendant of
//! the emulator, sends SIGTERM to the emulator (which then stops its instances), and after a
//! grace period SIGKILLs the emulator's group and the group of every descendant still running.
//! Its output goes to a log file, kept when the test panics.
//!
//! Environment of the functions: the test process's, minus every `AWS_*`, `BATCHDROP_*`,
//! `OPENAI_*` and `ANTHROPIC_*` variable, plus what the test passes to [`LambdaWatch::start`].

use crate::BoxError;
use crate::fixtures::workspace;
use serde_json::Value;
use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the emulator may take to listen.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the first invocation of a function may take, its build included (a cold debug
/// build takes minutes on two cores, more when other builds share them).
pub const FIRST_INVOKE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long any later invocation of a function may take.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the emulator gets to exit on SIGTERM before its group is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Variables of the test process the functions do not see.
const HIDDEN_PREFIXES: [&str; 4] = ["AWS_", "BATCHDROP_", "OPENAI_", "ANTHROPIC_"];

/// A running `cargo lambda watch`; dropping it kills it and everything it started.
#[derive(Debug)]
pub struct LambdaWatch {
    child: Mutex<Child>,
    /// The emulator's pid, also the id of its process group.
    pid: i32,
    port: u16,
    log: PathBuf,
    http: reqwest::Client,
    /// Functions that have answered once (and so are built).
    answered: Mutex<HashSet<String>>,
}

impl LambdaWatch {
    /// Starts the emulator from the workspace root with `env` added to the (filtered)
    /// environment, and waits until it accepts connections.
    pub async fn start(env: &[(&str, &str)]) -> Result<LambdaWatch, BoxError> {
        let program = cargo_lambda_path()?;
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!(
            "batchdrop-cargo-lambda-{}-{port}.log",
            std::process::id()
        ));
        let out = File::create(&log)?;
        let mut command = Command::new(&program);
        command
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(workspace())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        for (name, _) in std::env::vars_os() {
            let hidden = name
                .to_str()
                .is_some_and(|n| HIDDEN_PREFIXES.iter().any(|p| n.starts_with(p)));
            if hidden {
                command.env_remove(&name);
            }
        }
        // cargo-lambda finds its helpers (zig) next to itself, in the venv.
        if let Some(bin) = program.parent() {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let dirs = std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path));
            command.env("PATH", std::env::join_paths(dirs)?);
        }
        command.envs(env.iter().copied());
        let child = command
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", program.display()))?;
        // From here on, dropping `watch` kills the group, on every error path too.
        let watch = LambdaWatch {
            pid: i32::try_from(child.id())?,
            child: Mutex::new(child),
            port,
            log,
            http: reqwest::Client::new(),
            answered: Mutex::new(HashSet::new()),
        };
        watch.wait_until_listening().await?;
        Ok(watch)
    }

    async fn wait_until_listening(&self) -> Result<(), BoxError> {
        let started = Instant::now();
        loop {
            self.fail_if_exited()?;
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "cargo lambda watch did not listen on port {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log_tail()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn exit_status(&self) -> Result<Option<ExitStatus>, BoxError> {
        let mut child = self.child.lock().map_err(|_| "lock poisoned")?;
        Ok(child.try_wait()?)
    }

    fn fail_if_exited(&self) -> Result<(), BoxError> {
        match self.exit_status()? {
            Some(status) => Err(format!(
                "cargo lambda watch exited with {status}; its log:\n{}",
                self.log_tail()
            )
            .into()),
            None => Ok(()),
        }
    }

    /// Invokes `function` with the JSON in the file `event` (`POST
    /// /2015-03-31/functions/<function>/invocations`) and returns its response. A function
    /// error (`errorType` in the answer, or a non-2xx status) is an `Err` carrying it.
    pub async fn invoke(&self, function: &str, event: &Path) -> Result<Value, BoxError> {
        let body = std::fs::read(event).map_err(|e| format!("reading {}: {e}", event.display()))?;
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations",
            self.port
        );
        let first = !self
            .answered
            .lock()
            .map_err(|_| "lock poisoned")?
            .contains(function);
        let timeout = if first {
            FIRST_INVOKE_TIMEOUT
        } else {
            INVOKE_TIMEOUT
        };
        let request = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(timeout)
            .send();
        tokio::pin!(request);
        let response = loop {
            tokio::select! {
                response = &mut request => break response,
                _ = tokio::time::sleep(Duration::from_millis(500)) => self.fail_if_exited()?,
            }
        };
        let response = response.map_err(|e| {
            format!(
                "invoking {function} (timeout {timeout:?}): {e}; cargo lambda watch's log:\n{}",
                self.log_tail()
            )
        })?;
        self.answered
            .lock()
            .map_err(|_| "lock poisoned")?
            .insert(function.to_string());
        let status = response.status();
        let text = response.text().await?;
        let value: Option<Value> = serde_json::from_str(&text).ok();
        match value {
            Some(v) if status.is_success() && v.get("errorType").is_none() => Ok(v),
            _ => Err(format!(
                "{function} answered {status}: {text}\ncargo lambda watch's log:\n{}",
                self.log_tail()
            )
            .into()),
        }
    }

    /// The emulator and every process it started that is running now (zombies excluded).
    pub fn processes(&self) -> Vec<Process> {
        let all = Process::all();
        let mut tree: Vec<Process> = all.iter().filter(|p| p.pid == self.pid).cloned().collect();
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i].pid;
            tree.extend(all.iter().filter(|p| p.ppid == parent).cloned());
            i += 1;
        }
        tree.retain(|p| !p.zombie);
        tree
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the emulator's and the functions' output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the emulator's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        let tree = self.processes();
        let child = match self.child.get_mut() {
            Ok(child) => child,
            Err(poisoned) => poisoned.into_inner(),
        };
        signal_group(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(self.pid, libc::SIGKILL);
        let _ = child.wait();
        // Instances the emulator did not stop: each leads a group of its own (cargo and its
        // rustc, or the function).
        // SAFETY: getpgrp(2) cannot fail.
        let own_group = unsafe { libc::getpgrp() };
        for process in still_running(&tree) {
            if process.pgid == process.pid && process.pgid != own_group {
                signal_group(process.pgid, libc::SIGKILL);
            } else {
                signal_process(process.pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && !still_running(&tree).is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if std::thread::panicking() {
            eprintln!("cargo lambda watch log kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// One process, as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub zombie: bool,
    /// Start time since boot (clock ticks): with `pid`, names the process even if the pid is
    /// later reused.
    pub started: u64,
}

impl Process {
    /// Every process of the machine (those that exit while being read are left out).
    pub fn all() -> Vec<Process> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|entry| {
            let pid = entry.ok()?.file_name().to_str()?.parse::<i32>().ok()?;
            Self::read(pid)
        })
        .collect()
    }

    fn read(pid: i32) -> Option<Process> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority nice threads itrealvalue starttime ..."; comm may
        // hold spaces and ')'.
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Process {
            pid,
            zombie: *fields.first()? == "Z",
            ppid: fields.get(1)?.parse().ok()?,
            pgid: fields.get(2)?.parse().ok()?,
            started: fields.get(19)?.parse().ok()?,
        })
    }
}

/// Those of `processes` still running (same pid and start time, not a zombie).
pub fn still_running(processes: &[Process]) -> Vec<Process> {
    processes
        .iter()
        .filter_map(|p| Process::read(p.pid).filter(|now| now.started == p.started && !now.zombie))
        .collect()
}

fn signal_group(pgid: i32, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid only sends a signal to that process group;
        // failure means the group is gone.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

fn signal_process(pid: i32, signal: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill(2) only sends a signal; failure means the process is gone.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// The `cargo-lambda` executable this harness runs.
pub fn cargo_lambda_path() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os("CARGO_LAMBDA") {
        return Ok(PathBuf::from(path));
    }
    let venv = workspace().join(".venv/bin/cargo-lambda");
    if venv.is_file() {
        return Ok(venv);
    }
    Err(format!(
        "no cargo-lambda at {}: run `make venv` in the workspace (or set CARGO_LAMBDA)",
        venv.display()
    )
    .into())
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
