//! Prompt lines `{"prompt","custom_id"?,"system"?, …overrides}`, taken apart for a dialect to
//! build its request from (`Dialect::prompt_line` in the `provider` module), on two paths:
//! - the general path, [`PromptParts`]: the line as a serde_json map, less `custom_id`,
//!   `prompt` and `system`; what is left overrides the route's defaults;
//! - plain lines, [`Plain`], written byte by byte: the very bytes serde_json writes for the
//!   maps the general path builds, for lines that are plain — distinct keys without escapes,
//!   and values that are strings, numbers, booleans or null. Anything else is left to the
//!   general path (`plain` returns `None`).
//!
//! Fields keep the general path's order: the route's defaults first, then the line's other
//! fields overriding them in place or appended in the order the general path's map leaves them
//! (it takes `custom_id`, `prompt` and `system` out by swapping the last field into their place).

use crate::fields::{Reject, parse_map, reject};
use crate::route::Defaults;
use crate::scan::{self, Json, Kind, MAX_MEMBERS, Text};
use crate::types::RejectCode;
use serde_json::{Map, Value};

/// A prompt line taken apart (the general path).
pub struct PromptParts {
    pub prompt: String,
    /// The line's `system`, else the route's.
    pub system: Option<String>,
    /// Every other field: overrides of the request body.
    pub overrides: Map<String, Value>,
}

/// Splits a prompt line into the prompt, its system text and the override fields.
pub fn prompt_parts(line: &[u8], defaults: &Defaults) -> Result<PromptParts, Reject> {
    let mut map = parse_map(line);
    map.remove("custom_id");
    let prompt = match map.remove("prompt") {
        Some(Value::String(p)) => p,
        Some(other) => {
            return Err(reject(
                RejectCode::InvalidField,
                format!("`prompt` must be a string, found {other}"),
            ));
        }
        None => return Err(reject(RejectCode::MissingField, "missing field `prompt`")),
    };
    let system = match map.remove("system") {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(reject(
                RejectCode::InvalidField,
                format!("`system` must be a string, found {other}"),
            ));
        }
        None => defaults.system.clone(),
    };
    Ok(PromptParts {
        prompt,
        system,
        overrides: map,
    })
}

/// The route's defaults, written as JSON once.
#[derive(Debug)]
pub struct Written {
    /// The model, and its name for the group.
    pub(crate) model: Option<(Vec<u8>, String)>,
    pub(crate) max_tokens: Option<Vec<u8>>,
    pub(crate) temperature: Option<Vec<u8>>,
    pub(crate) system: Option<Vec<u8>>,
}

impl Written {
    pub fn new(defaults: &Defaults) -> Self {
        let json = |v: Value| serde_json::to_vec(&v).unwrap_or_default();
        Written {
            model: defaults
                .model
                .as_ref()
                .map(|m| (json(Value::from(m.as_str())), m.clone())),
            max_tokens: defaults.max_tokens.map(|t| json(Value::from(t))),
            temperature: defaults.temperature.map(|t| json(Value::from(t))),
            system: defaults.system.as_deref().map(|s| json(Value::from(s))),
        }
    }
}

/// A string to write: already as serde_json writes it, or as the line writes it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Str<'p> {
    Written(&'p [u8]),
    Line(Json<'p>),
}

#[derive(Debug, Clone)]
pub(crate) enum Piece<'p> {
    /// JSON exactly as serde_json writes it.
    Raw(&'p [u8]),
    Str(Str<'p>),
    /// A number serde_json writes otherwise than the line does (`0.0`, `1e2`, `-0`, …).
    Number(serde_json::Number),
    /// A messages array: a system message with the system text, if any, then the prompt as
    /// the user's message.
    Messages {
        system: Option<Str<'p>>,
        prompt: Json<'p>,
    },
}

/// A line's field as a piece, when it is plain.
fn piece(value: Json<'_>) -> Option<Piece<'_>> {
    match value.kind {
        Kind::Null | Kind::Bool => Some(Piece::Raw(value.raw)),
        Kind::Str(Text { paired: true, .. }) => Some(Piece::Str(Str::Line(value))),
        // Up to 19 digits is a u64, written back digit for digit.
        Kind::Number if value.raw.len() <= 19 && value.raw.iter().all(u8::is_ascii_digit) => {
            Some(Piece::Raw(value.raw))
        }
        // Out of range numbers fail here as they fail the general path's map.
        Kind::Number => serde_json::from_slice(value.raw).ok().map(Piece::Number),
        _ => None,
    }
}

/// The fields of the body (or params), in order.
pub(crate) struct Fields<'p> {
    items: [Option<(&'p [u8], Piece<'p>)>; 2 * MAX_MEMBERS],
    len: usize,
}

impl<'p> Fields<'p> {
    pub(crate) fn new() -> Self {
        Fields {
            items: [const { None }; 2 * MAX_MEMBERS],
            len: 0,
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Piece<'p>> {
        self.items[..self.len]
            .iter()
            .flatten()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p)
    }

    /// Sets `key` as a map does: in its place if it is there, else at the end.
    pub(crate) fn set(&mut self, key: &'p [u8], piece: Piece<'p>) {
        let len = self.len;
        if let Some(slot) = self.items[..len]
            .iter_mut()
            .flatten()
            .find(|(k, _)| *k == key)
        {
            slot.1 = piece;
        } else if let Some(slot) = self.items.get_mut(len) {
            *slot = Some((key, piece));
            self.len += 1;
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, (key, piece)) in self.items[..self.len].iter().flatten().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
            write_piece(out, piece);
        }
        out.push(b'}');
    }
}

/// A plain prompt line taken apart.
pub struct Plain<'p> {
    pub(crate) prompt: Json<'p>,
    pub(crate) system: Option<Json<'p>>,
    /// The other fields, in the order the general path's map leaves them.
    pub(crate) overrides: [Option<(&'p [u8], Piece<'p>)>; MAX_MEMBERS],
    /// About how long the line is: what its members span.
    pub(crate) bytes: usize,
}

