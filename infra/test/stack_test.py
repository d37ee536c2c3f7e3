"""The deployed stack, tested offline: `make test-aws`.

Deploys the real infra/template.yaml (`sam build` + `sam deploy`, the bootstraps cargo-lambda
built) to ministack, an AWS emulator started here on a free loopback port, with a sandbox
provider (`target/debug/batchdrop sandbox`) as the provider. Then, through the emulator's S3:

1. uploads outside inbox/ (another prefix, another suffix, results/) invoke nothing;
2. an upload under cancel/ invokes the submit function (the cancel notification);
3. examples/requests.jsonl uploaded to `inbox/sandbox/my dir/my file+(1).jsonl` goes through
   the real S3 notification to the real submit bootstrap, then the real EventBridge schedule
   runs the real poll bootstrap until `results/sandbox/my dir/my file+(1)/summary.json`
   appears: counts, statuses and output order are checked;
4. a file under inbox/openai/ completes with the `openai` route pointed at the sandbox: its key
   comes from a Secrets Manager secret the functions read at cold start (OpenAiSecretArn);
5. a file of 150 prompt lines under inbox/bedrock/ completes through the `bedrock` route with
   the functions' Bedrock endpoint pointed at the sandbox (BedrockEndpointUrl), which reads
   the staged chunk from and writes the job's output to the emulator's S3, as Bedrock does:
   one model invocation job, every answer in input order;
6. the same S3 event delivered again (the submit function invoked with it) finds the job and
   makes no second one: one manifest per upload under _batchdrop/jobs/.

Every process it starts (ministack and the bootstraps it runs, the sandbox) is stopped on the
way out, also on failure or Ctrl-C. Logs: target/test-aws/. Exits non-zero on any failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
WORK = ROOT / "target" / "test-aws"
BIN = Path(sys.executable).parent  # the venv's bin: sam, ministack's python
REGION = "us-east-1"
STACK = "batchdrop-test"
BUCKET = "batchdrop-test-bucket"
ARTIFACTS = "batchdrop-test-artifacts"
POLL_RATE = "rate(1 minute)"  # the shortest EventBridge rate; the template's default is 5 minutes
WAIT_RESULTS_S = 300
INPUT_KEY = "inbox/sandbox/my dir/my file+(1).jsonl"
RESULTS = "results/sandbox/my dir/my file+(1)/"
SECRET_INPUT_KEY = "inbox/openai/key from secret.jsonl"
SECRET_RESULTS = "results/openai/key from secret/"
BEDROCK_INPUT_KEY = "inbox/bedrock/claims.jsonl"
BEDROCK_RESULTS = "results/bedrock/claims/"
BEDROCK_REQUESTS = 150
EXPECTED_ORDER = [
    "review-001", "review-002", "review-004", "line-8", "review-006",
    "review-008", "review-009", "review-010", "review-011",
]
EXPECTED_REJECTED_LINES = [4, 6, 7, 9, 11]

started = []  # (name, Popen) of every process this script started, stopped in reverse order
checks = {"passed": 0, "failed": 0}
t0 = time.monotonic()


def say(msg):
    print(f"[test-aws {time.monotonic() - t0:6.1f}s] {msg}", flush=True)


def check(ok, what):
    if ok:
        checks["passed"] += 1
        say(f"ok: {what}")
    else:
        checks["failed"] += 1
        say(f"FAILED: {what}")
    return ok


class Abort(Exception):
    pass


def require(ok, what):
    if not check(ok, what):
        raise Abort(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, argv, env, log):
    say(f"starting {name}: {' '.join(str(a) for a in argv)} (log: {log.relative_to(ROOT)})")
    out = open(log, "wb")
    # Own process group: stopping it also stops what it started (ministack's bootstraps).
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    started.append((name, proc))
    return proc


def stop_all():
    for name, proc in reversed(started):
        if proc.poll() is None:
            say(f"stopping {name} (pid {proc.pid})")
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
    started.clear()


def on_signal(signum, _frame):
    raise Abort(f"interrupted by signal {signum}")


def wait_for(what, probe, timeout, every=2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Abort(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500
    except (urllib.error.URLError, OSError):
        return False


def run(argv, env, what):
    say(f"{what}: {' '.join(str(a) for a in argv)}")
    t = time.monotonic()
    log = WORK / f"{what.replace(' ', '-')}.log"
    # Own process group, so that an interruption stops what it started too (cargo, rustc).
    proc = subprocess.Popen(argv, env=env, cwd=INFRA, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    log.write_text(out)
    if proc.returncode != 0:
        print(out[-6000:], flush=True)
        raise Abort(f"{what} failed (exit {proc.returncode}); log: {log}")
    say(f"{what} done in {time.monotonic() - t:.0f}s")
    return out


def main():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "tmp").mkdir(parents=True)
    try:
        body()
    except Abort as e:
        check(False, f"stack test stopped: {e}")
    finally:
        stop_all()
    print(f"test-aws: {checks['passed']} passed, {checks['failed']} failed", flush=True)
    return 1 if checks["failed"] else 0


def body():
    aws_port, sandbox_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{aws_port}"
    sandbox_url = f"http://127.0.0.1:{sandbox_port}/v1"

    # Clients (sam, boto3) talk to the emulator only: fake credentials, no profile, no config.
    aws_env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("AWS_", "OPENAI_", "ANTHROPIC_", "BATCHDROP_"))
    }
    aws_env.update({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "SAM_CLI_TELEMETRY": "0",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    os.environ.update({k: aws_env[k] for k in aws_env if k.startswith("AWS_")})

    # The sandbox provider, from the workspace's debug build.
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    batchdrop = target / "debug" / "batchdrop"
    run(["cargo", "build", "--quiet", "--bin", "batchdrop"], aws_env, "cargo build batchdrop")
    # Its Bedrock side reads and writes the emulator's S3, as Bedrock reads and writes the bucket.
    start("sandbox", [batchdrop, "sandbox", "--addr", f"127.0.0.1:{sandbox_port}",
                      "--s3-endpoint", endpoint],
          {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION},
          WORK / "sandbox.log")

    # ministack, with a small environment: its Lambda bootstraps inherit it (plus their own).
    ministack_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "TMPDIR": str(WORK / "tmp"),
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(aws_port),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_SECRET_ACCESS_KEY": "test",
        "MINISTACK_REGION": REGION,
        "IOT_MTLS_ENABLED": "0",
        "SFTP_ENABLED": "0",
        "LOG_LEVEL": "INFO",
    }
    start("ministack", [sys.executable, INFRA / "test" / "ministack_s3_events.py"],
          ministack_env, WORK / "ministack.log")
    wait_for("ministack", lambda: http_ok(f"{endpoint}/_ministack/health"), 60, 0.5)
    wait_for("the sandbox", lambda: http_ok(f"http://127.0.0.1:{sandbox_port}/sandbox/stats"),
             60, 0.5)
    say(f"ministack at {endpoint}, sandbox at {sandbox_url}")

    import boto3  # from the venv (aws-sam-cli depends on it)

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    lam = boto3.client("lambda", endpoint_url=endpoint, region_name=REGION)
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name=REGION)
    logs = boto3.client("logs", endpoint_url=endpoint, region_name=REGION)
    sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION)

    # The API key of the `openai` route, kept where the template says: in Secrets Manager.
    secret_arn = sm.create_secret(
        Name="batchdrop-test/openai",
        SecretString=json.dumps({"api_key": "sk-test-from-secrets-manager"}),
    )["ARN"]
    say(f"created secret {secret_arn}")
    s3.create_bucket(Bucket=ARTIFACTS)

    # The real template: sam build (cargo-lambda release builds), then sam deploy.
    run([BIN / "sam", "build", "--template-file", "template.yaml"], aws_env, "sam build")
    for fn in ("SubmitFunction", "PollFunction"):
        require((INFRA / ".aws-sam" / "build" / fn / "bootstrap").is_file(),
                f"sam build produced {fn}/bootstrap")
    overrides = {
        "BucketName": BUCKET,
        "SandboxUrl": sandbox_url,
        "PollRate": POLL_RATE,
        "OpenAiSecretArn": secret_arn,
        "OpenAiBaseUrl": sandbox_url,
        "BedrockEndpointUrl": f"http://127.0.0.1:{sandbox_port}",
        "LogLevel": "info",
    }
    run([BIN / "sam", "deploy",
         "--config-file", INFRA / "test" / "samconfig.toml",
         "--template-file", INFRA / ".aws-sam" / "build" / "template.yaml",
         "--stack-name", STACK, "--s3-bucket", ARTIFACTS, "--region", REGION,
         "--capabilities", "CAPABILITY_IAM", "--no-confirm-changeset",
         "--no-fail-on-empty-changeset",
         "--parameter-overrides", *[f'{k}="{v}"' for k, v in overrides.items()]],
        aws_env, "sam deploy")
    stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    require(stack["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE"),
            f"stack {STACK} deployed ({stack['StackStatus']})")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    say(f"stack outputs: {json.dumps(outputs)}")
    bucket = outputs.get("BucketName")
    submit_fn = outputs.get("SubmitFunctionName")
    poll_fn = outputs.get("PollFunctionName")
    require(bucket == BUCKET and submit_fn and poll_fn,
            "outputs name the bucket and both functions")
    env = lam.get_function_configuration(FunctionName=submit_fn)["Environment"]["Variables"]
    check(env.get("OPENAI_API_KEY_SECRET_ARN") == secret_arn
          and "OPENAI_API_KEY" not in env
          and "ANTHROPIC_API_KEY_SECRET_ARN" not in env,
          "the functions get the secret's ARN, no key, and no variable for an empty parameter")
    # The notification configuration as S3 returns it (read raw: ministack answers with the
    # LambdaFunctionConfiguration element, which boto3's parser does not read).
    with urllib.request.urlopen(f"{endpoint}/{bucket}?notification", timeout=10) as r:
        root = ET.fromstring(r.read())
    filters = []
    for cfg in root.iter():
        if cfg.tag.split("}")[-1] in ("LambdaFunctionConfiguration", "CloudFunctionConfiguration"):
            rules = [(r.findtext("{*}Name", "").lower(), r.findtext("{*}Value", ""))
                     for r in cfg.iter() if r.tag.split("}")[-1] == "FilterRule"]
            events = [e.text for e in cfg.iter() if e.tag.split("}")[-1] == "Event"]
            filters.append((tuple(events), tuple(sorted(rules))))
    check(sorted(filters) == [
        (("s3:ObjectCreated:*",), (("prefix", "cancel/"), ("suffix", ".jsonl"))),
        (("s3:ObjectCreated:*",), (("prefix", "inbox/"), ("suffix", ".jsonl"))),
    ], f"bucket notifications: ObjectCreated, inbox/ and cancel/ with suffix .jsonl ({filters})")

    def invocations(fn, group):
        """START lines in the function's log group: one per invocation."""
        n = 0
        for name in {group, f"/aws/lambda/{fn}"}:
            try:
                pages = logs.get_paginator("filter_log_events").paginate(
                    logGroupName=name, filterPattern="START")
                n += sum(1 for p in pages for e in p["events"]
                         if e["message"].startswith("START"))
            except logs.exceptions.ResourceNotFoundException:
                pass
        return n

    submit_group = outputs.get("SubmitLogGroupName", "")
    poll_group = outputs.get("PollLogGroupName", "")

    def job_manifests():
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                             Prefix="_batchdrop/jobs/")
        return sorted(o["Key"] for p in pages for o in p.get("Contents", [])
                      if o["Key"].endswith("/manifest.json"))

    # ministack invokes the function with an s3:TestEvent per notification when the stack
    # configures them (real S3 sends test events to SQS and SNS only); the function fails on
    # it and the emulator retries it twice. Wait until that has settled: the baseline.
    def settled():
        a = invocations(submit_fn, submit_group)
        time.sleep(6)
        b = invocations(submit_fn, submit_group)
        return (b,) if a == b else None

    (baseline,) = wait_for("the submit function's invocations to settle", settled, 90, 0)
    say(f"submit invocations after the deploy (ministack's s3:TestEvent and its retries): "
        f"{baseline}")
    if baseline:
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
        queue = outputs.get("SubmitFailureQueueUrl", "")
        attrs = sqs.get_queue_attributes(QueueUrl=queue,
                                         AttributeNames=["ApproximateNumberOfMessages"])
        kept = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
        check(kept >= 1, f"events the submit function failed on, after its retries, are kept "
                         f"in the failure queue ({kept} messages)")

    # 1. Nothing outside inbox/ (or cancel/) with the .jsonl suffix triggers the function.
    for key in ("uploads/sandbox/elsewhere.jsonl", "inbox/sandbox/notes.txt",
                "results/sandbox/stray.jsonl", "inbox/sandbox/almost.jsonl.bak"):
        s3.put_object(Bucket=bucket, Key=key, Body=b'{"prompt": "ignored"}\n')
        say(f"uploaded s3://{bucket}/{key}")
    time.sleep(10)
    check(invocations(submit_fn, submit_group) == baseline,
          "uploads outside inbox/*.jsonl invoked the submit function 0 times")
    check(job_manifests() == [], "and made no job under _batchdrop/jobs/")

    # 2. cancel/ reaches the submit function (with no job to cancel yet, it does nothing).
    s3.put_object(Bucket=bucket, Key="cancel/sandbox/no such job.jsonl", Body=b"")
    say("uploaded cancel/sandbox/no such job.jsonl")
    check(bool(wait_for("the cancel invocation",
                        lambda: invocations(submit_fn, submit_group) == baseline + 1, 60)),
          "an upload under cancel/ invoked the submit function")

    # 3 and 4. The uploads: the notification submits, the schedule polls.
    data = (ROOT / "examples" / "requests.jsonl").read_bytes()
    s3.put_object(Bucket=bucket, Key=INPUT_KEY, Body=data)
    say(f"uploaded examples/requests.jsonl to s3://{bucket}/{INPUT_KEY}")
    prompts = b'{"prompt": "Say hello."}\n{"custom_id": "two", "prompt": "Say bye."}\n'
    s3.put_object(Bucket=bucket, Key=SECRET_INPUT_KEY, Body=prompts)
    say(f"uploaded 2 prompt lines to s3://{bucket}/{SECRET_INPUT_KEY}")
    claims = b"".join(b'{"custom_id": "claim-%03d", "prompt": "Summarise claim %d."}\n' % (i, i)
                      for i in range(1, BEDROCK_REQUESTS + 1))
    s3.put_object(Bucket=bucket, Key=BEDROCK_INPUT_KEY, Body=claims)
    say(f"uploaded {BEDROCK_REQUESTS} prompt lines to s3://{bucket}/{BEDROCK_INPUT_KEY}")

    def summary(prefix):
        try:
            obj = s3.get_object(Bucket=bucket, Key=prefix + "summary.json")
            return json.loads(obj["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None

    say(f"waiting (at most {WAIT_RESULTS_S}s) for {RESULTS}summary.json: the submit function"
        f" runs on the S3 event, the poll function on the schedule ({POLL_RATE})")
    last = [None]

    def finished():
        seen = (len(job_manifests()), invocations(submit_fn, submit_group) - baseline,
                invocations(poll_fn, poll_group))
        if seen != last[0]:
            say(f"  jobs {seen[0]}, submit invocations {seen[1]}, poll invocations {seen[2]}")
            last[0] = seen
        done = summary(RESULTS), summary(SECRET_RESULTS), summary(BEDROCK_RESULTS)
        return done if all(done) else None

    main_summary, secret_summary, bedrock_summary = wait_for("the results", finished,
                                                             WAIT_RESULTS_S, 3)
    say(f"summary.json: {json.dumps(main_summary)}")
    check(main_summary.get("status") == "completed", "the job completed")
    expected = {"lines": 14, "accepted": 9, "rejected": 5, "succeeded": 8, "failed": 1}
    counts = main_summary.get("counts", {})
    check({k: counts.get(k) for k in expected} == expected,
          f"counts: 14 lines, 9 accepted, 5 rejected, 8 succeeded, 1 failed ({counts})")
    check(main_summary.get("input", {}).get("key") == INPUT_KEY,
          "the summary names the upload's key, spaces and + intact")
    output = s3.get_object(Bucket=bucket, Key=RESULTS + "output.jsonl")["Body"].read()
    ids = [json.loads(line)["custom_id"] for line in output.splitlines() if line.strip()]
    check(ids == EXPECTED_ORDER, f"output.jsonl is in input order: {' '.join(ids)}")
    errors = s3.get_object(Bucket=bucket, Key=RESULTS + "errors.jsonl")["Body"].read()
    lines = [json.loads(line)["line"] for line in errors.splitlines() if line.strip()]
    check(lines == EXPECTED_REJECTED_LINES, f"errors.jsonl: rejected lines {lines}")
    # The emulator writes an invocation's log lines when it ends: the poll that wrote
    # summary.json may still be running when the summary is seen.
    try:
        poll_runs = wait_for("the poll function's log", lambda: invocations(poll_fn, poll_group), 120, 2)
    except Abort:
        poll_runs = 0
    check(poll_runs >= 1, "the poll function ran on the schedule (this test never invokes it)")

    say(f"summary.json of {SECRET_INPUT_KEY}: {json.dumps(secret_summary)}")
    check(secret_summary.get("status") == "completed"
          and secret_summary.get("counts", {}).get("succeeded") == 2,
          "the openai route ran with its API key from Secrets Manager (2 succeeded)")

    # 5. Bedrock: the job read its chunk from the bucket and wrote its output there.
    say(f"summary.json of {BEDROCK_INPUT_KEY}: {json.dumps(bedrock_summary)}")
    batches = bedrock_summary.get("batches", [])
    check(bedrock_summary.get("status") == "completed"
          and bedrock_summary.get("counts", {}).get("succeeded") == BEDROCK_REQUESTS,
          f"the bedrock route completed all {BEDROCK_REQUESTS} requests")
    check(len(batches) == 1 and batches[0].get("provider") == "bedrock"
          and str(batches[0].get("id", "")).startswith("arn:aws:bedrock:")
          and batches[0].get("status") == "Completed",
          f"through one model invocation job ({batches})")
    output = s3.get_object(Bucket=bucket, Key=BEDROCK_RESULTS + "output.jsonl")["Body"].read()
    rows = [json.loads(line) for line in output.splitlines() if line.strip()]
    check([r.get("custom_id") for r in rows]
          == [f"claim-{i:03d}" for i in range(1, BEDROCK_REQUESTS + 1)]
          and all("modelOutput" in r for r in rows),
          "output.jsonl holds every Bedrock answer, in input order")
    with urllib.request.urlopen(f"http://127.0.0.1:{sandbox_port}/sandbox/stats",
                                timeout=10) as r:
        stats = json.loads(r.read())
    check(stats.get("bedrock_jobs_created") == 1,
          f"the sandbox saw one model invocation job ({stats})")

    # 6. The same event again: S3 delivers at least once. One job per upload, still.
    before = job_manifests()
    check(len(before) == 3, f"one job per upload: {len(before)} manifests for 3 uploads")
    etag = s3.head_object(Bucket=bucket, Key=INPUT_KEY)["ETag"].strip('"')
    event = json.loads((ROOT / "events" / "s3-put-encoded-key.json").read_text())
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"]["key"] = urllib.parse.quote_plus(INPUT_KEY, safe="/")
    record["s3"]["object"]["eTag"] = etag
    record["s3"]["object"]["size"] = len(data)
    say(f"invoking {submit_fn} again with the S3 event of the upload "
        f"(key {record['s3']['object']['key']})")
    resp = lam.invoke(FunctionName=submit_fn, Payload=json.dumps(event).encode())
    payload = json.loads(resp["Payload"].read() or b"null")
    say(f"  response: {json.dumps(payload)}")
    outcomes = [r.get("outcome") for r in (payload or {}).get("records", [])]
    check(outcomes == ["duplicate"] and "FunctionError" not in resp,
          "the duplicate event was recognised as the same job")
    count = invocations(submit_fn, submit_group)
    s3.put_object(Bucket=bucket, Key=INPUT_KEY, Body=data)
    say("uploaded the same bytes to the same key again (a second notification, same ETag)")
    wait_for("the second notification's invocation",
             lambda: invocations(submit_fn, submit_group) > count, 60)
    time.sleep(3)
    after = job_manifests()
    check(after == before, f"no second job: still {len(after)} manifests")


if __name__ == "__main__":
    sys.exit(main())
