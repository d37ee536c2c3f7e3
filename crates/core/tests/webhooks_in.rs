//! Webhooks in: an OpenAI batch event signed with the route's secret by the reference
//! `standardwebhooks` Python library advances the job of its batch; a forged signature, a stale
//! timestamp and a replayed id are each refused (401, 400, 409) and change nothing.
//!
//! Needs the project's Python environment (`.venv`, tests/requirements.txt) for the signer.

use batchdrop_core::clock::Clock;
use batchdrop_core::engine::Advance;
use batchdrop_core::layout;
use batchdrop_core::manifest::{JobStatus, Manifest};
use batchdrop_core::push::{Accepted, InboundSecrets, ReceiveError, Receiver};
use batchdrop_core::store::{ObjectStore, ObjectStoreExt};
use batchdrop_core::testing::{Script, ScriptedProvider, TestBed};
use batchdrop_core::webhooks::{SignedHeaders, WebhookSecret};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const KEY: &str = "inbox/sandbox/hooks/today.jsonl";

/// The workspace's Python (the `.venv` of the repository root).
fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// `webhook-signature` for (id, timestamp, body) made by the `standardwebhooks` library.
fn python_sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, Error> {
    let script = "import sys, datetime\n\
        from standardwebhooks.webhooks import Webhook\n\
        secret, msg_id, ts, body = sys.argv[1:5]\n\
        when = datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc)\n\
        print(Webhook(secret).sign(msg_id, when, body))\n";
    let out = Command::new(python())
        .args(["-c", script, secret, id, &timestamp.to_string(), body])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "standardwebhooks signer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn event(batch_id: &str, kind: &str) -> String {
    format!(
        r#"{{"id":"evt_{batch_id}","object":"event","created_at":1767225600,"type":"{kind}","data":{{"id":"{batch_id}"}}}}"#
    )
}

fn chat(id: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi {id}"}}]}}}}"#
    )
}

/// A bed whose batches have ended by their first lookup (the submit's advance only sends them), a job on it with one batch submitted, and a
/// receiver for the `sandbox` route with [`SECRET`].
async fn job_in_flight() -> Result<(TestBed, Receiver, String, String), Error> {
    let bed = TestBed::new(ScriptedProvider::new().with_script(Script::complete()), 100);
    let body = (1..=3)
        .map(|n| chat(&format!("r{n}")) + "\n")
        .collect::<String>();
    bed.upload(KEY, body).await?;
    bed.engine.submit(KEY, None).await?;
    let batches = bed.provider.batches();
    let batch_id = batches.first().ok_or("no batch submitted")?.id.clone();
    let job_id = only_job(&bed).await?;
    assert_eq!(manifest(&bed, &job_id).await?.status, JobStatus::Running);
    let secrets =
        InboundSecrets::from_secrets([("sandbox".to_string(), WebhookSecret::parse(SECRET)?)]);
    let receiver = Receiver::new(
        bed.engine.clone(),
        bed.config.clone(),
        Arc::new(secrets),
        bed.clock.clone(),
    );
    Ok((bed, receiver, job_id, batch_id))
}

async fn only_job(bed: &TestBed) -> Result<String, Error> {
    let active = bed.store.list(layout::ACTIVE).await?;
    let entry = active.first().ok_or("no active job")?;
    Ok(entry.key.trim_start_matches(layout::ACTIVE).to_string())
}

async fn manifest(bed: &TestBed, job_id: &str) -> Result<Manifest, Error> {
    let key = layout::JobKeys::new(job_id).manifest();
    Ok(bed.store.get_json::<Manifest>(&key).await?.0)
}

/// The manifest's ETag and the provider's lookups: what "changed nothing" compares.
async fn footprint(bed: &TestBed, job_id: &str) -> Result<(String, u64), Error> {
    let key = layout::JobKeys::new(job_id).manifest();
    Ok((
        bed.store.head(&key).await?.etag,
        bed.provider.calls().total(),
    ))
}

fn now(bed: &TestBed) -> i64 {
    bed.clock.now().unix_timestamp()
}

fn headers<'a>(id: &'a str, stamp: &'a str, signature: &'a str) -> SignedHeaders<'a> {
    SignedHeaders {
        id: Some(id),
        timestamp: Some(stamp),
        signature: Some(signature),
    }
}

