"""The official `anthropic` Python SDK against `batchdrop api`, on a route to `sandbox` (an
OpenAI-format provider: requests and results cross formats both ways); then the official
`openai` SDK on a route to `sandbox-anthropic` (OpenAI-shaped output lines from Anthropic
results); then a prompt batch read through both.

Usage: api_anthropic_sdk_check.py BASE_URL ACME_KEY GLOBEX_KEY REQUESTS
  BASE_URL     http://ADDR (the script adds /routes/<route>)
  ACME_KEY     a key of tenant acme (routes: sandbox, sandbox-anthropic)
  GLOBEX_KEY   a key of tenant globex (routes: sandbox)
  REQUESTS     requests per batch

Prints `api anthropic sdk: N checks passed` and exits 0, or names the first failed check on
stderr and exits 1. Run by tests/api_sdk.rs.
"""

import json
import sys
import time

import urllib.error
import urllib.request

import anthropic
import openai

from sdk_checks import check, named, passed, raises

named("api anthropic sdk")


def until_ended(client, batch_id, seconds=90):
    deadline = time.time() + seconds
    batch = client.messages.batches.retrieve(batch_id)
    while batch.processing_status != "ended" and time.time() < deadline:
        time.sleep(0.2)
        batch = client.messages.batches.retrieve(batch_id)
    return batch


def until_openai(client, batch_id, seconds=90):
    deadline = time.time() + seconds
    batch = client.batches.retrieve(batch_id)
    while batch.status not in ("completed", "failed", "cancelled") and time.time() < deadline:
        time.sleep(0.2)
        batch = client.batches.retrieve(batch_id)
    return batch


