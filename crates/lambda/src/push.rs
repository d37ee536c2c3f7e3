//! Push instead of poll on AWS: the two events the poll function takes besides its schedule.
//!
//! - **OpenAI webhooks** through the poll function's URL (a Lambda function URL, no IAM auth:
//!   the Standard Webhooks signature with the route's secret authenticates each request):
//!   `POST <url>/webhooks/openai/<route>`. The decision is `batchdrop_core::push`'s;
//!   the job is advanced before the answer (Lambda freezes a function once it has answered),
//!   within the invocation's deadline, and a failed advance is still answered 200 (the event
//!   was received; the schedule's poll finishes the job).
//! - **Bedrock job state changes** (`source` `aws.bedrock`, `detail-type` `Batch Inference Job
//!   State Change`, from an EventBridge rule): only the job of that Bedrock job ARN is
//!   advanced, found through the batch index.
//!
//! What the function got is told apart by its shape ([`PollEvent::of`]): a function URL
//! request has `requestContext.http`; an EventBridge event has `source` and `detail-type`.

use crate::{App, HandlerError};
use batchdrop_core::push::{Receiver, advance_batch_owner};
use batchdrop_core::webhooks::SignedHeaders;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The EventBridge `detail-type` of a Bedrock batch job's state change.
pub const BEDROCK_STATE_CHANGE: &str = "Batch Inference Job State Change";
/// The provider name the Bedrock jobs' batches are indexed under.
pub const BEDROCK_PROVIDER: &str = "bedrock";

/// What the poll function was invoked with.
#[derive(Debug)]
pub enum PollEvent {
    /// A request to its function URL.
    Http(FunctionUrlRequest),
    /// A Bedrock batch job changed state: its job ARN.
    BedrockStateChange { job_arn: String, status: String },
    /// The schedule (or any other event): poll every active job.
    Tick,
}

impl PollEvent {
    pub fn of(event: serde_json::Value) -> PollEvent {
        if event.pointer("/requestContext/http").is_some() {
            if let Ok(request) = serde_json::from_value::<FunctionUrlRequest>(event) {
                return PollEvent::Http(request);
            }
            return PollEvent::Tick;
        }
        let is_bedrock = event.get("source").and_then(|s| s.as_str()) == Some("aws.bedrock")
            && event.get("detail-type").and_then(|s| s.as_str()) == Some(BEDROCK_STATE_CHANGE);
        if is_bedrock {
            let detail = &event["detail"];
            let arn = detail
                .get("batchJobArn")
                .or_else(|| detail.get("jobArn"))
                .and_then(|a| a.as_str());
            if let Some(arn) = arn {
                return PollEvent::BedrockStateChange {
                    job_arn: arn.to_string(),
                    status: detail["status"].as_str().unwrap_or_default().to_string(),
                };
            }
        }
        PollEvent::Tick
    }
}

