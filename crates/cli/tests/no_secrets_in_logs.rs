//! [DESIGN.md](../../../docs/DESIGN.md): API keys never appear in logs, errors, summaries or the bucket; prompts and
//! completions are not logged. An end-to-end run at debug level through both providers' wire
//! formats (keys sent for real, to the embedded sandbox), with every command of the CLI, and
//! everything printed is searched for the secrets and the prompt.

mod common;

use common::{Local, TestResult, batchdrop, ran, wait_for};
use serde_json::Value;
use std::path::Path;

const OPENAI_KEY: &str = "sk-proj-SENTINELopenaiKEY0123456789abcdef";
const ANTHROPIC_KEY: &str = "sk-ant-api03-SENTINELanthropicKEY0123456789";
/// Words of the prompt no log has any business printing (the sandbox's answer quotes them).
const PROMPT: &str = "zebracorn quillwort obsidianfox marmalade";

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[test]
fn no_key_or_prompt_text_appears_in_any_log_line_of_a_debug_run() -> TestResult {
    // GIVEN batchdrop local at RUST_LOG=debug, its openai and anthropic routes pointed at the
    // embedded sandbox with real-looking keys
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(&root)?;
    let cfg = dir.path().join("batchdrop.toml");
    std::fs::write(&cfg, "")?;
    let port = free_port()?;
    let openai_url = format!("http://127.0.0.1:{port}/v1");
    let anthropic_url = format!("http://127.0.0.1:{port}");
    let env = [
        ("RUST_LOG", "debug"),
        ("OPENAI_API_KEY", OPENAI_KEY),
        ("OPENAI_BASE_URL", openai_url.as_str()),
        ("ANTHROPIC_API_KEY", ANTHROPIC_KEY),
        ("ANTHROPIC_BASE_URL", anthropic_url.as_str()),
    ];
    let addr = format!("127.0.0.1:{port}");
    let local = Local::start_with(&root, &cfg, 0, &["--sandbox-addr", &addr], &env)?;

    // WHEN a file with the prompt is submitted to each route and runs to the end
    let file = dir.path().join("secret.jsonl");
    std::fs::write(
        &file,
        format!(
            "{{\"custom_id\":\"s1\",\"prompt\":\"Please answer: {PROMPT}\",\"max_tokens\":20}}\n{{\"custom_id\":\"s2\",\"prompt\":\"{PROMPT} again\"}}\n"
        ),
    )?;
    let mut printed = String::new();
    let cli = |args: &[&str]| -> Result<common::Ran, common::Error> {
        Ok(ran(batchdrop()
            .args(args)
            .args(["--root", root.to_str().unwrap_or("")])
            .envs(env)
            .output()?))
    };
    for route in ["openai", "anthropic", "sandbox"] {
        let r = cli(&["submit", file.to_str().unwrap_or(""), "--route", route])?;
        assert_eq!(r.code, 0, "{r:?}");
        printed += &r.stdout;
        printed += &r.stderr;
    }
    for route in ["openai", "anthropic", "sandbox"] {
        wait_for(
            &root.join(format!("results/{route}/secret/summary.json")),
            &local,
        )?;
        let summary: Value = serde_json::from_str(&std::fs::read_to_string(
            root.join(format!("results/{route}/secret/summary.json")),
        )?)?;
        assert_eq!(summary["counts"]["succeeded"], 2, "{route}: {summary}");
        // the prompt went through: the sandbox's answers quote it
        let output =
            std::fs::read_to_string(root.join(format!("results/{route}/secret/output.jsonl")))?;
        assert!(output.contains("zebracorn"), "{route}: {output}");
    }
    // AND every command that only reports is run at debug level too
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["status", "openai/secret", "--watch"],
        vec!["results", "openai/secret", "--summary"],
        vec!["results", "anthropic/secret", "--errors"],
        vec!["cancel", "openai/secret"],
    ] {
        let r = cli(&args)?;
        printed += &r.stdout;
        printed += &r.stderr;
    }
    let r = ran(batchdrop()
        .args(["estimate", file.to_str().unwrap_or(""), "--route", "openai"])
        .envs(env)
        .output()?);
    assert_eq!(r.code, 0, "{r:?}");
    printed += &r.stdout;
    printed += &r.stderr;
    // `results` of output.jsonl prints completions by design; its logs (stderr) must not
    let r = cli(&["results", "openai/secret"])?;
    assert!(r.stdout.contains("zebracorn"));
    printed += &r.stderr;
    let logs = local.stop();
    printed += &logs;

    // THEN debug logging was on (the run logged something at debug level) …
    assert!(logs.contains("DEBUG"), "no debug lines:\n{logs}");
    // … and no line printed anywhere has a key, part of one, or the prompt
    for (n, line) in printed.lines().enumerate() {
        for secret in [
            OPENAI_KEY,
            ANTHROPIC_KEY,
            "SENTINEL",
            "zebracorn",
            "quillwort",
            "obsidianfox",
        ] {
            assert!(!line.contains(secret), "line {n} has {secret:?}: {line}");
        }
    }
    // AND no object of the bucket holds a key
    let mut files = Vec::new();
    files_under(&root, &mut files)?;
    assert!(files.len() > 10, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f)?;
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("SENTINEL"), "{} holds a key", f.display());
    }
    Ok(())
}
