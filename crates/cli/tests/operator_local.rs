//! The operator's commands (`submit`, `status`, `results`, `cancel`, `estimate`) through the
//! real binary, on a local root that `batchdrop local` works on.

mod common;

use common::{Local, TestResult, json_lines, printed_job_id, run, wait_for, workspace};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn config(dir: &Path, text: &str) -> std::io::Result<PathBuf> {
    let path = dir.join("batchdrop.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or("")
}

#[test]
fn submitted_file_runs_under_the_printed_job_id_and_status_results_show_it() -> TestResult {
    // GIVEN batchdrop local on a temp root, batches of at most 3 requests
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(&root)?;
    let cfg = config(dir.path(), "[routes.sandbox]\nmax_requests_per_batch = 3\n")?;
    let local = Local::start(&root, &cfg, 0)?;
    let example = workspace().join("examples/requests.jsonl");

    // WHEN the example file is submitted under a path with a space
    let sub = run(&[
        "submit",
        s(&example),
        "--route",
        "sandbox",
        "--as",
        "run 1/requests",
        "--root",
        s(&root),
    ])?;
    assert_eq!(sub.code, 0, "{sub:?}");
    let job_id = printed_job_id(&sub.stdout)?;
    assert!(
        sub.stdout.contains("to inbox/sandbox/run 1/requests.jsonl"),
        "{}",
        sub.stdout
    );
    assert!(
        sub.stdout
            .contains(&format!("batchdrop status {job_id} --watch"))
    );
    let results = root.join("results/sandbox/run 1/requests");
    wait_for(&results.join("summary.json"), &local)?;

    // THEN the job that ran has the printed id
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["job_id"], job_id.as_str());

    // AND `status JOB` prints one plain line (stdout is not a terminal) with the progress
    let st = run(&["status", &job_id[..10], "--root", s(&root)])?;
    assert_eq!(st.code, 0, "{st:?}");
    let line = st.stdout.trim();
    assert_eq!(st.stdout.lines().count(), 1, "{}", st.stdout);
    assert!(line.starts_with(&format!("{job_id} completed sandbox/run 1/requests [####################] 9/9 requests; batches: 5 completed; 5 rejected, 1 failed;")), "{line}");
    assert!(
        !line.contains('\x1b'),
        "no escape codes off a terminal: {line:?}"
    );

    // AND `status --json` has the counts, batches by state and the cost of summary.json
    let js = run(&[
        "status",
        "sandbox/run 1/requests",
        "--json",
        "--root",
        s(&root),
    ])?;
    let jobs: Value = serde_json::from_str(&js.stdout)?;
    let job = &jobs[0];
    assert_eq!(job["job_id"], job_id.as_str());
    assert_eq!(job["status"], "completed");
    assert_eq!(job["requests"]["total"], 9);
    assert_eq!(job["requests"]["done"], 9);
    assert_eq!(job["requests"]["succeeded"], 8);
    assert_eq!(job["requests"]["rejected"], 5);
    assert_eq!(job["batches"], serde_json::json!({"completed": 5}));
    assert_eq!(job["cost"], summary["cost"]);
    assert!(
        summary["cost"]["batch"].as_f64().unwrap_or(0.0) > 0.0,
        "{summary}"
    );
    assert_eq!(
        summary["cost"]["saved"].as_f64(),
        Some(
            summary["cost"]["synchronous_equivalent"]
                .as_f64()
                .unwrap_or(0.0)
                - summary["cost"]["batch"].as_f64().unwrap_or(0.0)
        )
    );

    // AND `results -o` writes output.jsonl, `--errors` and `--summary` print theirs
    let out_file = dir.path().join("out.jsonl");
    let res = run(&[
        "results",
        "sandbox/run 1/requests",
        "-o",
        s(&out_file),
        "--root",
        s(&root),
    ])?;
    assert_eq!(res.code, 0, "{res:?}");
    assert!(
        res.stdout
            .contains("results/sandbox/run 1/requests/output.jsonl"),
        "{}",
        res.stdout
    );
    assert_eq!(
        std::fs::read(&out_file)?,
        std::fs::read(results.join("output.jsonl"))?
    );
    let ids: Vec<String> = json_lines(&std::fs::read_to_string(&out_file)?)?
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.len(), 9);
    assert_eq!(ids[0], "review-001");
    let errs = run(&[
        "results",
        "sandbox/run 1/requests",
        "--errors",
        "--root",
        s(&root),
    ])?;
    let lines: Vec<u64> = json_lines(&errs.stdout)?
        .iter()
        .map(|e| e["line"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lines, [4, 6, 7, 9, 11]);
    let sum = run(&["results", &job_id, "--summary", "--root", s(&root)])?;
    assert_eq!(serde_json::from_str::<Value>(&sum.stdout)?, summary);
    local.stop();
    Ok(())
}

