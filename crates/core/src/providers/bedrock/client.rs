//! The Bedrock client: batch inference jobs through the control plane (`aws-sdk-bedrock`:
//! CreateModelInvocationJob, GetModelInvocationJob, StopModelInvocationJob,
//! ListModelInvocationJobs) and single requests through the runtime (`aws-sdk-bedrockruntime`
//! InvokeModel, the on-demand path: one attempt each, without the SDK's retries, as the
//! engine's synchronous lane retries them).
//!
//! Nothing is uploaded: the staged chunk, already in the bucket, is the job's input
//! (`s3InputDataConfig.s3Uri`), and the job writes its output under the prefix batchdrop
//! chose in the job's own state; the engine reads the `.jsonl.out` file from the bucket
//! ([`ResultFile::Bucket`]). The service reads and writes as the route's `role_arn` (the
//! Bedrock service role); batchdrop's own credentials only call the APIs.
//!
//! Credentials, region and endpoints come from the usual AWS chain (environment, profile,
//! the Lambda role; `AWS_ENDPOINT_URL_BEDROCK`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`). A route
//! with a `base_url` (an emulator, the sandbox) sends both APIs there, with the environment's
//! keys and region when set, else placeholders (`us-east-1`).
//!
//! The create carries the chunk's idempotency token as `clientRequestToken`: a create
//! repeated after a crash or a lost answer returns the job the first one made.

use crate::provider::{
    BatchError, BatchInfo, BatchLookup, BatchState, ChunkUpload, ErrorKind, Provider,
    ProviderError, RequestCounts, ResultFile, Submitted,
};
use crate::providers::RetryPolicy;
use crate::providers::http::kind_of_status;
use crate::store::ByteStream;
use async_trait::async_trait;
use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_bedrock::config::http::HttpResponse;
use aws_sdk_bedrock::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig,
    ModelInvocationJobS3InputDataConfig, ModelInvocationJobS3OutputDataConfig,
    ModelInvocationJobStatus, S3InputFormat,
};
use serde_json::value::RawValue;
use tokio::sync::OnceCell;

/// Hours a job may run before it expires (Bedrock's default and maximum batch window is
/// 24 to 168; 24 matches the other providers' window).
const TIMEOUT_HOURS: i32 = 24;
/// An emulator's region when the environment names none.
const FALLBACK_REGION: &str = "us-east-1";

/// The two SDK clients, built on first use (loading the AWS configuration is async).
struct Clients {
    control: aws_sdk_bedrock::Client,
    runtime: aws_sdk_bedrockruntime::Client,
}

pub struct BedrockProvider {
    /// An endpoint for both APIs (an emulator); empty: the AWS chain's.
    endpoint: String,
    /// The service role the jobs run as.
    role_arn: Option<String>,
    /// The SDK's retries of throttling, server errors and transport failures (not of
    /// InvokeModel, tried once).
    retry: RetryPolicy,
    clients: OnceCell<Clients>,
}

impl std::fmt::Debug for BedrockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockProvider")
            .field("endpoint", &self.endpoint)
            .field("role_arn", &self.role_arn)
            .finish()
    }
}

impl BedrockProvider {
    pub fn new(endpoint: &str, role_arn: Option<String>) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            role_arn,
            retry: RetryPolicy::default(),
            clients: OnceCell::new(),
        }
    }

    /// How the SDK retries throttling, server errors and transport failures (its standard
    /// mode: exponential backoff with jitter).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| async {
                let retry = RetryConfig::standard()
                    .with_max_attempts(self.retry.max_attempts)
                    .with_initial_backoff(self.retry.initial)
                    .with_max_backoff(self.retry.max);
                let mut loader =
                    aws_config::defaults(BehaviorVersion::latest()).retry_config(retry);
                if !self.endpoint.is_empty() {
                    // An emulator: keys and region from the environment when set, else
                    // placeholders; never a profile or the instance metadata service.
                    loader =
                        loader
                            .endpoint_url(&self.endpoint)
                            .region(
                                RegionProviderChain::first_try(
                                    EnvironmentVariableRegionProvider::new(),
                                )
                                .or_else(Region::new(FALLBACK_REGION)),
                            )
                            .credentials_provider(
                                CredentialsProviderChain::first_try(
                                    "environment",
                                    EnvironmentVariableCredentialsProvider::new(),
                                )
                                .or_else(
                                    "placeholder",
                                    aws_sdk_bedrock::config::Credentials::new(
                                        "batchdrop",
                                        "batchdrop",
                                        None,
                                        None,
                                        "placeholder",
                                    ),
                                ),
                            );
                }
                let shared = loader.load().await;
                let control = aws_sdk_bedrock::config::Builder::from(&shared).build();
                let runtime = aws_sdk_bedrockruntime::config::Builder::from(&shared).build();
                Clients {
                    control: aws_sdk_bedrock::Client::from_conf(control),
                    runtime: aws_sdk_bedrockruntime::Client::from_conf(runtime),
                }
            })
            .await
    }
}

