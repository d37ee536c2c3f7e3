"""The official `openai` Python SDK against `batchdrop api` at scale, on a route whose provider
is not OpenAI: a file of more requests than OpenAI's 50,000 cap, sent through the SDK's chunked
upload in 5 MB parts, runs on the Anthropic sandbox and comes back as OpenAI batch output lines,
one per request, in input order.

Usage: api_sdk_scale_check.py BASE_URL KEY ROUTE REQUESTS PART_BYTES
Prints `api sdk scale: N checks passed` and exits 0, or names the first failed check on stderr
and exits 1. Run by tests/api_sdk.rs.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import openai

from sdk_checks import check, named, passed

named("api sdk scale")


def request_line(index):
    return {
        "custom_id": f"req-{index:06d}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"What is {index} plus {index}?"}],
        },
    }


def main():
    base, key, route = sys.argv[1], sys.argv[2], sys.argv[3]
    requests, part_bytes = int(sys.argv[4]), int(sys.argv[5])
    client = openai.OpenAI(
        base_url=f"{base}/routes/{route}/v1", api_key=key, max_retries=0, timeout=300
    )
    content = "".join(json.dumps(request_line(i)) + "\n" for i in range(requests)).encode()
    check(len(content) > 2 * part_bytes, f"the file ({len(content)} bytes) spans several parts")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        path.write_bytes(content)
        upload = client.uploads.upload_file_chunked(
            file=path, mime_type="application/jsonl", purpose="batch", part_size=part_bytes
        )
    check(upload.status == "completed", f"upload status {upload.status}")
    check(upload.file.bytes == len(content), f"uploaded {upload.file.bytes} of {len(content)}")

    batch = client.batches.create(
        input_file_id=upload.file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.time() + 600
    while batch.status not in ("completed", "failed", "cancelled") and time.time() < deadline:
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    check(batch.status == "completed", f"batch ends {batch.status}: {batch.errors}")
    counts = batch.request_counts
    output = client.files.content(batch.output_file_id).text.splitlines()
    first_failed = next((line for line in output if json.loads(line).get("error")), None)
    check(
        (counts.total, counts.completed, counts.failed) == (requests, requests, 0),
        f"request counts {counts}; first failed line: {(first_failed or '')[:600]}",
    )
    check(len(output) == requests, f"{len(output)} output lines for {requests} requests")
    ids_in_order = True
    shaped = True
    for index, text in enumerate(output):
        line = json.loads(text)
        ids_in_order &= line["custom_id"] == f"req-{index:06d}"
        body = (line.get("response") or {}).get("body") or {}
        shaped &= (
            line.get("error") is None
            and line["response"]["status_code"] == 200
            and body.get("object") == "chat.completion"
            and body["choices"][0]["message"]["role"] == "assistant"
            and isinstance(body["choices"][0]["message"]["content"], str)
            and body["usage"]["prompt_tokens"] > 0
        )
    check(ids_in_order, "output in input order")
    check(shaped, "every line an OpenAI chat.completion answer")
    passed()


if __name__ == "__main__":
    main()