def anthropic_side(base, acme_key, globex_key, requests):
    acme = anthropic.Anthropic(
        base_url=f"{base}/routes/sandbox", api_key=acme_key, max_retries=0, timeout=60
    )
    globex = anthropic.Anthropic(
        base_url=f"{base}/routes/sandbox", api_key=globex_key, max_retries=0, timeout=60
    )
    batch = acme.messages.batches.create(
        requests=[
            {
                "custom_id": f"req-{i:03d}",
                "params": {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": f"What is {i} plus {i}?"}],
                },
            }
            for i in range(requests)
        ]
    )
    check(batch.id.startswith("msgbatch_"), f"message batch id {batch.id}")
    check(batch.type == "message_batch", f"type {batch.type}")
    check(batch.processing_status in ("in_progress", "ended"), f"status {batch.processing_status}")
    check(batch.created_at is not None and batch.expires_at > batch.created_at, "times")

    done = until_ended(acme, batch.id)
    check(done.processing_status == "ended", f"batch ends: {done.processing_status}")
    counts = done.request_counts
    check(
        (counts.succeeded, counts.errored, counts.processing) == (requests, 0, 0),
        f"request counts {counts}",
    )
    check(done.ended_at is not None and done.results_url, "ended_at and results_url")

    results = list(acme.messages.batches.results(batch.id))
    check(len(results) == requests, f"{len(results)} results for {requests} requests")
    check(
        [r.custom_id for r in results] == [f"req-{i:03d}" for i in range(requests)],
        "results in input order",
    )
    check(all(r.result.type == "succeeded" for r in results), "every request succeeded")
    first = results[0].result.message
    check(first.role == "assistant" and first.type == "message", "an Anthropic message")
    check(first.content[0].type == "text" and first.content[0].text, "its text")
    check(first.stop_reason in ("end_turn", "max_tokens"), f"stop reason {first.stop_reason}")
    check(first.usage.input_tokens > 0, f"usage {first.usage}")

    # Listing, newest first, and the batch by its id.
    second = acme.messages.batches.create(
        requests=[
            {
                "custom_id": "c",
                "params": {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
            }
        ]
    )
    cancelled = acme.messages.batches.cancel(second.id)
    check(
        cancelled.processing_status in ("canceling", "ended"),
        f"cancel answers {cancelled.processing_status}",
    )
    check(cancelled.cancel_initiated_at is not None, "cancel_initiated_at set")
    page = acme.messages.batches.list(limit=1)
    check(len(page.data) == 1 and page.has_more, "a page of one, more to come")
    check(page.data[0].id == second.id, "newest first")
    listed = [b.id for b in acme.messages.batches.list(limit=1)]  # walks every page
    check(listed[:2] == [second.id, batch.id], f"all pages: {listed}")
    check(until_ended(acme, second.id).processing_status == "ended", "the cancelled batch ends")

    # Keys and tenants.
    wrong = anthropic.Anthropic(base_url=f"{base}/routes/sandbox", api_key="bdk_wrong", max_retries=0)
    raises(anthropic.AuthenticationError, lambda: wrong.messages.batches.list(), "a wrong key")
    raises(
        anthropic.NotFoundError,
        lambda: globex.messages.batches.retrieve(batch.id),
        "another tenant's batch",
    )
    raises(
        anthropic.NotFoundError,
        lambda: acme.messages.batches.retrieve("msgbatch_../x"),
        "a crafted id",
    )
    forbidden = anthropic.Anthropic(
        base_url=f"{base}/routes/sandbox-anthropic", api_key=globex_key, max_retries=0
    )
    raises(
        anthropic.PermissionDeniedError,
        lambda: forbidden.messages.batches.create(
            requests=[{"custom_id": "x", "params": {"max_tokens": 8, "messages": []}}]
        ),
        "a route the tenant may not use",
    )
    return batch.id


def openai_side(base, acme_key, requests):
    """The openai SDK on a route to the Anthropic-format sandbox."""
    acme = openai.OpenAI(
        base_url=f"{base}/routes/sandbox-anthropic/v1", api_key=acme_key, max_retries=0, timeout=60
    )
    lines = [
        {
            "custom_id": f"oa-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]},
        }
        for i in range(requests)
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = acme.files.create(file=("requests.jsonl", content), purpose="batch")
    batch = acme.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = until_openai(acme, batch.id)
    check(done.status == "completed", f"openai batch on sandbox-anthropic ends {done.status}")
    output = acme.files.content(done.output_file_id).text
    out = [json.loads(line) for line in output.splitlines()]
    check(len(out) == requests, f"{len(out)} output lines")
    check([o["custom_id"] for o in out] == [f"oa-{i}" for i in range(requests)], "output order")
    check(all(o["response"]["status_code"] == 200 for o in out), "OpenAI-shaped, answered")
    body = out[0]["response"]["body"]
    check(body["object"] == "chat.completion", f"a chat completion: {body}")
    check(body["choices"][0]["message"]["content"], "its text")
    check(body["choices"][0]["finish_reason"] in ("stop", "length"), "finish reason mapped")
    check(body["usage"]["prompt_tokens"] > 0, "usage mapped")
    check(acme.files.retrieve(done.output_file_id).bytes == len(output.encode()), "output bytes")


def prompt_batch(base, acme_key):
    """A prompt batch, read through both APIs."""
    body = {"route": "sandbox-anthropic", "prompts": ["Say hi.", {"prompt": "Bye.", "custom_id": "b"}]}
    request = urllib.request.Request(
        f"{base}/v1/prompt-batches",
        data=json.dumps(body).encode(),
        headers={"x-api-key": acme_key, "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            created = json.loads(answer.read())
    except urllib.error.HTTPError as e:
        check(False, f"prompt batch created: {e.code} {e.read()!r}")
    check(created["object"] == "prompt_batch", f"prompt batch created: {created}")
    client = anthropic.Anthropic(base_url=base, api_key=acme_key, max_retries=0, timeout=60)
    done = until_ended(client, created["message_batch_id"])
    check(done.processing_status == "ended", "the prompt batch ends")
    results = list(client.messages.batches.results(created["message_batch_id"]))
    check([r.custom_id for r in results] == ["line-1", "b"], f"prompt results {results}")
    check(all(r.result.type == "succeeded" for r in results), "prompts answered")
    oa = openai.OpenAI(base_url=f"{base}/v1", api_key=acme_key, max_retries=0, timeout=60)
    check(oa.batches.retrieve(created["id"]).status == "completed", "the same batch on OpenAI's API")


def main():
    base, acme_key, globex_key = sys.argv[1], sys.argv[2], sys.argv[3]
    requests = int(sys.argv[4])
    anthropic_side(base, acme_key, globex_key, requests)
    openai_side(base, acme_key, requests)
    prompt_batch(base, acme_key)
    passed()


if __name__ == "__main__":
    main()
