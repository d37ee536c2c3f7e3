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

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use bytes::Bytes;
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::answer::{self, Body, Str};
use super::{BatchError, Endpoint};
use crate::faults::{self, RequestFault, RequestPlan};
use crate::respond::{self, Stream};

/// The most requests one batch may hold.
pub const MAX_REQUESTS: usize = 50_000;
/// The most validation errors reported for one batch.
pub const MAX_REPORTED_ERRORS: usize = 1000;
/// Batches smaller than this are answered on one thread.
const MIN_REQUESTS_PER_THREAD: usize = 2000;

/// What came of a batch's input.
#[derive(Debug)]
pub(crate) enum Work {
    /// Validation failed: the batch fails with these errors and processes nothing.
    Invalid(Vec<BatchError>),
    Processed(Processed),
}

/// Every request of a valid batch, answered, in processing order.
#[derive(Debug)]
pub(crate) struct Processed {
    /// The batch's model, from the first line that names one.
    pub model: Option<String>,
    /// The `custom_id` of each request, in processing order.
    pub custom_ids: Vec<String>,
    /// `progress[k]` adds up the first `k` requests of the processing order.
    pub progress: Vec<Progress>,
    /// Output-file lines of the requests that succeeded, in processing order.
    pub output: Bytes,
    /// Error-file lines of the requests that failed, in processing order.
    pub errors: Bytes,
}

/// Running totals over a prefix of the processing order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub completed: u64,
    pub failed: u64,
    /// Length of the prefix of `Processed::output` these requests wrote.
    pub output_bytes: usize,
    /// Length of the prefix of `Processed::errors` these requests wrote.
    pub error_bytes: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
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
        self.custom_ids.len()
    }
}

/// One line of the input that passed validation.
struct Request<'a> {
    custom_id: Cow<'a, str>,
    body: Body<'a>,
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

/// Validates `input` for a batch to `endpoint` and answers every request. `batch_id` seeds
/// the processing order and the ids of the answers; `started` is the Unix second processing
/// starts, the `created` time of the answers; `faults` fails the requests it picks.
pub(crate) fn process(
    input: &[u8],
    endpoint: Endpoint,
    batch_id: &str,
    started: i64,
    faults: &RequestPlan,
) -> Work {
    let requests = match validate(input, endpoint) {
        Ok(requests) => requests,
        Err(errors) => return Work::Invalid(errors),
    };
    let model = requests
        .iter()
        .find_map(|request| request.body.model)
        .and_then(|raw| serde_json::from_str::<Str>(raw.get()).ok())
        .map(|model| model.0.into_owned());

    let mut order: Vec<u32> = (0..requests.len() as u32).collect();
    respond::shuffle(&mut order, batch_id.as_bytes());

    // Requests are answered independently, in consecutive slices of the processing order on
    // as many threads as there are cores; the slices' results are joined in order, so the
    // result is the same whatever the number of threads.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let slice = order.len().div_ceil(threads).max(MIN_REQUESTS_PER_THREAD);
    let answer_slice =
        |indexes: &[u32]| answer_all(indexes, &requests, endpoint, batch_id, started, faults);
    let slices: Vec<Answered> = if order.len() <= slice {
        vec![answer_slice(&order)]
    } else {
        std::thread::scope(|scope| {
            let running: Vec<_> = order
                .chunks(slice)
                .map(|indexes| scope.spawn(move || answer_slice(indexes)))
                .collect();
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };

    let mut progress = Vec::with_capacity(requests.len() + 1);
    progress.push(Progress::default());
    let mut custom_ids = Vec::with_capacity(requests.len());
    let (mut output, mut errors) = (Vec::new(), Vec::new());
    for answered in slices {
        let before = progress[progress.len() - 1];
        progress.extend(answered.progress.iter().map(|totals| totals.after(before)));
        custom_ids.extend(answered.custom_ids);
        output.extend_from_slice(answered.output.as_bytes());
        errors.extend_from_slice(answered.errors.as_bytes());
    }
    Work::Processed(Processed {
        model,
        custom_ids,
        progress,
        output: Bytes::from(output),
        errors: Bytes::from(errors),
    })
}

/// Requests answered by one thread: its slice of the processing order.
struct Answered {
    output: String,
    errors: String,
    /// Totals after each request of the slice, counted from the start of the slice.
    progress: Vec<Progress>,
    custom_ids: Vec<String>,
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
            input_tokens: before.input_tokens + self.input_tokens,
            output_tokens: before.output_tokens + self.output_tokens,
        }
    }
}

