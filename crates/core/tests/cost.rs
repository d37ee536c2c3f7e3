//! summary.json's `cost`: computed from the usage the provider reported, per model, at the
//! config's prices; and a job's running cost from its manifest.

use batchdrop_core::config::Config;
use batchdrop_core::cost::{self, PriceTable};
use batchdrop_core::layout::ACTIVE;
use batchdrop_core::manifest::{ChunkPlan, ChunkRecord, ChunkState, Manifest, Usage};
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{ScriptedProvider, TestBed, usage_of};
use serde_json::Value;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY: &str = "inbox/sandbox/run/requests.jsonl";

fn chat(id: &str, model: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"question {id}"}}]}}}}"#
    )
}

async fn poll_to_end(bed: &TestBed) -> TestResult {
    for _ in 0..10 {
        bed.engine.poll().await?;
        if bed.store.list(ACTIVE).await?.is_empty() {
            return Ok(());
        }
    }
    Err("job still active after 10 polls".into())
}

#[tokio::test]
async fn summary_cost_prices_each_models_reported_usage_at_the_config_prices() -> TestResult {
    // GIVEN prices for two models in the config file (gpt-4o-mini overridden, a new one added)
    let config = Config::from_toml(
        "[routes.sandbox]\nmax_requests_per_batch = 2\n\
         [prices.\"gpt-4o-mini\"]\ninput = 2.0\noutput = 4.0\n\
         [prices.\"house-model\"]\ninput = 10.0\noutput = 20.0\nbatch_input = 6.0\nbatch_output = 12.0\n",
        "t.toml",
        &|_| None,
    )?;
    let bed = TestBed::with_config(ScriptedProvider::new(), config);
    let requests = [
        ("a1", "gpt-4o-mini"),
        ("b22", "house-model"),
        ("c333", "gpt-4o-mini"),
    ];
    let text: String = requests.iter().map(|(id, m)| chat(id, m) + "\n").collect();

    // WHEN the job runs to the end
    bed.drop_file(KEY, text).await?;
    poll_to_end(&bed).await?;

    // THEN the cost is the reported tokens times the config prices, per model, hand-computed:
    // usage_of: a1 → (12, 5), c333 → (14, 9), b22 → (13, 7)
    // gpt-4o-mini: 26 in, 14 out; batch 26*1.0 + 14*2.0 = 54 µ$; sync 26*2 + 14*4 = 108 µ$
    // house-model: 13 in, 7 out;  batch 13*6 + 7*12 = 162 µ$;    sync 13*10 + 7*20 = 270 µ$
    assert_eq!(usage_of("a1"), (12, 5));
    assert_eq!(usage_of("b22"), (13, 7));
    assert_eq!(usage_of("c333"), (14, 9));
    let summary: Value = serde_json::from_slice(
        &bed.store
            .get_bytes("results/sandbox/run/requests/summary.json")
            .await?,
    )?;
    let cost = &summary["cost"];
    assert_eq!(cost["currency"], "USD");
    assert_eq!(cost["batch"], 0.000216);
    assert_eq!(cost["synchronous_equivalent"], 0.000378);
    assert_eq!(cost["saved"], 0.000162);
    let models: Vec<&str> = cost["by_model"]
        .as_array()
        .ok_or("no by_model")?
        .iter()
        .map(|m| m["model"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(models, ["gpt-4o-mini", "house-model"]);
    assert_eq!(cost["by_model"][0]["prices_as_of"], "config");
    assert!(cost.get("priced_as").is_none());
    Ok(())
}

fn chunk(model: &str, usage: (u64, u64), by_model: &[(&str, u64, u64)]) -> ChunkRecord {
    let mut c = ChunkRecord::staged(ChunkPlan {
        index: 0,
        endpoint: "/v1/messages".into(),
        model: model.into(),
        requests: 1,
        bytes: 1,
        estimate: None,
    });
    c.state = ChunkState::Collected;
    c.usage = Usage {
        input_tokens: usage.0,
        output_tokens: usage.1,
        ..Usage::default()
    };
    for (m, i, o) in by_model {
        c.usage_by_model.insert(
            m.to_string(),
            Usage {
                input_tokens: *i,
                output_tokens: *o,
                ..Usage::default()
            },
        );
    }
    c
}

fn manifest_with(chunks: Vec<ChunkRecord>) -> Result<Manifest, Error> {
    let mut m: Manifest = serde_json::from_value(serde_json::json!({
        "job_id": "j1", "route": "anthropic", "provider": "anthropic",
        "input": {"bucket": "b", "key": "inbox/anthropic/x.jsonl", "etag": "e", "bytes": 1},
        "results_prefix": "results/anthropic/x/", "status": "running",
        "created_at": "2026-01-01T00:00:00Z",
        "counts": {"lines": 1, "accepted": 1, "rejected": 0, "succeeded": 0, "failed": 0},
        "chunks": []
    }))?;
    m.chunks = chunks;
    Ok(m)
}

#[test]
fn an_anthropic_batch_mixing_models_is_priced_per_model() -> TestResult {
    // GIVEN one Anthropic batch (no planned model) whose results named two models
    let m = manifest_with(vec![chunk(
        "",
        (3_000_000, 1_000_000),
        &[
            ("claude-haiku-4-5-20251001", 2_000_000, 0),
            ("claude-sonnet-4-5", 1_000_000, 1_000_000),
        ],
    )])?;
    // WHEN priced with the built-in table
    let cost = cost::job_cost(&m, &PriceTable::builtin(), Some("claude-sonnet-4-5"));
    // THEN haiku: 2M * 0.50 = 1.00 batch, 2M * 1.00 = 2.00 sync;
    //      sonnet: 1.50 + 7.50 = 9.00 batch, 3.00 + 15.00 = 18.00 sync
    assert_eq!(cost.batch, 10.0);
    assert_eq!(cost.synchronous_equivalent, 20.0);
    assert_eq!(cost.saved, 10.0);
    assert_eq!(cost.by_model[0].priced_as, "claude-haiku-4-5");
    assert_eq!(cost.priced_as, None);
    Ok(())
}

#[test]
fn usage_without_a_model_is_priced_at_the_route_default_and_says_so() -> TestResult {
    // GIVEN an Anthropic batch collected before results were split by model
    let m = manifest_with(vec![chunk("", (1_000_000, 0), &[])])?;
    // WHEN priced with the route's default model
    let cost = cost::job_cost(&m, &PriceTable::builtin(), Some("claude-haiku-4-5"));
    // THEN it is priced as that model, and the cost says so
    assert_eq!(cost.batch, 0.5);
    assert!(
        cost.priced_as
            .as_deref()
            .is_some_and(|p| p.starts_with("claude-haiku-4-5")),
        "{cost:?}"
    );
    Ok(())
}

#[test]
fn running_cost_counts_only_collected_batches() -> TestResult {
    // GIVEN a collected OpenAI batch and one still at the provider (no usage yet)
    let mut running = chunk("gpt-4.1-mini", (0, 0), &[]);
    running.state = ChunkState::Submitted;
    let m = manifest_with(vec![
        chunk("gpt-4.1-mini", (1_000_000, 1_000_000), &[]),
        running,
    ])?;
    // THEN the cost so far is the collected batch's: 0.20 + 0.80 batch, 0.40 + 1.60 sync
    let cost = cost::job_cost(&m, &PriceTable::builtin(), None);
    assert_eq!(
        (cost.batch, cost.synchronous_equivalent, cost.saved),
        (1.0, 2.0, 1.0)
    );
    Ok(())
}
