//! AWS Bedrock batch inference (model invocation jobs). Everything batchdrop knows of this
//! provider is in this folder:
//! - [`client`]: the control plane (create, get, stop, list jobs) and the runtime (InvokeModel,
//!   for chunks below the minimum); the chunk in the bucket is the job's input, the job's
//!   output is read from the bucket;
//! - `lines`: its request lines `{"recordId"?, "modelInput"}` and id rules;
//!   [`translate`]: the model's native body (Claude on Bedrock, Amazon Nova) to and from the
//!   common request;
//! - [`results`]: its result lines (`<input>.jsonl.out`) and the lines output.jsonl holds;
//!   [`reply`]: those lines read into the common result;
//! - `prices`: its list prices; below: its limits, built-in routes and registry entry.
//!
//! A Bedrock job runs one model, the job's `modelId`: batchdrop takes it from the route
//! (`[routes.<name>.defaults] model`), never from a line. A native line carries no model, and
//! the model a translated line names is not used.

pub mod client;
mod lines;
mod prices;
pub mod reply;
pub mod results;
pub mod translate;

use super::Entry;
use crate::prompt::{Plain, PromptParts, Written};
use crate::provider::{Built, Dialect, Provider, Reject, Reply, Request, ResultFacts};
use crate::route::{
    BelowMinimum, ChunkLimits, DEFAULT_SANDBOX_URL, Defaults, KeySource, Retries, Route,
};
use crate::scan;
use secrecy::SecretString;
use std::borrow::Cow;
use std::sync::Arc;

/// The endpoint of every Bedrock request (InvokeModel's, which a batch line's `modelInput`
/// is the body of); with the model, a job's group.
pub const INVOKE: &str = "/model/invoke";
/// Prefix of the ids batchdrop sends for recordIds Bedrock might refuse.
pub const MAPPED_ID_PREFIX: &str = "bd_";
/// The model of the built-in routes: Claude Sonnet 4.5 through the US cross-region inference
/// profile.
pub const DEFAULT_MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

/// The dialect of Bedrock batch lines.
#[derive(Debug)]
pub struct Bedrock;

pub(crate) static DIALECT: Bedrock = Bedrock;

/// The registry's entry.
pub(crate) static ENTRY: Entry = Entry {
    dialect: &DIALECT,
    prices: prices::PRICES,
    routes,
    client,
    finds_endpoint: true,
    batches: true,
};

pub use client::BedrockProvider;

/// The role ARN the sandbox is given: any well-formed one will do there.
pub const SANDBOX_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/batchdrop-sandbox-bedrock";

fn client(route: &Route, _key: Option<SecretString>) -> Result<Arc<dyn Provider>, String> {
    Ok(Arc::new(BedrockProvider::new(
        &route.base_url,
        route.role_arn.clone(),
    )))
}

/// `sandbox-bedrock` (the sandbox's root, no key) and `bedrock` (the AWS credentials of the
/// environment; `AWS_ENDPOINT_URL_BEDROCK` for another endpoint, else the AWS default one;
/// `BATCHDROP_BEDROCK_MODEL` for the model, `BATCHDROP_BEDROCK_ROLE_ARN` for the service role
/// the jobs run as). Bedrock runs about 10 jobs per model at once.
fn routes(env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, Route)> {
    let route = |base_url: String, model: String, role_arn: Option<String>| Route {
        provider: DIALECT.name().to_string(),
        base_url,
        api_key: KeySource::None,
        defaults: Defaults {
            model: Some(model),
            max_tokens: Some(1024),
            ..Defaults::default()
        },
        limits: DIALECT.limits(),
        retries: Retries::default(),
        max_batches_in_flight: Some(10),
        role_arn,
        below_minimum: BelowMinimum::default(),
        max_concurrency: None,
        deadlines: Default::default(),
        requests_per_minute: None,
        tokens_per_minute: None,
        spend: Default::default(),
        reuse: Default::default(),
        webhook: None,
        webhook_in_secret: None,
        keep_provider_files: false,
        provider_file_days: None,
    };
    // The sandbox serves the Anthropic and Bedrock sides at its root, OpenAI's under /v1.
    let sandbox_root = env("BATCHDROP_SANDBOX_URL")
        .unwrap_or_else(|| DEFAULT_SANDBOX_URL.into())
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    vec![
        (
            "sandbox-bedrock",
            route(
                sandbox_root,
                DEFAULT_MODEL.to_string(),
                Some(SANDBOX_ROLE_ARN.to_string()),
            ),
        ),
        (
            "bedrock",
            route(
                env("AWS_ENDPOINT_URL_BEDROCK").unwrap_or_default(),
                env("BATCHDROP_BEDROCK_MODEL").unwrap_or_else(|| DEFAULT_MODEL.to_string()),
                env("BATCHDROP_BEDROCK_ROLE_ARN"),
            ),
        ),
    ]
}

