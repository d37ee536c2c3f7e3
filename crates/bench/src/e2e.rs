//! End to end through local mode: the real `batchdrop local` binary with its embedded sandbox
//! (instant: `--sandbox-step-ms 0`), a fresh directory as the bucket, one file dropped into the
//! inbox (a hard link: it appears whole, as after `mv`), timed until `summary.json` exists.
//!
//! Phases come from the times at which `batchdrop local` printed its event lines (read from its
//! stdout as they come): `planning` marks the moment submit began reading the upload, which
//! separates the watcher's pickup (a file is read once it has not changed for one 500 ms tick)
//! from planning.

use crate::error::{BenchError, Context};
use crate::generate::Input;
use crate::plan::{place, reset};
use crate::process;
use serde::Serialize;
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Seconds between polls given to `batchdrop local`.
pub const POLL_INTERVAL: &str = "0.2";
/// Where the file is dropped, and where its results appear.
const KEY: &str = "inbox/sandbox/bench/requests.jsonl";
const RESULTS: &str = "results/sandbox/bench/requests";

/// One phase of the run, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub key: &'static str,
    pub name: &'static str,
    pub secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eRun {
    pub requests: u64,
    pub bytes: u64,
    /// From the drop to `summary.json` existing.
    pub total_secs: f64,
    pub phases: Vec<Phase>,
    pub batches: usize,
    /// `summary.json` as written.
    pub summary: Value,
    /// Peak RSS of `batchdrop local` (engine and embedded sandbox together), bytes.
    pub local_max_rss: u64,
    pub command: String,
}

/// Runs the file through `batchdrop local` at `bin`; scratch space under `work`, removed after.
pub fn measure(
    bin: &Path,
    input: &Input,
    work: &Path,
    timeout: Duration,
) -> Result<E2eRun, BenchError> {
    let scratch = work.join("e2e");
    reset(&scratch)?;
    let result = measure_in(bin, input, &scratch, timeout);
    let _ = fs::remove_dir_all(&scratch);
    crate::plan::flush_to_disk();
    result
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Planning,
    Started,
    Submitted,
    Collected,
    Finished,
    Other,
}

/// Classifies a line of `batchdrop local`'s output (see `crates/cli/src/printer.rs`).
fn classify(line: &str) -> Line {
    if !line.starts_with("job ") {
        Line::Other
    } else if line.contains(" batch ") {
        if line.contains(" submitted: ") {
            Line::Submitted
        } else if line.contains(" succeeded, ") {
            Line::Collected
        } else {
            Line::Other
        }
    } else if line.contains(" planning ") && !line.contains(" paused ") {
        Line::Planning
    } else if line.contains(" started: ") {
        Line::Started
    } else if line.contains(" → ") {
        Line::Finished
    } else {
        Line::Other
    }
}

fn measure_in(
    bin: &Path,
    input: &Input,
    scratch: &Path,
    timeout: Duration,
) -> Result<E2eRun, BenchError> {
    let root = scratch.join("bucket");
    fs::create_dir_all(root.join("inbox")).context(|| format!("creating {}", root.display()))?;
    let stderr_path = scratch.join("local.stderr");
    let stderr =
        fs::File::create(&stderr_path).context(|| format!("creating {}", stderr_path.display()))?;
    let args = [
        "local",
        "--sandbox-step-ms",
        "0",
        "--poll-interval",
        POLL_INTERVAL,
        "--sandbox-addr",
        "127.0.0.1:0",
        "--root",
    ];
    let command = format!("{} {} {}", bin.display(), args.join(" "), root.display());
    let mut child = Command::new(bin)
        .args(args)
        .arg(&root)
        .env_remove("BATCHDROP_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context(|| format!("starting {}", bin.display()))?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        }
    });
    let outcome = drive(&root, input, &rx, timeout);
    process::terminate(&child);
    let rss = process::wait_rusage(&child)
        .map(|(_, rss)| rss)
        .unwrap_or(0);
    let _ = child.stdout.take();
    let _ = reader.join();
    let mut run = match outcome {
        Ok(run) => run,
        Err(why) => {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            return Err(BenchError::program(
                "batchdrop local",
                format!("{why}; stderr: {}", stderr.trim()),
            ));
        }
    };
    run.local_max_rss = rss;
    run.command = command;
    Ok(run)
}