/// The job name of a chunk: its token, which is unique per job, chunk and attempt, prefixed.
fn job_name(token: &str) -> String {
    let mut name = format!("batchdrop-{token}");
    name.truncate(63);
    name
}

/// `s3://bucket/key`. A bucket that is no S3 bucket name is the directory `batchdrop local`
/// plays the bucket with: the URI names the bucket `local` (the sandbox reads any bucket as
/// its directory).
fn s3_uri(bucket: &str, key: &str) -> String {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    let bucket = if valid { bucket } else { LOCAL_BUCKET };
    format!("s3://{bucket}/{key}")
}

/// The bucket name in the URIs of a local directory's jobs.
const LOCAL_BUCKET: &str = "local";

/// The key of an `s3://bucket/key` URI.
fn key_of(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("s3://")?;
    rest.split_once('/').map(|(_, key)| key)
}

/// Where a job writes the results of one input file: `<output prefix>/<job id>/<file>.out`.
pub fn output_key(output_prefix: &str, job_id: &str, input_key: &str) -> String {
    let file = input_key.rsplit('/').next().unwrap_or(input_key);
    let prefix = output_prefix.trim_end_matches('/');
    format!("{prefix}/{job_id}/{file}.out")
}

/// The job id: the last part of its ARN.
fn job_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// What an SDK call's failure means for batchdrop: the kind and retryability from the
/// exception's name (else the HTTP status); a transport failure is retryable.
fn refused<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    e: SdkError<E, HttpResponse>,
) -> ProviderError {
    match &e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let err = service.err();
            let code = err.code().unwrap_or_default().to_string();
            let kind = match code.as_str() {
                "ThrottlingException" | "TooManyRequestsException" => ErrorKind::RateLimited,
                "ServiceQuotaExceededException" => ErrorKind::QuotaExceeded,
                "ValidationException" => ErrorKind::Invalid,
                "AccessDeniedException" | "UnrecognizedClientException" => ErrorKind::Unauthorized,
                "ResourceNotFoundException" => ErrorKind::NotFound,
                "ConflictException" => ErrorKind::Conflict,
                "InternalServerException" | "ServiceUnavailableException" => ErrorKind::ServerError,
                "ModelTimeoutException" => ErrorKind::Timeout,
                _ => kind_of_status(status),
            };
            let retryable = matches!(
                kind,
                ErrorKind::RateLimited
                    | ErrorKind::ServerError
                    | ErrorKind::Timeout
                    | ErrorKind::QuotaExceeded
            );
            ProviderError::Refused {
                operation,
                kind,
                answer: if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    code.clone()
                },
                code: (!code.is_empty()).then_some(code),
                message: err.message().unwrap_or_default().to_string(),
                retryable,
                retry_after: None,
            }
        }
        SdkError::ConstructionFailure(_) => ProviderError::Unavailable {
            reason: format!("{operation}: {}", describe(&e)),
        },
        _ => ProviderError::Transport {
            operation,
            message: describe(&e),
        },
    }
}

/// An SDK error with its sources, on one line (no credentials appear in them).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A job's status in batchdrop's terms. `PartiallyCompleted` keeps what was answered (the
/// rest is missing and goes again as the retry policy says); `Stopped` is a cancel.
fn state_of(status: &ModelInvocationJobStatus) -> BatchState {
    match status {
        ModelInvocationJobStatus::Completed | ModelInvocationJobStatus::PartiallyCompleted => {
            BatchState::Completed
        }
        ModelInvocationJobStatus::Failed => BatchState::Failed,
        ModelInvocationJobStatus::Stopped => BatchState::Cancelled,
        ModelInvocationJobStatus::Expired => BatchState::Expired,
        _ => BatchState::Pending,
    }
}