/// A Lambda function URL request (payload format 2.0), as much as the webhook needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUrlRequest {
    #[serde(default)]
    pub raw_path: String,
    /// Header names in lower case; repeated headers joined with commas.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub is_base64_encoded: bool,
    pub request_context: RequestContext,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestContext {
    pub http: HttpContext,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpContext {
    pub method: String,
}

/// A function URL response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUrlResponse {
    pub status_code: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl FunctionUrlResponse {
    fn json(status_code: u16, body: serde_json::Value) -> Self {
        Self {
            status_code,
            headers: HashMap::from([("content-type".into(), "application/json".into())]),
            body: body.to_string(),
        }
    }

    fn error(status_code: u16, message: String) -> Self {
        Self::json(
            status_code,
            serde_json::json!({"error": {"message": message}}),
        )
    }
}

/// Handles `POST /webhooks/openai/<route>` on the poll bucket: verify, record, advance, answer.
pub async fn handle_webhook(
    app: &App,
    request: FunctionUrlRequest,
    deadline_ms: Option<u64>,
) -> Result<FunctionUrlResponse, HandlerError> {
    let Some(route) = request
        .raw_path
        .strip_prefix("/webhooks/openai/")
        .filter(|r| !r.is_empty() && !r.contains('/'))
    else {
        return Ok(FunctionUrlResponse::error(
            404,
            format!(
                "no such path {:?}; webhooks go to /webhooks/openai/<route>",
                request.raw_path
            ),
        ));
    };
    if request.request_context.http.method != "POST" {
        return Ok(FunctionUrlResponse::error(
            405,
            "webhooks are POSTed".into(),
        ));
    }
    let route = batchdrop_core::layout::decode_event_key(route).unwrap_or_else(|_| route.into());
    let bucket = app
        .bucket
        .as_deref()
        .ok_or_else(|| HandlerError::Config("BATCHDROP_BUCKET is not set".into()))?;
    let body = match (&request.body, request.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(text), false) => text.clone().into_bytes(),
        (Some(text), true) => {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => bytes,
                Err(_) => return Ok(FunctionUrlResponse::error(400, "body is not base64".into())),
            }
        }
    };
    let header = |name: &str| request.headers.get(name).map(String::as_str);
    let signed = SignedHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    let engine = app.engine_until(bucket, deadline_ms);
    let receiver = Receiver::new(
        engine,
        app.config.clone(),
        app.inbound.clone(),
        app.clock.clone(),
    );
    let accepted = match receiver.accept(&route, &signed, &body).await {
        Ok(accepted) => accepted,
        Err(error) => {
            tracing::info!(route, status = error.status(), %error, "webhook refused");
            return Ok(FunctionUrlResponse::error(
                error.status(),
                error.to_string(),
            ));
        }
    };
    let advanced = receiver.advance(&accepted).await;
    app.completions.flush().await;
    let answer = match (accepted.job_id(), advanced) {
        (Some(job_id), Some(Ok(advance))) => {
            serde_json::json!({"received": true, "job_id": job_id, "advance": format!("{advance:?}")})
        }
        (Some(job_id), Some(Err(error))) => {
            // Received: the schedule's poll finishes the job.
            serde_json::json!({"received": true, "job_id": job_id, "advance": "failed", "error": error.to_string()})
        }
        _ => serde_json::json!({"received": true, "note": "nothing to advance"}),
    };
    Ok(FunctionUrlResponse::json(200, answer))
}

/// What the poll function did with a Bedrock state change.
#[derive(Debug, Serialize)]
pub struct StateChangeResponse {
    pub job_arn: String,
    pub status: String,
    /// The batchdrop job advanced, if the Bedrock job is one of batchdrop's.
    pub job_id: Option<String>,
    pub advance: Option<String>,
}

/// Advances only the job of Bedrock job `job_arn`; a retryable failure fails the invocation
/// (EventBridge retries it), and the schedule is there regardless.
pub async fn handle_bedrock_state_change(
    app: &App,
    job_arn: String,
    status: String,
    deadline_ms: Option<u64>,
) -> Result<StateChangeResponse, HandlerError> {
    let bucket = app
        .bucket
        .as_deref()
        .ok_or_else(|| HandlerError::Config("BATCHDROP_BUCKET is not set".into()))?;
    let engine = app.engine_until(bucket, deadline_ms);
    let outcome = advance_batch_owner(&engine, BEDROCK_PROVIDER, &job_arn).await;
    app.completions.flush().await;
    match outcome {
        Ok(found) => {
            let (job_id, advance) = match found {
                Some((job, advance)) => (Some(job), Some(format!("{advance:?}"))),
                None => (None, None),
            };
            tracing::info!(
                job_arn,
                status,
                job_id = job_id.as_deref().unwrap_or(""),
                "Bedrock state change"
            );
            Ok(StateChangeResponse {
                job_arn,
                status,
                job_id,
                advance,
            })
        }
        Err(e) if e.is_retryable() => Err(HandlerError::Retryable(e.to_string())),
        Err(e) => {
            tracing::warn!(job_arn, error = %e, "Bedrock state change not acted on; the poll will");
            Ok(StateChangeResponse {
                job_arn,
                status,
                job_id: None,
                advance: Some(format!("failed: {e}")),
            })
        }
    }
}