impl Dialect for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn title(&self) -> &'static str {
        "Bedrock"
    }

    /// Bedrock's quotas per job (batchdrop sends one input file per job, so the file caps are
    /// the job's): at least 100 and at most 50,000 records, 1 GB. A record has no documented
    /// cap of its own: lines are held to Anthropic's 16 MiB, the largest body the models
    /// translated to take.
    fn limits(&self) -> ChunkLimits {
        ChunkLimits {
            min_requests_per_batch: 100,
            max_requests_per_batch: 50_000,
            max_bytes_per_batch: 1_000_000_000,
            max_line_bytes: 16 << 20,
        }
    }

    fn line_shape(&self) -> &'static str {
        "a Bedrock batch line (recordId, modelInput)"
    }

    fn is_own_line(&self, line: &scan::Line<'_>) -> bool {
        crate::fields::given(line.model_input).is_some()
    }

    fn id_field(&self) -> &'static str {
        "recordId"
    }

    fn line_id<'a>(&self, line: &scan::Line<'a>) -> Option<scan::Json<'a>> {
        line.record_id
    }

    fn request_id(&self, request: &[u8]) -> Option<String> {
        lines::request_id(request)
    }

    /// An id Bedrock might refuse (or one starting with the reserved `bd_`) is sent as
    /// `bd_<line number>`.
    fn id_to_send(&self, custom_id: &str, line_no: u64) -> Option<String> {
        (!lines::safe_id(custom_id)).then(|| format!("{MAPPED_ID_PREFIX}{line_no}"))
    }

    fn own_line<'a>(
        &self,
        line: &'a [u8],
        fields: &scan::Line<'a>,
        set_id: Option<&str>,
        defaults: &Defaults,
    ) -> Result<Built<'a>, Reject> {
        lines::own_line(line, fields, set_id, defaults)
    }

    fn read_common(
        &self,
        fields: &scan::Line<'_>,
        target: &dyn Dialect,
    ) -> Result<Request, Reject> {
        lines::to_common(fields, target)
    }

    fn write_common(
        &self,
        request: Request,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject> {
        lines::from_common(request, id, defaults)
    }

    /// None: prompt lines take the general path ([`Dialect::prompt_line`]).
    fn plain_prompt_line(
        &self,
        _plain: &Plain<'_>,
        _written: &Written,
        _id: &str,
        _defaults: &Defaults,
    ) -> Option<Built<'static>> {
        None
    }

    fn prompt_line(
        &self,
        parts: PromptParts,
        id: &str,
        defaults: &Defaults,
    ) -> Result<Built<'static>, Reject> {
        lines::prompt_line(parts, id, defaults)
    }

    fn request_parts<'v>(&self, line: &'v serde_json::Value) -> (&'v str, &'v serde_json::Value) {
        (INVOKE, &line["modelInput"])
    }

    fn read_result(&self, line: &[u8]) -> Result<ResultFacts, serde_json::Error> {
        results::read(line)
    }

    fn missing_result(&self, custom_id: &str, code: &str, message: &str) -> Vec<u8> {
        results::missing(custom_id, code, message)
    }

    fn read_reply(&self, line: &[u8]) -> Option<Reply> {
        reply::read(line)
    }

    /// The output.jsonl line under the user's id: `custom_id` first, `modelInput` dropped.
    fn with_custom_id(&self, line: &[u8], custom_id: &str) -> Vec<u8> {
        results::output_line(line, Some(custom_id))
    }

    /// Every result line gets `custom_id` (the user's id, else its `recordId`) and loses the
    /// echoed `modelInput`, mapped id or not.
    fn output_line<'l>(&self, line: &'l [u8], user_id: Option<&str>) -> Cow<'l, [u8]> {
        Cow::Owned(results::output_line(line, user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::input::{Accepted, Outcome, Validator};
    use crate::types::{RejectCode, Rejection};
    use serde_json::{Value, json};

    type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    fn route(model: Option<&str>) -> Route {
        let mut route = Config::builtin(&|_| None)
            .route("sandbox-bedrock")
            .expect("built in")
            .clone();
        route.defaults.model = model.map(str::to_string);
        route
    }

    fn check(model: Option<&str>, line_no: u64, line: &[u8]) -> Outcome<'static> {
        let line: &'static [u8] = Box::leak(line.to_vec().into_boxed_slice());
        Validator::new(&route(model), &DIALECT).check(line_no, line)
    }

    fn accepted(outcome: Outcome<'_>) -> Accepted<'_> {
        match outcome {
            Outcome::Accepted(a) => a,
            other => panic!("expected acceptance, got {other:?}"),
        }
    }

    fn rejected(outcome: Outcome<'_>) -> Rejection {
        match outcome {
            Outcome::Rejected(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    const CLAUDE: Option<&str> = Some(DEFAULT_MODEL);
    const NOVA: Option<&str> = Some("us.amazon.nova-lite-v1:0");
    const NATIVE: &[u8] = br#"{"recordId":"CALL0000001","modelInput":{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}]},"extra":1}"#;
    const CHAT: &[u8] = br#"{"custom_id":"c1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief"},{"role":"user","content":"hi"}],"max_tokens":9,"temperature":0.5,"stop":["x"]}}"#;

    fn sent(a: &Accepted<'_>) -> Result<Value> {
        Ok(serde_json::from_slice(&a.request)?)
    }

    #[test]
    fn a_native_line_passes_through_byte_for_byte() {
        let a = accepted(check(CLAUDE, 1, NATIVE));
        assert_eq!(&*a.request, NATIVE);
        assert!(matches!(a.request, Cow::Borrowed(_)));
        assert_eq!((&*a.custom_id, a.sent_id.as_deref()), ("CALL0000001", None));
        assert_eq!(a.group.endpoint, INVOKE);
        assert_eq!(a.group.model, DEFAULT_MODEL);
    }

    #[test]
    fn a_native_line_without_record_id_gets_one_from_the_line_number() -> Result {
        let a = accepted(check(CLAUDE, 7, br#"{"modelInput":{"messages":[]}}"#));
        assert_eq!(a.custom_id, "line-7");
        assert_eq!(sent(&a)?["recordId"], "line-7");
        assert_eq!(sent(&a)?["modelInput"], json!({"messages": []}));
        Ok(())
    }

    #[test]
    fn a_record_id_bedrock_might_refuse_is_sent_mapped() -> Result {
        let a = accepted(check(
            CLAUDE,
            4,
            br#"{"recordId":"has.dots","modelInput":{}}"#,
        ));
        assert_eq!(a.custom_id, "has.dots");
        assert_eq!(a.sent_id.as_deref(), Some("bd_4"));
        assert_eq!(
            sent(&a)?,
            json!({"recordId": "bd_4", "modelInput": {}}),
            "the id replaced in place"
        );
        Ok(())
    }

    #[test]
    fn a_record_id_that_is_no_string_is_refused_naming_it() {
        let r = rejected(check(CLAUDE, 1, br#"{"recordId":5,"modelInput":{}}"#));
        assert_eq!(r.code, RejectCode::InvalidField);
        assert!(
            r.message.starts_with("recordId must be a string"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_model_input_that_is_no_object_is_refused() {
        let r = rejected(check(CLAUDE, 1, br#"{"recordId":"a","modelInput":"x"}"#));
        assert_eq!(r.code, RejectCode::InvalidField);
        assert_eq!(r.custom_id.as_deref(), Some("a"));
    }

    #[test]
    fn a_route_without_a_model_refuses_every_line() {
        for line in [NATIVE, CHAT, br#"{"prompt":"hi"}"#.as_slice()] {
            let r = rejected(check(None, 1, line));
            assert_eq!(r.code, RejectCode::MissingField);
            assert!(
                r.message.contains("[routes.<route>.defaults]"),
                "{}",
                r.message
            );
        }
    }

    #[test]
    fn an_openai_chat_line_becomes_a_claude_body() -> Result {
        let a = accepted(check(CLAUDE, 1, CHAT));
        assert_eq!(a.custom_id, "c1");
        assert_eq!(
            std::str::from_utf8(&a.request)?,
            r#"{"recordId":"c1","modelInput":{"anthropic_version":"bedrock-2023-05-31","max_tokens":9,"system":"Be brief","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"stop_sequences":["x"]}}"#
        );
        assert_eq!(a.group.model, DEFAULT_MODEL, "the line's model is not used");
        Ok(())
    }

    #[test]
    fn an_openai_chat_line_becomes_a_nova_body() -> Result {
        let a = accepted(check(NOVA, 1, CHAT));
        assert_eq!(
            std::str::from_utf8(&a.request)?,
            r#"{"recordId":"c1","modelInput":{"schemaVersion":"messages-v1","system":[{"text":"Be brief"}],"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":9,"temperature":0.5,"stopSequences":["x"]}}}"#
        );
        assert_eq!(a.group.model, "us.amazon.nova-lite-v1:0");
        Ok(())
    }

    #[test]
    fn an_anthropic_line_becomes_a_claude_body() -> Result {
        let a = accepted(check(
            CLAUDE,
            1,
            br#"{"custom_id":"a1","params":{"model":"claude-haiku-4-5","max_tokens":20,"system":"S","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"top_p":0.9}}"#,
        ));
        assert_eq!(
            sent(&a)?,
            json!({"recordId": "a1", "modelInput": {
                "anthropic_version": "bedrock-2023-05-31", "max_tokens": 20, "system": "S",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "top_p": 0.9}})
        );
        Ok(())
    }

    #[test]
    fn a_prompt_line_becomes_a_claude_body_with_the_route_defaults() -> Result {
        let a = accepted(check(
            CLAUDE,
            3,
            br#"{"prompt":"Say hi","system":"Be brief","temperature":0.2}"#,
        ));
        assert_eq!(
            std::str::from_utf8(&a.request)?,
            r#"{"recordId":"line-3","modelInput":{"anthropic_version":"bedrock-2023-05-31","max_tokens":1024,"system":"Be brief","messages":[{"role":"user","content":"Say hi"}],"temperature":0.2}}"#
        );
        Ok(())
    }

    #[test]
    fn a_translated_line_for_another_model_family_is_untranslatable() {
        let r = rejected(check(Some("meta.llama3-70b-instruct-v1:0"), 1, CHAT));
        assert_eq!(r.code, RejectCode::Untranslatable);
        assert!(
            r.message
                .contains("takes native Bedrock lines (recordId, modelInput) only"),
            "{}",
            r.message
        );
    }

    #[test]
    fn a_native_line_for_another_model_family_passes_through() {
        let line = br#"{"recordId":"m","modelInput":{"prompt":"hi","max_gen_len":9}}"#;
        let a = accepted(check(Some("meta.llama3-70b-instruct-v1:0"), 1, line));
        assert_eq!(&*a.request, line);
    }

    #[test]
    fn a_line_with_tools_is_untranslatable_naming_them() {
        let r = rejected(check(
            CLAUDE,
            1,
            br#"{"custom_id":"a","params":{"max_tokens":9,"messages":[{"role":"user","content":"hi"}],"tools":[]}}"#,
        ));
        assert_eq!(r.code, RejectCode::Untranslatable);
        assert!(r.message.contains("`tools`"), "{}", r.message);
    }

    #[test]
    fn a_native_claude_line_goes_to_an_openai_route() -> Result {
        let config = Config::builtin(&|_| None);
        let route = config.route("sandbox").expect("built in");
        let a =
            accepted(Validator::new(route, &crate::providers::openai::DIALECT).check(1, NATIVE));
        let sent = sent(&a)?;
        assert_eq!(a.custom_id, "CALL0000001");
        assert_eq!(sent["custom_id"], "CALL0000001");
        assert_eq!(sent["body"]["max_tokens"], 5);
        assert_eq!(sent["body"]["messages"][0]["content"], "hi");
        Ok(())
    }

    #[test]
    fn a_native_nova_line_goes_to_an_anthropic_route() -> Result {
        let config = Config::builtin(&|_| None);
        let route = config.route("sandbox-anthropic").expect("built in");
        let line = br#"{"recordId":"n1","modelInput":{"schemaVersion":"messages-v1","system":[{"text":"S"}],"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":7,"topP":0.5}}}"#;
        let a =
            accepted(Validator::new(route, &crate::providers::anthropic::DIALECT).check(1, line));
        assert_eq!(
            sent(&a)?,
            json!({"custom_id": "n1", "params": {"model": "claude-sonnet-4-5", "max_tokens": 7,
                "top_p": 0.5, "system": "S",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}})
        );
        Ok(())
    }

    #[test]
    fn a_native_line_of_no_known_body_is_untranslatable_elsewhere() {
        let config = Config::builtin(&|_| None);
        let route = config.route("sandbox").expect("built in");
        let r = rejected(
            Validator::new(route, &crate::providers::openai::DIALECT)
                .check(1, br#"{"recordId":"m","modelInput":{"prompt":"hi"}}"#),
        );
        assert_eq!(r.code, RejectCode::Untranslatable);
        assert!(r.message.contains("`modelInput`"), "{}", r.message);
    }

    #[test]
    fn the_builtin_routes_take_their_model_and_endpoint_from_the_environment() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL_BEDROCK" => Some("http://localhost:4566".to_string()),
            "BATCHDROP_BEDROCK_MODEL" => Some("amazon.nova-pro-v1:0".to_string()),
            _ => None,
        };
        let from_env = routes(&env);
        let bedrock = &from_env
            .iter()
            .find(|(n, _)| *n == "bedrock")
            .expect("bedrock")
            .1;
        assert_eq!(bedrock.base_url, "http://localhost:4566");
        assert_eq!(
            bedrock.defaults.model.as_deref(),
            Some("amazon.nova-pro-v1:0")
        );
        assert_eq!(bedrock.api_key, KeySource::None);
        assert_eq!(bedrock.max_batches_in_flight, Some(10));
        let defaults = routes(&|_| None);
        let sandbox = &defaults
            .iter()
            .find(|(n, _)| *n == "sandbox-bedrock")
            .expect("sandbox")
            .1;
        assert_eq!(sandbox.base_url, "http://127.0.0.1:8089");
        assert_eq!(defaults[1].1.base_url, "", "the AWS default endpoint");
    }
}
