"""The official `openai` Python SDK against a running sandbox: proof that it speaks the wire format.

Usage: openai_sdk_check.py BASE_URL   (a sandbox with a zero step, i.e. instant batches)

Prints `openai sdk: N checks passed` and exits 0, or names the first failed check on stderr
and exits 1. Run by tests/openai_sdk.rs.
"""

import json
import sys
import time
from pathlib import Path

import openai
from openai.types.chat import ChatCompletion

# The check counting the workspace's SDK check scripts share: crates/cli/tests/sdk_checks.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli" / "tests"))
from sdk_checks import check, named, passed, raises  # noqa: E402

named("openai sdk")

ENDPOINT = "/v1/chat/completions"
REQUESTS = 5
BATCHES = 3


def request_line(index):
    return {
        "custom_id": f"req-{index}",
        "method": "POST",
        "url": ENDPOINT,
        "body": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": f"What is {index} plus {index}?"},
            ],
        },
    }


def until_ended(client, batch_id):
    for _ in range(50):
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.1)
    return batch


def main():
    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-sandbox", max_retries=0, timeout=60)

    custom_ids = [f"req-{i}" for i in range(REQUESTS)]
    content = "".join(json.dumps(request_line(i)) + "\n" for i in range(REQUESTS)).encode()
    uploaded = client.files.create(file=("requests.jsonl", content), purpose="batch")
    check(uploaded.purpose == "batch" and uploaded.bytes == len(content),
          "files.create returns a batch File object of the uploaded size")
    check(client.files.retrieve(uploaded.id).filename == "requests.jsonl",
          "files.retrieve finds the upload by id")

    created = [
        client.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"check": str(i)},
        )
        for i in range(BATCHES)
    ]
    check(all(batch.status == "validating" for batch in created),
          "batches.create returns a validating batch")

    batch = until_ended(client, created[0].id)
    check(batch.status == "completed", f"the batch completes (status {batch.status})")
    counts = batch.request_counts
    check(counts.total == REQUESTS and counts.completed == REQUESTS and counts.failed == 0,
          f"request_counts add up ({counts})")
    check(batch.output_file_id is not None and batch.error_file_id is None,
          "a batch without failures has an output file and no error file")
    check(batch.usage is not None
          and batch.usage.total_tokens == batch.usage.input_tokens + batch.usage.output_tokens,
          "usage is reported and adds up")
    check(batch.metadata == {"check": "0"}, "metadata is kept")

    first_page = client.batches.list(limit=2)
    check(len(first_page.data) == 2 and first_page.has_more,
          "batches.list(limit=2) gives two batches and says there are more")
    listed = [b.id for b in client.batches.list(limit=2)]  # iterating a page fetches the next ones
    check(listed == [b.id for b in reversed(created)],
          "paging through batches.list gives every batch once, newest first")

    text = client.files.content(batch.output_file_id).text
    outputs = [json.loads(line) for line in text.splitlines()]
    check(sorted(line["custom_id"] for line in outputs) == custom_ids,
          "the output file has one line per request")
    completions = [ChatCompletion.model_validate(line["response"]["body"]) for line in outputs]
    check(all(line["response"]["status_code"] == 200 and line["error"] is None for line in outputs),
          "every output line is a 200 with error null")
    check(all(c.choices[0].message.content and c.usage.prompt_tokens > 0 for c in completions),
          "every answer parses as a ChatCompletion with content and usage")

    raises(openai.NotFoundError, lambda: client.batches.retrieve("batch_does_not_exist"),
           "an unknown batch raises NotFoundError")
    raises(openai.BadRequestError, lambda: client.batches.cancel(batch.id),
           "cancelling a completed batch raises BadRequestError")
    raises(openai.AuthenticationError,
           lambda: client.batches.list(extra_headers={"Authorization": openai.omit}),
           "a request without an API key raises AuthenticationError")

    check(client.files.delete(uploaded.id).deleted, "files.delete deletes the upload")

    # The synchronous endpoints (what the synchronous lane calls): parsed by the SDK's types,
    # the same answer for the same request.
    asked = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi."}])
    first = client.chat.completions.create(**asked)
    again = client.chat.completions.create(**asked)
    check(first.object == "chat.completion" and first.choices[0].message.content
          and first.usage.total_tokens > 0, "chat.completions.create answers synchronously")
    check(first.choices[0].message.content == again.choices[0].message.content,
          "the same request gets the same answer")
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    check(len(vectors.data) == 2 and len(vectors.data[0].embedding) > 0,
          "embeddings.create answers synchronously")
    raises(openai.BadRequestError,
           lambda: client.chat.completions.create(model="gpt-4o-mini", messages=[]),
           "an empty messages list raises BadRequestError")

    passed()


if __name__ == "__main__":
    main()
