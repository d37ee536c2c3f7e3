//! The provider clients over real HTTP against the sandbox: one set of checks, run for the
//! OpenAI client and the Anthropic client alike; and each client's synchronous lane
//! (`invoke`): the line it answers, and how the engine reads it.

use batchdrop_core::provider::{
    BatchLookup, BatchState, ChunkUpload, Location, Provider, ResultFacts, ResultFile, StoredBody,
};
use batchdrop_core::providers::{self, AnthropicProvider, OpenAiProvider};
use batchdrop_core::store::{MemoryStore, ObjectStore, PutMode, lines_of};
use batchdrop_sandbox::{MODEL_NOT_FOUND, Sandbox, SandboxConfig};
use bytes::Bytes;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The two providers the sandbox speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Openai,
    Anthropic,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Openai => "openai",
            Wire::Anthropic => "anthropic",
        }
    }
}

fn requests(wire: Wire, n: usize) -> String {
    (0..n)
        .map(|i| match wire {
            Wire::Openai => serde_json::json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("question {i}")}]}}),
            Wire::Anthropic => serde_json::json!({"custom_id": format!("r{i}"),
                "params": {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": format!("question {i}")}]}}),
        }
        .to_string() + "\n")
        .collect()
}

async fn setup(wire: Wire) -> Result<(Sandbox, Arc<dyn Provider>), std::io::Error> {
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse().expect("addr"),
        SandboxConfig::default(),
    )
    .await?;
    let provider: Arc<dyn Provider> = match wire {
        Wire::Openai => Arc::new(OpenAiProvider::new(&sandbox.base_url(), None)),
        Wire::Anthropic => Arc::new(AnthropicProvider::new(&sandbox.anthropic_base_url(), None)),
    };
    Ok((sandbox, provider))
}

/// Submits 25 requests, waits for the end, reads every result back.
async fn batch_round_trips(wire: Wire) -> TestResult {
    // GIVEN a chunk of 25 requests in a store
    let (sandbox, provider) = setup(wire).await?;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let body = requests(wire, 25);
    store
        .put("chunk.jsonl", Bytes::from(body.clone()), PutMode::Overwrite)
        .await?;
    let source = StoredBody {
        store: store.clone(),
        key: "chunk.jsonl".into(),
    };
    let endpoint = match wire {
        Wire::Openai => "/v1/chat/completions",
        Wire::Anthropic => "/v1/messages",
    };

    // WHEN it is submitted and looked at until it ends
    let submitted = provider
        .submit(ChunkUpload {
            job_id: "job1",
            chunk: 0,
            endpoint,
            model: "",
            body: &source,
            location: Location {
                bucket: "bucket",
                key: "chunk.jsonl",
            },
            output: Location {
                bucket: "bucket",
                key: "out/",
            },
            token: "job1-0",
            bytes: body.len() as u64,
            requests: 25,
        })
        .await?;
    let mut info = provider.batch(&submitted.batch_id).await?;
    for _ in 0..5 {
        if info.state.is_terminal() {
            break;
        }
        info = provider.batch(&submitted.batch_id).await?;
    }

    // THEN it completed and its results name every request once, with usage
    assert_eq!(info.state, BatchState::Completed, "{info:?}");
    let Some(ResultFile::Provider(file)) = info.result_files.first().cloned() else {
        return Err("no output file".into());
    };
    let mut reader = lines_of(provider.download(&file).await?);
    let mut line = Vec::new();
    let mut ids = Vec::new();
    while reader.read_until(b'\n', &mut line).await? > 0 {
        let facts =
            batchdrop_core::providers::dialect(wire.name())?.read_result(line.trim_ascii())?;
        assert!(
            facts.succeeded && facts.input_tokens > 0,
            "{}",
            String::from_utf8_lossy(&line)
        );
        ids.push(facts.custom_id);
        line.clear();
    }
    let in_order: Vec<String> = (0..25).map(|i| format!("r{i}")).collect();
    assert_ne!(ids, in_order, "the provider shuffles results");
    ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap_or(0));
    assert_eq!(ids, in_order);
    sandbox.stop().await;
    Ok(())
}

