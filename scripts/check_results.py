"""Prints each job's summary and checks the product contract on its results:
one output line per accepted request in input order, one error line per rejected line,
and counts that add up. Usage: check_results.py RESULTS_DIR NAME..."""
import json
import sys
from pathlib import Path

def check(results: Path, name: str) -> list[str]:
    d = results / name
    summary = json.loads((d / "summary.json").read_text())
    out = [json.loads(l) for l in (d / "output.jsonl").read_text().splitlines() if l.strip()]
    errs = [json.loads(l) for l in (d / "errors.jsonl").read_text().splitlines() if l.strip()]
    c = summary["counts"]
    problems = []
    if summary["status"] != "completed":
        problems.append(f"status is {summary['status']}")
    if c["accepted"] + c["rejected"] != c["lines"]:
        problems.append("accepted + rejected != lines")
    if c["succeeded"] + c["failed"] != c["accepted"]:
        problems.append("succeeded + failed != accepted")
    if len(out) != c["accepted"]:
        problems.append(f"{len(out)} output lines for {c['accepted']} accepted requests")
    if len(errs) != c["rejected"]:
        problems.append(f"{len(errs)} error lines for {c['rejected']} rejected lines")
    lines = [e["line"] for e in errs]
    if lines != sorted(lines):
        problems.append("errors.jsonl is not in line order")
    on_demand = summary.get("on_demand_requests", 0)
    print(f"== {name}: {summary['status']}, counts {json.dumps(c)}, "
          f"{len(summary['batches'])} batches, usage {json.dumps(summary['usage'])}"
          + (f", {on_demand} requests through the synchronous lane" if on_demand else ""))
    deadline = summary.get("deadline")
    if deadline:
        print(f"   deadline {deadline['at']} ({deadline['source']}): "
              + ("met" if deadline.get("met") else "missed")
              + (f"; cut at {deadline['cut_at']}, {deadline.get('lane_requests', 0)} requests "
                 f"through the lane, extra cost ${deadline.get('extra_cost', 0):.6f}"
                 if deadline.get("cut_at") else ""))
    ids = [o.get("custom_id", "<none>") for o in out]
    if "<none>" in ids:
        problems.append("an output line has no custom_id")
    shown = ids if len(ids) <= 12 else ids[:5] + [f"… {len(ids) - 10} more …"] + ids[-5:]
    print("   output custom_ids in order:", " | ".join(shown))
    if out:
        shape = ("anthropic" if "result" in out[0]
                 else "bedrock" if "recordId" in out[0] else "openai")
        print(f"   output shape: {shape}; first line: {json.dumps(out[0])[:160]}…")
    for e in errs:
        print(f"   line {e['line']}: {e['error']['code']}: {e['error']['message']}")
    return problems

def main() -> int:
    results = Path(sys.argv[1])
    failed = False
    for name in sys.argv[2:]:
        for p in check(results, name):
            print(f"   PROBLEM: {p}")
            failed = True
    print()
    print("demo: results are in", results)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
