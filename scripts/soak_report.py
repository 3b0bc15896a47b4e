#!/usr/bin/env python3
"""Summarises a soak run: verdicts, the per-minute table, and the worst
seconds set beside what the node and the machine did in them.

    soak_report.py OUT_DIR PEAK RATE [NAME]

Reads OUT_DIR/{soak.json (or NAME.json), samples.jsonl, node.log, audit.json,
dev-data/db/LOG}; writes OUT_DIR/summary.md (or NAME-summary.md) and prints it. Exit 0 only if
every verdict passes (a missing audit fails). Only the standard library.
"""
import bisect
import json
import math
import os
import re
import sys

HZ = os.sysconf("SC_CLK_TCK")


def load_samples(path):
    out = []
    if os.path.exists(path):
        for line in open(path):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # the last line of a killed sampler
    return out


def hist_quantile(prev, cur, name, q, labels=None):
    """Upper bound (ms) of the bucket holding quantile q of the observations
    between two cumulative Prometheus histograms; None if there were none.
    `labels` picks one histogram of a family: {"stage": "verify"}."""
    if not prev or not cur:
        return None
    want = labels or {}
    buckets = []
    for k, v in cur.items():
        m = re.fullmatch(re.escape(name) + r"_bucket\{(.*)\}", k)
        if not m:
            continue
        # The encoder puts `le` first ({le="0.004",stage="verify"}); read the
        # labels by name, not position.
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if "le" in got and all(got.get(n) == val for n, val in want.items()):
            le = math.inf if got["le"] == "+Inf" else float(got["le"])
            buckets.append((le, v - prev.get(k, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    for le, n in buckets:
        if n >= q * total:
            return le * 1000.0
    return math.inf


# The node's stages of a submission, in order (ruble_stage_latency_seconds).
STAGES = ("verify", "sequence", "block", "commit")


def per_second_node(samples):
    """For each pair of consecutive samples: (ts, view of that second)."""
    rows = []
    last_metrics = None  # a failed scrape leaves a gap, not two blank seconds
    for a, b in zip(samples, samples[1:]):
        if a.get("metrics"):
            last_metrics = a["metrics"]
        dt = b["ts"] - a["ts"]
        if dt <= 0:
            continue
        groups = {}
        for key, ticks in b["threads_ticks"].items():
            # Per thread (a thread born in between counts from 0), then by
            # name: ruble-verify-0 -> ruble-verify.
            name = key.rsplit("/", 1)[0]
            g = re.sub(r"[-:]\d+$", "", name)
            d = ticks - a["threads_ticks"].get(key, 0)
            groups[g] = groups.get(g, 0) + max(d, 0)
        # A checkpoint writer is a thread per checkpoint that lives for a
        # fraction of a second, so most are never sampled: what the process
        # spent beyond its live threads was spent by threads that exited in
        # between (checkpoint writers; tokio's blocking pool idles for 10 s
        # before its threads exit, so it rarely counts here).
        if "process_ticks" in a and "process_ticks" in b:
            exited = (b["process_ticks"] - a["process_ticks"]) - sum(groups.values())
            if exited > 0:
                groups["exited"] = exited
        cpu_a, cpu_b = a["cpu"], b["cpu"]
        tot = sum(cpu_b) - sum(cpu_a) or 1
        others = sum(b["others_ticks"].get(p, 0) - a["others_ticks"].get(p, 0) for p in b["others_ticks"])
        rows.append((a["ts"], {
            "submit_p99_ms": hist_quantile(last_metrics, b.get("metrics"), "ruble_submit_latency_seconds", 0.99),
            "commit_max_ms": hist_quantile(last_metrics, b.get("metrics"), "ruble_commit_latency_seconds", 1.0),
            "stage_p99_ms": {st: hist_quantile(last_metrics, b.get("metrics"), "ruble_stage_latency_seconds", 0.99,
                                               {"stage": st}) for st in STAGES},
            "node_cpu_pct": {g: 100.0 * d / HZ / dt for g, d in groups.items() if d > 0},
            "txgen_cpu_pct": 100.0 * others / HZ / dt,
            "iowait_pct": 100.0 * (cpu_b[4] - cpu_a[4]) / tot,
            "steal_pct": 100.0 * (cpu_b[7] - cpu_a[7]) / tot,
            "dirty_mib": (b.get("dirty_kib") or 0) / 1024,
            "writeback_mib": (b.get("writeback_kib") or 0) / 1024,
        }))
    return rows


def node_warnings(path):
    """(unix ts, message) of the node's slow-stage warnings."""
    from datetime import datetime
    out = []
    if not os.path.exists(path):
        return out
    strip = re.compile(r"\x1b\[[0-9;]*m")
    for line in open(path, errors="replace"):
        line = strip.sub("", line)
        m = re.match(r"(\S+)\s+WARN\s+\S+: (slow .*)", line)
        if not m:
            continue
        try:
            ts = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        out.append((ts, m.group(2).strip()))
    return out


def rocksdb_events(path):
    """(start, end, text) of RocksDB compactions that took >= 0.5 s, in unix s."""
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path, errors="replace"):
        if "EVENT_LOG_v1" not in line:
            continue
        try:
            j = json.loads(line.split("EVENT_LOG_v1 ", 1)[1])
        except ValueError:
            continue
        if j.get("event") == "compaction_finished":
            secs = j.get("compaction_time_micros", 0) / 1e6
            if secs >= 0.5:
                end = j["time_micros"] / 1e6
                out.append((end - secs, end,
                            f"compaction {j.get('total_output_size', 0) / 2**20:.0f} MiB over {secs:.1f} s"))
        elif j.get("event") == "flush_finished":
            pass  # every second or so: too common to explain a spike
    return out


def main():
    out, peak, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # The run's txgen report is NAME.json (bench.sh's open loop: open.json);
    # the summary goes to summary.md for the soak, NAME-summary.md otherwise.
    name = sys.argv[4] if len(sys.argv) > 4 else "soak"
    r = json.load(open(f"{out}/{name}.json"))
    try:
        a = json.load(open(f"{out}/audit.json"))
    except (OSError, ValueError):
        a = {}  # not run (yet), or cut short
    samples = load_samples(f"{out}/samples.jsonl")
    t0 = r.get("started_unix_s", 0.0)
    timed = [s for s in samples if t0 > 0 and t0 <= s["ts"] <= t0 + r["duration_s"]]
    # Memory is judged only on a run that was sampled throughout.
    sampled = len(timed) >= 0.9 * r["duration_s"]
    rss = [s["rss_kib"] / 1024 for s in timed] or [0.0]
    q = max(1, len(rss) // 4)
    rss_q2, rss_q4 = max(rss[q:2 * q] or rss), max(rss[-q:])

    # RocksDB's block cache and memtables fill up to their configured bounds
    # over the first minutes (the cache alone by up to 256 MiB): the rest of
    # the node's memory is what must stay flat.
    def rocksdb_mib(s):
        m = s.get("metrics") or {}
        parts = [v for k, v in m.items() if k.startswith("ruble_store_memory_bytes")]
        return sum(parts) / 2**20 if parts else None

    rocks = [rocksdb_mib(s) for s in timed]
    if rocks and all(v is not None for v in rocks):
        own = [r_ - k for r_, k in zip(rss, rocks)]
        own_q2, own_q4 = max(own[q:2 * q] or own), max(own[-q:])
        mem_basis = (f"node RSS less RocksDB's block cache and memtables: max of 2nd quarter {own_q2:.0f} MiB, "
                     f"max of last quarter {own_q4:.0f} MiB (RocksDB held {rocks[q]:.0f} MiB at the 2nd quarter's "
                     f"start, {rocks[-1]:.0f} MiB at the end)")
    else:
        own_q2, own_q4 = rss_q2, rss_q4
        mem_basis = "node RSS (no RocksDB memory metrics in the samples)"


    secs = [s for s in r["per_second"] if s["t"] >= 0]
    minutes = {}
    for s in secs:
        minutes.setdefault(int(s["t"] // 60), []).append(s)
    rows = ["| minute | committed tx/s | rejected | p50 ms (median of seconds) | p99 ms (worst second) |",
            "|---:|---:|---:|---:|---:|"]
    p99s = []
    for m, ss in sorted(minutes.items()):
        if len(ss) < 30:
            continue
        tps = sum(s["committed"] for s in ss) / len(ss)
        p50 = sorted(s["latency_ms_p50"] for s in ss)[len(ss) // 2]
        p99 = max(s["latency_ms_p99"] for s in ss)
        p99s.append(p99)
        rows.append(f"| {m + 1} | {tps:.0f} | {sum(s['rejected'] for s in ss)} | {p50:.2f} | {p99:.2f} |")
    first = p99s[1] if len(p99s) > 1 else (p99s[0] if p99s else 0.0)  # first full minute after warm-up
    p99_ok = all(p <= max(2 * first, 5.0) for p in p99s[1:])
    mem_ok = sampled and own_q4 <= own_q2 * 1.15
    err_ok = r["rejected_total"] == 0 and r["committed"] == r["submitted"] and not r.get("errors")
    audit_ok = bool(a.get("ok")) and not a.get("missing")

    # The worst seconds, beside the node's view of them.
    node = per_second_node(samples)
    node_ts = [ts for ts, _ in node]
    warns = node_warnings(f"{out}/node.log")
    events = rocksdb_events(f"{out}/dev-data/db/LOG")
    worst = sorted(secs, key=lambda s: -s["latency_ms_p99"])[:12]
    spike_rows = ["| second | txgen p99 ms | committed | node submit p99 ms (≤) | "
                  "node p99 ms by stage (≤): verify / sequence / block / commit | slowest write ms (≤) | "
                  "verify / tokio / seq / commit / ckpt / rocksdb CPU % | txgen CPU % | iowait % | steal % | "
                  "dirty MiB | node warnings (2 s before to 1 s after) and compactions running |",
                  "|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---|"]
    for s in sorted(worst, key=lambda s: s["t"]):
        wall = t0 + s["t"]
        # The sample interval holding the middle of txgen's second.
        i = bisect.bisect_right(node_ts, wall + 0.5) - 1
        n = node[i][1] if i >= 0 and wall - node_ts[i] < 2 else None

        def cpu(*names):
            return sum(v for g, v in n["node_cpu_pct"].items() if g.startswith(names)) if n else 0  # names are cut at 15 characters

        notes = [f"{m} ({ts - wall:+.1f} s)" for ts, m in warns if wall - 2 <= ts <= wall + 1]
        notes += [f"{m}, running" for start, end, m in events if start <= wall + 1 and end >= wall - 2]
        fmt = (lambda v: "–" if v is None else ("∞" if v == math.inf else f"{v:.0f}"))
        spike_rows.append(
            f"| {s['t']:.0f} | {s['latency_ms_p99']:.0f} | {s['committed']} | "
            f"{fmt(n and n['submit_p99_ms'])} | "
            f"{' / '.join(fmt(n and n['stage_p99_ms'][st]) for st in STAGES)} | {fmt(n and n['commit_max_ms'])} | "
            f"{cpu('ruble-verify'):.0f} / {cpu('tokio'):.0f} / {cpu('ruble-sequencer'):.0f} / "
            f"{cpu('ruble-committer'):.0f} / {cpu('ruble-checkpoi', 'exited'):.0f} / {cpu('rocksdb'):.0f} | "
            f"{(n['txgen_cpu_pct'] if n else 0):.0f} | {(n['iowait_pct'] if n else 0):.0f} | "
            f"{(n['steal_pct'] if n else 0):.0f} | {(n['dirty_mib'] if n else 0):.0f} | "
            f"{'; '.join(notes)[:300]} |")

    lines = [
        f"{name}: {r['duration_s']:.0f} s open loop at {rate}/s (peak {peak}/s): submitted {r['submitted']}, "
        f"committed {r['committed']}, rejected {r['rejected_total']}",
        f"latency over the run: p50 {r['latency_ms_p50']:.2f} ms, p99 {r['latency_ms_p99']:.2f} ms, "
        f"max {r['latency_ms_max']:.2f} ms",
        f"node RSS: first sample {rss[0]:.0f} MiB, max of 2nd quarter {rss_q2:.0f} MiB, max of last quarter "
        f"{rss_q4:.0f} MiB, overall max {max(rss):.0f} MiB ({len(timed)} samples"
        f"{'' if sampled else ', TOO FEW to judge'})",
        f"memory judged on: {mem_basis}",
        f"audit: ok={a.get('ok')} operations={a.get('operations')} expected_committed={a.get('expected_committed')} "
        f"missing={len(a.get('missing', []))}",
        "",
        *rows,
        "",
        "Worst seconds (by txgen's p99), with the node's own view of the same second "
        "(histogram bucket bounds, CPU per thread group, the machine's iowait/steal; `ckpt` includes the "
        "CPU of threads that exited within the second, which are the short-lived checkpoint writers):",
        "",
        *spike_rows,
        "",
        f"verdict: errors {'none' if err_ok else 'SOME'}; memory {'flat' if mem_ok else 'GROWING'}; "
        f"p99 {'stable' if p99_ok else 'UNSTABLE'}; audit {'ok' if audit_ok else 'FAILED'}",
    ]
    print("\n".join(lines))
    open(f"{out}/{'summary' if name == 'soak' else name + '-summary'}.md", "w").write("\n".join(lines) + "\n")
    sys.exit(0 if (err_ok and mem_ok and p99_ok and audit_ok) else 1)


if __name__ == "__main__":
    main()
