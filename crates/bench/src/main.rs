//! `batchdrop-bench` (`make bench`): generates batchdrop's benchmark inputs under `target/bench/`
//! and measures, in one run on the same files:
//! - plan throughput (read + validate + chunk + stage to the local store) against
//!   `split -l 50000` and `cat` of the same file ([`plan`]);
//! - peak RSS of submit on the small and the large chat file ([`plan`], a child process each);
//! - end-to-end time of a million requests through `batchdrop local` with an instant sandbox,
//!   by phase ([`e2e`]), and the peak RSS of `batchdrop local` (its sandbox included) on that
//!   input and on a tenth of it;
//! - one poll tick over many active jobs ([`poll`]);
//! - the synchronous lane's requests per second against an instant server, and the same
//!   requests sent straight to it ([`lane`]);
//! - paying once: requests sent and USD paid on a corpus with repeats, with `reuse_results`
//!   and without, in this process ([`reuse`]);
//! - push against poll: submit to summary.json with the sandbox pushing its batch webhook
//!   and with polls only ([`push`]);
//! - the stripped size of the Lambda binaries ([`binaries`]).
//!
//! It prints a table and writes the same figures, each with its target and verdict, to
//! `report.json`. A missed target is reported, never an error: the exit status is non-zero only
//! when a figure could not be measured at all.

mod binaries;
mod e2e;
mod error;
mod generate;
mod lane;
mod plan;
mod poll;
mod process;
mod push;
mod report;
mod reuse;

use clap::{Parser, Subcommand};
use error::{BenchError, Context};
use generate::{Amount, Input, Kind, Spec};
use report::{Figure, Report, mb_per_s, r3, size_text};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "batchdrop-bench",
    about = "Measures batchdrop: plan throughput, submit memory, end-to-end time, poll tick, binary sizes"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Smaller inputs for a fast sanity run: 10 MB / 50 MB chat files, 20k and 100k requests
    /// end to end, 100 jobs polled.
    #[arg(long)]
    quick: bool,
    /// Only this group of figures (`lane`: the synchronous lane's), with the sizes chosen.
    #[arg(long, value_enum)]
    only: Option<Group>,
    /// Tiny inputs, for the harness's own test (the figures mean nothing).
    #[arg(long, hide = true, conflicts_with = "quick")]
    tiny: bool,
    /// Where inputs, scratch space and report.json go. Default: `bench/` beside the directory
    /// of this binary (`target/bench` for `target/release/batchdrop-bench`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The directory holding the `batchdrop`, `submit` and `poll` binaries. Default: this
    /// binary's directory.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// A group of figures measured alone (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Group {
    /// The synchronous lane: lane.rate, lane.direct, lane.invocation.
    Lane,
    /// Paying once: reuse.sent, reuse.saved.
    Reuse,
    /// Push against poll: push.latency, push.poll.
    Push,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submits one file to a fresh local store with an instant provider and prints the
    /// timings as JSON (run as a child, so that its peak RSS is its own).
    #[command(hide = true)]
    SubmitOnly {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        work: PathBuf,
    },
}

/// How big each input is.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    mode: &'static str,
    chat_small: u64,
    chat_large: u64,
    prompts: u64,
    bad: u64,
    e2e_requests: u64,
    /// The smaller end-to-end input, for the growth of `batchdrop local`'s memory.
    e2e_small_requests: u64,
    poll_jobs: usize,
    e2e_timeout: Duration,
    /// Requests through the synchronous lane.
    lane_requests: u64,
    /// The deadline of the synchronous lane's poll invocation, from its start.
    lane_invocation: Duration,
    /// Requests per file of the reuse corpus.
    reuse_requests: u64,
}

