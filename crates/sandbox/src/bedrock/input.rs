//! What a Bedrock client sends: the CreateModelInvocationJob body, checked as the real
//! service checks it, and the lines of a job's input files.
//!
//! Create is refused with a 400 `ValidationException` in AWS's wording ("1 validation error
//! detected: Value '…' at 'jobName' failed to satisfy constraint: …") when a member is missing
//! or breaks its constraint from the service model: `jobName` (1–63 characters, pattern
//! `[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}`), `roleArn`
//! (`arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+`), `modelId` (1–2048 characters),
//! `clientRequestToken` (`[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}`), the two `s3Uri`s
//! (`s3://bucket[/key]`, a bucket of 3–63 lowercase letters, digits, `.` and `-`), and
//! `timeoutDurationInHours` (24–168, default 168).
//!
//! An input line is `{"recordId": "…", "modelInput": {…}}`; `recordId` may be missing (a
//! made-up one is used). A line that is not a JSON object or has no object `modelInput` fails
//! the whole job at validation, naming the file and line; blank lines are skipped.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::objects::ObjectUri;

const JOB_NAME_PATTERN: &str = r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}";
const ROLE_ARN_PATTERN: &str = "arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+";
const TOKEN_PATTERN: &str = "[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}";
const S3_URI_PATTERN: &str =
    "s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?";
/// The default and the bounds of `timeoutDurationInHours`.
pub(crate) const DEFAULT_TIMEOUT_HOURS: u64 = 168;
const MIN_TIMEOUT_HOURS: u64 = 24;

/// Why a create call is refused: the message of its `ValidationException`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub message: String,
}

impl Invalid {
    fn constraint(value: &str, member: &str, constraint: &str) -> Self {
        Invalid {
            message: format!(
                "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
            ),
        }
    }

    fn pattern(value: &str, member: &str, pattern: &str) -> Self {
        Self::constraint(
            value,
            member,
            &format!("Member must satisfy regular expression pattern: {pattern}"),
        )
    }

    fn missing(member: &str) -> Self {
        Self::constraint("null", member, "Member must not be null")
    }
}

/// A create call that passed the checks.
#[derive(Debug, Clone)]
pub(crate) struct NewJob {
    pub job_name: String,
    pub role_arn: String,
    pub model_id: String,
    pub client_request_token: Option<String>,
    pub input: ObjectUri,
    pub output: ObjectUri,
    /// As sent, to be shown back by Get and List.
    pub input_data_config: Value,
    pub output_data_config: Value,
    pub timeout_hours: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    job_name: Option<String>,
    role_arn: Option<String>,
    client_request_token: Option<String>,
    model_id: Option<String>,
    input_data_config: Option<Value>,
    output_data_config: Option<Value>,
    timeout_duration_in_hours: Option<Value>,
}

/// Checks a create body.
pub(crate) fn check_create(body: &[u8]) -> Result<NewJob, Invalid> {
    let body: Body = serde_json::from_slice(body).map_err(|error| Invalid {
        message: format!("Could not read the request body as JSON: {error}"),
    })?;
    let job_name = body.job_name.ok_or_else(|| Invalid::missing("jobName"))?;
    if job_name.is_empty() || job_name.chars().count() > 63 {
        return Err(Invalid::constraint(
            &job_name,
            "jobName",
            "Member must have length between 1 and 63",
        ));
    }
    if !matches_job_name(&job_name) {
        return Err(Invalid::pattern(&job_name, "jobName", JOB_NAME_PATTERN));
    }
    let role_arn = body.role_arn.ok_or_else(|| Invalid::missing("roleArn"))?;
    if !matches_role_arn(&role_arn) {
        return Err(Invalid::pattern(&role_arn, "roleArn", ROLE_ARN_PATTERN));
    }
    let model_id = body.model_id.ok_or_else(|| Invalid::missing("modelId"))?;
    if model_id.is_empty() || model_id.len() > 2048 {
        return Err(Invalid::constraint(
            &model_id,
            "modelId",
            "Member must have length between 1 and 2048",
        ));
    }
    if let Some(token) = &body.client_request_token
        && !matches_token(token)
    {
        return Err(Invalid::pattern(token, "clientRequestToken", TOKEN_PATTERN));
    }
    let input_data_config = body
        .input_data_config
        .ok_or_else(|| Invalid::missing("inputDataConfig"))?;
    let input = s3_uri(
        &input_data_config,
        "s3InputDataConfig",
        "inputDataConfig.s3InputDataConfig.s3Uri",
    )?;
    let output_data_config = body
        .output_data_config
        .ok_or_else(|| Invalid::missing("outputDataConfig"))?;
    let output = s3_uri(
        &output_data_config,
        "s3OutputDataConfig",
        "outputDataConfig.s3OutputDataConfig.s3Uri",
    )?;
    let timeout_hours = match body.timeout_duration_in_hours {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_HOURS,
        Some(value) => value
            .as_u64()
            .filter(|hours| (MIN_TIMEOUT_HOURS..=DEFAULT_TIMEOUT_HOURS).contains(hours))
            .ok_or_else(|| {
                Invalid::constraint(
                    &value.to_string(),
                    "timeoutDurationInHours",
                    "Member must have value between 24 and 168",
                )
            })?,
    };
    Ok(NewJob {
        job_name,
        role_arn,
        model_id,
        client_request_token: body.client_request_token,
        input,
        output,
        input_data_config,
        output_data_config,
        timeout_hours,
    })
}

