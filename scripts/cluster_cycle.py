#!/usr/bin/env python3
"""One cycle of scripts/cluster-test.sh, from txgen's side.

    cluster_cycle.py REPORT.json RECEIPTS.txt FAULT_UNIX_MS

Prints two words: the time from the fault to the first committed transfer
after it, in ms (`<250` when no commit gap of txgen's spans the fault,
`none` when nothing committed after it), and `ok` or the problems found,
`;`-separated: transfers rejected (a failover is retried, never answered
with a refusal), a receipt listed twice, receipts that do not match the
committed count, no commit after the fault.
"""

import json
import sys


def main():
    report, receipts, fault = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        r = json.load(open(report))
        lines = [l.strip() for l in open(receipts) if l.strip()]
    except (OSError, ValueError):
        print("?", "no-report")
        return
    problems = []
    if r.get("rejected"):
        problems.append("rejected=" + ",".join(f"{k}:{v}" for k, v in r["rejected"].items()))
    if len(lines) != len(set(lines)):
        problems.append("duplicate-receipts")
    if len(lines) != r["committed"]:
        problems.append(f"receipts={len(lines)}!=committed={r['committed']}")
    committed_after = r.get("last_commit_unix_ms", 0) > fault
    if not committed_after:
        problems.append("no-commit-after-fault")
    gaps = [s for s in r.get("stalls", []) if s["start_unix_ms"] <= fault + 50 and s["end_unix_ms"] >= fault]
    if not committed_after:
        rec = "none"
    elif gaps:
        rec = str(max(0, gaps[0]["end_unix_ms"] - fault))
    else:
        rec = "<250"
    print(rec, ";".join(problems) or "ok")


if __name__ == "__main__":
    main()