/// Answers `requests[i]` for each `i` of `indexes`, in that order.
fn answer_all(
    indexes: &[u32],
    requests: &[Request<'_>],
    endpoint: Endpoint,
    batch_id: &str,
    started: i64,
    faults: &RequestPlan,
) -> Answered {
    let mut answered = Answered {
        output: String::new(),
        errors: String::new(),
        progress: Vec::with_capacity(indexes.len()),
        custom_ids: Vec::with_capacity(indexes.len()),
    };
    let mut totals = Progress::default();
    for &index in indexes {
        let request = &requests[index as usize];
        let custom_id: &str = &request.custom_id;
        let mut ids = line_ids(batch_id, custom_id);
        let line_id = format!("batch_req_{}", ids.token(32));
        let request_id = format!("req_{}", ids.token(32));
        let answer = match faults.decide(index as usize) {
            None => answer::answer(endpoint, &request.body, &mut ids, started).map_err(|e| {
                let body = e.body();
                (e.status, body)
            }),
            // Anthropic's result types do not occur here; a status is all OpenAI has.
            Some(RequestFault::Status(status)) => Err((status, injected_body(status))),
            Some(RequestFault::Errored | RequestFault::Expired) => Err((500, injected_body(500))),
        };
        match answer {
            Ok(answer) => {
                totals.completed += 1;
                totals.input_tokens += answer.input_tokens;
                totals.output_tokens += answer.output_tokens;
                let response = response(200, request_id, answer.body);
                write_line(
                    &mut answered.output,
                    line_id,
                    custom_id,
                    response,
                    Value::Null,
                );
            }
            Err((status, body)) => {
                totals.failed += 1;
                let response = response(status, request_id, body);
                write_line(
                    &mut answered.errors,
                    line_id,
                    custom_id,
                    response,
                    Value::Null,
                );
            }
        }
        totals.output_bytes = answered.output.len();
        totals.error_bytes = answered.errors.len();
        answered.progress.push(totals);
        answered.custom_ids.push(custom_id.to_owned());
    }
    answered
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

/// The requests of `input`, in input order, or every error that fails the batch.
fn validate(input: &[u8], endpoint: Endpoint) -> Result<Vec<Request<'_>>, Vec<BatchError>> {
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<Cow<'_, str>, usize> = HashMap::new();
    let mut first_model: Option<(Cow<'_, str>, usize)> = None;

    for (index, line) in lines(input) {
        let number = index + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if requests.len() + errors.len() == MAX_REQUESTS {
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
            Ok(request) => requests.push(request),
            Err(error) => {
                errors.push(error);
                if errors.len() == MAX_REPORTED_ERRORS {
                    break;
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if requests.is_empty() {
        return Err(vec![BatchError {
            code: "empty_file",
            message: "The input file has no requests.".to_owned(),
            param: None,
            line: None,
        }]);
    }
    Ok(requests)
}

/// The lines of `input` with their 0-based index, without `\n` or `\r\n`.
fn lines(input: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', input);
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let end = match ends.next() {
            Some(end) => end,
            None => {
                done = true;
                if start == input.len() {
                    return None;
                }
                input.len()
            }
        };
        let line = &input[start..end];
        start = end + 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
    .enumerate()
}

fn check_line<'a>(
    line: &'a [u8],
    endpoint: Endpoint,
    number: usize,
    seen: &mut HashMap<Cow<'a, str>, usize>,
    first_model: &mut Option<(Cow<'a, str>, usize)>,
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

    match seen.entry(custom_id.clone()) {
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
            None => *first_model = Some((model.0, number)),
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

    fn none() -> RequestPlan {
        RequestPlan::none()
    }

    fn chat(custom_id: &str, model: &str) -> String {
        format!(
            r#"{{"custom_id":"{custom_id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[{{"role":"user","content":"hello {custom_id}"}}]}}}}"#
        )
    }

    fn errors(input: &str) -> Vec<(u64, &'static str, Option<String>)> {
        match process(
            input.as_bytes(),
            Endpoint::ChatCompletions,
            "batch_t",
            0,
            &none(),
        ) {
            Work::Invalid(errors) => errors
                .into_iter()
                .map(|e| (e.line.unwrap_or(0), e.code, e.param))
                .collect(),
            Work::Processed(_) => Vec::new(),
        }
    }

    #[test]
    fn lines_split_on_newlines_and_drop_carriage_returns() {
        let got: Vec<_> = lines(b"a\r\nb\n\nc").collect();
        assert_eq!(got, vec![(0, &b"a"[..]), (1, b"b"), (2, b""), (3, b"c")]);
        assert_eq!(lines(b"a\n").count(), 1);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
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
            errors(&input),
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
    }

    #[test]
    fn a_file_of_blank_lines_is_empty() {
        assert_eq!(errors("\n  \r\n"), vec![(0, "empty_file", None)]);
    }

    #[test]
    fn progress_adds_up_to_the_whole_batch() {
        let input = [chat("a", "m"), chat("b", "m"), chat("c", "m")].join("\n");
        let Work::Processed(done) =
            process(input.as_bytes(), Endpoint::ChatCompletions, "b", 0, &none())
        else {
            panic!("the batch should be valid");
        };
        let last = done.progress[done.total()];
        assert_eq!((last.completed, last.failed), (3, 0));
        assert_eq!(last.output_bytes, done.output.len());
        assert_eq!(done.output.iter().filter(|b| **b == b'\n').count(), 3);
        assert_eq!(done.model.as_deref(), Some("m"));
    }

    #[test]
    fn the_result_is_the_same_whatever_the_number_of_threads() {
        let input: String = (0..3 * MIN_REQUESTS_PER_THREAD)
            .map(|i| chat(&format!("r{i}"), "m") + "\n")
            .collect();
        let Work::Processed(threaded) =
            process(input.as_bytes(), Endpoint::ChatCompletions, "b", 0, &none())
        else {
            panic!("the batch should be valid");
        };
        let requests = validate(input.as_bytes(), Endpoint::ChatCompletions)
            .unwrap_or_else(|_| panic!("the batch should be valid"));
        let mut order: Vec<u32> = (0..requests.len() as u32).collect();
        respond::shuffle(&mut order, b"b");
        let alone = answer_all(
            &order,
            &requests,
            Endpoint::ChatCompletions,
            "b",
            0,
            &none(),
        );
        assert_eq!(threaded.output, alone.output.as_bytes());
        assert_eq!(threaded.custom_ids, alone.custom_ids);
        assert_eq!(threaded.progress[1..], alone.progress[..]);
    }
}
