"""The official `openai` Python SDK against `batchdrop api`: existing batch code with only its
base URL (and key) changed.

Usage: api_sdk_check.py BASE_URL ACME_KEY GLOBEX_KEY REQUESTS MAX_PER_BATCH
  BASE_URL       http://ADDR (the script adds /v1 and /routes/<route>/v1)
  ACME_KEY       a key of tenant acme (routes: sandbox)
  GLOBEX_KEY     a key of tenant globex (routes: sandbox)
  REQUESTS       requests in the file (more than MAX_PER_BATCH: the job is split)

Prints `api sdk: N checks passed` and exits 0, or names the first failed check on stderr and
exits 1. Run by tests/api_sdk.rs.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import openai

from sdk_checks import check, named, passed, raises

named("api sdk")


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


def until(client, batch_id, statuses, seconds=90):
    deadline = time.time() + seconds
    batch = client.batches.retrieve(batch_id)
    while batch.status not in statuses and time.time() < deadline:
        time.sleep(0.2)
        batch = client.batches.retrieve(batch_id)
    return batch


def main():
    base, acme_key, globex_key = sys.argv[1], sys.argv[2], sys.argv[3]
    requests = int(sys.argv[4])
    acme = openai.OpenAI(base_url=f"{base}/v1", api_key=acme_key, max_retries=0, timeout=60)
    globex = openai.OpenAI(base_url=f"{base}/v1", api_key=globex_key, max_retries=0, timeout=60)

    # Files: upload, retrieve, content.
    content = "".join(json.dumps(request_line(i)) + "\n" for i in range(requests)).encode()
    uploaded = acme.files.create(file=("requests.jsonl", content), purpose="batch")
    check(uploaded.id.startswith("file-"), f"file id {uploaded.id}")
    check(uploaded.bytes == len(content), f"file bytes {uploaded.bytes} != {len(content)}")
    check(uploaded.status == "processed" and uploaded.purpose == "batch", "file status, purpose")
    check(acme.files.retrieve(uploaded.id).filename == "requests.jsonl", "retrieved filename")
    check(acme.files.content(uploaded.id).read() == content, "file content byte for byte")

    # The Uploads API: the same content in parts, as the SDK's chunked upload sends it.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunked.jsonl"
        path.write_bytes(content)
        part_size = len(content) // 3 + 1
        chunked = acme.uploads.upload_file_chunked(
            file=path, mime_type="application/jsonl", purpose="batch", part_size=part_size
        )
    check(chunked.status == "completed", f"chunked upload status {chunked.status}")
    check(chunked.file is not None and chunked.file.bytes == len(content), "chunked upload file")
    check(acme.files.content(chunked.file.id).read() == content, "chunked file byte for byte")
    raises(
        openai.NotFoundError,
        lambda: globex.uploads.cancel(chunked.id),
        "another tenant's upload",
    )

    # A batch, split by batchdrop, completed, its output in input order.
    batch = acme.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "sdk"},
    )
    check(batch.id.startswith("batch_"), f"batch id {batch.id}")
    check(batch.metadata == {"run": "sdk"}, f"metadata {batch.metadata}")
    check(batch.status in ("validating", "in_progress"), f"new batch status {batch.status}")

    # A second batch on the same file, cancelled while it runs.
    second = acme.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    cancelled = acme.batches.cancel(second.id)
    check(cancelled.status in ("cancelling", "cancelled"), f"cancel answers {cancelled.status}")
    check(cancelled.cancelling_at is not None, "cancelling_at set")
    second = until(acme, second.id, ("cancelled", "completed", "failed"))
    check(second.status == "cancelled", f"second batch ends {second.status}")
    check(second.cancelled_at is not None, "cancelled_at set")

    done = until(acme, batch.id, ("completed", "failed", "cancelled", "expired"))
    check(done.status == "completed", f"batch ends {done.status}: {done.errors}")
    counts = done.request_counts
    check(
        (counts.total, counts.completed, counts.failed) == (requests, requests, 0),
        f"request counts {counts}",
    )
    check(done.completed_at is not None and done.in_progress_at is not None, "timestamps")
    check(done.output_file_id is not None and done.error_file_id is None, "output, no error file")
    output = acme.files.content(done.output_file_id).text
    lines = [json.loads(line) for line in output.splitlines()]
    check(len(lines) == requests, f"{len(lines)} output lines for {requests} requests")
    check(
        [line["custom_id"] for line in lines] == [f"req-{i:03d}" for i in range(requests)],
        "output in input order",
    )
    check(
        all(line["response"]["status_code"] == 200 and line["error"] is None for line in lines),
        "every line answered",
    )
    check(
        all(line["response"]["body"]["choices"][0]["message"]["role"] == "assistant" for line in lines),
        "OpenAI-shaped answers",
    )
    check(acme.files.retrieve(done.output_file_id).bytes == len(output.encode()), "output bytes")

    # Listing, newest first, a page at a time.
    first_page = acme.batches.list(limit=1)
    check(len(first_page.data) == 1 and first_page.has_more, "first page of one, more to come")
    check(first_page.data[0].id == second.id, "newest first")
    listed = [b.id for b in acme.batches.list(limit=1)]  # iterating walks every page
    check(listed == [second.id, batch.id], f"all pages: {listed}")

    # Keys and tenants.
    wrong = openai.OpenAI(base_url=f"{base}/v1", api_key="bdk_wrong", max_retries=0)
    raises(openai.AuthenticationError, lambda: wrong.batches.list(), "a wrong key")
    raises(openai.NotFoundError, lambda: globex.batches.retrieve(batch.id), "another tenant's batch")
    raises(openai.NotFoundError, lambda: globex.files.retrieve(uploaded.id), "another tenant's file")
    raises(
        openai.NotFoundError,
        lambda: globex.files.content(done.output_file_id),
        "another tenant's output",
    )
    raises(openai.NotFoundError, lambda: acme.files.retrieve("file-../x"), "a crafted id")
    forbidden = openai.OpenAI(
        base_url=f"{base}/routes/openai/v1", api_key=globex_key, max_retries=0
    )
    raises(
        openai.PermissionDeniedError,
        lambda: forbidden.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
        "a route the tenant may not use",
    )

    deleted = acme.files.delete(uploaded.id)
    check(deleted.deleted, "file deleted")
    raises(openai.NotFoundError, lambda: acme.files.retrieve(uploaded.id), "deleted file")

    passed()


if __name__ == "__main__":
    main()
