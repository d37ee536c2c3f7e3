"""The official `anthropic` Python SDK against a running sandbox: proof that it speaks the
Message Batches and Messages API wire formats.

Usage: anthropic_sdk_check.py BASE_URL   (the sandbox's root, without /v1; a zero step, i.e.
instant batches)

Prints `anthropic sdk: N checks passed` and exits 0, or names the first failed check on stderr
and exits 1. Run by tests/anthropic_sdk.rs.
"""

import sys
import time
from datetime import timedelta
from pathlib import Path

import anthropic

# The check counting the workspace's SDK check scripts share: crates/cli/tests/sdk_checks.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli" / "tests"))
from sdk_checks import check, named, passed, raises  # noqa: E402

named("anthropic sdk")

MODEL = "claude-sonnet-4-5"
REQUESTS = 5
BATCHES = 3


def request(index):
    return {
        "custom_id": f"req-{index}",
        "params": {
            "model": MODEL,
            "max_tokens": 256,
            "system": "You are terse.",
            "messages": [{"role": "user", "content": f"What is {index} plus {index}?"}],
        },
    }


def until_ended(client, batch_id):
    for _ in range(50):
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.1)
    return batch


def main():
    client = anthropic.Anthropic(
        base_url=sys.argv[1], api_key="sk-ant-sandbox", max_retries=0, timeout=60
    )
    custom_ids = [f"req-{i}" for i in range(REQUESTS)]

    created = [
        client.messages.batches.create(requests=[request(i) for i in range(REQUESTS)])
        for _ in range(BATCHES)
    ]
    first = created[0]
    check(all(b.type == "message_batch" and b.id.startswith("msgbatch_") for b in created),
          "batches.create returns MessageBatch objects")
    check(all(b.processing_status == "in_progress" for b in created),
          "batches.create returns a batch in progress")
    check(first.request_counts.processing == REQUESTS and first.request_counts.succeeded == 0,
          f"a new batch counts every request as processing ({first.request_counts})")
    check(first.results_url is None and first.ended_at is None,
          "a new batch has no results_url and no ended_at")
    check(first.created_at.tzinfo is not None
          and first.expires_at - first.created_at == timedelta(hours=24),
          "created_at and expires_at parse as aware datetimes 24 h apart")

    batch = until_ended(client, first.id)
    check(batch.processing_status == "ended", f"the batch ends (status {batch.processing_status})")
    counts = batch.request_counts
    check(counts.succeeded == REQUESTS and counts.processing == 0 and counts.errored == 0
          and counts.canceled == 0 and counts.expired == 0,
          f"request_counts add up once ended ({counts})")
    check(batch.ended_at is not None and batch.ended_at >= batch.created_at,
          "ended_at is set, not before created_at")
    check(batch.results_url is not None and batch.results_url.endswith(f"/{batch.id}/results"),
          f"results_url is set once ended ({batch.results_url})")

    first_page = client.messages.batches.list(limit=2)
    check(len(first_page.data) == 2 and first_page.has_more,
          "batches.list(limit=2) gives two batches and says there are more")
    listed = [b.id for b in client.messages.batches.list(limit=2)]  # iterating fetches every page
    check(listed == [b.id for b in reversed(created)],
          "paging through batches.list gives every batch once, newest first")

    results = list(client.messages.batches.results(batch.id))
    check(sorted(r.custom_id for r in results) == custom_ids,
          "the results have one line per request")
    check(all(r.result.type == "succeeded" for r in results), "every result succeeded")
    messages = [r.result.message for r in results]
    check(all(m.role == "assistant" and m.model == MODEL for m in messages),
          "every result is an assistant message from the requested model")
    check(all(m.content[0].type == "text" and m.content[0].text for m in messages),
          "every message has text content")
    check(all(m.stop_reason == "end_turn" and m.usage.input_tokens > 0 and m.usage.output_tokens > 0
              for m in messages),
          "every message has a stop_reason and usage")

    message = client.messages.create(**request(0)["params"])
    check(message.type == "message" and message.role == "assistant" and message.model == MODEL,
          "messages.create returns an assistant Message from the requested model")
    check(message.stop_reason == "end_turn" and message.usage.input_tokens > 0
          and message.usage.output_tokens > 0,
          "messages.create's Message has a stop_reason and usage")
    in_batch = next(r.result.message for r in results if r.custom_id == "req-0")
    check(message.content[0].type == "text" and message.content[0].text == in_batch.content[0].text,
          "messages.create answers what the batch answered for the same params")
    try:
        client.messages.create(**{**request(0)["params"], "max_tokens": 0})
        check(False, "messages.create with max_tokens 0 raises BadRequestError")
    except anthropic.BadRequestError as error:
        check(error.status_code == 400 and "max_tokens" in str(error),
              f"messages.create with max_tokens 0 raises BadRequestError naming it ({error})")

    raises(anthropic.NotFoundError,
           lambda: client.messages.batches.retrieve("msgbatch_does_not_exist"),
           "an unknown batch raises NotFoundError")
    raises(anthropic.BadRequestError, lambda: client.messages.batches.cancel(batch.id),
           "cancelling an ended batch raises BadRequestError")
    try:
        client.messages.batches.create(
            requests=[{**request(0), "custom_id": "not.valid"}, request(1)]
        )
        check(False, "an invalid custom_id raises BadRequestError")
    except anthropic.BadRequestError as error:
        check("requests.0.custom_id" in str(error),
              f"an invalid custom_id raises BadRequestError naming it ({error})")
    raises(anthropic.AuthenticationError,
           lambda: client.messages.batches.list(
               extra_headers={"Authorization": anthropic.omit, "X-Api-Key": anthropic.omit}
           ),
           "a request without an API key raises AuthenticationError")

    deleted = client.messages.batches.delete(batch.id)
    check(deleted.id == batch.id and deleted.type == "message_batch_deleted",
          "batches.delete deletes an ended batch")

    passed()


if __name__ == "__main__":
    main()
