"""The official `openai` Python SDK against batchdrop's API function behind a (local) function
URL: what a user on AWS does. Run by tests/api_lambda.rs in two steps, with the poll function
invoked between them.

Usage:
  api_lambda_check.py submit BASE_URL KEY REQUESTS PART_SIZE
      uploads a file of REQUESTS request lines and one line that is not JSON through the
      Uploads API in parts of PART_SIZE bytes (the SDK's chunked upload), reads it back, and
      creates a batch on it; prints {"batch_id": ..., "file_id": ...} as its last line.
  api_lambda_check.py download BASE_URL KEY BATCH_ID REQUESTS
      reads the finished batch, its output file (the SDK follows the redirect to S3) and its
      error file; checks the lines, their order, and that a wrong key is refused.

BASE_URL is the API's OpenAI base URL (…/v1). Exits 0 after printing `api lambda: N checks
passed`, or names the first failed check on stderr and exits 1.
"""

import json
import sys
import tempfile
from pathlib import Path

import openai

# The check counting the workspace's SDK check scripts share: crates/cli/tests/sdk_checks.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "crates" / "cli" / "tests"))
from sdk_checks import check, named, passed, raises  # noqa: E402

named("api lambda")


def request_line(index):
    return {
        "custom_id": f"req-{index:03d}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"What is {index} plus {index}?"}],
        },
    }


def input_file(requests):
    """REQUESTS request lines, then a line that is not JSON."""
    lines = [json.dumps(request_line(i)) + "\n" for i in range(requests)]
    return ("".join(lines) + "this line is not JSON\n").encode()


def client(base, key):
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)


def submit(base, key, requests, part_size):
    api = client(base, key)
    content = input_file(requests)
    check(len(content) > 2 * part_size, f"{len(content)} bytes make several parts of {part_size}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requests.jsonl"
        path.write_bytes(content)
        upload = api.uploads.upload_file_chunked(
            file=path, mime_type="application/jsonl", purpose="batch", part_size=part_size
        )
    check(upload.status == "completed", f"upload status {upload.status}")
    check(upload.file is not None and upload.file.bytes == len(content), "the upload's file")
    # The upload's content comes back through a redirect to S3, byte for byte.
    check(api.files.content(upload.file.id).read() == content, "uploaded content byte for byte")
    batch = api.batches.create(
        input_file_id=upload.file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    check(batch.status in ("validating", "in_progress"), f"new batch status {batch.status}")
    passed()
    print(json.dumps({"batch_id": batch.id, "file_id": upload.file.id}))


def download(base, key, batch_id, requests):
    api = client(base, key)
    batch = api.batches.retrieve(batch_id)
    check(batch.status == "completed", f"batch status {batch.status}: {batch.errors}")
    counts = batch.request_counts
    check(
        (counts.total, counts.completed, counts.failed) == (requests + 1, requests, 1),
        f"request counts {counts}",
    )
    output = api.files.content(batch.output_file_id).text
    lines = [json.loads(line) for line in output.splitlines()]
    check(
        [line["custom_id"] for line in lines] == [f"req-{i:03d}" for i in range(requests)],
        "output lines in input order",
    )
    check(
        all(line["response"]["status_code"] == 200 for line in lines), "every request answered"
    )
    check(api.files.retrieve(batch.output_file_id).bytes == len(output.encode()), "output bytes")
    errors = [json.loads(line) for line in api.files.content(batch.error_file_id).text.splitlines()]
    check(len(errors) == 1 and errors[0]["error"] is not None, f"the error file: {errors}")
    raises(openai.AuthenticationError, lambda: client(base, "bdk_wrong").batches.retrieve(batch_id),
           "a wrong key")
    passed()


def main():
    step, base, key = sys.argv[1], sys.argv[2], sys.argv[3]
    if step == "submit":
        submit(base, key, int(sys.argv[4]), int(sys.argv[5]))
    elif step == "download":
        download(base, key, sys.argv[4], int(sys.argv[5]))
    else:
        check(False, f"unknown step {step!r}")


if __name__ == "__main__":
    main()
