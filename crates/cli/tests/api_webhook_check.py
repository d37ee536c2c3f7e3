"""A Batch API key's own webhook, through the official `openai` SDK: tenant acme's keys-file
entry has a webhook_url (the `standardwebhooks` receiver of crates/core/tests) and a secret by
reference; globex's has none.

Usage: api_webhook_check.py BASE_URL ACME_KEY GLOBEX_KEY RECEIVER_URL

Each tenant runs a batch to its end; then the receiver must hold exactly one webhook, verified
with acme's secret by the reference library, `batch_job.completed`, naming acme's batch (its
`api_batch_id`). Prints `api webhook: N checks passed`, or the first failed check on stderr
and exits 1. Run by tests/api_sdk.rs.
"""

import json
import sys
import time
import urllib.request

import openai

from sdk_checks import check, named, passed

named("api webhook")


def run_batch(client, tag):
    line = {
        "custom_id": f"{tag}-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": tag}]},
    }
    f = client.files.create(file=(f"{tag}.jsonl", json.dumps(line).encode() + b"\n"), purpose="batch")
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.time() + 60
    while batch.status not in ("completed", "failed", "cancelled") and time.time() < deadline:
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    check(batch.status == "completed", f"{tag}'s batch ended {batch.status}")
    return batch.id


def received(receiver):
    with urllib.request.urlopen(f"{receiver}/_received", timeout=10) as r:
        return json.load(r)


def main():
    base, acme_key, globex_key, receiver = sys.argv[1:5]
    acme = openai.OpenAI(base_url=f"{base}/v1", api_key=acme_key, max_retries=0, timeout=60)
    globex = openai.OpenAI(base_url=f"{base}/v1", api_key=globex_key, max_retries=0, timeout=60)
    globex_batch = run_batch(globex, "globex")
    acme_batch = run_batch(acme, "acme")

    # The webhook goes out as the job ends, just after the batch reads completed.
    deadline = time.time() + 30
    got = received(receiver)
    while not got and time.time() < deadline:
        time.sleep(0.1)
        got = received(receiver)
    check(len(got) == 1, f"one webhook for acme, none for globex: got {len(got)}")
    hook = got[0]
    check(hook["verified"] is True, f"verified with acme's secret: {hook.get('error')}")
    body = hook["body"]
    check(body["type"] == "batch_job.completed", f"type {body['type']}")
    check(body["data"]["api_batch_id"] == acme_batch, f"names acme's batch: {body['data']}")
    check(body["data"]["api_batch_id"] != globex_batch, "not globex's batch")
    check(body["data"]["counts"]["succeeded"] == 1, f"carries the summary: {body['data']}")
    check(hook["headers"]["webhook-id"].startswith("msg_"), "a stable webhook-id")
    passed()


main()
