//! One walk over a JSON text that checks its syntax and notes where the values the validator
//! needs are, without building anything.
//!
//! Acceptance is exactly serde_json's: [`document`] accepts what
//! `serde_json::from_slice::<serde::de::IgnoredAny>` accepts, and [`line()`] what
//! `serde_json::from_slice` accepts for the validator's line struct (the same syntax, plus: no
//! field of that struct twice, `url` a string or null, keys that make strings). Like serde_json's
//! syntax check, a string's bytes are not required to be UTF-8 (and its `\u` escapes not to pair
//! up); both are noted instead ([`Line::utf8`], [`Text::paired`]), for the caller to decide.
//!
//! Nothing is allocated unless containers nest deeper than 128 levels, and nothing is decoded:
//! values are handed back as the byte spans they occupy.
//!
//! The fields it notes are the ones the providers' dialects read (`custom_id`, `method`, `url`,
//! `body`, `params`, `prompt`, `recordId`, `modelInput`, and `model` / `input` / `max_tokens`
//! inside `body` or `params`).
//!
//! This file stays whole although it is longer than the others: it is one state machine, and
//! its parts (tokens, strings, numbers, the line's members) share invariants that its proptests
//! check against serde_json together; split, they would be harder to hold in one's head.

use std::borrow::Cow;
use std::fmt;

/// What a string looks like inside: whether it has escapes, and whether serde_json would make a
/// `String` of it (its `\u` surrogate escapes come in high-low pairs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    pub escaped: bool,
    pub paired: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    Str(Text),
    /// With its number of elements.
    Array(usize),
    Object,
}

/// One value: its bytes, exactly as written (no surrounding whitespace), and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Json<'a> {
    pub raw: &'a [u8],
    pub kind: Kind,
}

impl<'a> Json<'a> {
    /// The value as an `Option<_>` field sees it: `null` is no value.
    pub fn given(self) -> Option<Self> {
        (self.kind != Kind::Null).then_some(self)
    }

    pub fn is_object(self) -> bool {
        self.kind == Kind::Object
    }

    /// The string this value is, decoded — `None` when it is not one serde_json would make a
    /// `String` of. Borrowed unless it has escapes.
    pub fn string(self) -> Option<Cow<'a, str>> {
        match self.kind {
            Kind::Str(Text {
                escaped: false,
                paired: true,
            }) => std::str::from_utf8(&self.raw[1..self.raw.len() - 1])
                .ok()
                .map(Cow::Borrowed),
            Kind::Str(Text { paired: true, .. }) => serde_json::from_slice::<String>(self.raw)
                .ok()
                .map(Cow::Owned),
            _ => None,
        }
    }
}

/// One member of the line's object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key as written, quotes included.
    pub key: &'a [u8],
    pub key_text: Text,
    pub value: Json<'a>,
}

impl<'a> Member<'a> {
    /// The key's characters, when it has no escapes (and so is exactly these bytes).
    pub fn plain_key(&self) -> Option<&'a [u8]> {
        (!self.key_text.escaped).then(|| &self.key[1..self.key.len() - 1])
    }
}

/// The fields the validator reads in `body` (OpenAI) or `params` (Anthropic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inner<'a> {
    pub model: Option<Json<'a>>,
    pub input: Option<Json<'a>>,
    pub max_tokens: Option<Json<'a>>,
    /// False when serde_json would refuse the object as the validator's body struct: one of
    /// these three fields twice, a `model` that is neither a string nor null, or a key that makes
    /// no string.
    pub strict: bool,
}

/// How many members of the line's object are kept, in order ([`Line::members`]).
pub const MAX_MEMBERS: usize = 12;

/// A line's object, taken apart. Fields given as `null` are present here, as `null`
/// ([`Json::given`] drops them).
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub custom_id: Option<Json<'a>>,
    pub method: Option<Json<'a>>,
    pub url: Option<Json<'a>>,
    pub body: Option<Json<'a>>,
    pub params: Option<Json<'a>>,
    pub prompt: Option<Json<'a>>,
    /// A Bedrock line's id.
    pub record_id: Option<Json<'a>>,
    /// A Bedrock line's request body.
    pub model_input: Option<Json<'a>>,
    /// The fields of `body`, when it is an object.
    pub body_fields: Inner<'a>,
    /// The fields of `params`, when it is an object.
    pub params_fields: Inner<'a>,
    /// Whether every string's bytes are UTF-8 (and so the whole line is).
    pub utf8: bool,
    members: [Member<'a>; MAX_MEMBERS],
    count: usize,
}

impl<'a> Line<'a> {
    /// Every member in order, or `None` when there are more than [`MAX_MEMBERS`].
    pub fn members(&self) -> Option<&[Member<'a>]> {
        self.members.get(..self.count)
    }
}

