//! A batch's input file, validated as a whole and then answered request by request.
//!
//! Runs once per batch, on a blocking thread started when the batch is created; the batch's
//! visible state reveals the result only as the clock moves on (see `timeline`).
//!
//! Validation fails the whole batch, reporting every bad line (up to
//! [`MAX_REPORTED_ERRORS`]) with its 1-based line number: `invalid_json_line` (not JSON, not
//! UTF-8, not an object), `missing_required_parameter` (no `custom_id`, `method`, `url` or
//! `body`; the param names it), `invalid_type` (a `custom_id`, `method` or `url` that is not a
//! string, a `body` that is not an object), `invalid_value` (a `method` other than `POST`),
//! `mismatched_endpoint` (a `url` other than the batch's endpoint), `duplicate_custom_id`,
//! `mismatched_model` (a `body.model` other than the first one in the file), plus, for the
//! file as a whole, `empty_file` and `too_many_requests` (over [`MAX_REQUESTS`]). Blank lines
//! are skipped and `\r\n` endings are fine.
//!
//! A valid batch's requests are processed in an order shuffled by the batch id, which is also
//! the order of the lines in its output and error files.
//!
//! Streaming: the input is read line by line to validate it (memory keeps each request's
//! place in the file and its `custom_id`), then each request is read again at its place when
//! it is answered; answers are written to files as they are made ([`WorkFiles`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::answer::{self, Body, Str};
use super::{BatchError, Endpoint};
use crate::disk::{self, Disk};
use crate::faults::{self, RequestFault, RequestPlan};
use crate::ledger::{self, Totals, WORDS};
use crate::respond::{self, Stream};

/// The most requests one batch may hold.
pub const MAX_REQUESTS: usize = 50_000;
/// The most validation errors reported for one batch.
pub const MAX_REPORTED_ERRORS: usize = 1000;
/// Batches smaller than this are answered on one thread.
const MIN_REQUESTS_PER_THREAD: usize = 2000;
/// Buffer size of the files read and written while processing.
const BUFFER_BYTES: usize = 256 * 1024;

/// What came of a batch's input.
#[derive(Debug)]
pub(crate) enum Work {
    /// Validation failed: the batch fails with these errors and processes nothing.
    Invalid(Vec<BatchError>),
    Processed(Processed),
}

/// Where a batch's processing writes, in the files directory: all named after the batch.
#[derive(Debug, Clone)]
pub(crate) struct WorkFiles {
    /// Output-file lines of the requests that succeeded, in processing order.
    pub output: PathBuf,
    /// Error-file lines of the requests that failed, in processing order.
    pub errors: PathBuf,
    /// The `custom_id` of each request, in processing order (see `ledger`).
    pub ids: PathBuf,
    /// The [`Progress`] after each request, in processing order (see `ledger`).
    pub progress: PathBuf,
}

impl WorkFiles {
    pub(crate) fn of(disk: &Disk, batch_id: &str) -> Self {
        WorkFiles {
            output: disk.path(&format!("{batch_id}.output")),
            errors: disk.path(&format!("{batch_id}.errors")),
            ids: disk.path(&format!("{batch_id}.ids")),
            progress: disk.path(&format!("{batch_id}.progress")),
        }
    }

    /// The files of the `index`th slice of the processing order, joined into these after.
    fn part(&self, index: usize) -> WorkFiles {
        let part = |path: &Path| PathBuf::from(format!("{}.{index}", path.display()));
        WorkFiles {
            output: part(&self.output),
            errors: part(&self.errors),
            ids: part(&self.ids),
            progress: part(&self.progress),
        }
    }

    /// Removes what is left of them.
    pub(crate) fn remove(&self) {
        for path in [&self.output, &self.errors, &self.ids, &self.progress] {
            disk::remove(path);
        }
    }
}

/// Every request of a valid batch, answered, in processing order: the totals in memory, the
/// answers and the rest of the bookkeeping in its [`WorkFiles`].
#[derive(Debug)]
pub(crate) struct Processed {
    /// The batch's model, from the first line that names one.
    pub model: Option<String>,
    total: usize,
    /// The totals of the whole batch.
    last: Progress,
    pub files: WorkFiles,
}

