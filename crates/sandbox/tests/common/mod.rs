//! What the sandbox's HTTP tests share: a sandbox started on a free port, a client that talks
//! to it with a bearer key, and builders of input lines.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use batchdrop_sandbox::{ManualClock, Sandbox, SandboxConfig};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T = ()> = std::result::Result<T, Error>;

/// Where manual clocks start: 2023-11-14T22:13:20Z.
pub const T0: u64 = 1_700_000_000;

pub const CHAT: &str = "/v1/chat/completions";

/// A running sandbox and a client for it.
pub struct Harness {
    pub sandbox: Sandbox,
    pub client: reqwest::Client,
    pub base: String,
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A sandbox whose batches end at once (step 0), on the system clock.
pub async fn instant() -> Result<Harness> {
    start(SandboxConfig::default(), None).await
}

/// A sandbox whose batches spend `step` in each state, on a manual clock showing [`T0`].
pub async fn with_manual_clock(step: Duration) -> Result<(Harness, Arc<ManualClock>)> {
    let clock = Arc::new(ManualClock::at_unix(T0));
    let config = SandboxConfig {
        step,
        ..SandboxConfig::default()
    };
    Ok((start(config, Some(clock.clone())).await?, clock))
}

pub async fn start(config: SandboxConfig, clock: Option<Arc<ManualClock>>) -> Result<Harness> {
    let sandbox = match clock {
        Some(clock) => Sandbox::start_with_clock(localhost(), config, clock).await?,
        None => Sandbox::start(localhost(), config).await?,
    };
    let client = reqwest::Client::builder().no_proxy().build()?;
    let base = sandbox.base_url();
    Ok(Harness {
        sandbox,
        client,
        base,
    })
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` with the bearer key and returns its status and JSON body.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let response = request.bearer_auth("sk-test").send().await?;
        let status = response.status().as_u16();
        let body = response.json().await?;
        Ok((status, body))
    }

    /// `GET path`, which must answer 200.
    pub async fn get(&self, path: &str) -> Result<Value> {
        expect_ok(self.send(self.client.get(self.url(path))).await?)
    }

    /// `POST path` with a JSON body, which must answer 200.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        expect_ok(
            self.send(self.client.post(self.url(path)).json(body))
                .await?,
        )
    }

    /// Uploads `content` as `filename` with purpose `batch`.
    pub async fn upload(&self, filename: &str, content: impl Into<Vec<u8>>) -> Result<Value> {
        let form = Form::new().text("purpose", "batch").part(
            "file",
            Part::bytes(content.into()).file_name(filename.to_owned()),
        );
        expect_ok(
            self.send(self.client.post(self.url("/files")).multipart(form))
                .await?,
        )
    }

    pub async fn create_batch(&self, input_file_id: &Value, endpoint: &str) -> Result<Value> {
        self.post(
            "/batches",
            &json!({"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": "24h"}),
        )
        .await
    }

    /// Uploads `jsonl` and creates a batch of it.
    pub async fn submit(&self, jsonl: &str, endpoint: &str) -> Result<Value> {
        let file = self.upload("requests.jsonl", jsonl).await?;
        self.create_batch(&file["id"], endpoint).await
    }

    pub async fn batch(&self, id: &Value) -> Result<Value> {
        self.get(&format!("/batches/{}", text(id)?)).await
    }

    /// The content of a file, as text.
    pub async fn content(&self, file_id: &Value) -> Result<String> {
        let response = self
            .client
            .get(self.url(&format!("/files/{}/content", text(file_id)?)))
            .bearer_auth("sk-test")
            .send()
            .await?
            .error_for_status()?;
        Ok(response.text().await?)
    }

    /// The lines of a JSONL file, parsed.
    pub async fn lines(&self, file_id: &Value) -> Result<Vec<Value>> {
        let content = self.content(file_id).await?;
        content
            .lines()
            .map(|line| serde_json::from_str(line).map_err(Error::from))
            .collect()
    }

    pub async fn stop(self) {
        self.sandbox.stop().await;
    }
}

fn expect_ok((status, body): (u16, Value)) -> Result<Value> {
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("expected 200, got {status}: {body}").into())
    }
}

/// The string in a JSON value, or an error saying it is not one.
pub fn text(value: &Value) -> Result<&str> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, got {value}").into())
}

/// A chat completions input line.
pub fn chat_line(custom_id: &str, model: &str, content: &str) -> String {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    })
    .to_string()
}

/// A JSONL file of `n` chat requests `req-0` … `req-{n-1}`.
pub fn chat_file(n: usize) -> String {
    (0..n)
        .map(|i| {
            chat_line(
                &format!("req-{i}"),
                "gpt-4o-mini",
                &format!("Question number {i}?"),
            ) + "\n"
        })
        .collect()
}

/// The `custom_id`s of parsed output or error lines, in file order.
pub fn custom_ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["custom_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Moves `clock` to `seconds` after [`T0`].
pub fn set_clock(clock: &ManualClock, seconds: u64) {
    clock.set(UNIX_EPOCH + Duration::from_secs(T0 + seconds));
}
