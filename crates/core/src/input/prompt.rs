//! Prompt lines written byte by byte: the very bytes serde_json writes for the maps the
//! validator's general path builds ([`super::Validator::prompt_parts`] and after), for the lines
//! that are plain — distinct keys without escapes, and values that are strings, numbers,
//! booleans or null. Anything else returns `None`, for the general path to build (or refuse).
//!
//! Fields keep the general path's order: the route's defaults first, then the line's other
//! fields overriding them in place or appended in the order the general path's map leaves them
//! (it takes `custom_id`, `prompt` and `system` out by swapping the last field into their place).

use super::{Built, CHAT_COMPLETIONS, EMBEDDINGS, Group, anthropic_group};
use crate::config::Defaults;
use crate::scan::{self, Json, Kind, MAX_MEMBERS, Text};
use serde_json::Value;
use std::borrow::Cow;

/// The route's defaults, written as JSON once.
#[derive(Debug)]
pub(super) struct Written {
    /// The model, and its name for the group.
    model: Option<(Vec<u8>, String)>,
    max_tokens: Option<Vec<u8>>,
    temperature: Option<Vec<u8>>,
    system: Option<Vec<u8>>,
    /// What prompt lines become on OpenAI routes: chat (`true`) or embeddings (`false`); `None`
    /// for an endpoint they cannot become, which the general path refuses.
    chat: Option<bool>,
}

impl Written {
    pub(super) fn new(defaults: &Defaults) -> Self {
        let json = |v: Value| serde_json::to_vec(&v).unwrap_or_default();
        let endpoint = defaults.endpoint.as_deref().unwrap_or(CHAT_COMPLETIONS);
        Written {
            model: defaults
                .model
                .as_ref()
                .map(|m| (json(Value::from(m.as_str())), m.clone())),
            max_tokens: defaults.max_tokens.map(|t| json(Value::from(t))),
            temperature: defaults.temperature.map(|t| json(Value::from(t))),
            system: defaults.system.as_deref().map(|s| json(Value::from(s))),
            chat: match endpoint {
                CHAT_COMPLETIONS => Some(true),
                EMBEDDINGS => Some(false),
                _ => None,
            },
        }
    }
}

/// A string to write: already as serde_json writes it, or as the line writes it.
#[derive(Debug, Clone, Copy)]
enum Str<'p> {
    Written(&'p [u8]),
    Line(Json<'p>),
}

#[derive(Debug, Clone)]
enum Piece<'p> {
    /// JSON exactly as serde_json writes it.
    Raw(&'p [u8]),
    Str(Str<'p>),
    /// A number serde_json writes otherwise than the line does (`0.0`, `1e2`, `-0`, …).
    Number(serde_json::Number),
    /// Chat messages: the system text, if any, then the prompt.
    Chat {
        system: Option<Str<'p>>,
        prompt: Json<'p>,
    },
    /// Anthropic messages: the prompt.
    User(Json<'p>),
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
struct Fields<'p> {
    items: [Option<(&'p [u8], Piece<'p>)>; 2 * MAX_MEMBERS],
    len: usize,
}

impl<'p> Fields<'p> {
    fn new() -> Self {
        Fields {
            items: [const { None }; 2 * MAX_MEMBERS],
            len: 0,
        }
    }

    fn get(&self, key: &[u8]) -> Option<&Piece<'p>> {
        self.items[..self.len]
            .iter()
            .flatten()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p)
    }

    /// Sets `key` as a map does: in its place if it is there, else at the end.
    fn set(&mut self, key: &'p [u8], piece: Piece<'p>) {
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

    fn write(&self, out: &mut Vec<u8>) {
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
struct Plain<'p> {
    prompt: Json<'p>,
    system: Option<Json<'p>>,
    /// The other fields, in the order the general path's map leaves them.
    overrides: [Option<(&'p [u8], Piece<'p>)>; MAX_MEMBERS],
}

fn plain<'p>(line: &scan::Line<'p>) -> Option<Plain<'p>> {
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
    })
}

fn is_string(value: Json<'_>) -> bool {
    matches!(value.kind, Kind::Str(Text { paired: true, .. }))
}

/// The request for a plain prompt line on an OpenAI route.
pub(super) fn openai<'a>(written: &Written, line: &scan::Line<'_>, id: &str) -> Option<Built<'a>> {
    let chat = written.chat?;
    let parts = plain(line)?;
    let mut body = Fields::new();
    if let Some((model, _)) = &written.model {
        body.set(b"model", Piece::Str(Str::Written(model)));
    }
    if chat {
        let system = match parts.system {
            Some(s) => Some(Str::Line(s)),
            None => written.system.as_deref().map(Str::Written),
        };
        body.set(
            b"messages",
            Piece::Chat {
                system,
                prompt: parts.prompt,
            },
        );
        if let Some(t) = &written.max_tokens {
            body.set(b"max_tokens", Piece::Raw(t));
        }
        if let Some(t) = &written.temperature {
            body.set(b"temperature", Piece::Raw(t));
        }
    } else {
        body.set(b"input", Piece::Str(Str::Line(parts.prompt)));
    }
    for (key, piece) in parts.overrides.into_iter().flatten() {
        body.set(key, piece);
    }
    let model = match body.get(b"model")? {
        Piece::Str(Str::Written(_)) => written.model.as_ref()?.1.clone(),
        Piece::Str(Str::Line(m)) => m.string()?.into_owned(),
        _ => return None,
    };
    let endpoint = if chat { CHAT_COMPLETIONS } else { EMBEDDINGS };
    let mut out = Vec::with_capacity(line_bytes(line) + 128);
    out.extend_from_slice(b"{\"custom_id\":");
    write_str(&mut out, id);
    out.extend_from_slice(b",\"method\":\"POST\",\"url\":");
    write_str(&mut out, endpoint);
    out.extend_from_slice(b",\"body\":");
    body.write(&mut out);
    out.push(b'}');
    Some((
        Group {
            endpoint: endpoint.to_string(),
            model,
        },
        Cow::Owned(out),
        1,
    ))
}

