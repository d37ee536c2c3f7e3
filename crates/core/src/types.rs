//! Plain data shared by input validation, the providers' dialects, planning and pricing. A
//! leaf: it imports nothing from the crate, so every other module may use it.

/// Why a line was rejected; the `code` of its errors.jsonl entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    InvalidJson,
    InvalidUtf8,
    NotAnObject,
    MissingField,
    InvalidField,
    DuplicateCustomId,
    LineTooLong,
    UnsupportedEndpoint,
    Untranslatable,
    UnknownRoute,
    InvalidDeadline,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidJson => "invalid_json",
            RejectCode::InvalidUtf8 => "invalid_utf8",
            RejectCode::NotAnObject => "not_an_object",
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::DuplicateCustomId => "duplicate_custom_id",
            RejectCode::LineTooLong => "line_too_long",
            RejectCode::UnsupportedEndpoint => "unsupported_endpoint",
            RejectCode::Untranslatable => "untranslatable",
            RejectCode::UnknownRoute => "unknown_route",
            RejectCode::InvalidDeadline => "invalid_deadline",
        }
    }
}

/// Why a line is refused: its code and message.
pub type Reject = (RejectCode, String);

/// One rejected line, as written to errors.jsonl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub custom_id: Option<String>,
    pub code: RejectCode,
    pub message: String,
}

impl Rejection {
    /// `{"line":…,"custom_id":…,"error":{"code":…,"message":…}}` plus a newline.
    pub fn to_json_line(&self) -> Vec<u8> {
        let v = serde_json::json!({
            "line": self.line,
            "custom_id": self.custom_id,
            "error": {"code": self.code.as_str(), "message": self.message},
        });
        let mut out = serde_json::to_vec(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Requests that may share a batch, as the provider's dialect groups them: the same endpoint,
/// and the same model where a batch takes one model only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    pub endpoint: String,
    /// Empty where a batch may mix models.
    pub model: String,
}

/// Why a request cannot be carried over: the field, and what about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    pub field: String,
    pub reason: String,
}

impl Untranslatable {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Untranslatable {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.field, self.reason)
    }
}

/// One model's list price, USD per million tokens, as a provider publishes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListPrice {
    pub model: &'static str,
    pub input: f64,
    pub output: f64,
    pub batch_input: f64,
    pub batch_output: f64,
    /// A cached input token's price as a share of the input price (1: no discount).
    pub cache_read: f64,
    /// A cache-writing input token's price as a share of the input price (1: no surcharge).
    pub cache_write: f64,
}

impl ListPrice {
    pub const fn new(
        model: &'static str,
        input: f64,
        output: f64,
        batch_input: f64,
        batch_output: f64,
    ) -> Self {
        ListPrice {
            model,
            input,
            output,
            batch_input,
            batch_output,
            cache_read: 1.0,
            cache_write: 1.0,
        }
    }

    /// With prompt-cache prices: a cache read costs `read` times the input price, a cache
    /// write `write` times (batch and synchronous alike).
    pub const fn cached(self, read: f64, write: f64) -> Self {
        ListPrice {
            cache_read: read,
            cache_write: write,
            ..self
        }
    }
}
