#!/usr/bin/env bash
# The demo: start `batchdrop local` (directory + sandbox), drop examples/*.jsonl into its inbox,
# wait for every summary.json, print them, check that the counts add up, stop. Exit 0 on success.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/batchdrop
root=target/demo/bucket
staging=target/demo/staging
rm -rf target/demo
mkdir -p "$root/inbox" "$staging"

# What goes where: <example file> <route>. The same prompt file goes to every provider; on
# Bedrock it is below the 100-record minimum of a job and goes on demand (InvokeModel), while
# the 120 claims make one model invocation job; on sandbox-sync (a server without a batch
# API) every request goes through the synchronous lane.
drops=(
  "requests sandbox"
  "prompts sandbox"
  "prompts sandbox-anthropic"
  "messages sandbox-anthropic"
  "claims sandbox-bedrock"
  "prompts sandbox-bedrock"
  "prompts sandbox-sync"
)

"$bin" local --root "$root" --config examples/batchdrop.toml \
  --sandbox-step-ms 500 --poll-interval 0.5 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT

results=()
for drop in "${drops[@]}"; do
  read -r name route <<<"$drop"
  mkdir -p "$root/inbox/$route/demo"
  # Copy, then rename into place: the watcher never sees a half-written file.
  cp "examples/$name.jsonl" "$staging/$name.jsonl"
  mv "$staging/$name.jsonl" "$root/inbox/$route/demo/$name.jsonl"
  results+=("$route/demo/$name")
done

# A job already past its deadline (a .deadline beside the upload, written first): it makes no
# batch, every request goes through the synchronous lane at once.
mkdir -p "$root/inbox/sandbox/demo"
echo "2026-01-01T07:00:00Z" > "$root/inbox/sandbox/demo/late.jsonl.deadline"
cp examples/prompts.jsonl "$staging/late.jsonl"
mv "$staging/late.jsonl" "$root/inbox/sandbox/demo/late.jsonl"
results+=("sandbox/demo/late")

deadline=$((SECONDS + 120))
for r in "${results[@]}"; do
  until [ -f "$root/results/$r/summary.json" ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: no summary for $r after 120 s" >&2
      exit 1
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: batchdrop local stopped early" >&2
      exit 1
    fi
    sleep 0.5
  done
done
kill -TERM "$pid"
wait "$pid" || true
trap - EXIT

echo
python3 scripts/check_results.py "$root/results" "${results[@]}"
