//! Maps aws-sdk-s3 errors onto the port's [`StoreError`], the same way for every operation.
//!
//! - 404 (`NoSuchKey`, `NotFound`) → [`StoreError::NotFound`] where the operation names an
//!   object; `NoSuchBucket`, `NoSuchUpload` and 404s of other operations are non-retryable
//!   backend errors (a missing bucket is a configuration error, not a missing object; except
//!   on `HeadObject`, whose 404 has no body to tell the two apart);
//! - 412 `PreconditionFailed` → [`StoreError::AlreadyExists`] for [`PutMode::Create`],
//!   [`StoreError::Precondition`] for [`PutMode::Update`];
//! - 409 `ConditionalRequestConflict` (a concurrent conditional write), throttling (503
//!   `SlowDown`, 429), other 5xx, `RequestTimeout`, timeouts, dispatch and I/O failures and
//!   unparseable responses → retryable [`StoreError::Backend`];
//! - anything else → non-retryable [`StoreError::Backend`] naming the operation and the object.
//!
//! Messages carry the operation, `s3://bucket/key`, the HTTP status, the S3 error code and its
//! message; never a request, a header or a credential.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use batchdrop_core::store::{PutMode, StoreError};

/// What the failed request was about, to decide what a status means.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// The S3 operation name, for messages (`PutObject`).
    pub operation: &'static str,
    pub bucket: &'a str,
    /// The object key, or the prefix for a listing.
    pub key: &'a str,
    /// Whether a 404 means "this object does not exist" (head, get, conditional put).
    pub names_object: bool,
    /// The conditional write this request carries, if any.
    pub mode: Option<&'a PutMode>,
}

/// The parts of an SDK error the mapping looks at.
#[derive(Debug, Default)]
struct Facts {
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    /// Timeout, dispatch failure or an unparseable response: the request may not have reached S3.
    transport: bool,
    /// A failure caused by the caller's configuration (bad endpoint URL, ...).
    user: bool,
}

const RETRYABLE_CODES: &[&str] = &[
    "ConditionalRequestConflict",
    "OperationAborted",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
];

impl Request<'_> {
    /// Converts a failed SDK call into the port's error.
    pub(crate) fn error<E>(&self, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let facts = facts_of(&err);
        let detail = match (&facts.status, &facts.code) {
            (Some(status), code) if !facts.transport => format!(
                "HTTP {status} {}: {}",
                code.as_deref().unwrap_or("(no error code)"),
                facts.message.as_deref().unwrap_or("(no message)")
            ),
            _ => DisplayErrorContext(&err).to_string(),
        };
        self.decide(&facts, detail, Some(Box::new(err)))
    }

    /// A request the store refuses to make as asked (not retryable).
    pub(crate) fn invalid_argument(&self, what: &str) -> StoreError {
        self.backend(format!("invalid request: {what}"), false, None)
    }

    /// A backend error without an SDK error underneath (a response missing a field we need).
    pub(crate) fn invalid_response(&self, what: &str) -> StoreError {
        self.backend(format!("unexpected response: {what}"), false, None)
    }

    fn decide(
        &self,
        facts: &Facts,
        detail: String,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        let key = self.key.to_string();
        let code = facts.code.as_deref().unwrap_or("");
        if facts.transport {
            return self.backend(detail, !facts.user, source);
        }
        if code == "NoSuchBucket" {
            return self.backend(format!("bucket does not exist: {detail}"), false, source);
        }
        if facts.status == Some(404) || code == "NoSuchKey" || code == "NotFound" {
            return if self.names_object && code != "NoSuchUpload" {
                StoreError::NotFound { key }
            } else {
                self.backend(detail, false, source)
            };
        }
        if facts.status == Some(412) || code == "PreconditionFailed" {
            return match self.mode {
                Some(PutMode::Create) => StoreError::AlreadyExists { key },
                Some(PutMode::Update(_)) => StoreError::Precondition { key },
                _ => self.backend(detail, false, source),
            };
        }
        let retryable =
            RETRYABLE_CODES.contains(&code) || matches!(facts.status, Some(429) | Some(500..=599));
        self.backend(detail, retryable, source)
    }

    fn backend(
        &self,
        detail: String,
        retryable: bool,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Backend {
            key: self.key.to_string(),
            message: format!(
                "{} on s3://{}/{} failed: {detail}",
                self.operation, self.bucket, self.key
            ),
            retryable,
            source,
        }
    }
}

