//! `batchdrop local`: a directory plays the bucket, the sandbox plays the provider, and one loop
//! does what the submit and poll functions do on AWS. With `--webhook-addr`, OpenAI batch
//! webhooks are taken at `POST /webhooks/openai/<route>` there and advance their job at once;
//! the embedded sandbox then pushes its batch webhooks to it (signed with a secret made for
//! the run), so the poll interval can be long. With `--api-addr` and `--api-keys`, the Batch
//! API (as `batchdrop api`) is served over the same root, its jobs advanced by this loop.

use crate::embedded::{SandboxFlags, start_sandbox};
use crate::error::Error;
use crate::printer::Printer;
use crate::signal::shutdown_signal;
use batchdrop_api::auth::Keys;
use batchdrop_api::{ApiState, router};
use batchdrop_core::clock::SystemClock;
use batchdrop_core::config::{Config, process_env};
use batchdrop_core::engine::{Engine, SubmitOutcome};
use batchdrop_core::layout;
use batchdrop_core::push::{InboundSecrets, Receiver};
use batchdrop_core::store::{LocalStore, ObjectStore};
use batchdrop_core::webhooks::{WebhookSecret, Webhooks};
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The directory that plays the bucket (inbox/, results/, _batchdrop/ go under it).
    #[arg(long, default_value = "bucket")]
    root: PathBuf,
    /// Config file (TOML). Default: $BATCHDROP_CONFIG, else the built-in routes.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    sandbox: SandboxFlags,
    /// Seconds between polls of the provider.
    #[arg(long, default_value_t = 2.0)]
    poll_interval: f64,
    /// Exit once every job has finished and no file waits in the inbox.
    #[arg(long)]
    exit_when_idle: bool,
    /// Take OpenAI batch webhooks at http://ADDR/webhooks/openai/ROUTE (routes with
    /// webhook_in_secret_env; the embedded sandbox pushes to its `sandbox` route).
    #[arg(long, value_name = "ADDR")]
    webhook_addr: Option<std::net::SocketAddr>,
    /// Also serve the Batch API (OpenAI's Files + Batches and Anthropic's Message Batches
    /// wire formats, as `batchdrop api`) at http://ADDR/v1 over this root.
    #[arg(long, value_name = "ADDR", requires = "api_keys")]
    api_addr: Option<std::net::SocketAddr>,
    /// The keys file of `--api-addr` (entries made by `batchdrop api keygen`).
    #[arg(long, value_name = "FILE", requires = "api_addr")]
    api_keys: Option<PathBuf>,
}

pub async fn run(args: LocalArgs) -> Result<(), Error> {
    std::fs::create_dir_all(args.root.join(layout::INBOX)).map_err(|source| Error::File {
        action: "create",
        path: args.root.join("inbox"),
        source,
    })?;
    let store = LocalStore::new(&args.root).map_err(|source| Error::OpenRoot {
        root: args.root.clone(),
        source,
    })?;
    let mut config = match &args.config {
        Some(path) => Config::from_path(&path.to_string_lossy(), &process_env),
        None => Config::from_env(&process_env),
    }
    .map_err(|source| Error::Config { source, hint: "" })?;

    let mut secrets = InboundSecrets::resolve(&config, &process_env, &|_| None);
    let listener = match args.webhook_addr {
        Some(addr) => Some(bind(addr, "listen for webhooks").await?),
        None => None,
    };
    // The Batch API's keys and address, checked before anything starts.
    let api = match (&args.api_addr, &args.api_keys) {
        (Some(addr), Some(keys)) => Some((
            Keys::from_path(keys).map_err(|source| Error::ApiKeys { source })?,
            bind(*addr, "listen for the Batch API").await?,
        )),
        _ => None,
    };
    let mut flags = args.sandbox.clone();
    if let Some((_, addr)) = &listener
        && !flags.no_sandbox
    {
        // The embedded sandbox pushes to this process with a secret made for the run.
        let secret = WebhookSecret::generate();
        let parsed = WebhookSecret::parse(&secret).map_err(|e| Error::usage(e.to_string()))?;
        secrets.insert("sandbox", parsed);
        let mut push = batchdrop_sandbox::PushConfig::new(
            format!(
                "http://{addr}{}",
                batchdrop_api::webhooks::path_of("sandbox")
            ),
            secret,
        );
        push.every = Some(Duration::from_millis(200));
        flags.push = Some(push);
    }
    let sandbox = start_sandbox(&flags, Some(&args.root), &mut config).await?;

    let providers = batchdrop_core::providers::clients(&config.routes, &process_env);
    let mut webhooks = Webhooks::from_routes(&config.routes, &process_env, &|_| None);
    if let Some((keys, _)) = &api {
        // The Batch API's keys sign their own webhooks.
        webhooks = webhooks.with_tenants(keys.webhooks(), &process_env, &|_| None);
    }
    for problem in webhooks.problems() {
        println!("webhooks will fail: {problem}");
    }
    let root_name = store.root().display().to_string();
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let engine_config = Arc::new(config);
    let engine = Engine::new(
        store.clone(),
        root_name.clone(),
        engine_config.clone(),
        Arc::new(providers),
        Arc::new(SystemClock),
    )
    .with_webhooks(Arc::new(webhooks))
    .with_owner(format!("local:{root_name}"))
    .with_observer(Arc::new(Printer));

    println!("batchdrop local: watching {root_name}/inbox/");
    if let Some(s) = &sandbox {
        println!("sandbox provider at {}", s.base_url());
    }
    let webhooks = listener.map(|(listener, addr)| {
        for (route, problem) in secrets.problems() {
            println!("webhooks of route {route} are refused: {problem}");
        }
        println!(
            "webhooks: http://{addr}/webhooks/openai/ROUTE (routes: {})",
            secrets.routes().join(", ")
        );
        let receiver = Receiver::new(
            engine.clone(),
            engine_config.clone(),
            Arc::new(secrets),
            Arc::new(SystemClock),
        );
        let app = batchdrop_api::webhooks::routes(receiver);
        tokio::spawn(async move { axum::serve(listener, app).await })
    });
    let api = api.map(|(keys, (listener, addr))| {
        println!(
            "batchdrop api: http://{addr}/v1 over {root_name} ({} tenant(s))",
            keys.len()
        );
        let state = ApiState {
            store: store.clone(),
            engine: engine.clone(),
            config: engine_config.clone(),
            keys: Arc::new(keys),
            clock: Arc::new(SystemClock),
            download_redirects: None,
        };
        tokio::spawn(async move { axum::serve(listener, router(state)).await })
    });
    let result = watch(&engine, store.as_ref(), &args).await;
    for server in [webhooks, api].into_iter().flatten() {
        server.abort();
    }
    if let Some(s) = sandbox {
        s.stop().await;
    }
    result
}

