//! A receiver of batchdrop's webhooks that a library nobody here wrote verifies:
//! `crates/core/tests/webhook_receiver.py` (the reference `standardwebhooks` Python library, from
//! the workspace's `.venv`) on a free port of 127.0.0.1, killed when dropped.

use crate::BoxError;
use crate::fixtures::workspace;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct WebhookReceiver {
    child: Child,
    /// `http://127.0.0.1:<port>`: POST anywhere under it.
    pub url: String,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WebhookReceiver {
    /// Starts it, verifying with `secret` (`whsec_…`) at the real time.
    pub fn start(secret: &str) -> Result<Self, BoxError> {
        let python = workspace().join(".venv/bin/python");
        let mut child = Command::new(&python)
            .arg(workspace().join("crates/core/tests/webhook_receiver.py"))
            .arg(secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {} ({e}): make venv", python.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|e| format!("the receiver printed {line:?}: {e}"))?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Every POST so far: `{path, headers, verified, error, body}`.
    pub async fn received(&self) -> Result<Vec<Value>, BoxError> {
        Ok(reqwest::get(format!("{}/_received", self.url))
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}
