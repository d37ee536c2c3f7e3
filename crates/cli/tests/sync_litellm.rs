//! The synchronous lane against an OpenAI-compatible server nobody here wrote: the LiteLLM
//! proxy (from `.venv-litellm`, which `make test` installs), with a `mock_response` model that
//! answers offline and a master key, behind an `openai-sync` route of `batchdrop local`.

mod common;

use common::{Local, TestResult, drop_text, json_lines, wait_until, workspace};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "sk-batchdrop-test";
const ANSWER: &str = "A mock answer from the LiteLLM proxy.";

/// The LiteLLM proxy, stopped when dropped.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET path` on the proxy; the status line.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.lines().next().unwrap_or_default().to_string())
}

/// Starts the proxy (`BATCHDROP_LITELLM` or `.venv-litellm/bin/litellm`) on a free port with
/// one model, `mock-gpt`, and waits until it is live.
fn start_proxy(dir: &std::path::Path) -> Result<Proxy, common::Error> {
    let bin = std::env::var_os("BATCHDROP_LITELLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv-litellm/bin/litellm"));
    if !bin.exists() {
        return Err(format!(
            "the LiteLLM proxy is not installed at {} (run `make venv-litellm`, or set BATCHDROP_LITELLM)",
            bin.display()
        )
        .into());
    }
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: mock-gpt\n    litellm_params:\n      model: openai/mock-gpt\n      mock_response: \"{ANSWER}\"\n      api_key: not-used\n"
        ),
    )?;
    let port = free_port()?;
    let log = dir.join("litellm.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(&bin)
        .args(["--config"])
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("LITELLM_MASTER_KEY", KEY)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    let proxy = Proxy { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !get(port, "/health/liveliness").is_ok_and(|status| status.contains(" 200")) {
        if Instant::now() > deadline {
            return Err(format!(
                "the LiteLLM proxy did not start; its log:\n{}",
                std::fs::read_to_string(&proxy.log).unwrap_or_default()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(proxy)
}

#[test]
fn a_file_on_an_openai_sync_route_is_answered_by_the_litellm_proxy_in_order() -> TestResult {
    // GIVEN the LiteLLM proxy, and batchdrop local with an openai-sync route to it whose key
    // comes from the environment
    let dir = tempfile::tempdir()?;
    let proxy = start_proxy(dir.path())?;
    let root = dir.path().join("bucket");
    let config = dir.path().join("batchdrop.toml");
    std::fs::write(
        &config,
        format!(
            "[routes.self-hosted]\nprovider = \"openai-sync\"\nbase_url = \"http://127.0.0.1:{}/v1\"\napi_key_env = \"SELF_HOSTED_KEY\"\nmax_concurrency = 16\n[routes.self-hosted.defaults]\nmodel = \"mock-gpt\"\n",
            proxy.port
        ),
    )?;
    let local = Local::start_with(&root, &config, 0, &[], &[("SELF_HOSTED_KEY", KEY)])?;

    // WHEN a file of 5,000 prompt lines is dropped under inbox/self-hosted/
    let body: String = (1..=5_000)
        .map(|i| format!(r#"{{"custom_id":"p{i:05}","prompt":"question {i}"}}"#) + "\n")
        .collect();
    drop_text(&root, "inbox/self-hosted/run/requests.jsonl", &body)?;
    let results = root.join("results/self-hosted/run/requests");
    wait_until(
        &results.join("summary.json"),
        &local,
        Duration::from_secs(600),
    )?;

    // THEN output.jsonl holds every request once, in input order, in the OpenAI batch output
    // shape, each with the proxy's answer
    let output = json_lines(&std::fs::read_to_string(results.join("output.jsonl"))?)?;
    let ids: Vec<&str> = output
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("?"))
        .collect();
    let expected: Vec<String> = (1..=5_000).map(|i| format!("p{i:05}")).collect();
    assert_eq!(ids, expected);
    let unanswered: Vec<&Value> = output
        .iter()
        .filter(|l| {
            l["response"]["status_code"] != 200
                || l["response"]["body"]["choices"][0]["message"]["content"] != ANSWER
        })
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} not answered, the first: {}",
        unanswered.len(),
        unanswered[0]
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["counts"]["succeeded"], 5_000, "{summary}");
    assert_eq!(summary["on_demand_requests"], 5_000, "{summary}");
    local.stop();
    Ok(())
}
