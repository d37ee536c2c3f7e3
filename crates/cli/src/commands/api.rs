//! `batchdrop api`: serve batchdrop's own Batch API (OpenAI Files + Batches wire format) over
//! a local root or an S3 bucket, and poll the bucket's jobs so that they progress; and
//! `batchdrop api keygen`, which makes a key and prints its keys-file entry.
//!
//! The server polls every active job of the bucket, as `batchdrop local` does (without
//! watching the inbox). Leases keep two pollers of one bucket from acting on a job at once,
//! but a job's batches are known only to the provider that made them: with the embedded
//! sandbox, let one process poll (see the README, "The Batch API").

use crate::bucket::Target;
use crate::embedded::{SandboxFlags, start_sandbox};
use crate::error::Error;
use crate::printer::Printer;
use crate::signal::shutdown_signal;
use batchdrop_api::auth::{self, Keys};
use batchdrop_api::{ApiState, router, with_webhooks};
use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::process_env;
use batchdrop_core::engine::Engine;
use batchdrop_core::push::{InboundSecrets, Receiver};
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const AFTER_HELP: &str = concat!(
    "Clients use http://ADDR/v1 as their OpenAI base URL (the tenant's default route), or\n",
    "http://ADDR/routes/ROUTE/v1 for another of its routes, with their batchdrop key as the\n",
    "API key. Anthropic SDK clients use http://ADDR (or http://ADDR/routes/ROUTE) as their\n",
    "base URL: /v1/messages/batches serves Message Batches over the same batches, and\n",
    "/v1/prompt-batches takes an array of prompts. Results come back in each API's own shape,\n",
    "whatever the route's provider.\n",
    "Make a key with `batchdrop api keygen --tenant NAME --route ROUTE`.\n\n",
    "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
);

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ApiArgs {
    #[command(subcommand)]
    command: Option<ApiCommand>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Print a new random key and the keys-file entry that gives it to a tenant (only the
    /// key's SHA-256 goes in the file; the key is shown once).
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    addr: SocketAddr,
    /// The keys file (TOML): per tenant its name, key_sha256, routes and default_route.
    #[arg(long, value_name = "FILE")]
    keys: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    sandbox: SandboxFlags,
    /// Seconds between polls of the bucket's jobs (0: do not poll; another process does).
    #[arg(long, default_value_t = 2.0)]
    poll_interval: f64,
    /// Answer a download served as it is (an upload, an untranslated output file) with a
    /// redirect to a presigned URL valid 15 minutes (S3 buckets only; a local root streams).
    #[arg(long)]
    redirect_downloads: bool,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// The tenant's name: 1 to 64 of a-z, 0-9, '_' and '-' (its prefix in the bucket).
    #[arg(long)]
    tenant: String,
    /// A route its batches may run on (repeat for several; the first is the default).
    #[arg(long = "route", value_name = "ROUTE", default_value = "sandbox")]
    routes: Vec<String>,
    /// Where to POST a signed webhook when each of its batches ends (http or https).
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// The environment variable holding the webhook's signing secret (whsec_…).
    #[arg(
        long,
        value_name = "VAR",
        requires = "webhook_url",
        conflicts_with = "webhook_secret_arn"
    )]
    webhook_secret_env: Option<String>,
    /// The Secrets Manager secret holding it (on AWS: named <stack name>/tenant-webhooks/…).
    #[arg(long, value_name = "ARN", requires = "webhook_url")]
    webhook_secret_arn: Option<String>,
}

pub async fn run(args: ApiArgs) -> Result<(), Error> {
    match args.command {
        Some(ApiCommand::Keygen(k)) => keygen(k),
        None => serve(args.serve).await,
    }
}

