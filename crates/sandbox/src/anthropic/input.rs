//! The body of a message batch create call, validated as a whole and then answered request by
//! request.
//!
//! Validation refuses the whole batch (a 400 `invalid_request_error` naming the first problem,
//! e.g. `requests.3.custom_id: …`) when the body is not a JSON object with a `requests` list
//! of 1 to [`MAX_REQUESTS`] objects, when a `custom_id` is missing, does not match
//! `^[a-zA-Z0-9_-]{1,64}$` or is used twice, or when `params` is not an object with a string
//! `model`, a positive integer `max_tokens` and a non-empty `messages` list. Everything else
//! is checked per request when it is answered (see `answer`).
//!
//! A valid batch's requests are processed in an order shuffled by the batch id, which is also
//! the order of the lines of its results.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::answer::{self, Text};
use super::timeline::Unprocessed;
use crate::faults::{self, RequestFault, RequestPlan};
use crate::respond::{self, Stream};

/// The most requests one message batch may hold.
pub const MAX_MESSAGE_REQUESTS: usize = 100_000;
/// Batches smaller than this are answered on one thread.
const MIN_REQUESTS_PER_THREAD: usize = 2000;
const CUSTOM_ID_PATTERN: &str = "^[a-zA-Z0-9_-]{1,64}$";
const MAX_CUSTOM_ID_CHARS: usize = 64;

/// Why a create call is refused: the message of its 400 `invalid_request_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub message: String,
}

/// The parameters of one request that passed validation.
#[derive(Debug)]
pub(crate) struct Params<'a> {
    pub model: Cow<'a, str>,
    pub max_tokens: u64,
    /// Not empty.
    pub messages: Vec<&'a RawValue>,
    pub system: Option<&'a RawValue>,
}

struct Request<'a> {
    custom_id: Cow<'a, str>,
    params: Params<'a>,
}

/// Every request of a batch, answered, in processing order.
#[derive(Debug)]
pub(crate) struct Processed {
    /// The `custom_id` of each request, in processing order.
    custom_ids: Vec<String>,
    /// The result lines of every request (`succeeded`, `errored`, or `expired` by fault
    /// injection), in processing order.
    lines: Bytes,
    /// `ends[k]`: the length of the first `k` lines of `lines`.
    ends: Vec<usize>,
    /// `errored[k]`: how many of the first `k` requests errored.
    errored: Vec<u32>,
    /// `expired[k]`: how many of the first `k` requests expired by fault injection.
    expired: Vec<u32>,
}

/// A batch's `request_counts` once it has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub succeeded: u64,
    pub errored: u64,
    pub canceled: u64,
    pub expired: u64,
}

impl Processed {
    pub(crate) fn total(&self) -> usize {
        self.custom_ids.len()
    }

    /// The counts of a batch that ended with the first `processed` requests answered.
    pub(crate) fn outcome(&self, processed: usize, rest: Unprocessed) -> Outcome {
        let errored = u64::from(self.errored[processed]);
        let expired = u64::from(self.expired[processed]);
        let left = (self.total() - processed) as u64;
        Outcome {
            succeeded: processed as u64 - errored - expired,
            errored,
            canceled: if rest == Unprocessed::Canceled {
                left
            } else {
                0
            },
            expired: expired
                + if rest == Unprocessed::Expired {
                    left
                } else {
                    0
                },
        }
    }

    /// The results file of a batch that ended with the first `processed` requests answered:
    /// their lines, then a `canceled` or `expired` line for each of the others.
    pub(crate) fn results(&self, processed: usize, rest: Unprocessed) -> Bytes {
        let answered = self.lines.slice(..self.ends[processed]);
        let kind = match rest {
            Unprocessed::None => return answered,
            Unprocessed::Canceled => "canceled",
            Unprocessed::Expired => "expired",
        };
        let mut tail = String::with_capacity((self.total() - processed) * 64);
        for custom_id in &self.custom_ids[processed..] {
            write_line(&mut tail, custom_id, json!({"type": kind}));
        }
        let mut all = Vec::with_capacity(answered.len() + tail.len());
        all.extend_from_slice(&answered);
        all.extend_from_slice(tail.as_bytes());
        Bytes::from(all)
    }
}