/// Why a text is not accepted, and at which byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// 0-based byte offset.
    pub at: usize,
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Eof,
    ExpectedValue,
    ExpectedColon,
    ExpectedCommaOrEnd,
    KeyMustBeAString,
    InvalidLiteral,
    InvalidNumber,
    InvalidEscape,
    ControlCharacter,
    TrailingCharacters,
    NotAnObject,
    /// A key with an unpaired `\u` surrogate escape.
    KeyNotAString,
    DuplicateField(&'static str),
    /// The field must be a string (or null).
    NotAString(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.reason {
            Reason::Eof => "unexpected end of line".to_string(),
            Reason::ExpectedValue => "expected a value".to_string(),
            Reason::ExpectedColon => "expected `:`".to_string(),
            Reason::ExpectedCommaOrEnd => "expected `,` or the end of the array or object".into(),
            Reason::KeyMustBeAString => "key must be a string".to_string(),
            Reason::InvalidLiteral => "expected `true`, `false` or `null`".to_string(),
            Reason::InvalidNumber => "invalid number".to_string(),
            Reason::InvalidEscape => "invalid escape".to_string(),
            Reason::ControlCharacter => "control character in a string".to_string(),
            Reason::TrailingCharacters => "trailing characters".to_string(),
            Reason::NotAnObject => "not an object".to_string(),
            Reason::KeyNotAString => "key with an unpaired surrogate escape".to_string(),
            Reason::DuplicateField(name) => format!("duplicate field `{name}`"),
            Reason::NotAString(name) => format!("`{name}` must be a string"),
        };
        write!(f, "{what} at byte {}", self.at + 1)
    }
}

impl std::error::Error for Error {}

/// Checks that `bytes` is one JSON value, with only whitespace around it. `Ok(utf8)`: accepted,
/// and whether its strings are UTF-8.
pub fn document(bytes: &[u8]) -> Result<bool, Error> {
    let mut s = Scanner::new(bytes);
    s.ws();
    s.value()?;
    s.end()?;
    Ok(s.utf8)
}

/// Takes a line's object apart (see the module doc for what is refused).
pub fn line(bytes: &[u8]) -> Result<Line<'_>, Error> {
    let mut s = Scanner::new(bytes);
    s.ws();
    if s.peek() != Some(b'{') {
        return Err(s.error(Reason::NotAnObject));
    }
    s.i += 1;
    let mut out = Line {
        custom_id: None,
        method: None,
        url: None,
        body: None,
        params: None,
        prompt: None,
        record_id: None,
        model_input: None,
        body_fields: Inner::default(),
        params_fields: Inner::default(),
        utf8: true,
        members: [EMPTY_MEMBER; MAX_MEMBERS],
        count: 0,
    };
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            let (key, key_text) = s.key()?;
            if key_text.escaped && !key_text.paired {
                return Err(Error {
                    at: s.i - 1,
                    reason: Reason::KeyNotAString,
                });
            }
            let field = TopField::of(key, key_text);
            if let Some(name) = field.name()
                && out.slot(field).is_some_and(|slot| slot.is_some())
            {
                return Err(Error {
                    at: s.i - 1,
                    reason: Reason::DuplicateField(name),
                });
            }
            s.colon()?;
            let value = match field {
                TopField::Body if s.peek() == Some(b'{') => s.inner(&mut out.body_fields)?,
                TopField::Params if s.peek() == Some(b'{') => s.inner(&mut out.params_fields)?,
                _ => s.json()?,
            };
            if field == TopField::Url && !string_or_null(value.kind) {
                return Err(Error {
                    at: s.i - 1,
                    reason: Reason::NotAString("url"),
                });
            }
            if let Some(slot) = out.slot(field) {
                *slot = Some(value);
            }
            if let Some(m) = out.members.get_mut(out.count) {
                *m = Member {
                    key,
                    key_text,
                    value,
                };
            }
            out.count += 1;
            if s.next_member(b'}')? {
                break;
            }
        }
    }
    s.end()?;
    out.utf8 = s.utf8;
    Ok(out)
}

/// What serde_json takes for an `Option<String>`.
fn string_or_null(kind: Kind) -> bool {
    match kind {
        Kind::Null => true,
        Kind::Str(text) => text.paired,
        _ => false,
    }
}

const EMPTY_MEMBER: Member<'static> = Member {
    key: b"\"\"",
    key_text: Text {
        escaped: false,
        paired: true,
    },
    value: Json {
        raw: b"null",
        kind: Kind::Null,
    },
};

/// The line's fields the validator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopField {
    CustomId,
    Method,
    Url,
    Body,
    Params,
    Prompt,
    RecordId,
    ModelInput,
    Other,
}

impl TopField {
    fn of(key: &[u8], text: Text) -> Self {
        match &*key_name(key, text) {
            b"custom_id" => TopField::CustomId,
            b"method" => TopField::Method,
            b"url" => TopField::Url,
            b"body" => TopField::Body,
            b"params" => TopField::Params,
            b"prompt" => TopField::Prompt,
            b"recordId" => TopField::RecordId,
            b"modelInput" => TopField::ModelInput,
            _ => TopField::Other,
        }
    }