fn keygen(args: KeygenArgs) -> Result<(), Error> {
    if !auth::is_plain_name(&args.tenant, false) {
        return Err(Error::usage(format!(
            "--tenant {:?}: use 1 to 64 of a-z, 0-9, '_' and '-'",
            args.tenant
        )));
    }
    // A webhook is checked as the keys file will check it, before a key is made.
    batchdrop_core::config::webhook_of(
        args.webhook_url.clone(),
        args.webhook_secret_env.clone(),
        args.webhook_secret_arn.clone(),
        None,
        None,
    )
    .map_err(|reason| Error::usage(format!("--webhook-url: {reason}")))?;
    let (key, digest) = auth::new_key().map_err(|e| Error::KeyGen(e.into()))?;
    let default = args.routes.first().cloned().unwrap_or_default();
    println!("key for tenant {}: {key}", args.tenant);
    println!("(shown once: batchdrop keeps only its SHA-256.) Add to the keys file:\n");
    print!(
        "{}",
        auth::keys_file_entry(&args.tenant, &digest, &args.routes, &default)
    );
    print!(
        "{}",
        auth::webhook_entry_lines(
            args.webhook_url.as_deref(),
            args.webhook_secret_env.as_deref(),
            args.webhook_secret_arn.as_deref(),
        )
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<(), Error> {
    let Some(keys_path) = &args.keys else {
        return Err(Error::usage(
            "batchdrop api needs --keys FILE (make an entry with `batchdrop api keygen --tenant NAME`)",
        ));
    };
    let keys = Keys::from_path(keys_path).map_err(|source| Error::ApiKeys { source })?;
    let bucket = args.target.open(true).await?;
    let mut config = args.target.load_config()?;
    let root = args
        .target
        .bucket
        .is_none()
        .then_some(args.target.root.as_path());
    let sandbox = start_sandbox(&args.sandbox, root, &mut config).await?;
    let config = Arc::new(config);
    let providers = batchdrop_core::providers::clients(&config.routes, &process_env);
    let webhooks =
        batchdrop_core::webhooks::Webhooks::from_routes(&config.routes, &process_env, &|_| None)
            .with_tenants(keys.webhooks(), &process_env, &|_| None);
    for problem in webhooks.problems() {
        println!("webhooks will fail: {problem}");
    }
    let engine = Engine::new(
        bucket.store.clone(),
        bucket.name.clone(),
        config.clone(),
        Arc::new(providers),
        Arc::new(SystemClock),
    )
    .with_webhooks(Arc::new(webhooks))
    .with_owner(format!("api:{}", bucket.name))
    .with_observer(Arc::new(Printer));
    let state = ApiState {
        store: bucket.store.clone(),
        engine: engine.clone(),
        config,
        keys: Arc::new(keys),
        clock: Arc::new(SystemClock),
        download_redirects: args
            .redirect_downloads
            .then_some(batchdrop_api::DOWNLOAD_URL_VALIDITY),
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|source| Error::ApiServe {
            what: "listen",
            addr: args.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::ApiServe {
        what: "listen",
        addr: args.addr,
        source,
    })?;
    println!(
        "batchdrop api: http://{addr}/v1 over {} ({} tenant(s))",
        bucket.store.describe(),
        state.keys.len()
    );
    if let Some(s) = &sandbox {
        println!("sandbox provider at {}", s.base_url());
    }
    // OpenAI batch webhooks in, beside the Batch API (routes with webhook_in_secret_env).
    let secrets = InboundSecrets::resolve(&state.config, &process_env, &|_| None);
    for (route, problem) in secrets.problems() {
        println!("webhooks of route {route} are refused: {problem}");
    }
    let receiver = Receiver::new(
        engine.clone(),
        state.config.clone(),
        Arc::new(secrets),
        Arc::new(SystemClock),
    );
    let app = with_webhooks(router(state), receiver);
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal());
    // The poll loop runs beside the server on this task: the engine's futures are driven
    // where they are made.
    let result = tokio::select! {
        served = server => served.map_err(|source| Error::ApiServe { what: "serve", addr, source }),
        _ = poll_forever(&engine, args.poll_interval) => Ok(()),
    };
    println!("batchdrop api: stopped");
    if let Some(s) = sandbox {
        s.stop().await;
    }
    result
}

/// Advances the bucket's active jobs every `interval` seconds (never when 0).
async fn poll_forever(engine: &Engine, interval: f64) {
    if interval <= 0.0 {
        return std::future::pending().await;
    }
    let every = Duration::from_secs_f64(interval.max(0.1));
    loop {
        match engine.poll().await {
            Ok(report) => {
                for (job, err) in &report.failures {
                    println!("job {job}: {err}");
                }
            }
            Err(e) => println!("poll failed: {e} (will try again)"),
        }
        tokio::time::sleep(every).await;
    }
}