/// Running totals over a prefix of the processing order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub completed: u64,
    pub failed: u64,
    /// Length of the prefix of the output these requests wrote.
    pub output_bytes: u64,
    /// Length of the prefix of the errors these requests wrote.
    pub error_bytes: u64,
    /// Length of the prefix of the ids file these requests wrote.
    pub ids_bytes: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Totals for Progress {
    fn to_words(&self) -> [u64; WORDS] {
        [
            self.completed,
            self.failed,
            self.output_bytes,
            self.error_bytes,
            self.ids_bytes,
            self.input_tokens,
            self.output_tokens,
            0,
        ]
    }

    fn from_words(words: [u64; WORDS]) -> Self {
        let [
            completed,
            failed,
            output_bytes,
            error_bytes,
            ids_bytes,
            input_tokens,
            output_tokens,
            _,
        ] = words;
        Progress {
            completed,
            failed,
            output_bytes,
            error_bytes,
            ids_bytes,
            input_tokens,
            output_tokens,
        }
    }
}

impl Work {
    /// The work of a batch whose processing crashed: it fails with `internal_error`.
    pub(crate) fn crashed(reason: &str) -> Self {
        Work::Invalid(vec![BatchError {
            code: "internal_error",
            message: format!("The sandbox failed while processing this batch: {reason}"),
            param: None,
            line: None,
        }])
    }

    /// The work of a batch failed by fault injection at the end of validation.
    pub(crate) fn injected_validation_failure() -> Self {
        Work::Invalid(vec![BatchError {
            code: "invalid_request",
            message: "This batch failed validation (sandbox fault injection).".to_owned(),
            param: None,
            line: None,
        }])
    }

    /// The work of a batch over the enqueued-token limit (injected): it fails with
    /// `token_limit_exceeded` and no line, as the real API does after accepting the create.
    pub(crate) fn token_limit_exceeded() -> Self {
        Work::Invalid(vec![BatchError {
            code: "token_limit_exceeded",
            message: "Enqueued token limit reached for this model in organization org-sandbox. Please try again once some in_progress batches have been completed. (sandbox fault injection)".to_owned(),
            param: None,
            line: None,
        }])
    }
}

impl Processed {
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The totals after the first `requests` requests of the processing order.
    pub(crate) fn progress(&self, requests: usize) -> io::Result<Progress> {
        if requests >= self.total {
            return Ok(self.last);
        }
        ledger::read_totals(&self.files.progress, requests)
    }
}

/// The requests of a valid input, in input order.
#[derive(Debug, Default)]
struct Requests {
    /// Where each request's line is in the input: offset and length.
    lines: Vec<(u64, usize)>,
    custom_ids: Vec<String>,
    /// The `body.model` of the first request that has one, if it is a string.
    model: Option<Option<String>>,
}

/// The top-level fields of an input line.
#[derive(Deserialize)]
struct InputLine<'a> {
    #[serde(borrow, default)]
    custom_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

/// One line of the input that passed validation.
struct Request<'a> {
    custom_id: Cow<'a, str>,
    body: Body<'a>,
}

/// Validates `input` for a batch to `endpoint` and answers every request into `files`.
/// `batch_id` seeds the processing order and the ids of the answers; `started` is the Unix
/// second processing starts, the `created` time of the answers; `faults` fails the requests
/// it picks. A file that cannot be read or written crashes the batch.
pub(crate) fn process(
    input: &File,
    endpoint: Endpoint,
    batch_id: &str,
    started: i64,
    faults: &RequestPlan,
    files: WorkFiles,
) -> Work {
    let requests = match validate(input, endpoint) {
        Ok(Ok(requests)) => requests,
        Ok(Err(errors)) => return Work::Invalid(errors),
        Err(error) => return Work::crashed(&format!("cannot read the input file: {error}")),
    };
    match answer_in_order(
        input, &requests, endpoint, batch_id, started, faults, &files,
    ) {
        Ok(last) => Work::Processed(Processed {
            model: requests.model.flatten(),
            total: requests.lines.len(),
            last,
            files,
        }),
        Err(error) => {
            files.remove();
            Work::crashed(&format!("cannot write the batch's results: {error}"))
        }
    }
}