/// Validates the body of a create call and answers every request. `batch_id` seeds the
/// processing order and the ids of the answers; `faults` fails the requests it picks.
pub(crate) fn process(
    body: &[u8],
    batch_id: &str,
    faults: &RequestPlan,
) -> Result<Processed, Invalid> {
    let requests = validate(body)?;
    let mut order: Vec<u32> = (0..requests.len() as u32).collect();
    respond::shuffle(&mut order, batch_id.as_bytes());

    // Requests are answered independently, in consecutive slices of the processing order on
    // as many threads as there are cores; the slices are joined in order, so the result is
    // the same whatever the number of threads.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let slice = order.len().div_ceil(threads).max(MIN_REQUESTS_PER_THREAD);
    let answer_slice = |indexes: &[u32]| answer_all(indexes, &requests, batch_id, faults);
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

    let total = requests.len();
    let mut processed = Processed {
        custom_ids: Vec::with_capacity(total),
        lines: Bytes::new(),
        ends: Vec::with_capacity(total + 1),
        errored: Vec::with_capacity(total + 1),
        expired: Vec::with_capacity(total + 1),
    };
    processed.ends.push(0);
    processed.errored.push(0);
    processed.expired.push(0);
    let mut lines = Vec::new();
    for answered in slices {
        let last = processed.ends.len() - 1;
        let (bytes_before, errored_before, expired_before) = (
            lines.len(),
            processed.errored[last],
            processed.expired[last],
        );
        processed
            .ends
            .extend(answered.ends.iter().map(|end| bytes_before + end));
        processed
            .errored
            .extend(answered.errored.iter().map(|count| errored_before + count));
        processed
            .expired
            .extend(answered.expired.iter().map(|count| expired_before + count));
        processed.custom_ids.extend(answered.custom_ids);
        lines.extend_from_slice(answered.lines.as_bytes());
    }
    processed.lines = Bytes::from(lines);
    Ok(processed)
}

/// Requests answered by one thread: its slice of the processing order, with running totals
/// counted from the start of the slice.
struct Answered {
    lines: String,
    ends: Vec<usize>,
    errored: Vec<u32>,
    expired: Vec<u32>,
    custom_ids: Vec<String>,
}

fn answer_all(
    indexes: &[u32],
    requests: &[Request<'_>],
    batch_id: &str,
    faults: &RequestPlan,
) -> Answered {
    let mut answered = Answered {
        lines: String::new(),
        ends: Vec::with_capacity(indexes.len()),
        errored: Vec::with_capacity(indexes.len()),
        expired: Vec::with_capacity(indexes.len()),
        custom_ids: Vec::with_capacity(indexes.len()),
    };
    let (mut errored, mut expired) = (0, 0);
    for &index in indexes {
        let request = &requests[index as usize];
        let custom_id: &str = &request.custom_id;
        let mut ids = Stream::new(&respond::digest(&[
            b"message",
            batch_id.as_bytes(),
            custom_id.as_bytes(),
        ]));
        let fate = match faults.decide(index as usize) {
            None => match answer::answer(&request.params, &mut ids) {
                Ok(answer) => Fate::Succeeded(answer),
                Err(error) => Fate::Errored(error),
            },
            Some(RequestFault::Errored) => Fate::Errored(injected(500)),
            Some(RequestFault::Status(status)) => Fate::Errored(injected(status)),
            Some(RequestFault::Expired) => Fate::Expired,
        };
        let result = match fate {
            Fate::Succeeded(answer) => {
                let mut result = json!({"type": "succeeded"});
                result["message"] = answer.message;
                result
            }
            Fate::Errored(error) => {
                errored += 1;
                json!({"type": "errored", "error": {
                    "type": "error",
                    "error": {"type": error.kind, "message": error.message},
                    "request_id": format!("req_{}", ids.token(24)),
                }})
            }
            Fate::Expired => {
                expired += 1;
                json!({"type": "expired"})
            }
        };
        write_line(&mut answered.lines, custom_id, result);
        answered.ends.push(answered.lines.len());
        answered.errored.push(errored);
        answered.expired.push(expired);
        answered.custom_ids.push(custom_id.to_owned());
    }
    answered
}

/// What became of one request.
enum Fate {
    Succeeded(answer::Answer),
    Errored(answer::RequestError),
    /// Expired by fault injection.
    Expired,
}

/// The error of a request failed by fault injection with `status`.
fn injected(status: u16) -> answer::RequestError {
    answer::RequestError {
        kind: faults::anthropic_error_type(status),
        message: format!("The request failed with {status} (sandbox fault injection)."),
    }
}

/// Appends a results line: `{"custom_id","result"}`.
fn write_line(out: &mut String, custom_id: &str, result: Value) {
    let mut line = json!({"custom_id": custom_id});
    line["result"] = result;
    // Through `Value`'s `Display`, compiled (optimised) inside serde_json. Writing to a
    // String cannot fail.
    let _ = write!(out, "{line}");
    out.push('\n');
}

/// The requests of `body`, in order, or why the batch is refused.
fn validate(body: &[u8]) -> Result<Vec<Request<'_>>, Invalid> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow, default)]
        requests: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Item<'a> {
        #[serde(borrow, default)]
        custom_id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        params: Option<&'a RawValue>,
    }

    let invalid = |message: String| Invalid { message };
    let text = std::str::from_utf8(body)
        .map_err(|_| invalid("The request body is not valid UTF-8.".to_owned()))?;
    if !text.trim_start().starts_with('{') {
        return Err(invalid(
            "The request body must be a JSON object with a `requests` list.".to_owned(),
        ));
    }
    let parsed: Body = serde_json::from_str(text).map_err(|error| {
        invalid(format!(
            "There was an error parsing the body of your request: {error}"
        ))
    })?;
    let raw = parsed
        .requests
        .ok_or_else(|| invalid("requests: Field required".to_owned()))?;
    if !starts_with(raw, b'[') {
        return Err(invalid("requests: Input should be a valid list".to_owned()));
    }
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| invalid("requests: Input should be a valid list".to_owned()))?;
    if items.is_empty() {
        return Err(invalid(
            "requests: List should have at least 1 item after validation, not 0".to_owned(),
        ));
    }
    if items.len() > MAX_MESSAGE_REQUESTS {
        return Err(invalid(format!(
            "requests: List should have at most {MAX_MESSAGE_REQUESTS} items after validation, not {}",
            items.len()
        )));
    }

    let mut seen: HashMap<Cow<'_, str>, usize> = HashMap::with_capacity(items.len());
    let mut requests = Vec::with_capacity(items.len());
    for (index, raw) in items.into_iter().enumerate() {
        let at =
            |field: &str, problem: &str| invalid(format!("requests.{index}{field}: {problem}"));
        if !starts_with(raw, b'{') {
            return Err(at("", "Input should be a valid dictionary or object"));
        }
        let item: Item = serde_json::from_str(raw.get())
            .map_err(|_| at("", "Input should be a valid dictionary or object"))?;
        let custom_id = item
            .custom_id
            .ok_or_else(|| at(".custom_id", "Field required"))?;
        let custom_id = serde_json::from_str::<Text>(custom_id.get())
            .map_err(|_| at(".custom_id", "Input should be a valid string"))?
            .0;
        if !valid_custom_id(&custom_id) {
            return Err(at(
                ".custom_id",
                &format!("String should match pattern '{CUSTOM_ID_PATTERN}' (got '{custom_id}')"),
            ));
        }
        match seen.entry(custom_id.clone()) {
            Entry::Occupied(first) => {
                return Err(at(
                    ".custom_id",
                    &format!(
                        "Duplicate custom_id '{custom_id}', also used by requests.{}. Each request in a batch needs a unique custom_id.",
                        first.get()
                    ),
                ));
            }
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
        }
        let params = item.params.ok_or_else(|| at(".params", "Field required"))?;
        let params = check_params(params)
            .map_err(|(field, problem)| at(&format!(".params{field}"), problem))?;
        requests.push(Request { custom_id, params });
    }
    Ok(requests)
}

