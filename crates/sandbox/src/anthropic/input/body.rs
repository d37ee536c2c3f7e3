//! Reading a create call's body: the whole of it is checked (UTF-8, a JSON object with a
//! `requests` list of 1 to [`MAX_REQUESTS`](super::MAX_MESSAGE_REQUESTS) items, each with a
//! valid `custom_id` used once and valid `params`), one request at a time, without holding it:
//! the `params` of each request are copied to the requests file as they are read, and memory
//! keeps their place there and the `custom_id`s. The first problem refuses the whole batch.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::Deserialize;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use super::super::answer::Text;
use super::{BUFFER_BYTES, Failure, Invalid, MAX_MESSAGE_REQUESTS, Params, Requests};

const CUSTOM_ID_PATTERN: &str = "^[a-zA-Z0-9_-]{1,64}$";
const MAX_CUSTOM_ID_CHARS: usize = 64;

/// The requests of the body in the file at `body`, their `params` copied to the file at
/// `params`, or why the batch is refused.
pub(super) fn validate(body: &Path, params: &Path) -> Result<Requests, Failure> {
    check_text(body)?;
    let mut intake = Intake {
        out: BufWriter::with_capacity(BUFFER_BYTES, File::create(params)?),
        offset: 0,
        requests: Requests {
            params: params.to_path_buf(),
            ..Requests::default()
        },
        seen: HashMap::new(),
        count: 0,
        field: Field::Missing,
        problem: None,
        failure: None,
    };
    let reader = BufReader::with_capacity(BUFFER_BYTES, File::open(body)?);
    let mut parser = serde_json::Deserializer::from_reader(reader);
    let parsed = BodySeed(&mut intake)
        .deserialize(&mut parser)
        .and_then(|()| parser.end());
    if let Some(failure) = intake.failure.take() {
        return Err(failure.into());
    }
    match parsed {
        Err(error) if error.is_io() => return Err(Failure::Disk(error.into())),
        Err(error) => {
            return Err(refused(format!(
                "There was an error parsing the body of your request: {error}"
            )));
        }
        Ok(()) => {}
    }
    intake
        .out
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    match intake.field {
        Field::Missing => return Err(refused("requests: Field required".to_owned())),
        Field::NotAList => {
            return Err(refused("requests: Input should be a valid list".to_owned()));
        }
        Field::List => {}
    }
    if intake.count == 0 {
        return Err(refused(
            "requests: List should have at least 1 item after validation, not 0".to_owned(),
        ));
    }
    if intake.count > MAX_MESSAGE_REQUESTS {
        return Err(refused(format!(
            "requests: List should have at most {MAX_MESSAGE_REQUESTS} items after validation, not {}",
            intake.count
        )));
    }
    match intake.problem {
        Some(problem) => Err(problem.into()),
        None => Ok(intake.requests),
    }
}

fn refused(message: String) -> Failure {
    Failure::Invalid(Invalid { message })
}

/// Refuses a body that is not UTF-8 or does not start with `{`, reading it in chunks.
fn check_text(body: &Path) -> Result<(), Failure> {
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, File::open(body)?);
    // The bytes of a character cut by the end of the previous chunk.
    let mut carry: Vec<u8> = Vec::new();
    let mut first: Option<char> = None;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let read = chunk.len();
        let joined;
        let bytes = if carry.is_empty() {
            chunk
        } else {
            joined = [carry.as_slice(), chunk].concat();
            &joined
        };
        let valid = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) if error.error_len().is_none() => {
                let (valid, rest) = bytes.split_at(error.valid_up_to());
                let rest = rest.to_vec();
                let text = std::str::from_utf8(valid).unwrap_or_default();
                first = first.or_else(|| text.trim_start().chars().next());
                carry = rest;
                reader.consume(read);
                continue;
            }
            Err(_) => return Err(refused("The request body is not valid UTF-8.".to_owned())),
        };
        first = first.or_else(|| valid.trim_start().chars().next());
        carry.clear();
        reader.consume(read);
    }
    if !carry.is_empty() {
        return Err(refused("The request body is not valid UTF-8.".to_owned()));
    }
    if first != Some('{') {
        return Err(refused(
            "The request body must be a JSON object with a `requests` list.".to_owned(),
        ));
    }
    Ok(())
}

