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
//!
//! Streaming: the body is read from its file one request at a time; the `params` of each
//! valid request are copied to a requests file (memory keeps their place there and the
//! `custom_id`s), read again at their place when answered, and the answers are written to
//! files as they are made ([`WorkFiles`]).

mod body;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::answer;
use super::cache::Access;
use super::timeline::Unprocessed;
use crate::disk::{self, Disk};
use crate::faults::{self, RequestFault, RequestPlan};
use crate::ledger::{self, Totals, WORDS};
use crate::respond::{self, Stream};
pub(super) use body::check_params;
use body::validate;

/// The most requests one message batch may hold.
pub const MAX_MESSAGE_REQUESTS: usize = 100_000;
/// Batches smaller than this are answered on one thread.
const MIN_REQUESTS_PER_THREAD: usize = 2000;
/// Buffer size of the files read and written while processing.
const BUFFER_BYTES: usize = 256 * 1024;

/// Why a create call is refused: the message of its 400 `invalid_request_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub message: String,
}

/// Why processing a batch failed: its files, or the sandbox refusing it.
#[derive(Debug)]
pub(crate) enum Failure {
    Invalid(Invalid),
    Disk(io::Error),
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure::Disk(error)
    }
}

impl From<Invalid> for Failure {
    fn from(invalid: Invalid) -> Self {
        Failure::Invalid(invalid)
    }
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

/// Where a batch's processing writes, in the files directory: all named after the batch.
#[derive(Debug, Clone)]
pub(crate) struct WorkFiles {
    /// The `params` of each valid request, one after the other, in input order.
    pub requests: PathBuf,
    /// The result lines of every request, in processing order.
    pub results: PathBuf,
    /// The `custom_id` of each request, in processing order (see `ledger`).
    pub ids: PathBuf,
    /// The [`Tally`] after each request, in processing order (see `ledger`).
    pub tallies: PathBuf,
}

impl WorkFiles {
    pub(crate) fn of(disk: &Disk, batch_id: &str) -> Self {
        WorkFiles {
            requests: disk.path(&format!("{batch_id}.requests")),
            results: disk.path(&format!("{batch_id}.results")),
            ids: disk.path(&format!("{batch_id}.ids")),
            tallies: disk.path(&format!("{batch_id}.tallies")),
        }
    }

    /// The files of the `index`th slice of the processing order, joined into these after.
    fn part(&self, index: usize) -> WorkFiles {
        let part = |path: &Path| PathBuf::from(format!("{}.{index}", path.display()));
        WorkFiles {
            requests: part(&self.requests),
            results: part(&self.results),
            ids: part(&self.ids),
            tallies: part(&self.tallies),
        }
    }

    /// Removes them all (a deleted batch, or one that failed).
    pub(crate) fn remove(&self) {
        for path in [&self.requests, &self.results, &self.ids, &self.tallies] {
            disk::remove(path);
        }
    }
}

/// Every request of a batch, answered, in processing order: the totals in memory, the
/// results and the rest of the bookkeeping in its [`WorkFiles`].
#[derive(Debug)]
pub(crate) struct Processed {
    total: usize,
    /// The tally of the whole batch.
    last: Tally,
    pub files: WorkFiles,
}

/// Running totals over a prefix of the processing order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Length of these requests' result lines.
    results_bytes: u64,
    /// Length of these requests' ids.
    ids_bytes: u64,
    errored: u64,
    /// Expired by fault injection.
    expired: u64,
}

impl Totals for Tally {
    fn to_words(&self) -> [u64; WORDS] {
        [
            self.results_bytes,
            self.ids_bytes,
            self.errored,
            self.expired,
            0,
            0,
            0,
            0,
        ]
    }

    fn from_words(words: [u64; WORDS]) -> Self {
        let [results_bytes, ids_bytes, errored, expired, ..] = words;
        Tally {
            results_bytes,
            ids_bytes,
            errored,
            expired,
        }
    }
}