/// The parameters of a request, or the field (`""` for `params` itself) and what is wrong.
fn check_params(raw: &RawValue) -> Result<Params<'_>, (&'static str, &'static str)> {
    #[derive(Deserialize)]
    struct Fields<'a> {
        #[serde(borrow, default)]
        model: Option<&'a RawValue>,
        #[serde(borrow, default)]
        max_tokens: Option<&'a RawValue>,
        #[serde(borrow, default)]
        messages: Option<&'a RawValue>,
        #[serde(borrow, default)]
        system: Option<&'a RawValue>,
    }
    const NOT_AN_OBJECT: (&str, &str) = ("", "Input should be a valid dictionary or object");

    if !starts_with(raw, b'{') {
        return Err(NOT_AN_OBJECT);
    }
    let fields: Fields = serde_json::from_str(raw.get()).map_err(|_| NOT_AN_OBJECT)?;
    let model = fields.model.ok_or((".model", "Field required"))?;
    let model = serde_json::from_str::<Text>(model.get())
        .map_err(|_| (".model", "Input should be a valid string"))?
        .0;
    let max_tokens = fields.max_tokens.ok_or((".max_tokens", "Field required"))?;
    let max_tokens = match serde_json::from_str::<i128>(max_tokens.get()) {
        Ok(value) if value >= 1 => u64::try_from(value).unwrap_or(u64::MAX),
        Ok(_) => return Err((".max_tokens", "Input should be greater than or equal to 1")),
        Err(_) => return Err((".max_tokens", "Input should be a valid integer")),
    };
    let messages = fields.messages.ok_or((".messages", "Field required"))?;
    if !starts_with(messages, b'[') {
        return Err((".messages", "Input should be a valid list"));
    }
    let messages: Vec<&RawValue> = serde_json::from_str(messages.get())
        .map_err(|_| (".messages", "Input should be a valid list"))?;
    if messages.is_empty() {
        return Err((
            ".messages",
            "List should have at least 1 item after validation, not 0",
        ));
    }
    Ok(Params {
        model,
        max_tokens,
        messages,
        system: fields.system.filter(|system| system.get() != "null"),
    })
}