/// What reading the body has found so far.
struct Intake {
    /// The requests file being written.
    out: BufWriter<File>,
    offset: u64,
    requests: Requests,
    seen: HashMap<String, usize>,
    /// Items of the `requests` list.
    count: usize,
    field: Field,
    /// The first bad request.
    problem: Option<Invalid>,
    /// The requests file could not be written.
    failure: Option<io::Error>,
}

/// What the body's `requests` field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Absent or null.
    Missing,
    NotAList,
    List,
}

impl Intake {
    /// Takes the `index`th item of the `requests` list.
    fn item(&mut self, raw: &RawValue) -> io::Result<()> {
        let index = self.count;
        self.count += 1;
        if self.problem.is_some() || self.count > MAX_MESSAGE_REQUESTS {
            return Ok(());
        }
        match check_item(raw, index, &mut self.seen) {
            Ok((custom_id, params)) => {
                let text = params.get().as_bytes();
                self.out.write_all(text)?;
                self.requests.places.push((self.offset, text.len()));
                self.offset += text.len() as u64;
                self.requests.custom_ids.push(custom_id);
            }
            Err(problem) => self.problem = Some(problem),
        }
        Ok(())
    }
}

/// Reads the body object: its `requests` into the intake, anything else skipped.
struct BodySeed<'i>(&'i mut Intake);

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with a `requests` list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_requests = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "requests" {
                if seen_requests {
                    return Err(A::Error::duplicate_field("requests"));
                }
                seen_requests = true;
                map.next_value_seed(RequestsSeed(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Reads the `requests` field: a list, item by item, or something else.
struct RequestsSeed<'i>(&'i mut Intake);

impl<'de> DeserializeSeed<'de> for RequestsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl RequestsSeed<'_> {
    fn not_a_list<E>(self) -> Result<(), E> {
        self.0.field = Field::NotAList;
        Ok(())
    }
}

impl<'de> Visitor<'de> for RequestsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of requests")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.field = Field::List;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            if let Err(error) = self.0.item(&raw) {
                self.0.failure = Some(error);
                return Err(A::Error::custom("the sandbox cannot store the requests"));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.not_a_list()
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        // As an absent field: `null` is what an optional field defaults to.
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.not_a_list()
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.not_a_list()
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.not_a_list()
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.not_a_list()
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.not_a_list()
    }
}

/// The `custom_id` and `params` of the `index`th request, or why the batch is refused.
fn check_item<'a>(
    raw: &'a RawValue,
    index: usize,
    seen: &mut HashMap<String, usize>,
) -> Result<(String, &'a RawValue), Invalid> {
    #[derive(Deserialize)]
    struct Item<'a> {
        #[serde(borrow, default)]
        custom_id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        params: Option<&'a RawValue>,
    }

    let at = |field: &str, problem: &str| Invalid {
        message: format!("requests.{index}{field}: {problem}"),
    };
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
    match seen.entry(custom_id.to_string()) {
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
    check_params(params).map_err(|(field, problem)| at(&format!(".params{field}"), problem))?;
    Ok((custom_id.into_owned(), params))
}

/// The parameters of a request, or the field (`""` for `params` itself) and what is wrong.
pub(in crate::anthropic) fn check_params(
    raw: &RawValue,
) -> Result<Params<'_>, (&'static str, &'static str)> {
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

pub(super) fn valid_custom_id(id: &str) -> bool {
    (1..=MAX_CUSTOM_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn starts_with(raw: &RawValue, byte: u8) -> bool {
    raw.get().trim_start().as_bytes().first() == Some(&byte)
}
