//! Webhooks out through the real binary: `batchdrop local` with a route whose `webhook_url`
//! points at a receiver verifying with the reference `standardwebhooks` Python library
//! (crates/core/tests/webhook_receiver.py), the secret from the environment; then
//! `batchdrop status --json` shows the webhook delivered.

mod common;

use common::{Local, TestResult, drop_text, run, wait_for, workspace};
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python receiver, stopped when dropped.
struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// A fixed test secret (not a real one): whsec_ + base64 of 24 bytes.
const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtb2YtYmF0Y2hkcm9wLWhv";

#[test]
fn local_mode_sends_a_verified_webhook_and_status_shows_it_delivered() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(&root)?;
    let records = dir.path().join("received.jsonl");
    let mut child = Command::new(workspace().join(".venv/bin/python"))
        .arg(workspace().join("crates/core/tests/webhook_receiver.py"))
        .arg(SECRET)
        .arg(&records)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let receiver = Receiver(child);
    let mut port = String::new();
    std::io::BufReader::new(stdout).read_line(&mut port)?;
    let cfg = dir.path().join("batchdrop.toml");
    std::fs::write(
        &cfg,
        format!(
            "[routes.sandbox]\nwebhook_url = \"http://127.0.0.1:{}/hooks\"\nwebhook_secret_env = \"HOOK_SECRET\"\n",
            port.trim()
        ),
    )?;
    let local = Local::start_with(&root, &cfg, 0, &[], &[("HOOK_SECRET", SECRET)])?;
    let body = std::fs::read_to_string(workspace().join("examples/requests.jsonl"))?;
    drop_text(&root, "inbox/sandbox/hooked/requests.jsonl", &body)?;
    let results = root.join("results/sandbox/hooked/requests");
    wait_for(&results.join("summary.json"), &local)?;

    let deadline = Instant::now() + Duration::from_secs(30);
    let got: Vec<Value> = loop {
        let text = std::fs::read_to_string(&records).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if !lines.is_empty() || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got.len(), 1, "{got:#?}\n{}", local.output());
    assert_eq!(got[0]["verified"], true, "{got:#?}");
    assert_eq!(got[0]["body"]["type"], "batch_job.completed");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(got[0]["body"]["data"], summary);

    let st = run(&[
        "status",
        "sandbox/hooked/requests",
        "--json",
        "--root",
        root.to_str().unwrap_or(""),
    ])?;
    let jobs: Value = serde_json::from_str(&st.stdout)?;
    let hook = &jobs[0]["webhooks"][0];
    assert_eq!(hook["state"], "delivered", "{}", st.stdout);
    assert_eq!(hook["event_type"], "batch_job.completed");
    assert_eq!(hook["webhook_id"], got[0]["headers"]["webhook-id"]);

    let printed = local.stop();
    assert!(
        printed.contains("webhook batch_job.completed delivered"),
        "{printed}"
    );
    assert!(!printed.contains(SECRET.trim_start_matches("whsec_")));
    drop(receiver);
    Ok(())
}