#[async_trait]
impl Provider for BedrockProvider {
    async fn submit(&self, chunk: ChunkUpload<'_>) -> Result<Submitted, ProviderError> {
        let Some(role) = self.role_arn.as_deref() else {
            return Err(ProviderError::Unavailable {
                reason: "the route has no role_arn: Bedrock jobs run as a service role (set role_arn, or BATCHDROP_BEDROCK_ROLE_ARN for the built-in route)".into(),
            });
        };
        let input = ModelInvocationJobS3InputDataConfig::builder()
            .s3_uri(s3_uri(chunk.location.bucket, chunk.location.key))
            .s3_input_format(S3InputFormat::Jsonl)
            .build()
            .map_err(|e| ProviderError::Unavailable {
                reason: e.to_string(),
            })?;
        let output = ModelInvocationJobS3OutputDataConfig::builder()
            .s3_uri(s3_uri(chunk.output.bucket, chunk.output.key))
            .build()
            .map_err(|e| ProviderError::Unavailable {
                reason: e.to_string(),
            })?;
        let created = self
            .clients()
            .await
            .control
            .create_model_invocation_job()
            .job_name(job_name(chunk.token))
            .role_arn(role)
            .model_id(chunk.model)
            .client_request_token(chunk.token)
            .timeout_duration_in_hours(TIMEOUT_HOURS)
            .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(input))
            .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
                output,
            ))
            .send()
            .await
            .map_err(|e| refused("create a model invocation job", e))?;
        Ok(Submitted {
            batch_id: created.job_arn().to_string(),
            input_file_id: None,
        })
    }

    /// The job named after the chunk's token, created since the submit began.
    async fn find_batch(
        &self,
        lookup: BatchLookup<'_>,
    ) -> Result<Option<Submitted>, ProviderError> {
        let name = job_name(lookup.token);
        let since = aws_sdk_bedrock::primitives::DateTime::from_secs(
            lookup.since - crate::providers::http::CLOCK_SLACK_SECS,
        );
        let mut pages = self
            .clients()
            .await
            .control
            .list_model_invocation_jobs()
            .name_contains(&name)
            .submit_time_after(since)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| refused("list model invocation jobs", e))?;
            if let Some(job) = page
                .invocation_job_summaries()
                .iter()
                .find(|j| j.client_request_token() == Some(lookup.token) || j.job_name() == name)
            {
                return Ok(Some(Submitted {
                    batch_id: job.job_arn().to_string(),
                    input_file_id: None,
                }));
            }
        }
        Ok(None)
    }

    async fn batch(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let job = self
            .clients()
            .await
            .control
            .get_model_invocation_job()
            .job_identifier(batch_id)
            .send()
            .await
            .map_err(|e| refused("get a model invocation job", e))?;
        let status = job
            .status()
            .cloned()
            .unwrap_or(ModelInvocationJobStatus::Submitted);
        let state = state_of(&status);
        let mut result_files = Vec::new();
        let mut errors = Vec::new();
        if state == BatchState::Failed {
            errors.push(BatchError {
                code: "job_failed".into(),
                message: job.message().unwrap_or("the job failed").to_string(),
                line: None,
            });
        } else if state.is_terminal() {
            let input = job
                .input_data_config()
                .and_then(|c| c.as_s3_input_data_config().ok())
                .map(|c| c.s3_uri());
            let output = job
                .output_data_config()
                .and_then(|c| c.as_s3_output_data_config().ok())
                .map(|c| c.s3_uri());
            if let (Some(input), Some(output)) = (input.and_then(key_of), output.and_then(key_of)) {
                result_files.push(ResultFile::Bucket(output_key(
                    output,
                    job_id(job.job_arn()),
                    input,
                )));
            }
        }
        let count = |n: Option<i64>| n.unwrap_or(0).max(0) as u64;
        Ok(BatchInfo {
            id: job.job_arn().to_string(),
            status: status.as_str().to_string(),
            state,
            result_files,
            errors,
            counts: RequestCounts {
                total: count(job.total_record_count()),
                completed: count(job.success_record_count()),
                failed: count(job.error_record_count()),
            },
        })
    }

    async fn cancel(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        self.clients()
            .await
            .control
            .stop_model_invocation_job()
            .job_identifier(batch_id)
            .send()
            .await
            .map_err(|e| refused("stop a model invocation job", e))?;
        self.batch(batch_id).await
    }

    async fn download(&self, file: &str) -> Result<ByteStream, ProviderError> {
        Err(ProviderError::Unavailable {
            reason: format!(
                "Bedrock writes its results into the bucket; {file:?} is not one of its files"
            ),
        })
    }

    /// InvokeModel with the line's `modelInput`; the answer as a `.jsonl.out` line
    /// (`{"recordId","modelOutput"}`, or `{"recordId","error":{"errorCode","errorMessage"}}`
    /// for a request the model refused for good).
    async fn invoke(&self, model: &str, request: &[u8]) -> Result<Vec<u8>, ProviderError> {
        #[derive(serde::Deserialize)]
        struct Line<'a> {
            #[serde(rename = "recordId", borrow)]
            record_id: Option<std::borrow::Cow<'a, str>>,
            #[serde(rename = "modelInput", borrow)]
            model_input: &'a RawValue,
        }
        let line: Line = serde_json::from_slice(request).map_err(|e| ProviderError::Decode {
            operation: "read a request line",
            message: e.to_string(),
        })?;
        let record_id = line.record_id.unwrap_or_default();
        let answer = self
            .clients()
            .await
            .runtime
            .invoke_model()
            .model_id(model)
            .content_type("application/json")
            .accept("application/json")
            .body(aws_sdk_bedrockruntime::primitives::Blob::new(
                line.model_input.get().as_bytes(),
            ))
            // One attempt: the synchronous lane retries at its own pace, and sees each throttle.
            .customize()
            .config_override(
                aws_sdk_bedrockruntime::config::Builder::default()
                    .retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        let result = match answer {
            Ok(out) => {
                let output: &RawValue =
                    serde_json::from_slice(out.body().as_ref()).map_err(|e| {
                        ProviderError::Decode {
                            operation: "invoke a model",
                            message: e.to_string(),
                        }
                    })?;
                serde_json::json!({"recordId": record_id, "modelOutput": output})
            }
            Err(e) => match refused("invoke a model", e) {
                ProviderError::Refused {
                    retryable: false,
                    answer,
                    message,
                    ..
                } => serde_json::json!({
                    "recordId": record_id,
                    "error": {"errorCode": answer, "errorMessage": message},
                }),
                other => return Err(other),
            },
        };
        serde_json::to_vec(&result).map_err(|e| ProviderError::Decode {
            operation: "invoke a model",
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_bedrock_and_stay_unique_per_token() {
        let name = job_name("j0123456789abcdef0123456-17");
        assert_eq!(name, "batchdrop-j0123456789abcdef0123456-17");
        assert!(job_name(&"x".repeat(100)).len() <= 63);
    }

    #[test]
    fn s3_uris_give_their_key_back() {
        assert_eq!(
            key_of("s3://b/_batchdrop/jobs/j/chunks/00001.jsonl"),
            Some("_batchdrop/jobs/j/chunks/00001.jsonl")
        );
        assert_eq!(key_of("https://b/k"), None);
        assert_eq!(
            job_id("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123"),
            "abc123"
        );
    }

    #[test]
    fn a_local_directory_is_named_as_a_bucket_bedrock_accepts() {
        assert_eq!(
            s3_uri("my-bucket.eu", "k/x.jsonl"),
            "s3://my-bucket.eu/k/x.jsonl"
        );
        assert_eq!(s3_uri("/tmp/x/bucket", "k"), "s3://local/k");
        assert_eq!(s3_uri("My_Bucket", "k"), "s3://local/k");
    }

    #[test]
    fn results_are_read_where_bedrock_writes_them() {
        assert_eq!(
            output_key(
                "_batchdrop/jobs/j/output/00003/",
                "abc123",
                "_batchdrop/jobs/j/chunks/00003.jsonl"
            ),
            "_batchdrop/jobs/j/output/00003/abc123/00003.jsonl.out"
        );
    }

    #[test]
    fn partially_completed_keeps_its_answers_and_stopped_is_a_cancel() {
        assert_eq!(
            state_of(&ModelInvocationJobStatus::PartiallyCompleted),
            BatchState::Completed
        );
        assert_eq!(
            state_of(&ModelInvocationJobStatus::Stopped),
            BatchState::Cancelled
        );
        assert_eq!(
            state_of(&ModelInvocationJobStatus::Expired),
            BatchState::Expired
        );
        assert_eq!(
            state_of(&ModelInvocationJobStatus::Stopping),
            BatchState::Pending
        );
        assert_eq!(
            state_of(&ModelInvocationJobStatus::Scheduled),
            BatchState::Pending
        );
    }
}