/// Answers every request in processing order into `files`; returns the batch's totals.
///
/// Requests are answered independently, in consecutive slices of the processing order on as
/// many threads as there are cores, each slice into files of its own; the slices' files are
/// then joined in order, so the result is the same whatever the number of threads.
fn answer_in_order(
    input: &File,
    requests: &Requests,
    endpoint: Endpoint,
    batch_id: &str,
    started: i64,
    faults: &RequestPlan,
    files: &WorkFiles,
) -> io::Result<Progress> {
    let mut order: Vec<u32> = (0..requests.lines.len() as u32).collect();
    respond::shuffle(&mut order, batch_id.as_bytes());

    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let slice = order.len().div_ceil(threads).max(MIN_REQUESTS_PER_THREAD);
    let answer_slice = |indexes: &[u32], files: &WorkFiles| -> io::Result<Vec<Progress>> {
        let mut sink = Sink {
            output: BufWriter::with_capacity(BUFFER_BYTES, File::create(&files.output)?),
            errors: BufWriter::with_capacity(BUFFER_BYTES, File::create(&files.errors)?),
            ids: BufWriter::with_capacity(BUFFER_BYTES, File::create(&files.ids)?),
        };
        let progress = answer_all(
            indexes, requests, input, endpoint, batch_id, started, faults, &mut sink,
        )?;
        sink.finish()?;
        Ok(progress)
    };
    let slices: Vec<Vec<Progress>> = if order.len() <= slice {
        vec![answer_slice(&order, files)?]
    } else {
        let parts: Vec<WorkFiles> = (0..order.len().div_ceil(slice))
            .map(|index| files.part(index))
            .collect();
        let answered: Vec<io::Result<Vec<Progress>>> = std::thread::scope(|scope| {
            let running: Vec<_> = order
                .chunks(slice)
                .zip(&parts)
                .map(|(indexes, part)| scope.spawn(move || answer_slice(indexes, part)))
                .collect();
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let joined = answered
            .into_iter()
            .collect::<io::Result<Vec<_>>>()
            .and_then(|slices| {
                let paths = |path: fn(&WorkFiles) -> &PathBuf| -> Vec<PathBuf> {
                    parts.iter().map(|part| path(part).clone()).collect()
                };
                ledger::concatenate(&files.output, &paths(|files| &files.output))?;
                ledger::concatenate(&files.errors, &paths(|files| &files.errors))?;
                ledger::concatenate(&files.ids, &paths(|files| &files.ids))?;
                Ok(slices)
            });
        if joined.is_err() {
            parts.iter().for_each(WorkFiles::remove);
        }
        joined?
    };

    let mut last = Progress::default();
    let mut totals = Vec::with_capacity(order.len());
    for slice in slices {
        let before = last;
        for progress in slice {
            last = progress.after(before);
            totals.push(last);
        }
    }
    ledger::write_totals(&files.progress, totals)?;
    Ok(last)
}

/// Where answers go: output lines, error lines, ids.
struct Sink<W: Write> {
    output: W,
    errors: W,
    ids: W,
}

impl Sink<BufWriter<File>> {
    fn finish(self) -> io::Result<()> {
        for writer in [self.output, self.errors, self.ids] {
            writer
                .into_inner()
                .map_err(io::IntoInnerError::into_error)?;
        }
        Ok(())
    }
}

impl Progress {
    /// These totals, counted from the start of a slice, counted instead from the start of the
    /// processing order given the totals `before` the slice.
    fn after(self, before: Progress) -> Progress {
        Progress {
            completed: before.completed + self.completed,
            failed: before.failed + self.failed,
            output_bytes: before.output_bytes + self.output_bytes,
            error_bytes: before.error_bytes + self.error_bytes,
            ids_bytes: before.ids_bytes + self.ids_bytes,
            input_tokens: before.input_tokens + self.input_tokens,
            output_tokens: before.output_tokens + self.output_tokens,
        }
    }
}

/// Answers `requests[i]` for each `i` of `indexes`, in that order, into `sink`; returns the
/// totals after each, counted from the start of `indexes`.
#[allow(clippy::too_many_arguments)]
fn answer_all<W: Write>(
    indexes: &[u32],
    requests: &Requests,
    input: &File,
    endpoint: Endpoint,
    batch_id: &str,
    started: i64,
    faults: &RequestPlan,
    sink: &mut Sink<W>,
) -> io::Result<Vec<Progress>> {
    let mut progress = Vec::with_capacity(indexes.len());
    let mut totals = Progress::default();
    let mut line = String::new();
    for &index in indexes {
        let (offset, len) = requests.lines[index as usize];
        let text = disk::read_at(input, offset, len)?;
        let body = request_body(&text)?;
        let custom_id = requests.custom_ids[index as usize].as_str();
        let mut ids = line_ids(batch_id, custom_id);
        let line_id = format!("batch_req_{}", ids.token(32));
        let request_id = format!("req_{}", ids.token(32));
        let answer = match faults.decide(index as usize) {
            None => answer::answer(endpoint, &body, &mut ids, started).map_err(|e| {
                let body = e.body();
                (e.status, body)
            }),
            // Anthropic's result types do not occur here; a status is all OpenAI has.
            Some(RequestFault::Status(status)) => Err((status, injected_body(status))),
            Some(RequestFault::Errored | RequestFault::Expired) => Err((500, injected_body(500))),
        };
        line.clear();
        match answer {
            Ok(answer) => {
                totals.completed += 1;
                totals.input_tokens += answer.input_tokens;
                totals.output_tokens += answer.output_tokens;
                let response = response(200, request_id, answer.body);
                write_line(&mut line, line_id, custom_id, response, Value::Null);
                sink.output.write_all(line.as_bytes())?;
                totals.output_bytes += line.len() as u64;
            }
            Err((status, body)) => {
                totals.failed += 1;
                let response = response(status, request_id, body);
                write_line(&mut line, line_id, custom_id, response, Value::Null);
                sink.errors.write_all(line.as_bytes())?;
                totals.error_bytes += line.len() as u64;
            }
        }
        totals.ids_bytes += ledger::write_id(&mut sink.ids, custom_id)?;
        progress.push(totals);
    }
    Ok(progress)
}

/// The body of an input line that passed validation.
pub(super) fn request_body(line: &[u8]) -> io::Result<Body<'_>> {
    let invalid = |error: serde_json::Error| io::Error::new(io::ErrorKind::InvalidData, error);
    let fields: InputLine = serde_json::from_slice(line).map_err(invalid)?;
    let body = fields
        .body
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a request lost its body"))?;
    serde_json::from_str(body.get()).map_err(invalid)
}

/// The response body of a request failed by fault injection with `status`.
fn injected_body(status: u16) -> Value {
    let (kind, code, message) = faults::openai_error(status);
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The error-file line of a request that got no result because its batch stopped first
/// (`code` is `batch_cancelled` or `batch_expired`).
pub(crate) fn stopped_line(
    out: &mut String,
    batch_id: &str,
    custom_id: &str,
    code: &str,
    message: &str,
) {
    let line_id = format!("batch_req_{}", line_ids(batch_id, custom_id).token(32));
    let error = json!({"code": code, "message": message});
    write_line(out, line_id, custom_id, Value::Null, error);
}

fn line_ids(batch_id: &str, custom_id: &str) -> Stream {
    Stream::new(&respond::digest(&[
        b"line",
        batch_id.as_bytes(),
        custom_id.as_bytes(),
    ]))
}

/// The `response` of an output or error file line.
fn response(status_code: u16, request_id: String, body: Value) -> Value {
    let mut response = json!({"status_code": status_code, "request_id": request_id});
    // Moved in: `json!` would copy a `Value` given to it through `to_value`.
    response["body"] = body;
    response
}

/// Appends an output or error file line: `{"id","custom_id","response","error"}`.
fn write_line(out: &mut String, id: String, custom_id: &str, response: Value, error: Value) {
    let mut line = json!({"id": id, "custom_id": custom_id});
    line["response"] = response;
    line["error"] = error;
    // Through `Value`'s `Display`, which is compiled (optimised) inside serde_json: generic
    // serialisation would be compiled here, unoptimised in debug builds, and is much slower.
    // Writing to a String cannot fail.
    let _ = write!(out, "{line}");
    out.push('\n');
}

/// The requests of `input`, read line by line, or every error that fails the batch.
fn validate(input: &File, endpoint: Endpoint) -> io::Result<Result<Requests, Vec<BatchError>>> {
    let mut requests = Requests::default();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut first_model: Option<(String, usize)> = None;

    let mut reader = BufReader::with_capacity(BUFFER_BYTES, input);
    let mut buffer = Vec::new();
    let mut offset = 0u64;
    let mut number = 0;
    loop {
        buffer.clear();
        let read = reader.read_until(b'\n', &mut buffer)?;
        if read == 0 {
            break;
        }
        let start = offset;
        offset += read as u64;
        number += 1;
        let line = trim_end(&buffer);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if requests.lines.len() + errors.len() == MAX_REQUESTS {
            errors.push(BatchError {
                code: "too_many_requests",
                message: format!(
                    "The input file has more than {MAX_REQUESTS} requests, the most one batch may hold."
                ),
                param: None,
                line: Some(number as u64),
            });
            break;
        }
        match check_line(line, endpoint, number, &mut seen, &mut first_model) {
            Ok(request) => {
                if requests.model.is_none() {
                    requests.model = request.body.model.map(|raw| {
                        serde_json::from_str::<Str>(raw.get())
                            .ok()
                            .map(|model| model.0.into_owned())
                    });
                }
                requests.lines.push((start, line.len()));
                requests.custom_ids.push(request.custom_id.into_owned());
            }
            Err(error) => {
                errors.push(error);
                if errors.len() == MAX_REPORTED_ERRORS {
                    break;
                }
            }
        }
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    if requests.lines.is_empty() {
        return Ok(Err(vec![BatchError {
            code: "empty_file",
            message: "The input file has no requests.".to_owned(),
            param: None,
            line: None,
        }]));
    }
    Ok(Ok(requests))
}

/// A line without its `\n` or `\r\n`.
fn trim_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn check_line<'a>(
    line: &'a [u8],
    endpoint: Endpoint,
    number: usize,
    seen: &mut HashMap<String, usize>,
    first_model: &mut Option<(String, usize)>,
) -> Result<Request<'a>, BatchError> {
    let error = |code: &'static str, message: String, param: Option<&str>| BatchError {
        code,
        message,
        param: param.map(str::to_owned),
        line: Some(number as u64),
    };
    let invalid_json = |why: &str| {
        error(
            "invalid_json_line",
            format!("This line is not parseable as valid JSON: {why}."),
            None,
        )
    };
    let missing = |param: &str| {
        error(
            "missing_required_parameter",
            format!("Missing required parameter: '{param}'."),
            Some(param),
        )
    };
    let wrong_type = |param: &str, expected: &str| {
        error(
            "invalid_type",
            format!("Invalid type for '{param}': expected {expected}."),
            Some(param),
        )
    };

    let text = std::str::from_utf8(line).map_err(|_| invalid_json("it is not UTF-8"))?;
    if !text.trim_start().starts_with('{') {
        return Err(invalid_json("it is not a JSON object"));
    }
    let fields: InputLine = serde_json::from_str(text).map_err(|e| invalid_json(&e.to_string()))?;
    let string = |raw: Option<&'a RawValue>, param: &str| -> Result<Cow<'a, str>, BatchError> {
        let raw = raw.ok_or_else(|| missing(param))?;
        serde_json::from_str::<Str>(raw.get())
            .map(|value| value.0)
            .map_err(|_| wrong_type(param, "a string"))
    };

    let custom_id = string(fields.custom_id, "custom_id")?;
    let method = string(fields.method, "method")?;
    if method != "POST" {
        return Err(error(
            "invalid_value",
            format!("Invalid value for 'method': '{method}'. Only 'POST' is supported."),
            Some("method"),
        ));
    }
    let url = string(fields.url, "url")?;
    if url != endpoint.path() {
        return Err(error(
            "mismatched_endpoint",
            format!(
                "The url '{url}' does not match the batch's endpoint '{}'.",
                endpoint.path()
            ),
            Some("url"),
        ));
    }
    let raw_body = fields.body.ok_or_else(|| missing("body"))?;
    if !raw_body.get().starts_with('{') {
        return Err(wrong_type("body", "an object"));
    }
    let body: Body =
        serde_json::from_str(raw_body.get()).map_err(|e| invalid_json(&e.to_string()))?;

    match seen.entry(custom_id.to_string()) {
        Entry::Occupied(first) => {
            return Err(error(
                "duplicate_custom_id",
                format!(
                    "The custom_id '{custom_id}' is also used on line {}. Each request needs a unique custom_id.",
                    first.get()
                ),
                Some("custom_id"),
            ));
        }
        Entry::Vacant(slot) => {
            slot.insert(number);
        }
    }
    // A model that is not a string is left to the request's own answer (a 400).
    if let Some(model) = body
        .model
        .and_then(|raw| serde_json::from_str::<Str>(raw.get()).ok())
    {
        match first_model {
            None => *first_model = Some((model.0.into_owned(), number)),
            Some((first, first_line)) if *first != model.0 => {
                return Err(error(
                    "mismatched_model",
                    format!(
                        "The model '{}' differs from '{first}' on line {first_line}. A batch can use only one model.",
                        model.0
                    ),
                    Some("body.model"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(Request { custom_id, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    fn none() -> RequestPlan {
        RequestPlan::none()
    }

    fn chat(custom_id: &str, model: &str) -> String {
        format!(
            r#"{{"custom_id":"{custom_id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"hello {custom_id}"}}]}}}}"#
        )
    }

    /// `input` processed in a fresh files directory (kept alive with the work).
    fn run(input: &str, batch_id: &str) -> Result<(Disk, Work)> {
        let disk = Disk::open(None)?;
        let path = disk.path("input.jsonl");
        std::fs::write(&path, input)?;
        let files = WorkFiles::of(&disk, batch_id);
        let work = process(
            &File::open(&path)?,
            Endpoint::ChatCompletions,
            batch_id,
            0,
            &none(),
            files,
        );
        Ok((disk, work))
    }

    fn errors(input: &str) -> Result<Vec<(u64, &'static str, Option<String>)>> {
        Ok(match run(input, "batch_t")?.1 {
            Work::Invalid(errors) => errors
                .into_iter()
                .map(|e| (e.line.unwrap_or(0), e.code, e.param))
                .collect(),
            Work::Processed(_) => Vec::new(),
        })
    }

    #[test]
    fn line_ends_are_dropped_with_their_carriage_returns() {
        assert_eq!(trim_end(b"a\r\n"), b"a");
        assert_eq!(trim_end(b"b\n"), b"b");
        assert_eq!(trim_end(b"c"), b"c");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() -> Result {
        let input = [
            chat("a", "m"),
            "not json".to_owned(),
            r#"{"method":"POST","url":"/v1/chat/completions","body":{}}"#.to_owned(),
            String::new(),
            chat("a", "m"),
            chat("b", "other"),
            r#"{"custom_id":"c","method":"POST","url":"/v1/embeddings","body":{}}"#.to_owned(),
        ]
        .join("\n");
        assert_eq!(
            errors(&input)?,
            vec![
                (2, "invalid_json_line", None),
                (
                    3,
                    "missing_required_parameter",
                    Some("custom_id".to_owned())
                ),
                (5, "duplicate_custom_id", Some("custom_id".to_owned())),
                (6, "mismatched_model", Some("body.model".to_owned())),
                (7, "mismatched_endpoint", Some("url".to_owned())),
            ]
        );
        Ok(())
    }

    #[test]
    fn a_file_of_blank_lines_is_empty() -> Result {
        assert_eq!(errors("\n  \r\n")?, vec![(0, "empty_file", None)]);
        Ok(())
    }

    #[test]
    fn progress_adds_up_to_the_whole_batch_and_its_files() -> Result {
        let input = [chat("a", "m"), chat("b", "m"), chat("c", "m")].join("\r\n");
        let (_disk, Work::Processed(done)) = run(&input, "b")? else {
            panic!("the batch should be valid");
        };
        let last = done.progress(done.total())?;
        assert_eq!((last.completed, last.failed), (3, 0));
        let output = std::fs::read(&done.files.output)?;
        assert_eq!(last.output_bytes, output.len() as u64);
        assert_eq!(output.iter().filter(|b| **b == b'\n').count(), 3);
        assert_eq!(done.progress(1)?.completed, 1);
        assert_eq!(done.model.as_deref(), Some("m"));
        let ids: Vec<String> = ledger::read_ids(&done.files.ids, done.progress(1)?.ids_bytes)?
            .collect::<io::Result<_>>()?;
        assert_eq!(ids.len(), 2);
        Ok(())
    }

    #[test]
    fn the_result_is_the_same_whatever_the_number_of_threads() -> Result {
        let input: String = (0..3 * MIN_REQUESTS_PER_THREAD)
            .map(|i| chat(&format!("r{i}"), "m") + "\n")
            .collect();
        let (disk, Work::Processed(threaded)) = run(&input, "b")? else {
            panic!("the batch should be valid");
        };
        let file = File::open(disk.path("input.jsonl"))?;
        let Ok(requests) = validate(&file, Endpoint::ChatCompletions)? else {
            panic!("the batch should be valid");
        };
        let mut order: Vec<u32> = (0..requests.lines.len() as u32).collect();
        respond::shuffle(&mut order, b"b");
        let mut alone = Sink {
            output: Vec::new(),
            errors: Vec::new(),
            ids: Vec::new(),
        };
        let progress = answer_all(
            &order,
            &requests,
            &file,
            Endpoint::ChatCompletions,
            "b",
            0,
            &none(),
            &mut alone,
        )?;
        assert_eq!(std::fs::read(&threaded.files.output)?, alone.output);
        assert_eq!(std::fs::read(&threaded.files.ids)?, alone.ids);
        for requests in [1, 2500, 4001, 6000] {
            assert_eq!(threaded.progress(requests)?, progress[requests - 1]);
        }
        Ok(())
    }
}
