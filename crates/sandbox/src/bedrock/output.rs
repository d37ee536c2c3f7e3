//! A job's output, written once when it ends: one `<output>/<jobId>/<input file name>.out`
//! per input file and `<output>/<jobId>/manifest.json.out`.
//!
//! Records are processed in an order shuffled by the job id (over all input files); a job
//! that ended after processing `n` records has the first `n` of that order in its output and
//! no line for the others. Each output file lists its processed records in that order, one
//! line each: `{"recordId","modelInput","modelOutput"}` or `{"recordId","modelInput",
//! "error":{"errorCode","errorMessage"}}`; a record without `recordId` gets `RECORD` and its
//! 1-based position in the job, ten digits (`RECORD0000000042`).
//!
//! Memory stays flat whatever the input size: the input is read again line by line; answers
//! are written in input order to a temporary file while their offsets are noted (a few bytes
//! per record, at most [`MAX_RECORDS`](super::scan::MAX_RECORDS) records), then copied to a
//! second temporary file in processing order, which is put as the object.

use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::answer::{self, Refusal};
use super::input;
use super::objects::{ObjectUri, Objects};
use super::scan::Scanned;
use crate::faults::{RequestFault, RequestPlan};
use crate::respond;

/// What `manifest.json.out` says, and whether records failed on the service's side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub total_record_count: u64,
    pub processed_record_count: u64,
    pub success_record_count: u64,
    pub error_record_count: u64,
    pub input_token_count: u64,
    pub output_token_count: u64,
    /// Errors with a 429 or 5xx code: the job is `PartiallyCompleted`.
    #[serde(skip)]
    pub service_errors: u64,
}

/// What to write.
pub(crate) struct Job<'a> {
    pub id: &'a str,
    pub model_id: &'a str,
    pub output: &'a ObjectUri,
    pub input: &'a Scanned,
    /// Records processed, from the start of the processing order.
    pub processed: usize,
    pub faults: &'a RequestPlan,
}

/// The processing order of a job of `records` records: their positions, shuffled by the id.
pub(crate) fn processing_order(job_id: &str, records: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..records as u32).collect();
    respond::shuffle(&mut order, job_id.as_bytes());
    order
}

/// Writes the output of `job`; `Err` says why it could not be written.
pub(crate) async fn write(objects: &dyn Objects, job: &Job<'_>) -> Result<Manifest, String> {
    let total = job.input.records();
    let order = processing_order(job.id, total);
    let processed = job.processed.min(total);
    let mut included = vec![false; total];
    for &position in &order[..processed] {
        included[position as usize] = true;
    }
    let folder = job.output.join(&format!("{}/", job.id));
    let mut manifest = Manifest {
        total_record_count: total as u64,
        processed_record_count: processed as u64,
        ..Manifest::default()
    };
    let mut first = 0usize;
    for file in &job.input.files {
        let range = first..first + file.records;
        first = range.end;
        let answered = answer_file(
            objects,
            job,
            &file.uri,
            range.start,
            &included,
            &mut manifest,
        )
        .await?;
        let ordered: Vec<u32> = order[..processed]
            .iter()
            .copied()
            .filter(|position| range.contains(&(*position as usize)))
            .map(|position| position - range.start as u32)
            .collect();
        let out = tokio::task::spawn_blocking(move || reorder(answered, &ordered))
            .await
            .map_err(|error| format!("writing the output crashed: {error}"))?
            .map_err(|error| format!("could not write the output: {error}"))?;
        let uri = folder.join(&format!("{}.out", file.uri.file_name()));
        objects
            .put_file(&uri, out.path())
            .await
            .map_err(|error| format!("could not write {uri}: {error}"))?;
    }
    let mut text = serde_json::to_vec(&manifest).map_err(|error| error.to_string())?;
    text.push(b'\n');
    let file = tempfile::NamedTempFile::new().map_err(|error| error.to_string())?;
    tokio::fs::write(file.path(), &text)
        .await
        .map_err(|error| error.to_string())?;
    let uri = folder.join("manifest.json.out");
    objects
        .put_file(&uri, file.path())
        .await
        .map_err(|error| format!("could not write {uri}: {error}"))?;
    Ok(manifest)
}

/// A file's answered lines in input order, and where each is.
struct Answered {
    file: std::fs::File,
    /// `(offset, length)` of the line of each record of the file, by position in the file
    /// (`length` 0: not processed).
    lines: Vec<(u64, u32)>,
}