impl<'p> Plain<'p> {
    /// The system text to write: the line's, else the route's.
    pub(crate) fn system<'s>(&'s self, written: &'s Written) -> Option<Str<'s>> {
        match self.system {
            Some(s) => Some(Str::Line(s)),
            None => written.system.as_deref().map(Str::Written),
        }
    }

    /// Sets the line's other fields over `fields`.
    pub(crate) fn override_in<'s>(&'s self, fields: &mut Fields<'s>) {
        for (key, piece) in self.overrides.iter().flatten() {
            fields.set(key, piece.clone());
        }
    }
}

/// The line taken apart, when it is plain.
pub fn plain<'p>(line: &scan::Line<'p>) -> Option<Plain<'p>> {
    let members = line.members()?;
    let mut keys: [&[u8]; MAX_MEMBERS] = [b""; MAX_MEMBERS];
    for (i, m) in members.iter().enumerate() {
        let key = m.plain_key()?;
        if keys[..i].contains(&key) {
            return None;
        }
        keys[i] = key;
    }
    // The map's order, as `swap_remove` leaves it.
    let mut order: [usize; MAX_MEMBERS] = std::array::from_fn(|i| i);
    let mut len = members.len();
    let mut take = |name: &[u8]| {
        let at = order[..len].iter().position(|&i| keys[i] == name)?;
        let member = members[order[at]];
        order[at] = order[len - 1];
        len -= 1;
        Some(member.value)
    };
    take(b"custom_id");
    let prompt = take(b"prompt").filter(|p| is_string(*p))?;
    let system = match take(b"system") {
        Some(s) if is_string(s) => Some(s),
        Some(_) => return None,
        None => None,
    };
    let mut overrides = [const { None }; MAX_MEMBERS];
    for (slot, &i) in overrides.iter_mut().zip(&order[..len]) {
        *slot = Some((keys[i], piece(members[i].value)?));
    }
    Some(Plain {
        prompt,
        system,
        overrides,
        bytes: line_bytes(line),
    })
}

fn is_string(value: Json<'_>) -> bool {
    matches!(value.kind, Kind::Str(Text { paired: true, .. }))
}

/// About how long the line is: what its members span.
fn line_bytes(line: &scan::Line<'_>) -> usize {
    line.members()
        .unwrap_or_default()
        .iter()
        .map(|m| m.key.len() + m.value.raw.len() + 2)
        .sum()
}

fn write_piece(out: &mut Vec<u8>, piece: &Piece<'_>) {
    match piece {
        Piece::Raw(raw) => out.extend_from_slice(raw),
        Piece::Str(s) => write_either(out, *s),
        Piece::Number(n) => {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Piece::Messages { system, prompt } => {
            out.push(b'[');
            if let Some(s) = system {
                out.extend_from_slice(br#"{"role":"system","content":"#);
                write_either(out, *s);
                out.extend_from_slice(b"},");
            }
            out.extend_from_slice(br#"{"role":"user","content":"#);
            write_text(out, *prompt);
            out.extend_from_slice(b"}]");
        }
    }
}

fn write_either(out: &mut Vec<u8>, s: Str<'_>) {
    match s {
        Str::Written(raw) => out.extend_from_slice(raw),
        Str::Line(value) => write_text(out, value),
    }
}

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes a (paired) string of the line as serde_json writes the string it decodes to: without
/// escapes it is those very bytes; escapes are rewritten in serde_json's form as they come.
fn write_text(out: &mut Vec<u8>, value: Json<'_>) {
    let raw = value.raw;
    if !matches!(value.kind, Kind::Str(Text { escaped: true, .. })) {
        out.extend_from_slice(raw);
        return;
    }
    let body = &raw[1..raw.len() - 1];
    out.push(b'"');
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'\\', &body[i..]) {
        out.extend_from_slice(&body[i..i + at]);
        i += at;
        match body.get(i + 1) {
            Some(b'/') => {
                out.push(b'/');
                i += 2;
            }
            Some(b'u') => {
                let (c, len) = unicode_escape(&body[i..]);
                write_char(out, c);
                i += len;
            }
            // `\"`, `\\`, `\b`, `\f`, `\n`, `\r` and `\t` are serde_json's own.
            _ => {
                out.extend_from_slice(&body[i..(i + 2).min(body.len())]);
                i += 2;
            }
        }
    }
    out.extend_from_slice(body.get(i..).unwrap_or_default());
    out.push(b'"');
}

/// The character a `\u` escape (or a surrogate pair of them) at the start of `b` stands for,
/// and how many bytes it takes.
fn unicode_escape(b: &[u8]) -> (char, usize) {
    let unit = |at: usize| {
        b.get(at..at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    let Some(high) = unit(2) else {
        return (char::REPLACEMENT_CHARACTER, b.len());
    };
    if (0xD800..0xDC00).contains(&high)
        && b.get(6..8) == Some(b"\\u")
        && let Some(low @ 0xDC00..0xE000) = unit(8)
    {
        let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        return (char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER), 12);
    }
    (
        char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER),
        6,
    )
}

/// A character as serde_json writes it in a string.
fn write_char(out: &mut Vec<u8>, c: char) {
    match c {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '\u{8}' => out.extend_from_slice(b"\\b"),
        '\u{c}' => out.extend_from_slice(b"\\f"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\t' => out.extend_from_slice(b"\\t"),
        '\0'..='\u{1f}' => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let b = c as u8;
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xF) as usize]);
        }
        _ => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
    }
}