/// The request for a plain prompt line on an Anthropic route.
pub(super) fn anthropic<'a>(
    written: &Written,
    line: &scan::Line<'_>,
    id: &str,
) -> Option<Built<'a>> {
    let parts = plain(line)?;
    let mut params = Fields::new();
    if let Some((model, _)) = &written.model {
        params.set(b"model", Piece::Str(Str::Written(model)));
    }
    if let Some(t) = &written.max_tokens {
        params.set(b"max_tokens", Piece::Raw(t));
    }
    if let Some(t) = &written.temperature {
        params.set(b"temperature", Piece::Raw(t));
    }
    let system = match parts.system {
        Some(s) => Some(Str::Line(s)),
        None => written.system.as_deref().map(Str::Written),
    };
    if let Some(s) = system {
        params.set(b"system", Piece::Str(s));
    }
    params.set(b"messages", Piece::User(parts.prompt));
    for (key, piece) in parts.overrides.into_iter().flatten() {
        params.set(key, piece);
    }
    params.get(b"model")?;
    params.get(b"max_tokens")?;
    let mut out = Vec::with_capacity(line_bytes(line) + 128);
    out.extend_from_slice(b"{\"custom_id\":");
    write_str(&mut out, id);
    out.extend_from_slice(b",\"params\":");
    params.write(&mut out);
    out.push(b'}');
    Some((anthropic_group(), Cow::Owned(out), 1))
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
        Piece::Chat { system, prompt } => {
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
        Piece::User(prompt) => {
            out.extend_from_slice(br#"[{"role":"user","content":"#);
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

fn write_str(out: &mut Vec<u8>, s: &str) {
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

#[cfg(test)]
mod tests {
    use super::super::{Outcome, Validator, reference};
    use super::*;
    use crate::config::{Config, Route};
    use proptest::prelude::*;

    fn routes() -> Vec<Route> {
        let config = Config::builtin(&|_| None);
        let all = Defaults {
            model: Some("m-default".into()),
            max_tokens: Some(100),
            system: Some("Sys \"q\"\n\u{1}é".into()),
            temperature: Some(0.7),
            endpoint: None,
        };
        let mut routes = Vec::new();
        for name in ["sandbox", "sandbox-anthropic"] {
            let route = config.route(name).unwrap().clone();
            routes.push(route.clone());
            routes.push(Route {
                defaults: all.clone(),
                ..route.clone()
            });
            routes.push(Route {
                defaults: Defaults {
                    endpoint: Some(EMBEDDINGS.into()),
                    ..all.clone()
                },
                ..route
            });
        }
        routes
    }

    /// A JSON string with any mix of characters and escapes serde_json reads.
    fn string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => "[a-zA-Z0-9 .,é東😀/]{0,10}",
            1 => prop::sample::select(vec![
                r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t", r"\u0000", r"\u001F",
                r"\u0022", r"\u005C", r"\u002f", r"\u00E9", r"\u7f16", r"\ud83d\ude00", r"\u007f",
            ])
            .prop_map(str::to_string),
        ];
        prop::collection::vec(piece, 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            string(),
            "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            prop::sample::select(vec!["true", "false", "null"]).prop_map(str::to_string),
        ]
    }

    /// A plain prompt line: `prompt`, maybe `custom_id` and `system`, and overrides (some of
    /// the route's own fields among them), in any order.
    fn plain_line() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "model",
            "max_tokens",
            "temperature",
            "input",
            "n",
            "user",
            "top_p",
            "method",
        ]);
        let overrides = prop::collection::btree_map(key, value(), 0..5);
        (
            string(),
            prop::option::of("[a-z0-9_-]{1,8}|[^\"\\\\\\x00-\\x1f]{1,70}"),
            prop::option::of(string()),
            overrides,
        )
            .prop_flat_map(|(prompt, id, system, overrides)| {
                let mut fields = vec![format!("\"prompt\":{prompt}")];
                fields.extend(id.map(|v| format!("\"custom_id\":\"{v}\"")));
                fields.extend(system.map(|v| format!("\"system\":{v}")));
                fields.extend(overrides.into_iter().map(|(k, v)| format!("\"{k}\":{v}")));
                Just(fields).prop_shuffle()
            })
            .prop_map(|fields| format!("{{{}}}", fields.join(",")))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn plain_prompt_lines_are_written_as_the_general_path_writes_them(
            text in plain_line(),
            route in prop::sample::select(routes()),
        ) {
            let now = Validator::new(&route).check(1, text.as_bytes());
            let before = reference::Validator::new(&route).check(1, text.as_bytes());
            prop_assert_eq!(&now, &before);
            if let Outcome::Accepted(_) = before {
                let fields = scan::line(text.as_bytes()).expect("a line");
                let written = Written::new(&route.defaults);
                let fast = match route.wire {
                    crate::config::Wire::Openai => openai(&written, &fields, "id"),
                    crate::config::Wire::Anthropic => anthropic(&written, &fields, "id"),
                };
                prop_assert!(fast.is_some(), "left to the general path");
            }
        }
    }
}