#[test]
fn a_running_job_shows_batches_in_flight_and_cancel_finishes_it_as_cancelled() -> TestResult {
    // GIVEN a slow sandbox (2 s per state) and at most 2 batches in flight
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(&root)?;
    let cfg = config(
        dir.path(),
        "[routes.sandbox]\nmax_requests_per_batch = 2\nmax_batches_in_flight = 2\n",
    )?;
    let local = Local::start(&root, &cfg, 2000)?;
    let file = dir.path().join("ten.jsonl");
    let text: String = (1..=10)
        .map(|i| format!("{{\"custom_id\":\"q{i}\",\"prompt\":\"question {i}\"}}\n"))
        .collect();
    std::fs::write(&file, text)?;

    // WHEN it is submitted and looked at while running
    let sub = run(&["submit", s(&file), "--route", "sandbox", "--root", s(&root)])?;
    let job_id = printed_job_id(&sub.stdout)?;
    let mut running = Value::Null;
    for _ in 0..100 {
        let js = run(&["status", &job_id, "--json", "--root", s(&root)])?;
        if js.code == 0 {
            let v: Value = serde_json::from_str(&js.stdout)?;
            if v[0]["requests"]["in_flight"].as_u64().unwrap_or(0) > 0 {
                running = v[0].clone();
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // THEN it is running with two batches at the provider and three waiting
    assert_eq!(running["status"], "running", "{}", local.output());
    assert_eq!(running["requests"]["in_flight"], 4);
    assert_eq!(running["batches"]["staged"], 3);
    assert_eq!(running["requests"]["done"], 0);

    // WHEN it is cancelled by path
    let c = run(&["cancel", "sandbox/ten", "--root", s(&root)])?;
    assert_eq!(c.code, 0, "{c:?}");
    assert!(
        c.stdout.contains("wrote cancel/sandbox/ten.jsonl"),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout
            .contains(&format!("job {job_id} (running: 0/10 requests done")),
        "{}",
        c.stdout
    );
    assert!(root.join("cancel/sandbox/ten.jsonl").exists());

    // THEN `status --watch` follows it to the end and stops by itself
    let w = run(&[
        "status",
        "sandbox/ten",
        "--watch",
        "--interval",
        "0.2",
        "--root",
        s(&root),
    ])?;
    assert_eq!(w.code, 0, "{w:?}");
    let last = w.stdout.lines().last().unwrap_or("");
    assert!(last.starts_with(&format!("{job_id} cancelled sandbox/ten [####################] 10/10 requests; batches: 5 cancelled; 0 rejected, 10 failed;")), "{}", w.stdout);
    assert!(
        last.contains("reason: cancelled: cancel/sandbox/ten.jsonl asked for it"),
        "{last}"
    );

    // AND a second cancel says there is nothing left to cancel (exit 1)
    let again = run(&["cancel", "sandbox/ten", "--root", s(&root)])?;
    assert_eq!(again.code, 1);
    assert_eq!(
        again.stderr.trim(),
        format!(
            "batchdrop: nothing to cancel: no unfinished job for inbox/sandbox/ten.jsonl (latest job {job_id}: cancelled)"
        )
    );
    local.stop();
    Ok(())
}

#[test]
fn estimate_counts_exact_tokens_and_prices_them_at_batch_and_synchronous_prices() -> TestResult {
    // GIVEN two prompt lines of one word for gpt-4o-mini, at most 10 output tokens each
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("two.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\":\"Hello\",\"max_tokens\":10}\n\n{\"prompt\":\"Hello\",\"max_tokens\":10}\nnot json\n",
    )?;
    // WHEN estimated for the sandbox route (model gpt-4o-mini)
    let est = run(&["estimate", s(&file), "--route", "sandbox", "--json"])?;
    assert_eq!(est.code, 0, "{est:?}");
    let v: Value = serde_json::from_str(&est.stdout)?;
    // THEN each request is 3 + "user" 1 + "Hello" 1 + 3 = 8 input tokens (o200k_base)
    assert_eq!(v["requests"], 2);
    assert_eq!(v["rejected"], 1);
    assert_eq!(v["input_tokens"], 16);
    assert_eq!(v["output_tokens"], 20);
    assert_eq!(v["models"][0]["tokenizer"], "o200k_base");
    assert_eq!(v["models"][0]["input_method"], "exact");
    // AND the cost is 16 × $0.075 + 20 × $0.30 per million at batch prices, twice that at
    // synchronous prices: 7.2 µ$ and 14.4 µ$
    assert_eq!(v["cost"]["batch"], 0.0000072);
    assert_eq!(v["cost"]["synchronous_equivalent"], 0.0000144);
    assert_eq!(v["cost"]["saved"], 0.0000072);

    // AND the text form shows the same numbers
    let text = run(&["estimate", s(&file), "--route", "sandbox"])?;
    assert!(
        text.stdout.contains("2 requests, 1 rejected"),
        "{}",
        text.stdout
    );
    let total = text
        .stdout
        .lines()
        .find(|l| l.starts_with("total"))
        .unwrap_or("");
    let words: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "total",
            "2",
            "16",
            "≤",
            "20",
            "$0.0000072",
            "$0.0000144",
            "saves",
            "$0.0000072"
        ],
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("input tokens of gpt-4o-mini: exact (o200k_base")
    );
    assert!(
        text.stdout
            .contains("rejected (would go to errors.jsonl): line 4 invalid_json")
    );

    // AND a price override in the config changes the price
    let cfg = config(
        dir.path(),
        "[prices.\"gpt-4o-mini\"]\ninput = 1.0\noutput = 2.0\n",
    )?;
    let over = run(&[
        "estimate",
        s(&file),
        "--route",
        "sandbox",
        "--json",
        "--config",
        s(&cfg),
    ])?;
    let v: Value = serde_json::from_str(&over.stdout)?;
    // 16 × 0.5 + 20 × 1.0 = 28 µ$ batch; 16 × 1 + 20 × 2 = 56 µ$ synchronous
    assert_eq!(v["cost"]["batch"], 0.000028);
    assert_eq!(v["cost"]["synchronous_equivalent"], 0.000056);
    Ok(())
}

#[test]
fn errors_are_one_line_with_what_to_do_and_documented_exit_codes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(&root)?;
    // usage errors: exit 2
    for args in [
        vec!["status", "not-a-path-or-id", "--root", s(&root)],
        vec!["estimate", "x.jsonl", "--route", "nope"],
        vec!["submit", "x.jsonl"],
        vec!["status", "--bucket", "b", "--root", s(&root)],
    ] {
        let r = run(&args)?;
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    }
    let r = run(&["estimate", "x.jsonl", "--route", "nope"])?;
    assert!(
        r.stderr.contains(
            "unknown route \"nope\": the routes are anthropic, bedrock, openai, sandbox, sandbox-anthropic, sandbox-bedrock, sandbox-sync"
        ),
        "{}",
        r.stderr
    );
    // failures: exit 1, one line starting with `batchdrop:`
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["results", "sandbox/never", "--root", s(&root)],
            "batchdrop: no results in results/sandbox/never/: nothing was uploaded to inbox/sandbox/never.jsonl",
        ),
        (
            vec!["status", "--root", "/nonexistent/bucket"],
            "batchdrop: no bucket directory at /nonexistent/bucket: pass --root DIR",
        ),
        (
            vec![
                "submit",
                "/nonexistent/file.jsonl",
                "--route",
                "sandbox",
                "--root",
                s(&root),
            ],
            "batchdrop: cannot read /nonexistent/file.jsonl:",
        ),
        (
            vec!["cancel", "shop/x", "--root", s(&root)],
            "batchdrop: nothing to cancel: no unfinished job for inbox/shop/x.jsonl — \"shop\" is not a route",
        ),
    ];
    for (args, start) in cases {
        let r = run(&args)?;
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with(start), "{args:?}: {}", r.stderr);
    }
    // an empty bucket is not an error
    let r = run(&["status", "--root", s(&root)])?;
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("no jobs in file://"), "{}", r.stdout);
    Ok(())
}