    fn name(self) -> Option<&'static str> {
        Some(match self {
            TopField::CustomId => "custom_id",
            TopField::Method => "method",
            TopField::Url => "url",
            TopField::Body => "body",
            TopField::Params => "params",
            TopField::Prompt => "prompt",
            TopField::RecordId => "recordId",
            TopField::ModelInput => "modelInput",
            TopField::Other => return None,
        })
    }
}

impl<'a> Line<'a> {
    fn slot(&mut self, field: TopField) -> Option<&mut Option<Json<'a>>> {
        Some(match field {
            TopField::CustomId => &mut self.custom_id,
            TopField::Method => &mut self.method,
            TopField::Url => &mut self.url,
            TopField::Body => &mut self.body,
            TopField::Params => &mut self.params,
            TopField::Prompt => &mut self.prompt,
            TopField::RecordId => &mut self.record_id,
            TopField::ModelInput => &mut self.model_input,
            TopField::Other => return None,
        })
    }
}

/// A key's characters (`key` as written, quotes included); decoded only when it has escapes.
fn key_name(key: &[u8], text: Text) -> Cow<'_, [u8]> {
    if !text.escaped {
        return Cow::Borrowed(&key[1..key.len() - 1]);
    }
    match serde_json::from_slice::<String>(key) {
        Ok(name) => Cow::Owned(name.into_bytes()),
        // Not UTF-8: no name the validator knows (the line is refused for its UTF-8 anyway).
        Err(_) => Cow::Borrowed(b""),
    }
}

/// Which containers enclose the current position: a bit per level (set for an object), spilled
/// to the heap past 128 levels.
#[derive(Default)]
struct Nesting {
    bits: u128,
    depth: usize,
    deep: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            let bit = 1u128 << self.depth;
            if object {
                self.bits |= bit;
            } else {
                self.bits &= !bit;
            }
        } else {
            self.deep.push(object);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth -= 1;
        if self.depth >= 128 {
            self.deep.pop();
        }
    }

    /// Whether the innermost container is an object (there must be one).
    fn in_object(&self) -> bool {
        let d = self.depth - 1;
        if d < 128 {
            self.bits >> d & 1 == 1
        } else {
            self.deep.last().copied().unwrap_or(false)
        }
    }
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of each byte of `w` (read little-endian) that may need a look inside a string —
/// `"`, `\`, a control character or a non-ASCII byte — exact for the lowest such byte.
#[inline(always)]
fn string_stops(w: u64) -> u64 {
    let quote = w ^ (ONES * b'"' as u64);
    let backslash = w ^ (ONES * b'\\' as u64);
    let is_quote = quote.wrapping_sub(ONES) & !quote;
    let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
    let is_control = w.wrapping_sub(ONES * 0x20);
    (is_quote | is_backslash | is_control | w) & HIGHS
}

/// The length of the UTF-8 sequence starting at `b[0]` (non-ASCII), or `None` if it is not one.
#[inline]
fn utf8_sequence(b: &[u8]) -> Option<usize> {
    let cont = |i: usize| matches!(b.get(i), Some(0x80..=0xBF));
    let second = |lo: u8, hi: u8| matches!(b.get(1), Some(&c) if (lo..=hi).contains(&c));
    match b[0] {
        0xC2..=0xDF if cont(1) => Some(2),
        0xE0 if second(0xA0, 0xBF) && cont(2) => Some(3),
        0xE1..=0xEC | 0xEE..=0xEF if cont(1) && cont(2) => Some(3),
        0xED if second(0x80, 0x9F) && cont(2) => Some(3),
        0xF0 if second(0x90, 0xBF) && cont(2) && cont(3) => Some(4),
        0xF1..=0xF3 if cont(1) && cont(2) && cont(3) => Some(4),
        0xF4 if second(0x80, 0x8F) && cont(2) && cont(3) => Some(4),
        _ => None,
    }
}