impl Tally {
    /// This tally, counted from the start of a slice, counted instead from the start of the
    /// processing order given the tally `before` the slice.
    fn after(self, before: Tally) -> Tally {
        Tally {
            results_bytes: before.results_bytes + self.results_bytes,
            ids_bytes: before.ids_bytes + self.ids_bytes,
            errored: before.errored + self.errored,
            expired: before.expired + self.expired,
        }
    }
}

/// A batch's `request_counts` once it has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub succeeded: u64,
    pub errored: u64,
    pub canceled: u64,
    pub expired: u64,
}

/// The results file of a batch that has ended: the first `bytes` of `file`, then a line of
/// type `tail` for each id of `ids` from its byte `ids_from` (none if `tail` is `None`).
#[derive(Debug)]
pub(crate) struct Results {
    pub file: File,
    pub bytes: u64,
    pub ids: PathBuf,
    pub ids_from: u64,
    pub tail: Option<&'static str>,
}

impl Processed {
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    fn tally(&self, processed: usize) -> io::Result<Tally> {
        if processed >= self.total {
            return Ok(self.last);
        }
        ledger::read_totals(&self.files.tallies, processed)
    }

    /// The counts of a batch that ended with the first `processed` requests answered.
    pub(crate) fn outcome(&self, processed: usize, rest: Unprocessed) -> io::Result<Outcome> {
        let tally = self.tally(processed)?;
        let left = (self.total() - processed) as u64;
        Ok(Outcome {
            succeeded: processed as u64 - tally.errored - tally.expired,
            errored: tally.errored,
            canceled: if rest == Unprocessed::Canceled {
                left
            } else {
                0
            },
            expired: tally.expired
                + if rest == Unprocessed::Expired {
                    left
                } else {
                    0
                },
        })
    }

    /// The results file of a batch that ended with the first `processed` requests answered:
    /// their lines, then a `canceled` or `expired` line for each of the others.
    pub(crate) fn results(&self, processed: usize, rest: Unprocessed) -> io::Result<Results> {
        let tally = self.tally(processed)?;
        Ok(Results {
            file: File::open(&self.files.results)?,
            bytes: tally.results_bytes,
            ids: self.files.ids.clone(),
            ids_from: tally.ids_bytes,
            tail: match rest {
                Unprocessed::None => None,
                Unprocessed::Canceled => Some("canceled"),
                Unprocessed::Expired => Some("expired"),
            },
        })
    }
}

impl Results {
    /// The results lines of the requests not processed, in chunks of about `chunk` bytes.
    pub(crate) fn tail_chunks(
        &self,
        chunk: usize,
    ) -> io::Result<impl Iterator<Item = io::Result<Bytes>> + use<>> {
        let kind = self.tail;
        let mut ids = match kind {
            Some(_) => Some(ledger::read_ids(&self.ids, self.ids_from)?),
            None => None,
        };
        Ok(std::iter::from_fn(move || {
            let (kind, ids) = (kind?, ids.as_mut()?);
            let mut out = String::new();
            for custom_id in ids.by_ref() {
                match custom_id {
                    Ok(custom_id) => write_line(&mut out, &custom_id, json!({"type": kind})),
                    Err(error) => return Some(Err(error)),
                }
                if out.len() >= chunk {
                    break;
                }
            }
            (!out.is_empty()).then(|| Ok(Bytes::from(out)))
        }))
    }
}

/// Validates the body of a create call, in the file at `body`, and answers every request into
/// `files`. `batch_id` seeds the processing order and the ids of the answers; `faults` fails
/// the requests it picks.
pub(crate) fn process(
    body: &Path,
    batch_id: &str,
    faults: &RequestPlan,
    files: WorkFiles,
    cache: Access<'_>,
) -> Result<Processed, Failure> {
    let processed = validate(body, &files.requests)
        .and_then(|requests| Ok(answer_in_order(&requests, batch_id, faults, &files, cache)?));
    if processed.is_err() {
        files.remove();
    }
    let (total, last) = processed?;
    Ok(Processed { total, last, files })
}

/// The requests of a valid body, in input order.
#[derive(Debug, Default)]
struct Requests {
    /// The file holding their `params`.
    params: PathBuf,
    /// Where each request's `params` are in that file: offset and length.
    places: Vec<(u64, usize)>,
    custom_ids: Vec<String>,
}

