"""boto3's `bedrock` client against a running sandbox whose Bedrock jobs use a moto S3 server.

Usage: bedrock_sdk_check.py SANDBOX_URL S3_URL   (a sandbox with a short step, e.g. 300 ms)

Prints `bedrock sdk: N checks passed` and exits 0, or names the first failed check on stderr
and exits 1. Run by tests/bedrock_sdk.rs, which starts both servers.
"""

import json
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"
BUCKET = "bedrock-sandbox"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
ENDED = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")

checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"bedrock sdk: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1


def record(index):
    return {
        "recordId": f"rec-{index:04d}",
        "modelInput": {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"What is {index} plus {index}?"}],
        },
    }


def upload(s3, key, count):
    body = "".join(json.dumps(record(i)) + "\n" for i in range(count)).encode()
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def create(bedrock, name, key, **extra):
    return bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE,
        modelId=MODEL,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/{key}"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/out/"}},
        **extra,
    )["jobArn"]


def until_ended(bedrock, arn, seen=None):
    for _ in range(200):
        job = bedrock.get_model_invocation_job(jobIdentifier=arn)
        if seen is not None:
            seen.append(job["status"])
        if job["status"] in ENDED:
            return job
        time.sleep(0.1)
    return job


def read_lines(s3, key):
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def main():
    sandbox_url, s3_url = sys.argv[1], sys.argv[2]
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    config = Config(retries={"max_attempts": 1})
    bedrock = session.client("bedrock", endpoint_url=sandbox_url, config=config)
    s3 = session.client("s3", endpoint_url=s3_url, config=config)
    s3.create_bucket(Bucket=BUCKET)

    # A 150-record job, created, followed until Completed, listed, its output read from S3.
    upload(s3, "in/input.jsonl", 150)
    arn = create(bedrock, "sdk-job", "in/input.jsonl", clientRequestToken="sdk-token-1")
    job_id = arn.rsplit("/", 1)[1]
    check(
        arn.startswith(f"arn:aws:bedrock:{REGION}:123456789012:model-invocation-job/")
        and len(job_id) == 12,
        f"a job ARN, not {arn}",
    )
    seen = []
    job = until_ended(bedrock, arn, seen)
    check(job["status"] == "Completed", f"Completed, not {job['status']}: {job.get('message')}")
    check("InProgress" in seen, f"InProgress seen on the way: {seen}")
    check(job["jobName"] == "sdk-job" and job["modelId"] == MODEL, "the job's name and model")
    check(hasattr(job["submitTime"], "year") and hasattr(job["endTime"], "year"),
          "timestamps parsed as datetimes")
    check(job.get("totalRecordCount") == 150 and job.get("successRecordCount") == 150,
          f"record counts: {job}")
    by_id = bedrock.get_model_invocation_job(jobIdentifier=job_id)
    check(by_id["jobArn"] == arn, "the job found by its id too")

    listed = bedrock.list_model_invocation_jobs()["invocationJobSummaries"]
    check([j["jobArn"] for j in listed] == [arn], f"the job listed: {listed}")
    done = bedrock.list_model_invocation_jobs(statusEquals="Completed", nameContains="sdk")
    check(len(done["invocationJobSummaries"]) == 1, "listed by status and name")

    lines = read_lines(s3, f"out/{job_id}/input.jsonl.out")
    ids = [line["recordId"] for line in lines]
    check(sorted(ids) == [f"rec-{i:04d}" for i in range(150)], "every recordId came back once")
    check(ids != sorted(ids), "the output order is shuffled")
    check(all(line["modelOutput"]["type"] == "message" for line in lines),
          "every record has a modelOutput")
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"out/{job_id}/manifest.json.out")["Body"].read()
    )
    check(manifest["totalRecordCount"] == 150 and manifest["successRecordCount"] == 150
          and manifest["errorRecordCount"] == 0 and manifest["inputTokenCount"] > 0,
          f"the manifest: {manifest}")

    # The same clientRequestToken again: the same job, no second one.
    again = create(bedrock, "sdk-job", "in/input.jsonl", clientRequestToken="sdk-token-1")
    check(again == arn, "the same token names the same job")
    count = len(bedrock.list_model_invocation_jobs()["invocationJobSummaries"])
    check(count == 1, f"still one job after the repeated create, not {count}")

    # 40 records: the job fails at validation with the minimum's message.
    upload(s3, "in/small.jsonl", 40)
    small = create(bedrock, "sdk-small", "in/small.jsonl")
    failed = until_ended(bedrock, small)
    check(failed["status"] == "Failed", f"Failed, not {failed['status']}")
    check("contains less records (40) than the required minimum of: 100"
          in failed.get("message", ""), f"the minimum message: {failed.get('message')}")

    # A stop: Stopping, then Stopped.
    stopping = create(bedrock, "sdk-stop", "in/input.jsonl")
    bedrock.stop_model_invocation_job(jobIdentifier=stopping)
    status = bedrock.get_model_invocation_job(jobIdentifier=stopping)["status"]
    check(status == "Stopping", f"Stopping right after the stop, not {status}")
    stopped = until_ended(bedrock, stopping)
    check(stopped["status"] == "Stopped", f"Stopped, not {stopped['status']}")

    # Errors arrive as botocore's modelled exceptions.
    try:
        bedrock.get_model_invocation_job(jobIdentifier="aaaaaaaaaaaa")
        check(False, "an unknown job is refused")
    except bedrock.exceptions.ResourceNotFoundException:
        check(True, "an unknown job is ResourceNotFoundException")
    try:
        create(bedrock, "-bad-name", "in/input.jsonl")
        check(False, "a bad job name is refused")
    except ClientError as error:
        check(error.response["Error"]["Code"] == "ValidationException",
              f"a bad job name is a ValidationException: {error}")

    # InvokeModel answers as the batch did.
    runtime = session.client("bedrock-runtime", endpoint_url=sandbox_url, config=config)
    answer = json.loads(
        runtime.invoke_model(modelId=MODEL, body=json.dumps(record(7)["modelInput"]))["body"].read()
    )
    batch = next(line for line in lines if line["recordId"] == "rec-0007")
    check(answer == batch["modelOutput"], "InvokeModel answers as the batch record was answered")

    print(f"bedrock sdk: {checks} checks passed")


if __name__ == "__main__":
    main()
