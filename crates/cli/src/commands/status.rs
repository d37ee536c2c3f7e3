//! `batchdrop status`: jobs, most recent first, with a progress bar each (a block per job on a
//! terminal, a line per job otherwise, JSON with `--json`), once or refreshed with `--watch`.
//! What a job shows comes from its manifest alone (see [`crate::jobs`]).

use crate::bucket::{Bucket, Target};
use crate::error::Error;
use crate::jobs::{
    JobView, Requests, budget_words, deadline_words, load_jobs, view, webhook_words, with_spend,
    with_webhooks,
};
use crate::selector::{Selector, route_hint};
use crate::signal::shutdown_signal;
use crate::text::{elapsed_words, usd};
use batchdrop_core::cost::Cost;
use clap::Args;
use std::io::IsTerminal;
use std::time::Duration;
use time::OffsetDateTime;

pub const AFTER_HELP: &str = concat!(
    "Examples:\n",
    "  batchdrop status                       the 10 most recent jobs\n",
    "  batchdrop status sandbox/run1/requests --watch\n",
    "  batchdrop status j3f9c0a81 --json      one job, for scripts\n\n",
    "Progress counts requests whose batch has been collected; batches show the provider's\n",
    "status words (validating, in_progress, finalizing, completed, …). The cost so far is\n",
    "what the collected batches used, at the price table (see `batchdrop estimate --help`).\n",
    "With --watch and a PATH or JOB, it exits once every job shown has finished.\n\n",
    "Exit codes: 0 ok, 1 failure (a message says what to do), 2 usage."
);

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One upload's jobs (route/path) or one job (its id, or the start of it). All jobs when
    /// left out.
    #[arg(value_name = "PATH|JOB")]
    what: Option<String>,
    /// Refresh every --interval seconds; with PATH|JOB, stop once every job shown has finished.
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    interval: f64,
    /// JSON for scripts: an array of jobs (one array per line with --watch).
    #[arg(long)]
    json: bool,
    /// Show the N most recent jobs (0: all).
    #[arg(long, default_value_t = 10, value_name = "N")]
    limit: usize,
    #[command(flatten)]
    target: Target,
}

/// A bar of `width` cells: done, in flight, waiting.
pub fn bar(r: &Requests, width: usize, glyphs: [char; 3]) -> String {
    let total = r.total.max(1) as f64;
    let done = ((r.done as f64 / total) * width as f64).round() as usize;
    let started = (((r.done + r.in_flight) as f64 / total) * width as f64).round() as usize;
    let (done, started) = (done.min(width), started.min(width).max(done.min(width)));
    let mut s = String::with_capacity(width * 3);
    for i in 0..width {
        s.push(if i < done {
            glyphs[0]
        } else if i < started {
            glyphs[1]
        } else {
            glyphs[2]
        });
    }
    s
}

fn percent(r: &Requests) -> u64 {
    (r.done * 100).checked_div(r.total).unwrap_or(100)
}

fn path_of(v: &JobView) -> String {
    batchdrop_core::layout::InboxKey::parse(&v.key)
        .map(|k| format!("{}/{}", k.route, k.path))
        .unwrap_or_else(|| v.key.clone())
}

