//! Child processes: wall time and peak resident memory (`wait4(2)`'s `ru_maxrss`) of one child,
//! and stopping one child by its pid.

use crate::error::{BenchError, Context};
use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a measured child ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit code, or `None` if a signal ended it.
    pub code: Option<i32>,
    /// Its peak resident set size, in bytes.
    pub max_rss: u64,
    pub wall: Duration,
    pub stdout: String,
}

/// Runs `command` to completion with stdout captured (stderr goes where the command says).
pub fn run_measured(command: &mut Command) -> Result<Finished, BenchError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .context(|| format!("starting {program}"))?;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)
            .context(|| format!("reading the output of {program}"))?;
    }
    let (code, max_rss) = wait_rusage(&child).context(|| format!("waiting for {program}"))?;
    Ok(Finished {
        code,
        max_rss,
        wall: started.elapsed(),
        stdout,
    })
}

/// Reaps `child` with `wait4(2)`: its exit code and peak RSS in bytes. The `Child` must not be
/// waited on again afterwards.
pub fn wait_rusage(child: &Child) -> io::Result<(Option<i32>, u64)> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers refer to live, writable locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    // Linux reports kilobytes.
    Ok((code, (usage.ru_maxrss.max(0) as u64) * 1024))
}

/// Asks a child to stop (SIGTERM).
pub fn terminate(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Wall time of a command run to completion (its output goes where the command says).
pub fn time_command(command: &mut Command) -> Result<Duration, BenchError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    let status = command.status().context(|| format!("starting {program}"))?;
    let wall = started.elapsed();
    if !status.success() {
        return Err(BenchError::program(
            program,
            format!("exited with {status}"),
        ));
    }
    Ok(wall)
}
