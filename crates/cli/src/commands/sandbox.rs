//! `batchdrop sandbox`: serve the sandbox provider (OpenAI Files + Batches, Anthropic Message
//! Batches and AWS Bedrock batch inference wire formats) until interrupted.

use crate::error::Error;
use crate::signal::shutdown_signal;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    addr: SocketAddr,
    /// Milliseconds a batch spends in each of validating, in_progress and finalizing
    /// (0: batches complete on the first retrieve).
    #[arg(long, default_value_t = 0)]
    step_ms: u64,
    /// Faults to inject, e.g. "seed=7,http429=0.1,token_limit=0.2,req500=0.02" (keys: see
    /// the README or the batchdrop-sandbox docs). Default: none.
    #[arg(long, value_name = "SPEC")]
    faults: Option<batchdrop_sandbox::Faults>,
    /// Bedrock jobs read and write this directory as their bucket (`s3://<any>/<key>` is
    /// DIR/<key>). Without it or --s3-endpoint, Bedrock jobs are refused.
    #[arg(long, value_name = "DIR", conflicts_with = "s3_endpoint")]
    root: Option<PathBuf>,
    /// Bedrock jobs read and write this S3 API (path-style; credentials and region from the
    /// AWS environment, else dummy ones and us-east-1), e.g. http://127.0.0.1:5000 for moto.
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// Directory where the sandbox keeps the contents of files (uploads, output and error
    /// files, Anthropic requests and results); created if missing, left in place when it
    /// stops. Default: a temporary directory, removed when it stops.
    #[arg(long, value_name = "DIR")]
    files_dir: Option<PathBuf>,
    /// POST an OpenAI batch webhook (Standard Webhooks signed) here when a batch ends, e.g.
    /// http://127.0.0.1:8091/webhooks/openai/sandbox.
    #[arg(long, value_name = "URL", requires = "webhook_secret")]
    webhook_url: Option<String>,
    /// The whsec_… secret webhooks are signed with (the receiver's route secret).
    #[arg(long, value_name = "WHSEC", requires = "webhook_url")]
    webhook_secret: Option<String>,
    /// Milliseconds each webhook is held before it is sent.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    webhook_delay_ms: u64,
    /// Webhooks sent twice (same webhook-id): a probability or every:N.
    #[arg(long, value_name = "RATE", value_parser = batchdrop_sandbox::Rate::from_spec)]
    webhook_duplicate: Option<batchdrop_sandbox::Rate>,
    /// Webhooks never sent: a probability or every:N.
    #[arg(long, value_name = "RATE", value_parser = batchdrop_sandbox::Rate::from_spec)]
    webhook_drop: Option<batchdrop_sandbox::Rate>,
}

pub async fn run(args: SandboxArgs) -> Result<(), Error> {
    let addr = args.addr;
    let faults = args.faults.unwrap_or_default();
    let spec = faults.to_string();
    let objects = match (args.root, args.s3_endpoint) {
        (Some(root), _) => Some(batchdrop_sandbox::BedrockObjects::Directory(root)),
        (None, Some(endpoint)) => Some(batchdrop_sandbox::BedrockObjects::S3(
            batchdrop_sandbox::BedrockS3::new(endpoint),
        )),
        (None, None) => None,
    };
    let bedrock_bucket = match &objects {
        Some(batchdrop_sandbox::BedrockObjects::Directory(root)) => {
            format!("the directory {}", root.display())
        }
        Some(batchdrop_sandbox::BedrockObjects::S3(s3)) => format!("the S3 API at {}", s3.endpoint),
        None => "nothing: start with --root DIR or --s3-endpoint URL for Bedrock jobs".to_owned(),
    };
    let push = match (args.webhook_url, args.webhook_secret) {
        (Some(url), Some(secret)) => {
            let mut push = batchdrop_sandbox::PushConfig::new(url, secret);
            push.every = Some(std::time::Duration::from_millis(200));
            push.delay = std::time::Duration::from_millis(args.webhook_delay_ms);
            push.duplicate = args.webhook_duplicate.unwrap_or_default();
            push.drop = args.webhook_drop.unwrap_or_default();
            push.seed = faults.seed;
            push.validate()
                .map_err(|e| Error::usage(format!("--webhook-secret: {e}")))?;
            Some(push)
        }
        _ => None,
    };
    let pushing = push.as_ref().map(|p| p.url.clone());
    let config = batchdrop_sandbox::SandboxConfig {
        step: std::time::Duration::from_millis(args.step_ms),
        faults,
        bedrock: batchdrop_sandbox::BedrockConfig {
            objects,
            ..Default::default()
        },
        files_dir: args.files_dir,
        push,
        ..Default::default()
    };
    let sandbox = batchdrop_sandbox::Sandbox::start(addr, config)
        .await
        .map_err(|source| Error::Sandbox {
            what: "listen",
            addr,
            source,
        })?;
    println!("sandbox provider listening on {}", sandbox.base_url());
    println!(
        "  OPENAI_BASE_URL={} works with the official SDKs",
        sandbox.base_url()
    );
    println!(
        "  Bedrock: boto3.client(\"bedrock\", endpoint_url=\"{}\") (any credentials); jobs use {bedrock_bucket}",
        sandbox.anthropic_base_url()
    );
    if let Some(url) = pushing {
        println!("  batch webhooks pushed to {url}");
    }
    if !spec.is_empty() {
        println!("  injecting faults: {spec}");
    }
    shutdown_signal().await;
    sandbox.stop().await;
    Ok(())
}