/// `config.<member>.s3Uri`, checked.
fn s3_uri(config: &Value, member: &str, path: &str) -> Result<ObjectUri, Invalid> {
    let uri = config
        .get(member)
        .and_then(|inner| inner.get("s3Uri"))
        .and_then(Value::as_str)
        .ok_or_else(|| Invalid::missing(path))?;
    ObjectUri::parse(uri)
        .filter(|parsed| valid_bucket(&parsed.bucket) && valid_key(&parsed.key))
        .ok_or_else(|| Invalid::pattern(uri, path, S3_URI_PATTERN))
}

fn matches_job_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn matches_token(token: &str) -> bool {
    (1..=256).contains(&token.len())
        && token.starts_with(|c: char| c.is_ascii_alphanumeric())
        && token.ends_with(|c: char| c.is_ascii_alphanumeric())
        && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn matches_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws") else {
        return false;
    };
    let rest = match rest.strip_prefix('-') {
        Some(partition) => match partition.split_once(':') {
            Some((name, rest)) if !name.is_empty() => rest,
            _ => return false,
        },
        None => match rest.strip_prefix(':') {
            Some(rest) => rest,
            None => return false,
        },
    };
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let (account, role) = rest.split_once(":role/").unwrap_or(("x", ""));
    (account.is_empty() || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
        && !role.is_empty()
}

fn valid_bucket(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_key(key: &str) -> bool {
    key.trim_end_matches('/')
        .split('/')
        .all(|part| key.is_empty() || !part.is_empty())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-!_*'()./".contains(&b))
}

/// One line of an input file.
#[derive(Debug, Deserialize)]
pub(crate) struct Record<'a> {
    #[serde(borrow, default, rename = "recordId")]
    pub record_id: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "modelInput")]
    pub model_input: &'a RawValue,
}

/// Reads one non-blank input line; on error, why the job fails (naming `file` and `line`,
/// 1-based).
pub(crate) fn record<'a>(text: &'a [u8], file: &str, line: u64) -> Result<Record<'a>, String> {
    let bad = |why: &str| format!("Invalid JSONL in input file {file}, line {line}: {why}");
    let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return Err(bad("the line is not a JSON object"));
    }
    let record: Record = serde_json::from_str(trimmed).map_err(|error| {
        if error.is_data() {
            bad("each record needs a \"modelInput\" object and at most a string \"recordId\"")
        } else {
            bad(&format!("not valid JSON ({error})"))
        }
    })?;
    if !record.model_input.get().trim_start().starts_with('{') {
        return Err(bad("\"modelInput\" must be a JSON object"));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn create(patch: Value) -> Result<NewJob, Invalid> {
        let mut body = json!({
            "jobName": "job-1",
            "roleArn": "arn:aws:iam::123456789012:role/BedrockBatch",
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://bucket/in/input.jsonl"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://bucket/out/"}},
        });
        if let (Some(body), Some(patch)) = (body.as_object_mut(), patch.as_object()) {
            for (key, value) in patch {
                body.insert(key.clone(), value.clone());
            }
        }
        check_create(body.to_string().as_bytes())
    }

    #[test]
    fn a_good_create_names_its_objects() -> Result<(), Invalid> {
        let job = create(json!({}))?;
        assert_eq!(job.input.key, "in/input.jsonl");
        assert_eq!(job.output.key, "out/");
        assert_eq!(job.timeout_hours, 168);
        Ok(())
    }

    #[test]
    fn a_bad_job_name_is_refused_with_the_pattern() {
        let message = create(json!({"jobName": "-bad"})).err().map(|e| e.message);
        assert_eq!(
            message.as_deref(),
            Some(
                r"1 validation error detected: Value '-bad' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}"
            )
        );
        assert!(create(json!({"jobName": "a".repeat(64)})).is_err());
    }

    #[test]
    fn role_arns_and_uris_follow_the_service_patterns() {
        assert!(create(json!({"roleArn": "arn:aws:iam::123:role/x"})).is_err());
        assert!(create(json!({"roleArn": "arn:aws-cn:iam::123456789012:role/x"})).is_ok());
        assert!(
            create(json!({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "https://b/k"}}}))
                .is_err()
        );
        assert!(create(json!({"clientRequestToken": "tok-"})).is_err());
    }

    #[test]
    fn input_lines_need_an_object_model_input() {
        assert!(record(br#"{"recordId":"r1","modelInput":{}}"#, "f", 1).is_ok());
        assert!(record(br#"{"modelInput":{}}"#, "f", 1).is_ok());
        let error = record(br#"{"recordId":"r1"}"#, "in.jsonl", 3).err();
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("Invalid JSONL in input file in.jsonl, line 3")),
            "{error:?}"
        );
        assert!(record(b"not json", "f", 1).is_err());
    }
}