const FULL: Sizes = Sizes {
    mode: "full",
    chat_small: 100_000_000,
    chat_large: 1_000_000_000,
    prompts: 100_000_000,
    bad: 100_000_000,
    e2e_requests: 1_000_000,
    e2e_small_requests: 100_000,
    poll_jobs: 1000,
    e2e_timeout: Duration::from_secs(1800),
    lane_requests: 20_000,
    lane_invocation: Duration::from_secs(30),
    reuse_requests: 100_000,
};
const QUICK: Sizes = Sizes {
    mode: "quick",
    chat_small: 10_000_000,
    chat_large: 50_000_000,
    prompts: 10_000_000,
    bad: 10_000_000,
    e2e_requests: 100_000,
    e2e_small_requests: 20_000,
    poll_jobs: 100,
    e2e_timeout: Duration::from_secs(600),
    lane_requests: 5_000,
    lane_invocation: Duration::from_secs(10),
    reuse_requests: 10_000,
};
const TINY: Sizes = Sizes {
    mode: "tiny",
    chat_small: 200_000,
    chat_large: 1_000_000,
    prompts: 100_000,
    bad: 100_000,
    e2e_requests: 2_000,
    e2e_small_requests: 500,
    poll_jobs: 10,
    e2e_timeout: Duration::from_secs(120),
    lane_requests: 200,
    lane_invocation: Duration::from_secs(2),
    reuse_requests: 500,
};