fn batch_words(v: &JobView) -> String {
    if v.batches.is_empty() {
        return "none".into();
    }
    v.batches
        .iter()
        .map(|(w, n)| format!("{n} {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_words(v: &JobView) -> String {
    let r = &v.requests;
    let mut parts = vec![
        format!("{} rejected line(s)", r.rejected),
        format!("{} failed request(s)", r.failed),
    ];
    if r.retried > 0 {
        parts.push(format!("{} retried", r.retried));
    }
    parts.join(", ")
}

fn cost_words(c: &Cost) -> String {
    let mut s = format!(
        "{} at batch prices ({} synchronous; saved {})",
        usd(c.batch),
        usd(c.synchronous_equivalent),
        usd(c.saved)
    );
    if !c.unpriced.is_empty() {
        let names: Vec<&str> = c.unpriced.iter().map(|u| u.model.as_str()).collect();
        s.push_str(&format!("; no price for {}", names.join(", ")));
    }
    s
}

/// The block of one job on a terminal.
pub fn render_block(v: &JobView) -> String {
    let r = &v.requests;
    let mut status = v.status.clone();
    if v.cancel_requested.is_some() {
        status.push_str(" (cancelling)");
    }
    let mut out = format!(
        "{}  {:<10} {:>9}  {}\n",
        v.job_id,
        status,
        elapsed_words(v.elapsed_seconds),
        path_of(v)
    );
    out.push_str(&format!(
        "  [{}]  {}/{} requests ({}%)\n",
        bar(r, 30, ['█', '▒', '░']),
        r.done,
        r.total,
        percent(r)
    ));
    out.push_str(&format!("  batches: {}\n", batch_words(v)));
    out.push_str(&format!("  errors:  {}\n", error_words(v)));
    out.push_str(&format!(
        "  cost:    {}{}\n",
        cost_words(&v.cost),
        if v.status == "running" { " so far" } else { "" }
    ));
    if let Some(deadline) = deadline_words(v, OffsetDateTime::now_utc()) {
        out.push_str(&format!("  deadline: {deadline}\n"));
    }
    if let Some(budget) = budget_words(v) {
        out.push_str(&format!("  budget:  {budget}\n"));
    }
    if let Some(waiting) = &v.waiting {
        out.push_str(&format!("  waiting: {waiting}\n"));
    }
    if let Some(webhooks) = webhook_words(v) {
        out.push_str(&format!("  webhook: {webhooks}\n"));
    }
    if let Some(reason) = &v.reason {
        out.push_str(&format!("  reason:  {reason}\n"));
    }
    out
}

/// One plain line per job, for logs and pipes.
pub fn render_line(v: &JobView) -> String {
    let r = &v.requests;
    let status = if v.cancel_requested.is_some() {
        format!("{} (cancelling)", v.status)
    } else {
        v.status.clone()
    };
    let mut line = format!(
        "{} {} {} [{}] {}/{} requests; batches: {}; {} rejected, {} failed; elapsed {}; cost {} (saved {})",
        v.job_id,
        status,
        path_of(v),
        bar(r, 20, ['#', '~', '.']),
        r.done,
        r.total,
        batch_words(v),
        r.rejected,
        r.failed,
        elapsed_words(v.elapsed_seconds),
        usd(v.cost.batch),
        usd(v.cost.saved),
    );
    if let Some(deadline) = deadline_words(v, OffsetDateTime::now_utc()) {
        line.push_str(&format!("; deadline {deadline}"));
    }
    if let Some(budget) = budget_words(v) {
        line.push_str(&format!("; budget {budget}"));
    }
    if let Some(waiting) = &v.waiting {
        line.push_str(&format!("; waiting: {waiting}"));
    }
    if let Some(webhooks) = webhook_words(v) {
        line.push_str(&format!("; webhook: {webhooks}"));
    }
    if let Some(reason) = &v.reason {
        line.push_str(&format!("; reason: {reason}"));
    }
    line
}

pub async fn run(args: StatusArgs) -> Result<(), Error> {
    let selector = args.what.as_deref().map(Selector::parse).transpose()?;
    if !(args.interval > 0.0 && args.interval.is_finite()) {
        return Err(Error::usage(
            "--interval must be a positive number of seconds",
        ));
    }
    let config = args.target.load_config()?;
    let bucket = args.target.open(false).await?;
    let tty = std::io::stdout().is_terminal();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut last_lines: Vec<String> = Vec::new();
    loop {
        let jobs = match load_jobs(&bucket, selector.as_ref()).await {
            Ok(jobs) => jobs,
            // A watch outlives a hiccup of the store; a single look reports it.
            Err(e) if args.watch => {
                eprintln!("batchdrop: {e} (trying again)");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let limit = if args.limit == 0 {
            usize::MAX
        } else {
            args.limit
        };
        let now = OffsetDateTime::now_utc();
        let shown = &jobs[..jobs.len().min(limit)];
        let mut views: Vec<JobView> = shown.iter().map(|m| view(m, &config, now)).collect();
        // The provider's queue is shared by every job of a route: count them all.
        let queued = shown.iter().any(|m| {
            config
                .route(&m.route)
                .is_some_and(|r| r.spend.max_enqueued_tokens.is_some())
        });
        let all = if queued && selector.is_some() {
            load_jobs(&bucket, None).await?
        } else {
            Vec::new()
        };
        let all = if all.is_empty() { &jobs[..] } else { &all[..] };
        with_spend(&bucket, &config, &mut views, shown, all).await?;
        with_webhooks(&bucket, &mut views, shown).await?;
        if views.is_empty() && !args.watch {
            return match &args.what {
                Some(what) => Err(Error::Job(format!(
                    "no job matches {what} in {} (`batchdrop status{}` lists every job){}",
                    bucket.store.describe(),
                    bucket.flag,
                    selector
                        .as_ref()
                        .map(|s| route_hint(&config, s))
                        .unwrap_or_default()
                ))),
                None => {
                    if args.json {
                        println!("[]");
                    } else {
                        println!(
                            "no jobs in {} yet: upload a file with `batchdrop submit FILE --route R{}`",
                            bucket.store.describe(),
                            bucket.flag
                        );
                    }
                    Ok(())
                }
            };
        }
        show(&args, &bucket, &views, tty, &mut last_lines, now);
        let all_done = !views.is_empty() && views.iter().all(|v| v.status != "running");
        if !args.watch || (selector.is_some() && all_done) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(args.interval)) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}

fn show(
    args: &StatusArgs,
    bucket: &Bucket,
    views: &[JobView],
    tty: bool,
    last_lines: &mut Vec<String>,
    now: OffsetDateTime,
) {
    if args.json {
        let text = if args.watch {
            serde_json::to_string(views)
        } else {
            serde_json::to_string_pretty(views)
        };
        println!("{}", text.unwrap_or_else(|_| "[]".into()));
        return;
    }
    if tty {
        let mut screen = String::new();
        if args.watch {
            // Home, clear: redraw in place.
            screen.push_str("\x1b[H\x1b[2J");
            screen.push_str(&format!(
                "batchdrop status — {} — {:02}:{:02}:{:02} UTC — every {}s, Ctrl-C to stop\n\n",
                bucket.store.describe(),
                now.hour(),
                now.minute(),
                now.second(),
                args.interval
            ));
        }
        if views.is_empty() {
            screen.push_str(&format!(
                "waiting for a job for {} to appear…\n",
                args.what.as_deref().unwrap_or("this bucket")
            ));
        }
        for v in views {
            screen.push_str(&render_block(v));
            screen.push('\n');
        }
        print!("{screen}");
        return;
    }
    // Plain lines; with --watch, a job's line again only when its progress changed.
    let lines: Vec<String> = views.iter().map(render_line).collect();
    for line in &lines {
        let progress = |l: &str| l.split("; elapsed").next().unwrap_or("").to_string();
        if !args.watch || !last_lines.iter().any(|old| progress(old) == progress(line)) {
            println!("{line}");
        }
    }
    *last_lines = lines;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_shows_done_in_flight_and_waiting() {
        let r = Requests {
            total: 10,
            done: 3,
            in_flight: 4,
            ..Requests::default()
        };
        assert_eq!(bar(&r, 10, ['#', '~', '.']), "###~~~~...");
        let empty = Requests::default();
        assert_eq!(bar(&empty, 4, ['#', '~', '.']), "....");
    }

    #[test]
    fn elapsed_reads_as_a_clock() {
        assert_eq!(elapsed_words(0), "0:00:00");
        assert_eq!(elapsed_words(3_725), "1:02:05");
        assert_eq!(elapsed_words(90_061), "1d 01:01:01");
    }
}
