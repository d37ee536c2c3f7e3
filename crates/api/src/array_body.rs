//! A JSON request body `{"<array field>": [e1, e2, …], other fields…}` read as it streams: each
//! element of the array field comes out as soon as it is complete (one line's worth of bytes,
//! whitespace outside strings made single spaces), so that a body of any size is written to the
//! bucket without being held whole. The other top-level fields (small: `metadata`, `route`) are
//! kept and parsed at the end.
//!
//! What it checks: the body is one JSON object; brackets match; the array field is there once
//! and is an array; no element passes [`MAX_ELEMENT`] bytes and no other field
//! [`MAX_FIELD`]; strings hold no raw line break. Each element's own JSON is checked later, by
//! the engine's validation of the line it becomes (a bad one ends in errors.jsonl).

use serde_json::{Map, Value};

/// The largest element: above any provider's largest request line.
pub const MAX_ELEMENT: usize = 32 << 20;
/// The largest other top-level field.
pub const MAX_FIELD: usize = 64 << 10;

/// Why a body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("`{0}` must be an array")]
    NotAnArray(&'static str),
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("`{0}` is given twice")]
    Twice(&'static str),
    #[error("element {index} of `{field}` is larger than {MAX_ELEMENT} bytes")]
    ElementTooLarge { field: &'static str, index: u64 },
    #[error("field `{0}` is larger than {MAX_FIELD} bytes")]
    FieldTooLarge(String),
    #[error("a string holds a raw line break")]
    RawLineBreak,
    #[error("field `{field}` is not valid JSON: {reason}")]
    BadField { field: String, reason: String },
}

/// The reader of one body; feed it with [`ArrayBody::push`], end it with [`ArrayBody::finish`].
#[derive(Debug)]
pub struct ArrayBody {
    field: &'static str,
    /// Open brackets, outermost first.
    stack: Vec<u8>,
    in_string: bool,
    escaped: bool,
    /// At the top level, the next string is a key.
    expect_key: bool,
    key: Option<Vec<u8>>,
    current: Option<String>,
    in_array: bool,
    seen_array: bool,
    element: Option<Vec<u8>>,
    element_scalar: bool,
    elements: u64,
    value: Option<Vec<u8>>,
    value_scalar: bool,
    others: Map<String, Value>,
    done: bool,
}

impl ArrayBody {
    /// A reader of a body whose array field is `field`.
    pub fn new(field: &'static str) -> Self {
        ArrayBody {
            field,
            stack: Vec::new(),
            in_string: false,
            escaped: false,
            expect_key: false,
            key: None,
            current: None,
            in_array: false,
            seen_array: false,
            element: None,
            element_scalar: false,
            elements: 0,
            value: None,
            value_scalar: false,
            others: Map::new(),
            done: false,
        }
    }

    /// Reads the next bytes of the body; the elements completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, BodyError> {
        let mut out = Vec::new();
        for &b in bytes {
            self.byte(b, &mut out)?;
        }
        Ok(out)
    }

    /// Ends the body: its number of elements and its other top-level fields.
    pub fn finish(self) -> Result<(u64, Map<String, Value>), BodyError> {
        if !self.done {
            return Err(BodyError::NotAnObject("it ends before its last '}'".into()));
        }
        if !self.seen_array {
            return Err(BodyError::Missing(self.field));
        }
        Ok((self.elements, self.others))
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Vec<u8>>) -> Result<(), BodyError> {
        if self.in_string {
            if b == b'\n' || b == b'\r' {
                return Err(BodyError::RawLineBreak);
            }
            self.append(b)?;
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if let Some(key) = self.key.take() {
                    let key: String =
                        serde_json::from_slice(&key).map_err(|e| BodyError::BadField {
                            field: String::from_utf8_lossy(&key).into_owned(),
                            reason: e.to_string(),
                        })?;
                    self.current = Some(key);
                }
            }
            return Ok(());
        }
        if self.done {
            return match b {
                b' ' | b'\t' | b'\n' | b'\r' => Ok(()),
                _ => Err(BodyError::NotAnObject(
                    "something follows its last '}'".into(),
                )),
            };
        }
        let depth = self.stack.len();
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                if self.element.is_some() || self.value.is_some() {
                    self.append(b' ')?;
                }
            }
            b'"' if depth == 1 && self.expect_key => {
                self.in_string = true;
                self.expect_key = false;
                self.key = Some(vec![b'"']);
            }
            b'{' | b'[' => {
                match depth {
                    0 if b == b'{' => self.expect_key = true,
                    0 => return Err(BodyError::NotAnObject("it starts with '['".into())),
                    1 if self.is_field() => {
                        if b != b'[' || self.seen_array {
                            return Err(if self.seen_array {
                                BodyError::Twice(self.field)
                            } else {
                                BodyError::NotAnArray(self.field)
                            });
                        }
                        self.in_array = true;
                    }
                    1 => {
                        self.value = Some(vec![b]);
                        self.value_scalar = false;
                    }
                    2 if self.in_array => {
                        self.element = Some(vec![b]);
                        self.element_scalar = false;
                    }
                    _ => self.append(b)?,
                }
                self.stack.push(b);
            }
            b'}' | b']' => {
                let open = if b == b'}' { b'{' } else { b'[' };
                if depth == 1 && b == b'}' {
                    self.end_value()?;
                }
                if depth == 2 && self.in_array && b == b']' {
                    self.end_element(out);
                }
                if self.stack.pop() != Some(open) {
                    return Err(BodyError::NotAnObject("its brackets do not match".into()));
                }
                match depth - 1 {
                    0 => self.done = true,
                    1 if self.in_array => {
                        self.in_array = false;
                        self.seen_array = true;
                    }
                    1 => {
                        self.append(b)?;
                        self.end_value()?;
                    }
                    2 if self.in_array => {
                        self.append(b)?;
                        self.end_element(out);
                    }
                    _ => self.append(b)?,
                }
            }
            b',' if depth == 1 => {
                self.end_value()?;
                self.expect_key = true;
            }
            b',' if depth == 2 && self.in_array => self.end_element(out),
            b':' if depth == 1 => {}
            _ => {
                if depth == 0 {
                    return Err(BodyError::NotAnObject("it does not start with '{'".into()));
                }
                if depth == 1 && self.value.is_none() {
                    if self.is_field() {
                        return Err(BodyError::NotAnArray(self.field));
                    }
                    self.value = Some(Vec::new());
                    self.value_scalar = true;
                }
                if depth == 2 && self.in_array && self.element.is_none() {
                    self.element = Some(Vec::new());
                    self.element_scalar = true;
                }
                if b == b'"' {
                    self.in_string = true;
                }
                self.append(b)?;
            }
        }
        Ok(())
    }

    fn is_field(&self) -> bool {
        self.current.as_deref() == Some(self.field)
    }

    /// Adds a byte to the element or field being read.
    fn append(&mut self, b: u8) -> Result<(), BodyError> {
        if let Some(key) = &mut self.key {
            key.push(b);
        } else if let Some(element) = &mut self.element {
            if element.len() >= MAX_ELEMENT {
                return Err(BodyError::ElementTooLarge {
                    field: self.field,
                    index: self.elements,
                });
            }
            element.push(b);
        } else if let Some(value) = &mut self.value {
            if value.len() >= MAX_FIELD {
                return Err(BodyError::FieldTooLarge(
                    self.current.clone().unwrap_or_default(),
                ));
            }
            value.push(b);
        }
        Ok(())
    }

    /// Ends the element being read (a scalar's end is the next ',' or ']').
    fn end_element(&mut self, out: &mut Vec<Vec<u8>>) {
        if let Some(mut element) = self.element.take() {
            if self.element_scalar {
                element.truncate(element.trim_ascii_end().len());
            }
            out.push(element);
            self.elements += 1;
        }
    }

    /// Ends the top-level field being read and keeps it.
    fn end_value(&mut self) -> Result<(), BodyError> {
        let Some(value) = self.value.take() else {
            return Ok(());
        };
        let name = self.current.clone().unwrap_or_default();
        let parsed: Value =
            serde_json::from_slice(value.trim_ascii()).map_err(|e| BodyError::BadField {
                field: name.clone(),
                reason: e.to_string(),
            })?;
        self.others.insert(name, parsed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(body: &[u8], piece: usize) -> Result<(Vec<String>, Map<String, Value>), BodyError> {
        let mut reader = ArrayBody::new("requests");
        let mut elements = Vec::new();
        for chunk in body.chunks(piece) {
            for e in reader.push(chunk)? {
                elements.push(String::from_utf8_lossy(&e).into_owned());
            }
        }
        let (count, others) = reader.finish()?;
        assert_eq!(count as usize, elements.len());
        Ok((elements, others))
    }

    #[test]
    fn elements_come_out_whole_whatever_the_pieces() -> Result<(), BodyError> {
        let body = br#"{"metadata": {"a": "b,]}"}, "requests": [
            {"custom_id": "x", "params": {"q": "a \"quoted\" ]}, text"}},
            "plain", 42 ,
            {"custom_id": "y"}
        ], "n": 3}"#;
        for piece in [1, 2, 7, body.len()] {
            let (elements, others) = read(body, piece)?;
            assert_eq!(elements.len(), 4, "piece {piece}");
            let first: Value = serde_json::from_str(&elements[0]).unwrap_or_default();
            assert_eq!(first["params"]["q"], "a \"quoted\" ]}, text");
            assert_eq!(elements[1], "\"plain\"");
            assert_eq!(elements[2], "42");
            assert_eq!(others["metadata"], json!({"a": "b,]}"}));
            assert_eq!(others["n"], json!(3));
        }
        Ok(())
    }

    #[test]
    fn an_element_is_one_line() -> Result<(), BodyError> {
        let (elements, _) = read(b"{\"requests\":[{\n\"a\":\n1}]}", 3)?;
        assert_eq!(elements, ["{ \"a\": 1}"]);
        Ok(())
    }

    #[test]
    fn bodies_of_the_wrong_shape_are_refused() {
        for (body, want) in [
            (&b"[1]"[..], "NotAnObject"),
            (b"{\"requests\": {}}", "NotAnArray"),
            (b"{\"requests\": 3}", "NotAnArray"),
            (b"{\"other\": []}", "Missing"),
            (b"{\"requests\": [1], \"requests\": [2]}", "Twice"),
            (b"{\"requests\": [1}", "NotAnObject"),
            (b"{\"requests\": [1]", "NotAnObject"),
            (b"{\"requests\": [1]} x", "NotAnObject"),
            (b"{\"requests\": [\"a\nb\"]}", "RawLineBreak"),
        ] {
            let got = read(body, 4).map(|_| ()).unwrap_err();
            assert!(
                format!("{got:?}").starts_with(want),
                "{}: {got:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