fn drive(
    root: &Path,
    input: &Input,
    rx: &mpsc::Receiver<(Instant, String)>,
    timeout: Duration,
) -> Result<E2eRun, String> {
    let mut lines: Vec<(Instant, String)> = Vec::new();
    // Ready once it says it is watching.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !lines.iter().any(|(_, l)| l.contains("watching")) {
        let left = ready_by.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => return Err("batchdrop local did not start within 60 s".into()),
        }
    }
    let summary_path: PathBuf = root.join(RESULTS).join("summary.json");
    let drop_at = Instant::now();
    place(&input.path, &root.join(KEY)).map_err(|e| e.to_string())?;
    let done_at = loop {
        if summary_path.exists() {
            break Instant::now();
        }
        lines.extend(rx.try_iter());
        if drop_at.elapsed() > timeout {
            let tail: Vec<&str> = lines
                .iter()
                .rev()
                .take(5)
                .map(|(_, l)| l.as_str())
                .collect();
            return Err(format!(
                "no summary.json after {} s; last output: {tail:?}",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The Finished line follows the summary closely.
    let finished_by = Instant::now() + Duration::from_secs(10);
    while !lines.iter().any(|(_, l)| classify(l) == Line::Finished) {
        match rx.recv_timeout(finished_by.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let summary: Value = serde_json::from_slice(
        &fs::read(&summary_path).map_err(|e| format!("cannot read summary.json: {e}"))?,
    )
    .map_err(|e| format!("summary.json is not JSON: {e}"))?;

    let at = |kind: Line| -> Vec<Instant> {
        lines
            .iter()
            .filter(|(_, l)| classify(l) == kind)
            .map(|(t, _)| *t)
            .collect()
    };
    let staging_at = at(Line::Planning).first().copied();
    let started = at(Line::Started).first().copied();
    let submitted = at(Line::Submitted);
    let collected = at(Line::Collected);
    let finished = at(Line::Finished).first().copied();
    let span = |from: Option<Instant>, to: Option<Instant>| -> Option<f64> {
        Some(to?.saturating_duration_since(from?).as_secs_f64())
    };
    let phases = vec![
        Phase {
            key: "pickup",
            name: "pickup (drop → submit begins; watcher waits one quiet tick)",
            secs: span(Some(drop_at), staging_at),
        },
        Phase {
            key: "plan",
            name: "submit: plan + stage (→ job started)",
            secs: span(staging_at, started),
        },
        Phase {
            key: "batches",
            name: "submit: upload + create batches (→ last batch submitted)",
            secs: span(started, submitted.iter().max().copied()),
        },
        Phase {
            key: "wait",
            name: "sandbox runs the batches, poll, first collect (→ first batch collected)",
            secs: span(
                submitted.iter().max().copied(),
                collected.iter().min().copied(),
            ),
        },
        Phase {
            key: "collect",
            name: "collect results (first → last batch collected)",
            secs: span(
                collected.iter().min().copied(),
                collected.iter().max().copied(),
            ),
        },
        Phase {
            key: "assemble",
            name: "final assembly (→ summary.json)",
            secs: span(
                collected.iter().max().copied(),
                Some(done_at.min(finished.unwrap_or(done_at))),
            ),
        },
    ];
    Ok(E2eRun {
        requests: input.lines,
        bytes: input.bytes,
        total_secs: done_at.duration_since(drop_at).as_secs_f64(),
        phases,
        batches: submitted.len(),
        summary,
        local_max_rss: 0,
        command: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_of_batchdrop_local_are_recognised() {
        let cases = [
            (
                "job je72561760 planning inbox/sandbox/demo/requests.jsonl",
                Line::Planning,
            ),
            (
                "job je72561760 planning paused at line 2048 (300501 of 1500000 bytes); the next poll continues",
                Line::Other,
            ),
            (
                "job je72561760 started: inbox/sandbox/demo/requests.jsonl — 14 lines, 9 accepted, 5 rejected, 4 batch(es)",
                Line::Started,
            ),
            (
                "job je72561760 batch 0 submitted: batch_IloQ (4 requests)",
                Line::Submitted,
            ),
            (
                "job je72561760 batch 0 in_progress: 0/4 done, 0 failed",
                Line::Other,
            ),
            (
                "job je72561760 batch 0 completed: 4 succeeded, 0 failed",
                Line::Collected,
            ),
            (
                "job je72561760 completed: 8 succeeded, 1 failed, 5 rejected → results/sandbox/demo/requests/",
                Line::Finished,
            ),
            ("sandbox provider at http://127.0.0.1:1234/v1", Line::Other),
        ];
        for (line, kind) in cases {
            assert_eq!(classify(line), kind, "{line}");
        }
    }
}