fn hex4(b: &[u8]) -> Option<u16> {
    let mut n = 0u16;
    for &c in b {
        let d = (c as char).to_digit(16)?;
        n = n << 4 | d as u16;
    }
    Some(n)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    utf8: bool,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self {
            b,
            i: 0,
            utf8: true,
        }
    }

    fn error(&self, reason: Reason) -> Error {
        Error { at: self.i, reason }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// Only whitespace may follow.
    fn end(&mut self) -> Result<(), Error> {
        self.ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error(Reason::TrailingCharacters)),
        }
    }

    /// After a member or element: `Ok(true)` at the container's end (`close`), `Ok(false)` after
    /// a comma (whitespace skipped).
    #[inline]
    fn next_member(&mut self, close: u8) -> Result<bool, Error> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.ws();
                Ok(false)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(true)
            }
            Some(_) => Err(self.error(Reason::ExpectedCommaOrEnd)),
            None => Err(self.error(Reason::Eof)),
        }
    }

    /// A key (at the current position); returns it as written.
    #[inline]
    fn key(&mut self) -> Result<(&'a [u8], Text), Error> {
        match self.peek() {
            Some(b'"') => {}
            Some(_) => return Err(self.error(Reason::KeyMustBeAString)),
            None => return Err(self.error(Reason::Eof)),
        }
        let start = self.i;
        let text = self.string()?;
        Ok((&self.b[start..self.i], text))
    }

    /// `:` and the whitespace around it.
    #[inline]
    fn colon(&mut self) -> Result<(), Error> {
        self.ws();
        match self.peek() {
            Some(b':') => {
                self.i += 1;
                self.ws();
                Ok(())
            }
            Some(_) => Err(self.error(Reason::ExpectedColon)),
            None => Err(self.error(Reason::Eof)),
        }
    }

    /// A value (at the current position) and its span.
    #[inline]
    fn json(&mut self) -> Result<Json<'a>, Error> {
        let start = self.i;
        let kind = self.value()?;
        Ok(Json {
            raw: &self.b[start..self.i],
            kind,
        })
    }

    /// An object whose `model`, `input` and `max_tokens` are noted in `fields`.
    fn inner(&mut self, fields: &mut Inner<'a>) -> Result<Json<'a>, Error> {
        let start = self.i;
        self.i += 1;
        *fields = Inner {
            strict: true,
            ..Inner::default()
        };
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                let (key, text) = self.key()?;
                if text.escaped && !text.paired {
                    fields.strict = false;
                }
                self.colon()?;
                let value = self.json()?;
                let slot = match &*key_name(key, text) {
                    b"model" => {
                        if !string_or_null(value.kind) {
                            fields.strict = false;
                        }
                        Some(&mut fields.model)
                    }
                    b"input" => Some(&mut fields.input),
                    b"max_tokens" => Some(&mut fields.max_tokens),
                    _ => None,
                };
                if let Some(slot) = slot {
                    if slot.is_some() {
                        fields.strict = false;
                    }
                    *slot = Some(value);
                }
                if self.next_member(b'}')? {
                    break;
                }
            }
        }
        Ok(Json {
            raw: &self.b[start..self.i],
            kind: Kind::Object,
        })
    }

    /// Any value, at the current position (whitespace skipped).
    #[inline]
    fn value(&mut self) -> Result<Kind, Error> {
        match self.peek() {
            Some(b'"') => self.string().map(Kind::Str),
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| Kind::Number),
            Some(b'{' | b'[') => self.container(),
            Some(b't') => self.literal(b"true", Kind::Bool),
            Some(b'f') => self.literal(b"false", Kind::Bool),
            Some(b'n') => self.literal(b"null", Kind::Null),
            Some(_) => Err(self.error(Reason::ExpectedValue)),
            None => Err(self.error(Reason::Eof)),
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<Kind, Error> {
        for &c in word {
            match self.peek() {
                Some(x) if x == c => self.i += 1,
                Some(_) => return Err(self.error(Reason::InvalidLiteral)),
                None => return Err(self.error(Reason::Eof)),
            }
        }
        Ok(kind)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), Error> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error(Reason::InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error(Reason::InvalidNumber)),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.error(Reason::InvalidNumber));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.error(Reason::InvalidNumber));
            }
        }
        Ok(())
    }

    /// An array or object and all it holds; an array's kind counts its elements.
    fn container(&mut self) -> Result<Kind, Error> {
        let outer_is_object = self.peek() == Some(b'{');
        let mut nesting = Nesting::default();
        let mut elements = 0usize;
        // Each turn: a value starts at the current position.
        'value: loop {
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    let object = open == b'{';
                    self.i += 1;
                    nesting.push(object);
                    self.ws();
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.i += 1;
                        nesting.pop();
                    } else {
                        if nesting.depth == 1 {
                            elements += 1;
                        }
                        if object {
                            self.key()?;
                            self.colon()?;
                        }
                        continue 'value;
                    }
                }
                _ => {
                    self.value()?;
                }
            }
            // After a value: close containers until a comma opens the next value.
            while nesting.depth > 0 {
                let object = nesting.in_object();
                if self.next_member(if object { b'}' } else { b']' })? {
                    nesting.pop();
                    continue;
                }
                if nesting.depth == 1 {
                    elements += 1;
                }
                if object {
                    self.key()?;
                    self.colon()?;
                }
                continue 'value;
            }
            return Ok(if outer_is_object {
                Kind::Object
            } else {
                Kind::Array(elements)
            });
        }
    }

    /// A string, from its opening quote (at the current position) to past its closing one.
    #[inline]
    fn string(&mut self) -> Result<Text, Error> {
        let b = self.b;
        let mut i = self.i + 1;
        let mut text = Text {
            escaped: false,
            paired: true,
        };
        loop {
            // Eight bytes at a time while nothing in them needs a look.
            while let Some(chunk) = b.get(i..i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                let stops = string_stops(w);
                if stops != 0 {
                    i += (stops.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            let Some(&c) = b.get(i) else {
                self.i = i;
                return Err(self.error(Reason::Eof));
            };
            match c {
                b'"' => {
                    self.i = i + 1;
                    return Ok(text);
                }
                b'\\' => {
                    text.escaped = true;
                    i = self.escape(i, &mut text)?;
                }
                0x00..=0x1F => {
                    self.i = i;
                    return Err(self.error(Reason::ControlCharacter));
                }
                0x80.. => match utf8_sequence(&b[i..]) {
                    Some(n) => i += n,
                    None => {
                        self.utf8 = false;
                        i += 1;
                    }
                },
                _ => i += 1,
            }
        }
    }

    /// The escape at `b[i]` (a backslash); returns the position after it.
    fn escape(&mut self, i: usize, text: &mut Text) -> Result<usize, Error> {
        let unit = self.unicode_escape(i)?;
        let Some(unit) = unit else { return Ok(i + 2) };
        match unit {
            0xD800..=0xDBFF => {
                // A high surrogate: a low one must follow at once, as another escape.
                if self.b.get(i + 6..i + 8) == Some(b"\\u") {
                    let low = self.unicode_escape(i + 6)?;
                    if !matches!(low, Some(0xDC00..=0xDFFF)) {
                        text.paired = false;
                    }
                    Ok(i + 12)
                } else {
                    text.paired = false;
                    Ok(i + 6)
                }
            }
            0xDC00..=0xDFFF => {
                text.paired = false;
                Ok(i + 6)
            }
            _ => Ok(i + 6),
        }
    }

    /// Checks the escape at `b[i]`: `Some(unit)` for a `\u` escape, `None` for the others.
    fn unicode_escape(&mut self, i: usize) -> Result<Option<u16>, Error> {
        let fail = |s: &mut Self, at: usize, reason| {
            s.i = at;
            Err(s.error(reason))
        };
        match self.b.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(None),
            Some(b'u') => match self.b.get(i + 2..i + 6) {
                Some(hex) => match hex4(hex) {
                    Some(unit) => Ok(Some(unit)),
                    None => fail(self, i + 2, Reason::InvalidEscape),
                },
                None => fail(self, self.b.len(), Reason::Eof),
            },
            Some(_) => fail(self, i + 1, Reason::InvalidEscape),
            None => fail(self, i + 1, Reason::Eof),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::IgnoredAny;
    use serde_json::value::RawValue;

    fn accepted(text: &str) -> bool {
        document(text.as_bytes()).is_ok()
    }

    fn reason(text: &[u8]) -> Reason {
        document(text).expect_err("refused").reason
    }

    fn one_line(text: &str) -> Line<'_> {
        line(text.as_bytes()).expect("a line")
    }

    fn string_kind(text: &str) -> Text {
        match one_line(&format!(r#"{{"x":{text}}}"#))
            .members()
            .expect("few")[0]
            .value
            .kind
        {
            Kind::Str(t) => t,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn nested_values_with_whitespace_are_accepted() {
        assert!(accepted(
            " {\"a\" : [1, -2.5e+3, true, false, null, {\"b\":\"c\"}, []], \"d\":{}}\r\n\t"
        ));
    }

    #[test]
    fn scalars_alone_are_documents() {
        for text in ["0", "-0", "1E5", "\"s\"", "true", "null"] {
            assert!(accepted(text), "{text}");
        }
    }

    #[test]
    fn empty_text_is_refused() {
        assert_eq!(reason(b"  "), Reason::Eof);
    }

    #[test]
    fn anything_after_the_value_is_refused() {
        assert_eq!(reason(b"{} x"), Reason::TrailingCharacters);
    }

    #[test]
    fn a_trailing_comma_is_refused() {
        assert_eq!(reason(b"[1,]"), Reason::ExpectedValue);
        assert_eq!(reason(b"{\"a\":1,}"), Reason::KeyMustBeAString);
    }

    #[test]
    fn a_missing_colon_is_refused() {
        assert_eq!(reason(b"{\"a\" 1}"), Reason::ExpectedColon);
    }

    #[test]
    fn an_unclosed_container_is_refused() {
        assert_eq!(reason(b"[[1]"), Reason::Eof);
        assert_eq!(reason(b"{\"a\":[1}"), Reason::ExpectedCommaOrEnd);
    }

    #[test]
    fn numbers_follow_the_json_grammar() {
        for bad in ["01", "-", "1.", "1.e5", "1e", "1e+", "+1", ".5", "-a"] {
            assert!(!accepted(bad), "{bad}");
        }
    }

    #[test]
    fn misspelt_literals_are_refused() {
        assert_eq!(reason(b"[tru]"), Reason::InvalidLiteral);
        assert_eq!(reason(b"nul"), Reason::Eof);
    }

    #[test]
    fn control_characters_in_strings_are_refused() {
        assert_eq!(reason(b"\"a\nb\""), Reason::ControlCharacter);
        assert_eq!(
            document(b"\"a\x7fb\""),
            Ok(true),
            "DEL is not a control here"
        );
    }

    #[test]
    fn unknown_escapes_are_refused() {
        assert_eq!(reason(b"\"\\x\""), Reason::InvalidEscape);
        assert_eq!(reason(b"\"\\u12g4\""), Reason::InvalidEscape);
        assert_eq!(reason(b"\"\\u12"), Reason::Eof);
    }

    #[test]
    fn an_unterminated_string_is_refused_even_after_long_clean_runs() {
        assert_eq!(reason(b"\"abcdefghijklmnopqrstuvwxyz"), Reason::Eof);
    }

    #[test]
    fn quotes_are_found_at_every_offset_of_a_word() {
        for n in 0..20 {
            let text = format!("[\"{}\",1]", "a".repeat(n));
            assert!(accepted(&text), "{text}");
        }
    }

    #[test]
    fn paired_surrogate_escapes_make_a_string() {
        assert_eq!(
            string_kind(r#""\ud83d\ude00""#),
            Text {
                escaped: true,
                paired: true
            }
        );
    }

    #[test]
    fn lone_surrogate_escapes_are_syntax_but_no_string() {
        for text in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800x""#,
            r#""\ud800\n""#,
            r#""\ud800\ud800""#,
        ] {
            assert!(accepted(text), "{text}");
            assert!(!string_kind(text).paired, "{text}");
        }
    }

    #[test]
    fn invalid_utf8_in_a_string_is_noted_not_refused() {
        assert_eq!(document(b"[\"\xff\"]"), Ok(false));
        assert_eq!(document(b"[\"\xe2\x82\"]"), Ok(false), "cut short");
        assert_eq!(document(b"[\"\xed\xa0\x80\"]"), Ok(false), "a surrogate");
        assert_eq!(document("[\"é東😀\"]".as_bytes()), Ok(true));
    }

    #[test]
    fn non_ascii_outside_strings_is_refused() {
        assert_eq!(reason(b"[\xc3\xa9]"), Reason::ExpectedValue);
    }

    #[test]
    fn nesting_deeper_than_128_levels_is_accepted() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert!(accepted(&deep));
        let unbalanced = format!("{}{}", "[".repeat(300), "]".repeat(299));
        assert!(!accepted(&unbalanced));
    }

    #[test]
    fn a_line_must_be_an_object() {
        assert_eq!(line(b" [1]").unwrap_err().reason, Reason::NotAnObject);
    }

    #[test]
    fn a_line_notes_its_fields_as_written() {
        let l = one_line(
            r#"{"custom_id": "a", "method":"POST","url":"/v1/x","body":{"k":1},"params":[],"prompt":"p","recordId":"r","modelInput":{"m":2}}"#,
        );
        let raw = |j: Option<Json<'_>>| String::from_utf8_lossy(j.expect("noted").raw).into_owned();
        assert_eq!(raw(l.custom_id), "\"a\"");
        assert_eq!(raw(l.method), "\"POST\"");
        assert_eq!(raw(l.url), "\"/v1/x\"");
        assert_eq!(raw(l.body), "{\"k\":1}");
        assert_eq!(raw(l.params), "[]");
        assert_eq!(raw(l.prompt), "\"p\"");
        assert_eq!(raw(l.record_id), "\"r\"");
        assert_eq!(raw(l.model_input), "{\"m\":2}");
    }

    #[test]
    fn null_fields_are_present_but_not_given() {
        let l = one_line(r#"{"custom_id":null}"#);
        assert_eq!(l.custom_id.map(|j| j.kind), Some(Kind::Null));
        assert_eq!(l.custom_id.and_then(Json::given), None);
    }

    #[test]
    fn a_known_field_twice_is_refused() {
        let e = line(br#"{"body":null,"x":1,"body":{}}"#).unwrap_err();
        assert_eq!(e.reason, Reason::DuplicateField("body"));
    }

    #[test]
    fn a_bedrock_field_twice_is_refused() {
        let e = line(br#"{"recordId":"a","recordId":"b"}"#).unwrap_err();
        assert_eq!(e.reason, Reason::DuplicateField("recordId"));
        let e = line(br#"{"modelInput":{},"model\u0049nput":null}"#).unwrap_err();
        assert_eq!(e.reason, Reason::DuplicateField("modelInput"));
    }

    #[test]
    fn an_unknown_field_twice_is_accepted() {
        assert!(line(br#"{"x":1,"x":2}"#).is_ok());
    }

    #[test]
    fn url_must_be_a_string_or_null() {
        assert_eq!(
            line(br#"{"url":5}"#).unwrap_err().reason,
            Reason::NotAString("url")
        );
        assert!(line(br#"{"url":null}"#).is_ok());
        assert!(line(br#"{"url":"\/v1"}"#).is_ok());
        assert!(line(br#"{"url":"\udc00"}"#).is_err());
    }

    #[test]
    fn escaped_keys_are_matched_by_their_characters() {
        let l = one_line(r#"{"cust\u006fm_id":"a"}"#);
        assert!(l.custom_id.is_some());
    }

    #[test]
    fn a_key_with_a_lone_surrogate_is_refused() {
        assert_eq!(
            line(br#"{"\ud800":1}"#).unwrap_err().reason,
            Reason::KeyNotAString
        );
    }

    #[test]
    fn body_fields_are_noted_with_the_input_count() {
        let l = one_line(
            r#"{"body":{"model":"m","input":["a",[1,2],{"b":[3]}],"max_tokens":3,"x":[]}}"#,
        );
        let f = l.body_fields;
        assert!(f.strict);
        assert_eq!(f.model.map(|j| j.raw), Some(&b"\"m\""[..]));
        assert_eq!(f.input.map(|j| j.kind), Some(Kind::Array(3)));
        assert_eq!(f.max_tokens.map(|j| j.raw), Some(&b"3"[..]));
    }

    #[test]
    fn an_empty_input_array_counts_zero() {
        let l = one_line(r#"{"body":{"input":[ ]}}"#);
        assert_eq!(l.body_fields.input.map(|j| j.kind), Some(Kind::Array(0)));
    }

    #[test]
    fn params_fields_are_noted_apart_from_body_fields() {
        let l = one_line(r#"{"params":{"max_tokens":9}}"#);
        assert!(l.params_fields.max_tokens.is_some());
        assert!(l.body_fields.max_tokens.is_none());
    }

    #[test]
    fn a_body_field_twice_is_not_strict() {
        assert!(
            !one_line(r#"{"body":{"model":null,"model":"m"}}"#)
                .body_fields
                .strict
        );
    }

    #[test]
    fn a_model_that_is_no_string_is_not_strict() {
        assert!(!one_line(r#"{"body":{"model":5}}"#).body_fields.strict);
    }

    #[test]
    fn members_are_kept_in_order_up_to_the_limit() {
        let l = one_line(r#"{"b":1,"a":"x"}"#);
        let keys: Vec<_> = l.members().expect("few").iter().map(|m| m.key).collect();
        assert_eq!(keys, [&b"\"b\""[..], &b"\"a\""[..]]);
        let many = (0..=MAX_MEMBERS)
            .map(|n| format!("\"k{n}\":{n}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(one_line(&format!("{{{many}}}")).members().is_none());
    }

    #[test]
    fn strings_decode_only_when_escaped() {
        let l = one_line(r#"{"custom_id":"plain","prompt":"a\/b"}"#);
        let id = l.custom_id.and_then(Json::string).expect("string");
        assert!(matches!(id, Cow::Borrowed("plain")));
        assert_eq!(l.prompt.and_then(Json::string).as_deref(), Some("a/b"));
    }

    // What serde_json takes, to compare with.

    use crate::fields::{BodyFields as SerdeInner, LineFields as SerdeLine};

    fn ws() -> impl Strategy<Value = String> {
        prop_oneof![4 => Just(String::new()), 1 => "[ \t\r\n]{1,2}"]
    }

    fn string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            6 => "[a-z é東😀]{0,12}",
            1 => Just(r#"\""#.to_string()),
            1 => Just(r"\\".to_string()),
            1 => Just(r"\/".to_string()),
            1 => Just(r"\n\t\r\b\f".to_string()),
            1 => Just(r"\u00e9\u001F".to_string()),
            1 => Just(r"\ud83d\ude00".to_string()),
            1 => Just(r"\ud800".to_string()),
            1 => Just(r"\udc00".to_string()),
            1 => Just(r"\uD800\u0041".to_string()),
        ];
        prop::collection::vec(piece, 0..4).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    fn number() -> impl Strategy<Value = String> {
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?"
    }

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            number(),
            string(),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            let item = (ws(), inner, ws())
                .prop_map(|(a, v, b)| format!("{a}{v}{b}"))
                .boxed();
            prop_oneof![
                prop::collection::vec(item.clone(), 0..5)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((ws(), string(), ws(), item), 0..5).prop_map(|members| {
                    let members: Vec<_> = members
                        .into_iter()
                        .map(|(a, k, b, v)| format!("{a}{k}{b}:{v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    /// A line object whose keys are mostly the ones the validator knows (sometimes twice, or
    /// escaped), with values of every kind.
    fn line_text() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("\"custom_id\""),
            Just("\"method\""),
            Just("\"url\""),
            Just("\"body\""),
            Just("\"params\""),
            Just("\"prompt\""),
            Just("\"recordId\""),
            Just("\"modelInput\""),
            Just("\"record\\u0049d\""),
            Just("\"system\""),
            Just("\"ur\\u006c\""),
            Just("\"\\ud800\""),
        ];
        let field_value = prop_oneof![2 => value(), 1 => body_text()];
        prop::collection::vec((key, ws(), field_value), 0..6).prop_map(|members| {
            let members: Vec<_> = members
                .into_iter()
                .map(|(k, w, v)| format!("{k}:{w}{v}"))
                .collect();
            format!("{{{}}}", members.join(","))
        })
    }

    fn body_text() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("\"model\""),
            Just("\"input\""),
            Just("\"max_tokens\""),
            Just("\"messages\""),
            Just("\"mod\\u0065l\""),
            Just("\"\\udc00\""),
        ];
        prop::collection::vec((key, value()), 0..5).prop_map(|members| {
            let members: Vec<_> = members
                .into_iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            format!("{{{}}}", members.join(","))
        })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(prop::sample::Index, u8),
        Insert(prop::sample::Index, u8),
        Delete(prop::sample::Index),
        Truncate(prop::sample::Index),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let byte = prop_oneof![
            3 => prop::sample::select(b"\"\\,:[]{}0123456789-+.eEntfu \t\r\n\x00\x1f\x7f".to_vec()),
            1 => any::<u8>(),
        ];
        prop_oneof![
            3 => (any::<prop::sample::Index>(), byte.clone())
                .prop_map(|(i, b)| Mutation::Replace(i, b)),
            1 => (any::<prop::sample::Index>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
            1 => any::<prop::sample::Index>().prop_map(Mutation::Delete),
            1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        ]
    }

    fn mutate(text: &str, mutations: &[Mutation]) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        for m in mutations {
            if bytes.is_empty() {
                break;
            }
            match m {
                Mutation::Replace(i, b) => {
                    let i = i.index(bytes.len());
                    bytes[i] = *b;
                }
                Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
                Mutation::Delete(i) => {
                    bytes.remove(i.index(bytes.len()));
                }
                Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            }
        }
        bytes
    }

    fn serde_accepts(bytes: &[u8]) -> bool {
        serde_json::from_slice::<IgnoredAny>(bytes).is_ok()
    }

    /// Whether serde_json takes `bytes` as the validator's line (for UTF-8 objects).
    fn serde_takes_line(bytes: &[u8]) -> bool {
        serde_json::from_slice::<SerdeLine>(bytes).is_ok()
    }

    fn starts_an_object(bytes: &[u8]) -> bool {
        bytes
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            == Some(&b'{')
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn generated_values_are_accepted_like_serde_json(text in value()) {
            prop_assert!(serde_accepts(text.as_bytes()));
            prop_assert_eq!(document(text.as_bytes()), Ok(true));
        }

        #[test]
        fn mutated_values_are_accepted_exactly_when_serde_json_accepts_them(
            text in value(),
            mutations in prop::collection::vec(mutation(), 1..4),
        ) {
            let bytes = mutate(&text, &mutations);
            let ours = document(&bytes);
            let shown = String::from_utf8_lossy(&bytes);
            prop_assert_eq!(ours.is_ok(), serde_accepts(&bytes), "{:?}: {:?}", shown, ours);
        }

        #[test]
        fn the_utf8_note_of_an_accepted_text_is_right(
            text in value(),
            mutations in prop::collection::vec(mutation(), 0..3),
        ) {
            let bytes = mutate(&text, &mutations);
            if let Ok(utf8) = document(&bytes) {
                prop_assert_eq!(utf8, std::str::from_utf8(&bytes).is_ok());
            }
        }

        #[test]
        fn lines_are_taken_exactly_when_serde_json_takes_them(
            text in line_text(),
            mutations in prop::collection::vec(mutation(), 0..3),
        ) {
            // The validator sends only UTF-8 objects here (serde_json would also read a struct
            // from an array, and refuses raw values that are not UTF-8).
            let bytes = String::from_utf8_lossy(&mutate(&text, &mutations))
                .into_owned()
                .into_bytes();
            let ours = line(&bytes);
            if starts_an_object(&bytes) {
                let shown = String::from_utf8_lossy(&bytes);
                let serde = serde_takes_line(&bytes);
                prop_assert_eq!(ours.is_ok(), serde, "{:?}: {:?}", shown, ours.err());
            } else {
                prop_assert_eq!(ours.err().map(|e| e.reason), Some(Reason::NotAnObject));
            }
        }

        #[test]
        fn body_fields_are_strict_exactly_when_serde_json_takes_them(body in body_text()) {
            let text = format!("{{\"body\":{body}}}");
            let l = line(text.as_bytes()).expect("a line");
            let serde = serde_json::from_str::<SerdeInner>(&body);
            prop_assert_eq!(l.body_fields.strict, serde.is_ok(), "{}", body);
            if let Ok(serde) = serde {
                prop_assert_eq!(l.body_fields.model.and_then(Json::string), serde.model);
                let count = |raw: &RawValue| {
                    serde_json::from_str::<Vec<IgnoredAny>>(raw.get()).ok().map(|v| v.len())
                };
                let ours = match l.body_fields.input.map(|j| j.kind) {
                    Some(Kind::Array(n)) => Some(n),
                    _ => None,
                };
                prop_assert_eq!(ours, serde.input.and_then(count));
            }
        }

        #[test]
        fn strings_decode_like_serde_json(text in string()) {
            let line_text = format!("{{\"prompt\":{text}}}");
            let l = line(line_text.as_bytes()).expect("a line");
            let ours = l.prompt.and_then(Json::string);
            prop_assert_eq!(ours.map(Cow::into_owned), serde_json::from_str::<String>(&text).ok());
        }
    }
}