/// Targets from the issue.
const PLAN_VS_SPLIT: f64 = 0.5;
const RSS_LARGE_MAX_MB: f64 = 150.0;
const RSS_GROWTH_MAX: f64 = 1.10;
const E2E_MAX_SECS: f64 = 60.0;
/// Flat memory for the whole of `batchdrop local`, sandbox included.
const LOCAL_RSS_MAX_MB: f64 = 200.0;
const LOCAL_RSS_GROWTH_MAX: f64 = 1.25;
const POLL_TICK_MAX_SECS: f64 = 2.0;
/// The synchronous lane's concurrency, and its rate against the same client sent straight.
const LANE_CONCURRENCY: usize = 16;
const LANE_VS_DIRECT: f64 = 0.5;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("batchdrop-bench: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::SubmitOnly { input, work }) = &cli.command {
        return match runtime.block_on(plan::submit_only(input, work)) {
            Ok(timings) => {
                println!("{}", json!(timings));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("batchdrop-bench submit-only: {e}");
                ExitCode::from(1)
            }
        };
    }
    match run(&cli, &runtime) {
        Ok(report) if report.not_measured == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("batchdrop-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli, runtime: &tokio::runtime::Runtime) -> Result<Report, BenchError> {
    let sizes = if cli.tiny {
        TINY
    } else if cli.quick {
        QUICK
    } else {
        FULL
    };
    let exe = std::env::current_exe().context(|| "locating this binary".into())?;
    let bin_dir = match &cli.bin_dir {
        Some(dir) => dir.clone(),
        None => exe.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let dir = match &cli.dir {
        Some(dir) => dir.clone(),
        None => bin_dir
            .parent()
            .map(|target| target.join("bench"))
            .unwrap_or_else(|| PathBuf::from("target/bench")),
    };
    let load_at_start = loadavg();
    let inputs_dir = dir.join("inputs");
    let work = dir.join("work");
    plan::reset(&work)?;

    let all = cli.only.is_none();
    let mut inputs: Vec<Input> = Vec::new();
    let mut figures = Vec::new();
    if all {
        let specs = [
            chat_spec("chat", sizes.chat_small, 1),
            chat_spec("chat", sizes.chat_large, 2),
            Spec {
                name: format!("prompts-{}.jsonl", compact(sizes.prompts)),
                kind: Kind::Prompts,
                amount: Amount::Bytes(sizes.prompts),
                seed: 3,
            },
            Spec {
                name: format!("bad-1pct-{}.jsonl", compact(sizes.bad)),
                kind: Kind::Bad,
                amount: Amount::Bytes(sizes.bad),
                seed: 4,
            },
            Spec {
                name: format!("e2e-{}-requests.jsonl", count_text(sizes.e2e_requests)),
                kind: Kind::Chat,
                amount: Amount::Lines(sizes.e2e_requests),
                seed: 5,
            },
            Spec {
                name: format!(
                    "e2e-{}-requests.jsonl",
                    count_text(sizes.e2e_small_requests)
                ),
                kind: Kind::Chat,
                amount: Amount::Lines(sizes.e2e_small_requests),
                seed: 6,
            },
        ];
        for spec in &specs {
            eprintln!("bench: input {} …", spec.name);
            inputs.push(
                generate::ensure(&inputs_dir, spec)
                    .context(|| format!("generating {}", inputs_dir.join(&spec.name).display()))?,
            );
        }
        plan::flush_to_disk();
        let [chat_small, chat_large, prompts, bad, e2e_input, e2e_small] = inputs
            .clone()
            .try_into()
            .map_err(|_| BenchError::program("batchdrop-bench", "expected six inputs"))?;

        // Plan throughput and submit memory.
        let mut rss = Vec::new();
        for (key, what, input) in [
            ("chat_small", "chat", &chat_small),
            ("chat_large", "chat", &chat_large),
            ("prompts", "prompt lines", &prompts),
            ("bad_lines", "chat, 1% bad lines", &bad),
        ] {
            eprintln!("bench: plan {} …", input.name);
            let name = format!(
                "plan throughput, {what} {} (read+validate+chunk+stage)",
                size_text(input.bytes)
            );
            let measured = plan::measure(&exe, input, &work);
            let figure = match &measured {
                Ok(run) => plan_figure(key, name, run),
                Err(e) => Figure::missing(&format!("plan.{key}"), name, "MB/s", e.to_string()),
            };
            figures.push(figure);
            if key.starts_with("chat_") {
                rss.push((key, input, measured.ok()));
            }
        }
        figures.extend(rss_figures(&rss));

        // End to end through local mode: the smaller input for memory only, then the full run.
        eprintln!(
            "bench: end to end, {} requests through batchdrop local (memory) …",
            e2e_small.lines
        );
        let small = e2e::measure(
            &bin_dir.join("batchdrop"),
            &e2e_small,
            &work,
            sizes.e2e_timeout,
        );
        eprintln!(
            "bench: end to end, {} requests through batchdrop local …",
            e2e_input.lines
        );
        let e2e = e2e::measure(
            &bin_dir.join("batchdrop"),
            &e2e_input,
            &work,
            sizes.e2e_timeout,
        );
        let local_rss = [
            ("small", &e2e_small, run_rss(&small)),
            ("large", &e2e_input, run_rss(&e2e)),
        ];
        figures.extend(e2e_figures(&e2e_input, e2e));
        figures.extend(local_rss_figures(&local_rss));

        // Poll tick.
        eprintln!("bench: poll tick over {} active jobs …", sizes.poll_jobs);
        let polled = runtime.block_on(poll::measure(sizes.poll_jobs, &work));
        figures.extend(poll_figures(sizes.poll_jobs, polled));
    }

    // The synchronous lane.
    if all || cli.only == Some(Group::Lane) {
        eprintln!(
            "bench: synchronous lane, {} requests at concurrency {LANE_CONCURRENCY} …",
            sizes.lane_requests
        );
        let lane = runtime.block_on(lane::measure(
            sizes.lane_requests,
            LANE_CONCURRENCY,
            sizes.lane_invocation,
            &work,
        ));
        figures.extend(lane_figures(lane));
    }

    // Paying once.
    if all || cli.only == Some(Group::Reuse) {
        eprintln!(
            "bench: reuse, 2 files of {} requests with and without reuse_results …",
            sizes.reuse_requests
        );
        let reused = runtime.block_on(reuse::measure(sizes.reuse_requests, &work));
        figures.extend(reuse_figures(reused));
    }

    // Push against poll.
    if all || cli.only == Some(Group::Push) {
        eprintln!("bench: push against poll, one job of one batch …");
        figures.extend(push_figures(runtime.block_on(push::measure())));
    }

    // Lambda binary sizes.
    for name in ["submit", "poll"].into_iter().filter(|_| all) {
        let label = format!("Lambda binary {name}, stripped");
        figures.push(match binaries::measure(&bin_dir, name, &work) {
            Ok(size) => Figure::info(
                &format!("size.{name}"),
                label,
                size.stripped_bytes as f64 / 1e6,
                "MB",
            )
            .detail(format!(
                "{} as built: {:.1} MB{}",
                size.path,
                size.bytes as f64 / 1e6,
                size.lambda_bootstrap_bytes
                    .map(|b| format!("; cargo lambda bootstrap: {:.1} MB", b as f64 / 1e6))
                    .unwrap_or_default()
            ))
            .data(json!(size)),
            Err(e) => Figure::missing(&format!("size.{name}"), label, "MB", e.to_string()),
        });
    }
    let _ = std::fs::remove_dir_all(&work);

    let mut report = Report {
        date: now_rfc3339(),
        mode: sizes.mode.to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        source: source(),
        load: json!({
            "start": load_at_start,
            "end": loadavg(),
            "note": "/proc/loadavg (1, 5, 15 min): other work on the machine during the run",
        }),
        settings: json!({
            "split": "split -l 50000 -a 4 (GNU coreutils), page cache warm",
            "plan_rounds": format!("{} rounds of cat, split, submit per file; best of each; RSS the highest", plan::ROUNDS),
            "plan_provider": "in-process provider that accepts every batch at once",
            "e2e": format!("batchdrop local --sandbox-step-ms 0 --poll-interval {}", e2e::POLL_INTERVAL),
            "poll": "sandbox step 1 h (batches stay validating), 20-line jobs, median of 3 idle ticks",
            "units": "MB = 10^6 bytes; RSS = peak resident set size (wait4 ru_maxrss)",
        }),
        inputs: json!(inputs),
        figures,
        targets_met: 0,
        targets_missed: 0,
        not_measured: 0,
    };
    report.tally();
    let path = dir.join("report.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&report).context(|| "serialising the report".into())?,
    )
    .context(|| format!("writing {}", path.display()))?;
    println!(
        "batchdrop bench ({} run, {}, {}; load average {} at start, {} at end)\n",
        report.mode,
        report.date,
        report.machine["summary"].as_str().unwrap_or(""),
        report.load["start"].as_str().unwrap_or(""),
        report.load["end"].as_str().unwrap_or(""),
    );
    print!("{}", report.table());
    println!("report: {}", path.display());
    Ok(report)
}

fn chat_spec(prefix: &str, bytes: u64, seed: u64) -> Spec {
    Spec {
        name: format!("{prefix}-{}.jsonl", compact(bytes)),
        kind: Kind::Chat,
        amount: Amount::Bytes(bytes),
        seed,
    }
}

/// `100MB`, `1GB`, `200kB`: for file names.
fn compact(bytes: u64) -> String {
    size_text(bytes).replace(' ', "").replace(".00", "")
}

/// `1M`, `100k`, `2k`.
fn count_text(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn plan_figure(key: &str, name: String, run: &plan::PlanRun) -> Figure {
    let plan = mb_per_s(run.bytes, run.submit.plan_secs);
    let split = mb_per_s(run.bytes, run.split_secs);
    let cat = mb_per_s(run.bytes, run.cat_secs);
    let ratio = if split > 0.0 { plan / split } else { 0.0 };
    Figure::info(&format!("plan.{key}"), name, plan, "MB/s")
        .target(
            format!("≥ {PLAN_VS_SPLIT} × split = {:.0} MB/s", PLAN_VS_SPLIT * split),
            ratio >= PLAN_VS_SPLIT,
        )
        .detail(format!(
            "{ratio:.2} × split -l 50000 ({split:.0} MB/s); cat {cat:.0} MB/s; {} lines, {} accepted, {} rejected, {} chunks; plan {:.2} s, whole submit {:.2} s (best of {})",
            run.submit.lines,
            run.submit.accepted,
            run.submit.rejected,
            run.submit.chunks,
            run.submit.plan_secs,
            run.submit.submit_secs,
            run.rounds.len(),
        ))
        .data(json!({
            "plan_mb_s": r3(plan),
            "split_mb_s": r3(split),
            "cat_mb_s": r3(cat),
            "ratio_to_split": r3(ratio),
            "run": run,
        }))
}

fn rss_figures(runs: &[(&str, &Input, Option<plan::PlanRun>)]) -> Vec<Figure> {
    let mb = |run: &Option<plan::PlanRun>| run.as_ref().map(|r| r.max_rss as f64 / 1e6);
    let mut figures = Vec::new();
    let mut values = Vec::new();
    for (key, input, run) in runs {
        let name = format!("peak RSS of submit, chat {}", size_text(input.bytes));
        let key = format!("rss.{}", key.trim_start_matches("chat_"));
        let figure = match mb(run) {
            None => Figure::missing(&key, name, "MB", "the plan run above failed".into()),
            Some(v) => {
                values.push(v);
                let f = Figure::info(&key, name, v, "MB")
                    .data(json!({ "max_rss_bytes": run.as_ref().map(|r| r.max_rss) }));
                if key == "rss.large" {
                    f.target(format!("≤ {RSS_LARGE_MAX_MB:.0} MB"), v <= RSS_LARGE_MAX_MB)
                } else {
                    f
                }
            }
        };
        figures.push(figure);
    }
    let name = "peak RSS growth, large / small input";
    figures.push(match values.as_slice() {
        [small, large] if *small > 0.0 => {
            let ratio = large / small;
            Figure::info("rss.ratio", name, ratio, "×")
                .target(format!("≤ {RSS_GROWTH_MAX:.2}×"), ratio <= RSS_GROWTH_MAX)
                .detail(format!("{large:.1} MB / {small:.1} MB"))
        }
        _ => Figure::missing("rss.ratio", name, "×", "an RSS figure is missing".into()),
    });
    figures
}

/// The peak RSS of a finished end-to-end run, or why there is none.
fn run_rss(run: &Result<e2e::E2eRun, BenchError>) -> Result<u64, String> {
    match run {
        Ok(run) if run.local_max_rss > 0 => Ok(run.local_max_rss),
        Ok(_) => Err("wait4 reported no peak RSS".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Peak RSS of `batchdrop local` (sandbox included) on the two end-to-end inputs: each against
/// its input size, and the growth from the smaller to the larger.
fn local_rss_figures(runs: &[(&str, &Input, Result<u64, String>)]) -> Vec<Figure> {
    let mut figures = Vec::new();
    let mut values = Vec::new();
    for (key, input, rss) in runs {
        let name = format!(
            "peak RSS of batchdrop local (with its sandbox), {} requests ({})",
            input.lines,
            size_text(input.bytes)
        );
        let key = format!("local_rss.{key}");
        figures.push(match rss {
            Err(why) => Figure::missing(&key, name, "MB", why.clone()),
            Ok(bytes) => {
                let mb = *bytes as f64 / 1e6;
                values.push((mb, input.bytes));
                Figure::info(&key, name, mb, "MB")
                    .target(
                        format!("≤ {LOCAL_RSS_MAX_MB:.0} MB"),
                        mb <= LOCAL_RSS_MAX_MB,
                    )
                    .detail(format!(
                        "peak RSS / input size = {:.3}",
                        *bytes as f64 / input.bytes.max(1) as f64
                    ))
                    .data(json!({ "max_rss_bytes": bytes, "input_bytes": input.bytes }))
            }
        });
    }
    let name = "peak RSS growth of batchdrop local, large / small input";
    figures.push(match values.as_slice() {
        [(small, small_bytes), (large, large_bytes)] if *small > 0.0 => {
            let ratio = large / small;
            let input_ratio = *large_bytes as f64 / (*small_bytes).max(1) as f64;
            Figure::info("local_rss.ratio", name, ratio, "×")
                .target(
                    format!("≤ {LOCAL_RSS_GROWTH_MAX:.2}×"),
                    ratio <= LOCAL_RSS_GROWTH_MAX,
                )
                .detail(format!(
                    "{large:.1} MB / {small:.1} MB for an input {input_ratio:.1} × larger"
                ))
        }
        _ => Figure::missing(
            "local_rss.ratio",
            name,
            "×",
            "an RSS figure is missing".into(),
        ),
    });
    figures
}

fn e2e_figures(input: &Input, measured: Result<e2e::E2eRun, BenchError>) -> Vec<Figure> {
    let name = format!(
        "end to end, {} requests ({}) via batchdrop local, drop → summary.json",
        input.lines,
        size_text(input.bytes)
    );
    let run = match measured {
        Ok(run) => run,
        Err(e) => return vec![Figure::missing("e2e.total", name, "s", e.to_string())],
    };
    let status = run.summary["status"].as_str().unwrap_or("?").to_string();
    let counts = &run.summary["counts"];
    let accepted = counts["accepted"].as_u64().unwrap_or(0);
    let mut figures = Vec::new();
    if status != "completed" || accepted != input.lines {
        figures.push(Figure::missing(
            "e2e.total",
            name,
            "s",
            format!(
                "the job ended {status} with counts {counts} (expected {} accepted)",
                input.lines
            ),
        ));
    } else {
        figures.push(
            Figure::info("e2e.total", name, run.total_secs, "s")
                .target(format!("≤ {E2E_MAX_SECS:.0} s"), run.total_secs <= E2E_MAX_SECS)
                .detail(format!(
                    "{status}: {} succeeded, {} failed, {} batches; poll interval {} s; peak RSS of batchdrop local (with its sandbox) {:.0} MB",
                    counts["succeeded"],
                    counts["failed"],
                    run.batches,
                    e2e::POLL_INTERVAL,
                    run.local_max_rss as f64 / 1e6
                ))
                .data(json!(run)),
        );
    }
    for phase in &run.phases {
        let key = format!("e2e.{}", phase.key);
        let name = format!("  · {}", phase.name);
        figures.push(match phase.secs {
            Some(secs) => Figure::info(&key, name, secs, "s"),
            None => Figure::missing(&key, name, "s", "its event line was not seen".into()),
        });
    }
    figures
}

fn poll_figures(jobs: usize, measured: Result<poll::PollRun, BenchError>) -> Vec<Figure> {
    let name = format!("poll tick, {jobs} active jobs, nothing new (median of 3)");
    let first = format!("  · first tick, {jobs} jobs with a new batch status each");
    match measured {
        Ok(run) => {
            vec![
            Figure::info("poll.idle_tick", name, run.idle_tick_median_secs, "s")
                .target(
                    format!("≤ {POLL_TICK_MAX_SECS:.0} s"),
                    run.idle_tick_median_secs <= POLL_TICK_MAX_SECS,
                )
                .detail(format!(
                    "{} batches in flight; ticks {:?} s; {:.0} provider calls per tick: {:.0} an hour polling at rate(5 minutes), {:.0} with push and rate(1 hour); setup ({jobs} submits) {:.1} s",
                    run.batches,
                    run.idle_ticks_secs.iter().map(|s| r3(*s)).collect::<Vec<_>>(),
                    run.provider_requests_per_idle_tick,
                    run.provider_requests_per_idle_tick * 12.0,
                    run.provider_requests_per_idle_tick,
                    run.setup_secs
                ))
                .data(json!(run)),
            Figure::info("poll.first_tick", first, run.first_tick_secs, "s"),
        ]
        }
        Err(e) => vec![
            Figure::missing("poll.idle_tick", name, "s", e.to_string()),
            Figure::missing("poll.first_tick", first, "s", e.to_string()),
        ],
    }
}

fn lane_figures(measured: Result<lane::LaneRun, BenchError>) -> Vec<Figure> {
    let name = format!("synchronous lane, instant server, concurrency {LANE_CONCURRENCY}");
    let direct = "  · the same requests sent straight to the server".to_string();
    let invocation = "  · sustained by one poll invocation".to_string();
    match measured {
        Ok(run) => {
            let ratio = run.lane_per_s() / run.direct_per_s().max(1e-9);
            vec![
                Figure::info("lane.rate", name, run.lane_per_s(), "req/s")
                    .target(
                        format!("≥ {LANE_VS_DIRECT} × direct"),
                        ratio >= LANE_VS_DIRECT,
                    )
                    .detail(format!(
                        "{} requests: {:.2} s through batchdrop (= {:.2} × direct), {:.2} s direct",
                        run.requests,
                        run.lane_secs,
                        r3(ratio),
                        run.direct_secs
                    ))
                    .data(json!(run)),
                Figure::info("lane.direct", direct, run.direct_per_s(), "req/s"),
                Figure::info(
                    "lane.invocation",
                    invocation.clone(),
                    run.invocation.per_minute(),
                    "req/min",
                )
                .detail(format!(
                    "one poll with a {:.0} s deadline over {} requests: {} answered and saved in {:.2} s (= {:.2} × direct, {:.0} req/min)",
                    run.invocation.window_secs,
                    run.invocation.requests,
                    run.invocation.answered,
                    run.invocation.secs,
                    r3(run.invocation.per_minute() / (run.direct_per_s() * 60.0).max(1e-9)),
                    run.direct_per_s() * 60.0
                )),
            ]
        }
        Err(e) => vec![
            Figure::missing("lane.rate", name, "req/s", e.to_string()),
            Figure::missing("lane.direct", direct, "req/s", e.to_string()),
            Figure::missing("lane.invocation", invocation, "req/min", e.to_string()),
        ],
    }
}

fn reuse_figures(measured: Result<reuse::ReuseRun, BenchError>) -> Vec<Figure> {
    let sent = "reuse: requests sent, a second file 30% asked before and 10% repeated".to_string();
    let saved = "  · saved by reuse, of the cost without it (batch prices)".to_string();
    match measured {
        Ok(run) => {
            let (with, without) = (&run.with_reuse, &run.without_reuse);
            let new = run.new_in_second();
            let share = 100.0 * with.saved_usd / without.paid_usd.max(1e-12);
            vec![
                Figure::info("reuse.sent", sent, with.sent as f64, "req")
                    .target(
                        format!("second file sends only its {new} new requests"),
                        with.sent_second == new,
                    )
                    .detail(format!(
                        "2 × {} requests: {} sent with reuse ({} by the second file, {} reused), {} without; second file {:.2} s with reuse, {:.2} s without",
                        run.requests_per_file,
                        with.sent,
                        with.sent_second,
                        with.reused,
                        without.sent,
                        with.second_secs,
                        without.second_secs
                    ))
                    .data(json!(run)),
                Figure::info("reuse.saved", saved, r3(share), "%")
                    .target("= paid without − paid with", run.adds_up())
                    .detail(format!(
                        "paid ${:.6} with reuse, ${:.6} without; saved ${:.6}",
                        with.paid_usd, without.paid_usd, with.saved_usd
                    )),
            ]
        }
        Err(e) => vec![
            Figure::missing("reuse.sent", sent, "req", e.to_string()),
            Figure::missing("reuse.saved", saved, "%", e.to_string()),
        ],
    }
}

fn push_figures(measured: Result<push::PushRun, BenchError>) -> Vec<Figure> {
    let name = "push: submit to summary.json, the batch's end pushed (no poll)".to_string();
    let poll = format!(
        "  · the same with polls only, every {} s",
        push::POLL_EVERY.as_secs()
    );
    match measured {
        Ok(run) => {
            let (pushed, polled) = (run.push_median(), run.poll_median());
            vec![
                Figure::info("push.latency", name, r3(pushed), "s")
                    .target(
                        "< the poll-only run",
                        pushed < polled,
                    )
                    .detail(format!(
                        "median of {:?} s; the batch itself takes {:.1} s at the sandbox, so its end reaches summary.json {:.3} s later; poll-only {:.2}× slower (at the default rate(5 minutes) schedule the wait after a batch ends is up to 300 s)",
                        run.push_secs.iter().map(|s| r3(*s)).collect::<Vec<_>>(),
                        run.batch_secs,
                        (pushed - run.batch_secs).max(0.0),
                        polled / pushed.max(1e-9)
                    ))
                    .data(json!(run)),
                Figure::info("push.poll", poll, r3(polled), "s").detail(format!(
                    "median of {:?} s",
                    run.poll_secs.iter().map(|s| r3(*s)).collect::<Vec<_>>()
                )),
            ]
        }
        Err(e) => vec![
            Figure::missing("push.latency", name, "s", e.to_string()),
            Figure::missing("push.poll", poll, "s", e.to_string()),
        ],
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The code measured: the commit, and whether the work tree differed from it.
fn source() -> Value {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let changed = git(&["status", "--porcelain", "--untracked-files=no"])
        .map(|s| s.lines().count())
        .unwrap_or(0);
    json!({
        "commit": git(&["rev-parse", "--short", "HEAD"]),
        "uncommitted_changes_in_files": changed,
    })
}

/// What the figures were measured on.
fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown CPU")
        .to_string();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gb = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0 / 1e9)
        .unwrap_or(0.0);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({
        "summary": format!("{cpus} × {cpu}, {mem_gb:.0} GB RAM, Linux {kernel}"),
        "cpu": cpu,
        "cpus": cpus,
        "memory_gb": r3(mem_gb),
        "kernel": kernel,
        "rustc": rustc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_names_are_compact() {
        assert_eq!(compact(100_000_000), "100MB");
        assert_eq!(compact(1_000_000_000), "1GB");
        assert_eq!(compact(200_000), "200kB");
        assert_eq!(count_text(1_000_000), "1M");
        assert_eq!(count_text(100_000), "100k");
    }
}
