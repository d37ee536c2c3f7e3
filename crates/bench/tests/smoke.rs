//! The harness end to end at tiny sizes: every figure of `make bench` is measured and lands in
//! report.json with its target. The values themselves are not checked (tiny inputs on a busy
//! test machine mean nothing).

use serde_json::Value;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

type TestResult = Result<(), Box<dyn Error>>;

/// Every figure a report carries, at any size.
const FIGURES: &[&str] = &[
    "plan.chat_small",
    "plan.chat_large",
    "plan.prompts",
    "plan.bad_lines",
    "rss.small",
    "rss.large",
    "rss.ratio",
    "e2e.total",
    "e2e.pickup",
    "e2e.plan",
    "e2e.batches",
    "e2e.wait",
    "e2e.collect",
    "e2e.assemble",
    "local_rss.small",
    "local_rss.large",
    "local_rss.ratio",
    "poll.idle_tick",
    "poll.first_tick",
    "lane.rate",
    "lane.direct",
    "reuse.sent",
    "reuse.saved",
    "push.latency",
    "push.poll",
    "size.submit",
    "size.poll",
];

/// Figures judged against a target from the issue.
const WITH_TARGETS: &[&str] = &[
    "plan.chat_small",
    "plan.chat_large",
    "plan.prompts",
    "plan.bad_lines",
    "rss.large",
    "rss.ratio",
    "e2e.total",
    "local_rss.small",
    "local_rss.large",
    "local_rss.ratio",
    "poll.idle_tick",
    "lane.rate",
    "reuse.sent",
    "reuse.saved",
    "push.latency",
];

/// The directory of the bench binary, holding (or given) the binaries it measures:
/// `batchdrop` for the end-to-end run, `submit` and `poll` for the sizes.
fn binaries() -> Result<PathBuf, Box<dyn Error>> {
    let bench = Path::new(env!("CARGO_BIN_EXE_batchdrop-bench"));
    let dir = bench.parent().ok_or("the bench binary has no directory")?;
    let wanted = ["batchdrop", "submit", "poll"];
    if wanted.iter().all(|b| dir.join(b).exists()) {
        return Ok(dir.to_path_buf());
    }
    // `cargo test -p batchdrop-bench` alone does not build other packages' binaries.
    let mut build = Command::new(env!("CARGO"));
    build.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    build.args(["build", "-p", "batchdrop", "-p", "submit", "-p", "poll"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status()?;
    if !status.success() {
        return Err(format!("building the measured binaries: {status}").into());
    }
    Ok(dir.to_path_buf())
}

#[test]
fn a_tiny_run_reports_every_figure_with_its_target() -> TestResult {
    // GIVEN the binaries the bench measures, and an empty directory for its files
    let bin_dir = binaries()?;
    let dir = tempfile::tempdir()?;

    // WHEN the bench runs at tiny sizes
    let output = Command::new(env!("CARGO_BIN_EXE_batchdrop-bench"))
        .arg("--tiny")
        .arg("--dir")
        .arg(dir.path())
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the bench failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    // THEN report.json has every figure, measured, and the targets where the issue sets one
    let report: Value = serde_json::from_slice(&std::fs::read(dir.path().join("report.json"))?)?;
    let figures = report["figures"].as_array().ok_or("no figures")?;
    for key in FIGURES {
        let figure = figures
            .iter()
            .find(|f| f["key"] == *key)
            .ok_or_else(|| format!("figure {key} missing from the report"))?;
        assert!(figure["value"].is_number(), "{key} has no value: {figure}");
        assert_eq!(
            figure["target"].is_string(),
            WITH_TARGETS.contains(key),
            "{key}: {figure}"
        );
        if WITH_TARGETS.contains(key) {
            assert!(
                figure["pass"].is_boolean(),
                "{key} has no verdict: {figure}"
            );
        }
        // AND the printed table shows it
        let name = figure["name"].as_str().ok_or("a figure without a name")?;
        assert!(
            stdout.contains(name),
            "{name:?} not in the table:\n{stdout}"
        );
    }
    assert_eq!(report["mode"], "tiny");
    assert!(report["machine"]["cpus"].as_u64().unwrap_or(0) > 0);
    assert_eq!(report["inputs"].as_array().map(Vec::len), Some(6));
    Ok(())
}