fn facts_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Facts {
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::ServiceError(_) => Facts {
            status,
            code: err.code().map(str::to_string),
            message: err.message().map(str::to_string),
            ..Facts::default()
        },
        SdkError::DispatchFailure(failure) => Facts {
            transport: true,
            user: failure.as_connector_error().is_some_and(|c| c.is_user()),
            ..Facts::default()
        },
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Facts {
            status,
            transport: true,
            ..Facts::default()
        },
        // Not sent: the request could not be built (credentials, endpoint, parameters).
        SdkError::ConstructionFailure(_) => Facts {
            transport: true,
            user: true,
            ..Facts::default()
        },
        _ => Facts {
            status,
            ..Facts::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::operation::put_object::PutObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    fn service_error(status: u16, code: &str) -> SdkError<PutObjectError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("server says no")
            .build();
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        SdkError::service_error(PutObjectError::generic(meta), raw)
    }

    fn put(mode: &PutMode) -> Request<'_> {
        Request {
            operation: "PutObject",
            bucket: "b",
            key: "jobs/j1/manifest.json",
            names_object: true,
            mode: Some(mode),
        }
    }

    fn retryable_backend(err: &StoreError) -> Option<bool> {
        match err {
            StoreError::Backend { retryable, .. } => Some(*retryable),
            _ => None,
        }
    }

    #[test]
    fn precondition_failed_on_create_is_already_exists() {
        let err = put(&PutMode::Create).error(service_error(412, "PreconditionFailed"));
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    }

    #[test]
    fn precondition_failed_on_update_is_precondition() {
        let mode = PutMode::Update("abc".into());
        let err = put(&mode).error(service_error(412, "PreconditionFailed"));
        assert!(matches!(err, StoreError::Precondition { .. }), "{err:?}");
    }

    #[test]
    fn conditional_request_conflict_is_retryable() {
        let err = put(&PutMode::Create).error(service_error(409, "ConditionalRequestConflict"));
        assert_eq!(retryable_backend(&err), Some(true), "{err:?}");
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        for (status, code) in [
            (503, "SlowDown"),
            (429, "TooManyRequests"),
            (500, "Whatever"),
        ] {
            let err = put(&PutMode::Overwrite).error(service_error(status, code));
            assert_eq!(
                retryable_backend(&err),
                Some(true),
                "{status} {code}: {err:?}"
            );
        }
    }

    #[test]
    fn access_denied_is_not_retryable_and_names_the_object() {
        let err = put(&PutMode::Overwrite).error(service_error(403, "AccessDenied"));
        assert_eq!(retryable_backend(&err), Some(false));
        let text = err.to_string();
        assert!(text.contains("s3://b/jobs/j1/manifest.json"), "{text}");
        assert!(text.contains("403 AccessDenied"), "{text}");
        assert!(text.contains("server says no"), "{text}");
    }

    #[test]
    fn missing_key_is_not_found_but_missing_bucket_is_not() {
        let get = Request {
            operation: "GetObject",
            bucket: "b",
            key: "k",
            names_object: true,
            mode: None,
        };
        let missing = |code: &str| {
            let meta = ErrorMetadata::builder().code(code).build();
            let raw = HttpResponse::new(404.try_into().expect("status"), SdkBody::empty());
            get.error(SdkError::service_error(GetObjectError::generic(meta), raw))
        };
        assert!(missing("NoSuchKey").is_not_found());
        let bucket = missing("NoSuchBucket");
        assert_eq!(retryable_backend(&bucket), Some(false), "{bucket:?}");
    }

    #[test]
    fn not_found_of_an_upload_is_a_backend_error() {
        let request = Request {
            operation: "UploadPart",
            bucket: "b",
            key: "k",
            names_object: false,
            mode: None,
        };
        let err = request.error(service_error(404, "NoSuchUpload"));
        assert_eq!(retryable_backend(&err), Some(false), "{err:?}");
    }

    #[test]
    fn timeouts_are_retryable() {
        let err = put(&PutMode::Overwrite).error(
            SdkError::<PutObjectError, HttpResponse>::timeout_error(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )),
        );
        assert_eq!(retryable_backend(&err), Some(true), "{err:?}");
    }
}
