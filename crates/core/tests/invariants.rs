//! Property test: whatever the input (valid, broken, blank and duplicate lines), the chunk
//! limits and the provider's behaviour (expiry, rejections, capacity refusals), every non-blank
//! input line ends in exactly one of output.jsonl (in input order) or errors.jsonl, and the
//! summary's counts add up.

use batchdrop_core::provider::BatchError;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{Script, ScriptedProvider, TestBed, small_config};
use proptest::prelude::*;
use serde_json::Value;

const KEY: &str = "inbox/sandbox/p/in.jsonl";
const RESULTS: &str = "results/sandbox/p/in/";

#[derive(Debug, Clone)]
enum Line {
    Good(u8, u8),
    NoId(u8),
    Broken,
    Blank,
    Array,
    Duplicate(u8),
}

fn line_strategy() -> impl Strategy<Value = Line> {
    prop_oneof![
        6 => (0u8..40, 0u8..2).prop_map(|(id, m)| Line::Good(id, m)),
        1 => (0u8..2).prop_map(Line::NoId),
        1 => Just(Line::Broken),
        1 => Just(Line::Blank),
        1 => Just(Line::Array),
        1 => (0u8..40).prop_map(Line::Duplicate),
    ]
}

fn render(line: &Line) -> String {
    let chat = |id: Option<String>, model: u8| {
        let mut v = serde_json::json!({"method": "POST", "url": "/v1/chat/completions",
            "body": {"model": format!("gpt-{model}"), "messages": [{"role": "user", "content": "hi"}]}});
        if let Some(id) = id {
            v["custom_id"] = Value::String(id);
        }
        v.to_string()
    };
    match line {
        Line::Good(id, m) => chat(Some(format!("id{id}")), *m),
        Line::Duplicate(id) => chat(Some(format!("id{id}")), 0),
        Line::NoId(m) => chat(None, *m),
        Line::Broken => "{\"custom_id\": \"x\", ".to_string(),
        Line::Blank => "   ".to_string(),
        Line::Array => "[1, 2]".to_string(),
    }
}

fn script(kind: u8) -> Script {
    match kind % 5 {
        0 => Script::complete(),
        1 => Script::expire_after(1),
        2 => Script::complete().rejecting(["id1", "id2", "id3"]),
        3 => Script::fail_validation([BatchError {
            code: "token_limit_exceeded".into(),
            message: "Enqueued token limit reached".into(),
            line: None,
        }]),
        _ => Script::complete().after_polls(2),
    }
}

async fn lines_of(bed: &TestBed, key: &str) -> Vec<Value> {
    let bytes = bed.store.get_bytes(key).await.expect("results written");
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_line_ends_in_exactly_one_file_in_order(
        lines in proptest::collection::vec(line_strategy(), 1..40),
        max_requests in 1u64..6,
        scripts in proptest::collection::vec(0u8..5, 1..6),
        max_attempts in 1u32..4,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let mut provider = ScriptedProvider::new();
            for (chunk, kind) in scripts.iter().enumerate() {
                provider = provider.with_chunk_script(chunk as u32, script(*kind));
            }
            let mut config = small_config(max_requests, 1 << 20);
            for route in config.routes.values_mut() {
                route.retries.max_attempts = max_attempts;
            }
            let bed = TestBed::with_config(provider, config);
            let text: String = lines.iter().map(|l| render(l) + "\n").collect();
            bed.drop_file(KEY, text).await.expect("submit");
            for _ in 0..40 {
                bed.engine.poll().await.expect("poll");
                if bed.store.list("_batchdrop/active/").await.expect("list").is_empty() {
                    break;
                }
            }
            let output = lines_of(&bed, &format!("{RESULTS}output.jsonl")).await;
            let errors = lines_of(&bed, &format!("{RESULTS}errors.jsonl")).await;
            let summary: Value = serde_json::from_slice(
                &bed.store.get_bytes(&format!("{RESULTS}summary.json")).await.expect("summary"),
            ).expect("summary JSON");

            // The expected fate of each line, worked out independently.
            let mut seen = std::collections::HashSet::new();
            let mut accepted_ids = Vec::new();
            let mut rejected_lines = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                let n = i + 1;
                let id = match line {
                    Line::Blank => continue,
                    Line::Broken | Line::Array => { rejected_lines.push(n as u64); continue; }
                    Line::Good(id, _) | Line::Duplicate(id) => format!("id{id}"),
                    Line::NoId(_) => format!("line-{n}"),
                };
                if seen.insert(id.clone()) { accepted_ids.push(id) } else { rejected_lines.push(n as u64) }
            }
            let out_ids: Vec<&str> = output.iter().map(|l| l["custom_id"].as_str().unwrap_or("?")).collect();
            prop_assert_eq!(out_ids, accepted_ids.iter().map(String::as_str).collect::<Vec<_>>());
            let err_lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap_or(0)).collect();
            prop_assert_eq!(err_lines, rejected_lines);
            let c = &summary["counts"];
            let n = |k: &str| c[k].as_u64().unwrap_or(u64::MAX);
            prop_assert_eq!(n("accepted") + n("rejected"), n("lines"));
            prop_assert_eq!(n("succeeded") + n("failed"), n("accepted"));
            prop_assert_eq!(n("accepted"), output.len() as u64);
            prop_assert_eq!(summary["status"].as_str(), Some("completed"));
            Ok(())
        })?;
    }
}