fn valid_custom_id(id: &str) -> bool {
    (1..=MAX_CUSTOM_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn starts_with(raw: &RawValue, byte: u8) -> bool {
    raw.get().trim_start().as_bytes().first() == Some(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(custom_id: &str) -> String {
        format!(
            r#"{{"custom_id":"{custom_id}","params":{{"model":"m","max_tokens":100,"messages":[{{"role":"user","content":"hello {custom_id}"}}]}}}}"#
        )
    }

    fn body(requests: &[String]) -> String {
        format!(r#"{{"requests":[{}]}}"#, requests.join(","))
    }

    fn refusal(body: &str) -> Option<String> {
        process(body.as_bytes(), "msgbatch_t", &RequestPlan::none())
            .err()
            .map(|e| e.message)
    }

    #[test]
    fn custom_ids_must_match_the_pattern() {
        assert!(valid_custom_id("a-Z_09"));
        assert!(valid_custom_id(&"x".repeat(64)));
        assert!(!valid_custom_id(&"x".repeat(65)));
        assert!(!valid_custom_id(""));
        assert!(!valid_custom_id("a.b"));
        assert!(!valid_custom_id("é"));
    }

    #[test]
    fn the_first_bad_request_is_named() {
        let message = refusal(&body(&[request("a"), request("b.c")]));
        assert_eq!(
            message.as_deref(),
            Some(
                "requests.1.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$' (got 'b.c')"
            )
        );
        let duplicate = refusal(&body(&[request("a"), request("b"), request("a")]));
        assert!(
            duplicate
                .is_some_and(|m| m.starts_with("requests.2.custom_id: Duplicate custom_id 'a'"))
        );
    }

    #[test]
    fn params_need_a_model_positive_max_tokens_and_messages() {
        let with = |params: &str| {
            refusal(&format!(
                r#"{{"requests":[{{"custom_id":"a","params":{params}}}]}}"#
            ))
        };
        assert_eq!(
            with(r#"{"max_tokens":1,"messages":[{}]}"#).as_deref(),
            Some("requests.0.params.model: Field required")
        );
        assert_eq!(
            with(r#"{"model":"m","max_tokens":0,"messages":[{}]}"#).as_deref(),
            Some("requests.0.params.max_tokens: Input should be greater than or equal to 1")
        );
        assert_eq!(
            with(r#"{"model":"m","max_tokens":1,"messages":[]}"#).as_deref(),
            Some(
                "requests.0.params.messages: List should have at least 1 item after validation, not 0"
            )
        );
        assert_eq!(
            with("[]").as_deref(),
            Some("requests.0.params: Input should be a valid dictionary or object")
        );
    }

    #[test]
    fn counts_and_results_add_up_and_unprocessed_requests_are_canceled() -> Result<(), Invalid> {
        let mut requests: Vec<String> = (0..4).map(|i| request(&format!("r{i}"))).collect();
        requests.push(
            r#"{"custom_id":"bad","params":{"model":"does-not-exist","max_tokens":5,"messages":[{"role":"user","content":"x"}]}}"#
                .to_owned(),
        );
        let done = process(
            body(&requests).as_bytes(),
            "msgbatch_t",
            &RequestPlan::none(),
        )?;
        let all = done.outcome(5, Unprocessed::None);
        assert_eq!((all.succeeded, all.errored), (4, 1));
        assert_eq!(
            done.results(5, Unprocessed::None)
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            5
        );
        let part = done.outcome(2, Unprocessed::Canceled);
        assert_eq!(part.succeeded + part.errored, 2);
        assert_eq!(part.canceled, 3);
        let text = done.results(2, Unprocessed::Canceled);
        let text = std::str::from_utf8(&text).unwrap_or_default();
        assert_eq!(text.matches(r#"{"type":"canceled"}"#).count(), 3);
        Ok(())
    }

    #[test]
    fn the_result_is_the_same_whatever_the_number_of_threads() -> Result<(), Invalid> {
        let requests: Vec<String> = (0..3 * MIN_REQUESTS_PER_THREAD)
            .map(|i| request(&format!("r{i}")))
            .collect();
        let body = body(&requests);
        let threaded = process(body.as_bytes(), "b", &RequestPlan::none())?;
        let parsed = validate(body.as_bytes())?;
        let mut order: Vec<u32> = (0..parsed.len() as u32).collect();
        respond::shuffle(&mut order, b"b");
        let alone = answer_all(&order, &parsed, "b", &RequestPlan::none());
        assert_eq!(threaded.lines, alone.lines.as_bytes());
        assert_eq!(threaded.custom_ids, alone.custom_ids);
        assert_eq!(threaded.ends[1..], alone.ends[..]);
        Ok(())
    }
}