/// Answers every request in processing order into `files`; returns how many there are and
/// the batch's tally.
///
/// Requests are answered independently, in consecutive slices of the processing order on as
/// many threads as there are cores, each slice into files of its own; the slices' files are
/// then joined in order, so the result is the same whatever the number of threads.
fn answer_in_order(
    requests: &Requests,
    batch_id: &str,
    faults: &RequestPlan,
    files: &WorkFiles,
    cache: Access<'_>,
) -> io::Result<(usize, Tally)> {
    let params = File::open(&requests.params)?;
    let mut order: Vec<u32> = (0..requests.places.len() as u32).collect();
    respond::shuffle(&mut order, batch_id.as_bytes());

    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let slice = order.len().div_ceil(threads).max(MIN_REQUESTS_PER_THREAD);
    let answer_slice = |indexes: &[u32], files: &WorkFiles| -> io::Result<Vec<Tally>> {
        let mut sink = Sink {
            results: BufWriter::with_capacity(BUFFER_BYTES, File::create(&files.results)?),
            ids: BufWriter::with_capacity(BUFFER_BYTES, File::create(&files.ids)?),
        };
        let tallies = answer_all(
            indexes, requests, &params, batch_id, faults, &mut sink, cache,
        )?;
        sink.finish()?;
        Ok(tallies)
    };
    let slices: Vec<Vec<Tally>> = if order.len() <= slice {
        vec![answer_slice(&order, files)?]
    } else {
        let parts: Vec<WorkFiles> = (0..order.len().div_ceil(slice))
            .map(|index| files.part(index))
            .collect();
        let answered: Vec<io::Result<Vec<Tally>>> = std::thread::scope(|scope| {
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
                ledger::concatenate(&files.results, &paths(|files| &files.results))?;
                ledger::concatenate(&files.ids, &paths(|files| &files.ids))?;
                Ok(slices)
            });
        if joined.is_err() {
            parts.iter().for_each(WorkFiles::remove);
        }
        joined?
    };
    // The params have been answered: they are not read again.
    drop(params);
    disk::remove(&requests.params);

    let mut last = Tally::default();
    let mut tallies = Vec::with_capacity(order.len());
    for slice in slices {
        let before = last;
        for tally in slice {
            last = tally.after(before);
            tallies.push(last);
        }
    }
    ledger::write_totals(&files.tallies, tallies)?;
    Ok((order.len(), last))
}

/// Where answers go: result lines, ids.
struct Sink<W: Write> {
    results: W,
    ids: W,
}

impl Sink<BufWriter<File>> {
    fn finish(self) -> io::Result<()> {
        for writer in [self.results, self.ids] {
            writer
                .into_inner()
                .map_err(io::IntoInnerError::into_error)?;
        }
        Ok(())
    }
}

/// Answers request `i` for each `i` of `indexes`, in that order, into `sink`; returns the
/// tally after each, counted from the start of `indexes`.
fn answer_all<W: Write>(
    indexes: &[u32],
    requests: &Requests,
    params: &File,
    batch_id: &str,
    faults: &RequestPlan,
    sink: &mut Sink<W>,
    cache: Access<'_>,
) -> io::Result<Vec<Tally>> {
    let mut tallies = Vec::with_capacity(indexes.len());
    let mut tally = Tally::default();
    let mut line = String::new();
    for &index in indexes {
        let (offset, len) = requests.places[index as usize];
        let text = disk::read_at(params, offset, len)?;
        let raw: &RawValue = serde_json::from_slice(&text)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let request = check_params(raw).map_err(|(field, problem)| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a request's params{field} changed: {problem}"),
            )
        })?;
        let custom_id = requests.custom_ids[index as usize].as_str();
        let mut ids = Stream::new(&respond::digest(&[
            b"message",
            batch_id.as_bytes(),
            custom_id.as_bytes(),
        ]));
        let fate = match faults.decide(index as usize) {
            None => match answer::answer(&request, &mut ids, Some(cache)) {
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
                tally.errored += 1;
                json!({"type": "errored", "error": {
                    "type": "error",
                    "error": {"type": error.kind, "message": error.message},
                    "request_id": format!("req_{}", ids.token(24)),
                }})
            }
            Fate::Expired => {
                tally.expired += 1;
                json!({"type": "expired"})
            }
        };
        line.clear();
        write_line(&mut line, custom_id, result);
        sink.results.write_all(line.as_bytes())?;
        tally.results_bytes += line.len() as u64;
        tally.ids_bytes += ledger::write_id(&mut sink.ids, custom_id)?;
        tallies.push(tally);
    }
    Ok(tallies)
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