#[test]
fn help_lists_every_command_and_the_exit_codes() -> TestResult {
    let h = run(&["--help"])?;
    for cmd in [
        "local", "sandbox", "submit", "status", "results", "cancel", "estimate",
    ] {
        assert!(
            h.stdout.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from:\n{}",
            h.stdout
        );
    }
    assert!(h.stdout.contains("Exit codes: 0 ok, 1 failure"));
    for cmd in ["submit", "status", "results", "cancel", "estimate"] {
        let h = run(&[cmd, "--help"])?;
        assert_eq!(h.code, 0);
        for flag in ["--root", "--config", "Exit codes:"] {
            if cmd == "estimate" && flag == "--root" {
                continue;
            }
            assert!(
                h.stdout.contains(flag),
                "{cmd} --help lacks {flag}:\n{}",
                h.stdout
            );
        }
    }
    Ok(())
}

#[test]
fn a_deadline_given_to_submit_is_the_jobs_and_status_says_it_was_met() -> TestResult {
    // GIVEN batchdrop local on a temp root
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(&root)?;
    let cfg = config(dir.path(), "[routes.sandbox]\nmax_requests_per_batch = 3\n")?;
    let local = Local::start(&root, &cfg, 0)?;
    let example = workspace().join("examples/requests.jsonl");

    // WHEN the example file is submitted with a deadline (an offset, not UTC)
    let sub = run(&[
        "submit",
        s(&example),
        "--route",
        "sandbox",
        "--as",
        "nightly",
        "--deadline",
        "2099-01-01T09:00:00+02:00",
        "--root",
        s(&root),
    ])?;
    assert_eq!(sub.code, 0, "{sub:?}");
    assert!(
        sub.stdout
            .contains("it must be done by 2099-01-01T07:00:00Z"),
        "{}",
        sub.stdout
    );
    let job_id = printed_job_id(&sub.stdout)?;
    let results = root.join("results/sandbox/nightly");
    wait_for(&results.join("summary.json"), &local)?;

    // THEN the deadline object was written beside the upload, and the summary carries it, met
    let beside = std::fs::read_to_string(root.join("inbox/sandbox/nightly.jsonl.deadline"))?;
    assert_eq!(beside.trim(), "2099-01-01T07:00:00Z");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["deadline"]["source"], "sidecar", "{summary}");
    assert_eq!(summary["deadline"]["met"], true, "{summary}");
    // AND `status` says so
    let st = run(&["status", &job_id, "--root", s(&root)])?;
    assert!(
        st.stdout
            .contains("deadline by 2099-01-01T07:00:00Z (sidecar): met"),
        "{}",
        st.stdout
    );
    local.stop();
    Ok(())
}

#[test]
fn a_deadline_that_is_not_a_time_is_a_usage_error_and_uploads_nothing() -> TestResult {
    // GIVEN an empty root
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(&root)?;
    let example = workspace().join("examples/requests.jsonl");

    // WHEN a file is submitted with a deadline that is not RFC 3339
    let sub = run(&[
        "submit",
        s(&example),
        "--route",
        "sandbox",
        "--deadline",
        "tomorrow 7am",
        "--root",
        s(&root),
    ])?;

    // THEN it exits 2 saying what is wrong, and nothing was uploaded
    assert_eq!(sub.code, 2, "{sub:?}");
    assert!(
        sub.stderr.contains("--deadline") && sub.stderr.contains("tomorrow 7am"),
        "{}",
        sub.stderr
    );
    assert!(!root.join("inbox").exists());
    Ok(())
}
