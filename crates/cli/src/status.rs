//! `batchdrop status`: jobs with a progress bar each, read from their manifests.
//!
//! Progress comes from the manifest alone (no provider call, no key needed): a request is done
//! once its batch has been collected, in flight while its batch is at the provider, waiting
//! while its chunk is staged. Batches are counted by the provider's status word. The cost so
//! far is the collected batches' usage at the price table.

use crate::ops::{self, Bucket, Selector, Target, usd};
use batchdrop_core::config::Config;
use batchdrop_core::cost::{self, Cost};
use batchdrop_core::manifest::{ChunkState, Manifest, Usage};
use clap::Args;
use serde::Serialize;
use std::io::IsTerminal;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// What `status` shows of one job; also its `--json` form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub route: String,
    pub key: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub elapsed_seconds: i64,
    pub requests: Requests,
    /// Batches by the provider's status word (`staged`: not sent yet), in progress order.
    #[serde(serialize_with = "as_object")]
    pub batches: Vec<(String, u64)>,
    pub usage: Usage,
    pub cost: Cost,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// Accepted requests.
    pub total: u64,
    /// Requests whose batch has been collected.
    pub done: u64,
    /// Requests in batches at the provider.
    pub in_flight: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Input lines rejected before sending.
    pub rejected: u64,
    /// Requests sent again after a failure worth retrying.
    pub retried: u64,
}

fn as_object<S: serde::Serializer>(pairs: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// The progress of a job from its manifest.
pub fn requests_of(m: &Manifest) -> Requests {
    let mut r = Requests {
        total: m.counts.accepted,
        rejected: m.counts.rejected,
        ..Requests::default()
    };
    for c in &m.chunks {
        match c.state {
            ChunkState::Collected => {
                r.done += c.succeeded + c.failed;
                r.succeeded += c.succeeded;
                r.failed += c.failed;
                r.retried += c.retried;
            }
            ChunkState::Submitted | ChunkState::Submitting => r.in_flight += c.plan.requests,
            ChunkState::Staged => {}
        }
    }
    if m.status.is_finished() {
        r.done = r.total;
        r.in_flight = 0;
    }
    r
}

/// Batches by state: staged, submitting, then the provider's words, then the final ones.
fn batches_of(m: &Manifest) -> Vec<(String, u64)> {
    let mut counts: Vec<(u8, String, u64)> = Vec::new();
    for c in &m.chunks {
        let (rank, word) = match c.state {
            ChunkState::Staged => (0, "staged".to_string()),
            ChunkState::Submitting => (1, "submitting".to_string()),
            ChunkState::Submitted => (
                2,
                c.provider_status
                    .clone()
                    .unwrap_or_else(|| "submitted".into()),
            ),
            ChunkState::Collected => (
                3,
                c.provider_status
                    .clone()
                    .unwrap_or_else(|| "collected".into()),
            ),
        };
        match counts.iter_mut().find(|(r, w, _)| *r == rank && *w == word) {
            Some(slot) => slot.2 += 1,
            None => counts.push((rank, word, 1)),
        }
    }
    counts.sort();
    counts.into_iter().map(|(_, w, n)| (w, n)).collect()
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

pub fn view(m: &Manifest, config: &Config, now: OffsetDateTime) -> JobView {
    let started = parse_time(&m.created_at);
    let ended = m
        .finished_at
        .as_deref()
        .and_then(parse_time)
        .filter(|_| m.status.is_finished());
    let elapsed = match started {
        Some(s) => (ended.unwrap_or(now) - s).whole_seconds().max(0),
        None => 0,
    };
    let default_model = config
        .route(&m.route)
        .and_then(|r| r.defaults.model.as_deref());
    JobView {
        job_id: m.job_id.clone(),
        route: m.route.clone(),
        key: m.input.key.clone(),
        status: status_word(m),
        reason: m.reason.clone(),
        cancel_requested: m
            .cancel_requested
            .clone()
            .filter(|_| !m.status.is_finished()),
        created_at: m.created_at.clone(),
        finished_at: m.finished_at.clone(),
        elapsed_seconds: elapsed,
        requests: requests_of(m),
        batches: batches_of(m),
        usage: m.usage(),
        cost: cost::job_cost(m, &config.prices, default_model),
    }
}

/// `running`, `completed`, …; `planning (42%)` while the upload is still being read.
fn status_word(m: &Manifest) -> String {
    match &m.planning {
        Some(cursor) if !m.status.is_finished() => {
            let read = (cursor.offset * 100)
                .checked_div(m.input.bytes)
                .unwrap_or(100);
            format!("planning ({read}%)")
        }
        _ => m.status.as_str().to_string(),
    }
}

/// "running: 4/9 requests done, 2 batches at the provider", for other commands' messages.
pub fn progress_words(m: &Manifest) -> String {
    let r = requests_of(m);
    let at_provider = m
        .chunks
        .iter()
        .filter(|c| matches!(c.state, ChunkState::Submitted | ChunkState::Submitting))
        .count();
    format!(
        "{}: {}/{} requests done, {at_provider} batch(es) at the provider",
        status_word(m),
        r.done,
        r.total
    )
}

pub fn elapsed_words(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        (seconds / 3600) % 24,
        (seconds / 60) % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h}:{m:02}:{s:02}")
    }
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
    if let Some(reason) = &v.reason {
        line.push_str(&format!("; reason: {reason}"));
    }
    line
}

pub async fn run(args: StatusArgs) -> Result<(), String> {
    let selector = args
        .what
        .as_deref()
        .map(|w| Selector::parse(w).unwrap_or_else(|e| ops::usage_error(e)));
    if !(args.interval > 0.0 && args.interval.is_finite()) {
        ops::usage_error("--interval must be a positive number of seconds");
    }
    let config = args.target.load_config()?;
    let bucket = args.target.open(false).await?;
    let tty = std::io::stdout().is_terminal();
    let mut shutdown = std::pin::pin!(crate::local::shutdown_signal());
    let mut last_lines: Vec<String> = Vec::new();
    loop {
        let jobs = match ops::load_jobs(&bucket, selector.as_ref()).await {
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
        let views: Vec<JobView> = jobs
            .iter()
            .take(limit)
            .map(|m| view(m, &config, now))
            .collect();
        if views.is_empty() && !args.watch {
            return match &args.what {
                Some(what) => Err(format!(
                    "no job matches {what} in {} (`batchdrop status{}` lists every job){}",
                    bucket.store.describe(),
                    bucket.flag,
                    selector
                        .as_ref()
                        .map(|s| ops::route_hint(&config, s))
                        .unwrap_or_default()
                )),
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