/// After a lost submit outcome, the batch is found again rather than created twice.
async fn interrupted_submit_is_found(wire: Wire) -> TestResult {
    let (sandbox, provider) = setup(wire).await?;
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let body = requests(wire, 3);
    store
        .put("c.jsonl", Bytes::from(body.clone()), PutMode::Overwrite)
        .await?;
    let source = StoredBody {
        store,
        key: "c.jsonl".into(),
    };
    let endpoint = if wire == Wire::Openai {
        "/v1/chat/completions"
    } else {
        "/v1/messages"
    };
    let since = time::OffsetDateTime::now_utc().unix_timestamp();
    // GIVEN a batch created for job2/chunk 4 whose id was never saved
    let created = provider
        .submit(ChunkUpload {
            job_id: "job2",
            chunk: 4,
            endpoint,
            model: "",
            body: &source,
            location: Location {
                bucket: "bucket",
                key: "c.jsonl",
            },
            output: Location {
                bucket: "bucket",
                key: "out/",
            },
            token: "job2-4",
            bytes: body.len() as u64,
            requests: 3,
        })
        .await?;
    // WHEN the chunk's batch is looked for
    let found = provider
        .find_batch(BatchLookup {
            job_id: "job2",
            chunk: 4,
            token: "job2-4",
            since,
            requests: 3,
            exclude: &[],
        })
        .await?;
    // THEN it is that batch
    assert_eq!(found.map(|s| s.batch_id), Some(created.batch_id.clone()));
    // AND a batch known to belong elsewhere is not taken for it
    let excluded = [created.batch_id];
    let other = provider
        .find_batch(BatchLookup {
            job_id: "job2",
            chunk: 5,
            token: "job2-5",
            since,
            requests: 3,
            exclude: &excluded,
        })
        .await?;
    assert_eq!(other, None);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_batch_round_trips() -> TestResult {
    batch_round_trips(Wire::Openai).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_batch_round_trips() -> TestResult {
    batch_round_trips(Wire::Anthropic).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_interrupted_submit_is_found() -> TestResult {
    interrupted_submit_is_found(Wire::Openai).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_interrupted_submit_is_found() -> TestResult {
    interrupted_submit_is_found(Wire::Anthropic).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_never_appears_in_debug_output() -> TestResult {
    let key = "sk-secret-never-print-me";
    let openai = OpenAiProvider::new("http://127.0.0.1:1/v1", Some(key.to_string().into()));
    let anthropic = AnthropicProvider::new("http://127.0.0.1:1", Some(key.to_string().into()));
    let shown = format!("{openai:?} {anthropic:?}");
    assert!(!shown.contains(key), "{shown}");
    assert!(shown.contains("[redacted]"));
    Ok(())
}

// ---- The synchronous lane (`Provider::invoke`) ----------------------------------------------

/// A request line of `wire` for `model`, `max_tokens` left out when `None` (Anthropic refuses
/// that; OpenAI does not need it).
fn request_line(wire: Wire, custom_id: &str, model: &str, max_tokens: Option<u64>) -> Vec<u8> {
    let mut line = match wire {
        Wire::Openai => {
            serde_json::json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": "What is two plus two?"}]}})
        }
        Wire::Anthropic => serde_json::json!({"custom_id": custom_id,
            "params": {"model": model, "messages": [{"role": "user", "content": "What is two plus two?"}]}}),
    };
    if let (Wire::Anthropic, Some(max)) = (wire, max_tokens) {
        line["params"]["max_tokens"] = max.into();
    }
    line.to_string().into_bytes()
}

/// The engine's reading of a result line of `wire`.
fn read(wire: Wire, line: &[u8]) -> Result<ResultFacts, Box<dyn std::error::Error + Send + Sync>> {
    Ok(providers::dialect(wire.name())?.read_result(line)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_invoke_answers_with_a_batch_output_line() -> TestResult {
    // GIVEN the OpenAI client of a sandbox
    let (sandbox, provider) = setup(Wire::Openai).await?;

    // WHEN a chat request line is sent on its own
    let line = provider
        .invoke(
            "gpt-4o-mini",
            &request_line(Wire::Openai, "q-1", "gpt-4o-mini", None),
        )
        .await?;

    // THEN its answer is an OpenAI batch output line with the chat completion
    let v: serde_json::Value = serde_json::from_slice(&line)?;
    assert_eq!(v["custom_id"], "q-1");
    assert_eq!(v["response"]["status_code"], 200);
    assert_eq!(v["response"]["body"]["object"], "chat.completion");
    assert!(v["error"].is_null());
    assert!(!line.contains(&b'\n'));
    // AND the engine reads it as a success of that request, with its usage
    let facts = read(Wire::Openai, &line)?;
    assert_eq!(facts.custom_id, "q-1");
    assert!(facts.succeeded);
    assert!(
        facts.input_tokens > 0 && facts.output_tokens > 0,
        "{facts:?}"
    );
    assert_eq!(sandbox.stats().sync_requests, 1);
    assert_eq!(sandbox.stats().batches_created, 0);
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_invoke_answers_a_refusal_with_its_status_and_error() -> TestResult {
    // GIVEN the OpenAI client of a sandbox
    let (sandbox, provider) = setup(Wire::Openai).await?;

    // WHEN a request for a model the server does not have is sent
    let line = provider
        .invoke(
            MODEL_NOT_FOUND,
            &request_line(Wire::Openai, "q-2", MODEL_NOT_FOUND, None),
        )
        .await?;

    // THEN its answer is a line with the 404 and the error, which the engine reads as a failure
    // of that request not worth another attempt
    let v: serde_json::Value = serde_json::from_slice(&line)?;
    assert_eq!(v["custom_id"], "q-2");
    assert_eq!(v["response"]["status_code"], 404);
    assert_eq!(v["response"]["body"]["error"]["code"], "model_not_found");
    let facts = read(Wire::Openai, &line)?;
    assert_eq!(facts.custom_id, "q-2");
    assert!(!facts.succeeded && !facts.retryable, "{facts:?}");
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_invoke_answers_with_a_succeeded_results_line() -> TestResult {
    // GIVEN the Anthropic client of a sandbox
    let (sandbox, provider) = setup(Wire::Anthropic).await?;

    // WHEN a request line with batchdrop's own id is sent on its own
    let model = "claude-sonnet-4-5";
    let line = provider
        .invoke(
            model,
            &request_line(Wire::Anthropic, "bd_7", model, Some(50)),
        )
        .await?;

    // THEN its answer is a batch results line holding the Message, under the same id
    let v: serde_json::Value = serde_json::from_slice(&line)?;
    assert_eq!(v["custom_id"], "bd_7");
    assert_eq!(v["result"]["type"], "succeeded");
    assert_eq!(v["result"]["message"]["type"], "message");
    assert_eq!(v["result"]["message"]["model"], model);
    assert!(!line.contains(&b'\n'));
    // AND the engine reads it as a success of that request, with its usage and model
    let facts = read(Wire::Anthropic, &line)?;
    assert_eq!(facts.custom_id, "bd_7");
    assert!(facts.succeeded);
    assert!(
        facts.input_tokens > 0 && facts.output_tokens > 0,
        "{facts:?}"
    );
    assert_eq!(facts.model.as_deref(), Some(model));
    let stats = sandbox.stats();
    assert_eq!(
        (stats.message_requests, stats.message_batches_created),
        (1, 0)
    );
    sandbox.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_invoke_answers_a_refusal_with_an_errored_results_line() -> TestResult {
    // GIVEN the Anthropic client of a sandbox
    let (sandbox, provider) = setup(Wire::Anthropic).await?;

    // WHEN a request line without max_tokens is sent (the Messages API answers 400)
    let model = "claude-sonnet-4-5";
    let line = provider
        .invoke(model, &request_line(Wire::Anthropic, "q-3", model, None))
        .await?;

    // THEN its answer is an errored results line with Anthropic's error type and message
    let v: serde_json::Value = serde_json::from_slice(&line)?;
    assert_eq!(
        v,
        serde_json::json!({"custom_id": "q-3", "result": {"type": "errored", "error": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        }}})
    );
    // AND the engine reads it as a failure of that request not worth another attempt
    let facts = read(Wire::Anthropic, &line)?;
    assert_eq!(facts.custom_id, "q-3");
    assert!(!facts.succeeded && !facts.retryable, "{facts:?}");
    sandbox.stop().await;
    Ok(())
}