/// Answers the processed records of one input file (the first at job position `base`).
async fn answer_file(
    objects: &dyn Objects,
    job: &Job<'_>,
    uri: &ObjectUri,
    base: usize,
    included: &[bool],
    manifest: &mut Manifest,
) -> Result<Answered, String> {
    let mut reader = objects
        .get(uri)
        .await
        .map_err(|error| format!("could not read the input file {uri}: {error}"))?;
    let temp = tempfile::tempfile().map_err(|error| error.to_string())?;
    let copy = temp.try_clone().map_err(|error| error.to_string())?;
    let mut writer = tokio::io::BufWriter::new(tokio::fs::File::from_std(temp));
    let name = uri.to_string();
    let (mut line, mut out) = (Vec::new(), Vec::new());
    let (mut number, mut position, mut offset) = (0u64, 0usize, 0u64);
    let mut lines = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|error| format!("could not read the input file {uri}: {error}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let index = base + position;
        position += 1;
        if !included.get(index).copied().unwrap_or(false) {
            lines.push((offset, 0));
            continue;
        }
        let record = input::record(&line, &name, number)?;
        out.clear();
        answer_record(job, index, &record, manifest, &mut out)?;
        writer
            .write_all(&out)
            .await
            .map_err(|error| error.to_string())?;
        lines.push((offset, out.len() as u32));
        offset += out.len() as u64;
    }
    writer.flush().await.map_err(|error| error.to_string())?;
    Ok(Answered { file: copy, lines })
}

/// Writes the output line of the record at job position `index` to `out`.
fn answer_record(
    job: &Job<'_>,
    index: usize,
    record: &input::Record<'_>,
    manifest: &mut Manifest,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Line<'a> {
        record_id: &'a str,
        model_input: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        model_output: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    }

    let made_up;
    let record_id = match &record.record_id {
        Some(id) => id.as_ref(),
        None => {
            made_up = format!("RECORD{:010}", index + 1);
            &made_up
        }
    };
    let outcome = match job.faults.decide(index) {
        Some(RequestFault::Status(code)) => Err(injected(code)),
        Some(_) => Err(injected(500)),
        None => serde_json::from_str::<Value>(record.model_input.get())
            .map_err(|error| Refusal {
                code: 400,
                message: format!(
                    "Malformed input request: {error}, please reformat your input and try again."
                ),
            })
            .and_then(|body| answer::answer(job.model_id, &body)),
    };
    let line = match outcome {
        Ok(answer) => {
            manifest.success_record_count += 1;
            manifest.input_token_count += answer.input_tokens;
            manifest.output_token_count += answer.output_tokens;
            Line {
                record_id,
                model_input: record.model_input,
                model_output: Some(answer.output),
                error: None,
            }
        }
        Err(refusal) => {
            manifest.error_record_count += 1;
            if refusal.code == 429 || refusal.code >= 500 {
                manifest.service_errors += 1;
            }
            Line {
                record_id,
                model_input: record.model_input,
                model_output: None,
                error: Some(json!({"errorCode": refusal.code, "errorMessage": refusal.message})),
            }
        }
    };
    serde_json::to_writer(&mut *out, &line).map_err(|error| error.to_string())?;
    out.push(b'\n');
    Ok(())
}

/// The record error a `reqNNN` or `partial` fault puts in the output.
fn injected(code: u16) -> Refusal {
    let message = match code {
        429 => "ThrottlingException: Too many requests, please wait before trying again.",
        503 => "ServiceUnavailableException: The service is temporarily unavailable.",
        500..=599 => {
            "InternalServerException: The system encountered an unexpected error during processing. Try your request again."
        }
        _ => "ValidationException: The request was rejected.",
    };
    Refusal {
        code,
        message: format!("{message} (sandbox fault injection: {code})"),
    }
}

/// The lines of `answered` in the order of `positions` (positions in the file), as a file.
fn reorder(answered: Answered, positions: &[u32]) -> std::io::Result<tempfile::NamedTempFile> {
    let out = tempfile::NamedTempFile::new()?;
    let mut writer = BufWriter::with_capacity(256 * 1024, out.as_file());
    let mut buffer = Vec::new();
    for &position in positions {
        let Some(&(offset, length)) = answered.lines.get(position as usize) else {
            continue;
        };
        buffer.resize(length as usize, 0);
        answered.file.read_exact_at(&mut buffer, offset)?;
        writer.write_all(&buffer)?;
    }
    writer.flush()?;
    drop(writer);
    Ok(out)
}