/// Binds an address before anything starts (so a taken port fails at once).
async fn bind(
    addr: std::net::SocketAddr,
    what: &'static str,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::ApiServe { what, addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::ApiServe { what, addr, source })?;
    Ok((listener, bound))
}

async fn watch(engine: &Engine, store: &dyn ObjectStore, args: &LocalArgs) -> Result<(), Error> {
    // key → ETag seen on the previous tick; a file is submitted once it is unchanged for one
    // tick (so a file still being copied in is not read half-written).
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut done: HashMap<String, String> = HashMap::new();
    let poll_every = Duration::from_secs_f64(args.poll_interval.max(0.1));
    let mut last_poll = Instant::now() - poll_every;
    let tick = Duration::from_millis(500);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let listed = store
            .list(layout::INBOX)
            .await
            .map_err(|source| Error::List {
                what: "the inbox",
                source: Box::new(source),
            })?;
        let mut waiting = 0;
        for object in listed {
            if done.get(&object.key) == Some(&object.etag) {
                continue;
            }
            if layout::InboxKey::parse(&object.key).is_none() {
                continue;
            }
            if pending.get(&object.key) != Some(&object.etag) {
                pending.insert(object.key.clone(), object.etag.clone());
                waiting += 1;
                continue;
            }
            pending.remove(&object.key);
            match engine.submit(&object.key, Some(&object.etag)).await {
                Ok(SubmitOutcome::Ignored { reason }) => println!("ignored: {reason}"),
                Ok(SubmitOutcome::Superseded) => {
                    println!(
                        "{} changed while being read; will read it again",
                        object.key
                    );
                    continue;
                }
                Ok(SubmitOutcome::Duplicate { .. }) | Ok(SubmitOutcome::Started { .. }) => {}
                Err(e) if e.is_retryable() => {
                    println!("{}: {e} (will try again)", object.key);
                    continue;
                }
                Err(e) => println!("{}: {e}", object.key),
            }
            done.insert(object.key, object.etag);
        }
        for object in store
            .list(layout::CANCEL)
            .await
            .map_err(|source| Error::List {
                what: "cancel/",
                source: Box::new(source),
            })?
        {
            if done.get(&object.key) == Some(&object.etag)
                || layout::InboxKey::parse_cancel(&object.key).is_none()
            {
                continue;
            }
            match engine.cancel(&object.key).await {
                Ok(jobs) if jobs.is_empty() => {
                    println!("{}: no unfinished job to cancel", object.key)
                }
                Ok(jobs) => println!("{}: cancelling {}", object.key, jobs.join(", ")),
                Err(e) => {
                    println!("{}: {e} (will try again)", object.key);
                    continue;
                }
            }
            done.insert(object.key, object.etag);
        }
        let mut active = usize::MAX;
        if last_poll.elapsed() >= poll_every {
            last_poll = Instant::now();
            match engine.poll().await {
                Ok(report) => {
                    for (job, err) in &report.failures {
                        println!("job {job}: {err}");
                    }
                    active = report.active - report.finished.len();
                }
                Err(e) => println!("poll failed: {e} (will try again)"),
            }
        }
        if args.exit_when_idle && active == usize::MAX && args.webhook_addr.is_some() {
            // Jobs finish between polls when webhooks advance them.
            active = store
                .list(layout::ACTIVE)
                .await
                .map_or(usize::MAX, |jobs| jobs.len());
        }
        if args.exit_when_idle && active == 0 && waiting == 0 && pending.is_empty() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut shutdown => {
                println!("batchdrop local: stopping");
                return Ok(());
            }
        }
    }
}
