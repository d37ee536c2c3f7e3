#!/usr/bin/env bash
# The demo: start `batchdrop local` (directory + sandbox), drop examples/*.jsonl into its inbox,
# wait for every summary.json, print them, check that the counts add up, stop. Exit 0 on success.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/batchdrop
root=target/demo/bucket
inbox="$root/inbox/sandbox/demo"
staging=target/demo/staging
rm -rf target/demo
mkdir -p "$inbox" "$staging"

"$bin" local --root "$root" --config examples/batchdrop.toml \
  --sandbox-step-ms 500 --poll-interval 0.5 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT

names=()
for f in examples/*.jsonl; do
  name=$(basename "$f" .jsonl)
  names+=("$name")
  # Copy, then rename into place: the watcher never sees a half-written file.
  cp "$f" "$staging/$name.jsonl"
  mv "$staging/$name.jsonl" "$inbox/$name.jsonl"
done

deadline=$((SECONDS + 120))
for name in "${names[@]}"; do
  until [ -f "$root/results/sandbox/demo/$name/summary.json" ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: no summary for $name after 120 s" >&2
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
python3 scripts/check_results.py "$root/results/sandbox/demo" "${names[@]}"