#[tokio::test]
async fn an_event_signed_by_the_reference_library_advances_its_job() -> TestResult {
    let (bed, receiver, job_id, batch_id) = job_in_flight().await?;
    // The batch has ended at the provider (its next lookup says so); no poll has run.
    let body = event(&batch_id, "batch.completed");
    let stamp = now(&bed).to_string();
    let signature = python_sign(SECRET, "wh_1", now(&bed), &body)?;

    let accepted = receiver
        .accept(
            "sandbox",
            &headers("wh_1", &stamp, &signature),
            body.as_bytes(),
        )
        .await?;

    assert_eq!(
        accepted,
        Accepted::Job {
            job_id: job_id.clone(),
            batch_id,
            event_type: "batch.completed".into()
        }
    );
    let advanced = receiver.advance(&accepted).await.ok_or("no job")??;
    assert_eq!(advanced, Advance::Finished(JobStatus::Completed));
    assert!(
        bed.store
            .exists("results/sandbox/hooks/today/summary.json")
            .await?
    );
    assert_eq!(receiver.stats().advanced, 1);
    Ok(())
}

#[tokio::test]
async fn a_forged_signature_is_refused_with_401_and_changes_nothing() -> TestResult {
    let (bed, receiver, job_id, batch_id) = job_in_flight().await?;
    let before = footprint(&bed, &job_id).await?;
    let body = event(&batch_id, "batch.completed");
    let forged = python_sign(
        "whsec_bm90IHRoZSByb3V0ZSdzIHNlY3JldA==",
        "wh_2",
        now(&bed),
        &body,
    )?;

    let refused = receiver
        .accept(
            "sandbox",
            &headers("wh_2", &now(&bed).to_string(), &forged),
            body.as_bytes(),
        )
        .await;

    let err = refused.err().ok_or("a forged event was accepted")?;
    assert_eq!(err.status(), 401, "{err}");
    assert_eq!(footprint(&bed, &job_id).await?, before);
    assert!(
        bed.store.list(layout::WEBHOOKS_IN).await?.is_empty(),
        "a refused event left a marker"
    );
    Ok(())
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_with_400_and_changes_nothing() -> TestResult {
    let (bed, receiver, job_id, batch_id) = job_in_flight().await?;
    let before = footprint(&bed, &job_id).await?;
    let body = event(&batch_id, "batch.completed");
    let old = now(&bed) - 301;
    let signature = python_sign(SECRET, "wh_3", old, &body)?;

    let refused = receiver
        .accept(
            "sandbox",
            &headers("wh_3", &old.to_string(), &signature),
            body.as_bytes(),
        )
        .await;

    let err = refused.err().ok_or("a stale event was accepted")?;
    assert_eq!(err.status(), 400, "{err}");
    assert_eq!(footprint(&bed, &job_id).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_replayed_webhook_id_is_refused_with_409_and_changes_nothing() -> TestResult {
    let (bed, receiver, job_id, batch_id) = job_in_flight().await?;
    let body = event(&batch_id, "batch.completed");
    let stamp = now(&bed).to_string();
    let signature = python_sign(SECRET, "wh_4", now(&bed), &body)?;
    let first = receiver
        .accept(
            "sandbox",
            &headers("wh_4", &stamp, &signature),
            body.as_bytes(),
        )
        .await?;
    receiver.advance(&first).await.ok_or("no job")??;
    let before = footprint(&bed, &job_id).await?;

    let again = receiver
        .accept(
            "sandbox",
            &headers("wh_4", &stamp, &signature),
            body.as_bytes(),
        )
        .await;

    match again {
        Err(ReceiveError::Replayed { id }) => assert_eq!(id, "wh_4"),
        other => return Err(format!("expected a refused replay, got {other:?}").into()),
    }
    assert_eq!(footprint(&bed, &job_id).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_batch_batchdrop_did_not_submit_is_accepted_with_nothing_to_do() -> TestResult {
    let (bed, receiver, job_id, _) = job_in_flight().await?;
    let before = footprint(&bed, &job_id).await?;
    let body = event("batch_someone_elses", "batch.completed");
    let signature = python_sign(SECRET, "wh_5", now(&bed), &body)?;

    let accepted = receiver
        .accept(
            "sandbox",
            &headers("wh_5", &now(&bed).to_string(), &signature),
            body.as_bytes(),
        )
        .await?;

    assert_eq!(
        accepted,
        Accepted::UnknownBatch {
            batch_id: "batch_someone_elses".into()
        }
    );
    assert!(receiver.advance(&accepted).await.is_none());
    assert_eq!(footprint(&bed, &job_id).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_route_without_a_webhook_secret_takes_no_webhooks() -> TestResult {
    let (bed, receiver, _, batch_id) = job_in_flight().await?;
    let body = event(&batch_id, "batch.completed");
    let signature = python_sign(SECRET, "wh_6", now(&bed), &body)?;

    let refused = receiver
        .accept(
            "openai",
            &headers("wh_6", &now(&bed).to_string(), &signature),
            body.as_bytes(),
        )
        .await;

    assert_eq!(refused.err().map(|e| e.status()), Some(404));
    Ok(())
}
