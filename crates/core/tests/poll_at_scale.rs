//! One poll tick over many active jobs: every job is advanced, each in-flight batch is looked
//! up once, and finished jobs drop out of the index.

use batchdrop_core::layout::ACTIVE;
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{Script, ScriptedProvider, TestBed};

type Error = Box<dyn std::error::Error + Send + Sync>;

const JOBS: usize = 500;

fn upload(n: usize) -> String {
    (1..=3)
        .map(|i| {
            format!(
                r#"{{"custom_id":"j{n}-r{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-a","messages":[{{"role":"user","content":"q{i}"}}]}}}}"#
            ) + "\n"
        })
        .collect()
}

#[tokio::test]
async fn a_tick_advances_every_active_job_with_one_lookup_per_batch_in_flight() -> Result<(), Error>
{
    // GIVEN 500 jobs with two batches each at the provider, each answering "in progress" once
    let bed = TestBed::new(
        ScriptedProvider::new().with_script(Script::complete().after_polls(1)),
        2,
    );
    for n in 0..JOBS {
        bed.drop_file(&format!("inbox/sandbox/many/{n}.jsonl"), upload(n))
            .await?;
    }
    let in_flight = bed.provider.batches().len() as u64;
    assert_eq!(in_flight, 2 * JOBS as u64);

    // WHEN one tick runs while they are in progress
    let before = bed.provider.calls();
    let first = bed.engine.poll().await?;
    let after_first = bed.provider.calls();

    // THEN every job was looked at, each batch once, nothing else asked of the provider
    assert_eq!(first.active, JOBS);
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    assert_eq!(after_first.lookups - before.lookups, in_flight);
    assert_eq!(after_first.total() - before.total(), in_flight);

    // WHEN the next tick finds them done
    let second = bed.engine.poll().await?;

    // THEN all finish in that tick, with their outputs in input order
    assert_eq!(second.finished.len(), JOBS);
    assert_eq!(
        bed.provider.calls().lookups - after_first.lookups,
        in_flight
    );
    for n in [0, JOBS / 2, JOBS - 1] {
        let out = bed
            .store
            .get_bytes(&format!("results/sandbox/many/{n}/output.jsonl"))
            .await?;
        let ids: Vec<String> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice::<serde_json::Value>)
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .map(|v| v["custom_id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids, [1, 2, 3].map(|i| format!("j{n}-r{i}")));
    }
    // AND the index of active jobs is empty: the next tick has nothing to do
    assert!(bed.store.list(ACTIVE).await?.is_empty());
    assert_eq!(bed.engine.poll().await?.active, 0);
    Ok(())
}