#[cfg(test)]
mod tests {
    use super::body::valid_custom_id;
    use super::*;

    type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    fn request(custom_id: &str) -> String {
        format!(
            r#"{{"custom_id":"{custom_id}","params":{{"model":"m","max_tokens":100,"messages":[{{"role":"user","content":"hello {custom_id}"}}]}}}}"#
        )
    }

    fn body(requests: &[String]) -> String {
        format!(r#"{{"requests":[{}]}}"#, requests.join(","))
    }

    /// `body` processed in a fresh files directory (kept alive with the outcome).
    fn run(body: &[u8], batch_id: &str) -> Result<(Disk, std::result::Result<Processed, Failure>)> {
        let disk = Disk::open(None)?;
        let path = disk.path("body.json");
        std::fs::write(&path, body)?;
        let cache = super::super::cache::PromptCache::default();
        let access = Access {
            cache: &cache,
            at: std::time::UNIX_EPOCH,
            batch: Some(batch_id),
        };
        let processed = process(
            &path,
            batch_id,
            &RequestPlan::none(),
            WorkFiles::of(&disk, batch_id),
            access,
        );
        Ok((disk, processed))
    }

    fn refusal(body: &str) -> Result<Option<String>> {
        Ok(match run(body.as_bytes(), "msgbatch_t")?.1 {
            Err(Failure::Invalid(invalid)) => Some(invalid.message),
            Err(Failure::Disk(error)) => return Err(error.into()),
            Ok(_) => None,
        })
    }

    fn processed(body: &str, batch_id: &str) -> Result<(Disk, Processed)> {
        match run(body.as_bytes(), batch_id)? {
            (disk, Ok(processed)) => Ok((disk, processed)),
            (_, Err(failure)) => Err(format!("{failure:?}").into()),
        }
    }

    /// The whole results file, tail included.
    fn results_text(done: &Processed, processed: usize, rest: Unprocessed) -> Result<String> {
        let results = done.results(processed, rest)?;
        let mut text = vec![0; results.bytes as usize];
        std::io::Read::read_exact(&mut &results.file, &mut text)?;
        for chunk in results.tail_chunks(100)? {
            text.extend_from_slice(&chunk?);
        }
        Ok(String::from_utf8(text)?)
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
    fn the_first_bad_request_is_named() -> Result {
        let message = refusal(&body(&[request("a"), request("b.c")]))?;
        assert_eq!(
            message.as_deref(),
            Some(
                "requests.1.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$' (got 'b.c')"
            )
        );
        let duplicate = refusal(&body(&[request("a"), request("b"), request("a")]))?;
        assert!(
            duplicate
                .is_some_and(|m| m.starts_with("requests.2.custom_id: Duplicate custom_id 'a'"))
        );
        Ok(())
    }

    #[test]
    fn a_body_that_is_not_an_object_with_a_list_is_refused_as_a_whole() -> Result {
        assert_eq!(
            refusal("[1]")?.as_deref(),
            Some("The request body must be a JSON object with a `requests` list.")
        );
        let mut not_utf8 = body(&[request("a")]).into_bytes();
        not_utf8.insert(30, 0xff);
        assert_eq!(
            run(&not_utf8, "msgbatch_t")?
                .1
                .err()
                .and_then(|failure| match failure {
                    Failure::Invalid(invalid) => Some(invalid.message),
                    Failure::Disk(_) => None,
                }),
            Some("The request body is not valid UTF-8.".to_owned())
        );
        assert_eq!(
            refusal(r#"{"requests":null}"#)?.as_deref(),
            Some("requests: Field required")
        );
        assert_eq!(
            refusal(r#"{"requests":{"a":1}}"#)?.as_deref(),
            Some("requests: Input should be a valid list")
        );
        assert!(
            refusal(r#"{"requests":[], "requests":[]}"#)?
                .is_some_and(|m| m.contains("duplicate field `requests`"))
        );
        assert!(
            refusal(&(body(&[request("a.b")]) + "x"))?
                .is_some_and(|m| m.starts_with("There was an error parsing the body"))
        );
        Ok(())
    }

    #[test]
    fn params_need_a_model_positive_max_tokens_and_messages() -> Result {
        let with = |params: &str| {
            refusal(&format!(
                r#"{{"requests":[{{"custom_id":"a","params":{params}}}]}}"#
            ))
        };
        assert_eq!(
            with(r#"{"max_tokens":1,"messages":[{}]}"#)?.as_deref(),
            Some("requests.0.params.model: Field required")
        );
        assert_eq!(
            with(r#"{"model":"m","max_tokens":0,"messages":[{}]}"#)?.as_deref(),
            Some("requests.0.params.max_tokens: Input should be greater than or equal to 1")
        );
        assert_eq!(
            with(r#"{"model":"m","max_tokens":1,"messages":[]}"#)?.as_deref(),
            Some(
                "requests.0.params.messages: List should have at least 1 item after validation, not 0"
            )
        );
        assert_eq!(
            with("[]")?.as_deref(),
            Some("requests.0.params: Input should be a valid dictionary or object")
        );
        Ok(())
    }

    #[test]
    fn counts_and_results_add_up_and_unprocessed_requests_are_canceled() -> Result {
        let mut requests: Vec<String> = (0..4).map(|i| request(&format!("r{i}"))).collect();
        requests.push(
            r#"{"custom_id":"bad","params":{"model":"does-not-exist","max_tokens":5,"messages":[{"role":"user","content":"x"}]}}"#
                .to_owned(),
        );
        let (_disk, done) = processed(&body(&requests), "msgbatch_t")?;
        let all = done.outcome(5, Unprocessed::None)?;
        assert_eq!((all.succeeded, all.errored), (4, 1));
        assert_eq!(
            results_text(&done, 5, Unprocessed::None)?
                .matches('\n')
                .count(),
            5
        );
        let part = done.outcome(2, Unprocessed::Canceled)?;
        assert_eq!(part.succeeded + part.errored, 2);
        assert_eq!(part.canceled, 3);
        let text = results_text(&done, 2, Unprocessed::Canceled)?;
        assert_eq!(text.matches('\n').count(), 5);
        assert_eq!(text.matches(r#"{"type":"canceled"}"#).count(), 3);
        Ok(())
    }

    #[test]
    fn the_result_is_the_same_whatever_the_number_of_threads() -> Result {
        let requests: Vec<String> = (0..3 * MIN_REQUESTS_PER_THREAD)
            .map(|i| request(&format!("r{i}")))
            .collect();
        let body = body(&requests);
        let (disk, threaded) = processed(&body, "b")?;
        let threaded_results = std::fs::read(&threaded.files.results)?;

        let path = disk.path("again.json");
        std::fs::write(&path, &body)?;
        let Ok(parsed) = validate(&path, &disk.path("again.requests")) else {
            panic!("the batch should be valid");
        };
        let mut order: Vec<u32> = (0..parsed.places.len() as u32).collect();
        respond::shuffle(&mut order, b"b");
        let mut alone = Sink {
            results: Vec::new(),
            ids: Vec::new(),
        };
        let tallies = answer_all(
            &order,
            &parsed,
            &File::open(&parsed.params)?,
            "b",
            &RequestPlan::none(),
            &mut alone,
            Access {
                cache: &super::super::cache::PromptCache::default(),
                at: std::time::UNIX_EPOCH,
                batch: Some("b"),
            },
        )?;
        assert_eq!(threaded_results, alone.results);
        assert_eq!(std::fs::read(&threaded.files.ids)?, alone.ids);
        for processed in [1, 2500, 4001, 6000] {
            assert_eq!(threaded.tally(processed)?, tallies[processed - 1]);
        }
        Ok(())
    }
}
