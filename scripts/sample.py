#!/usr/bin/env python3
"""Once a second, records what the node and the machine are doing, so that a
latency spike seen by txgen can be put next to its cause.

    sample.py METRICS_ADDR NODE_PID OUT.jsonl [OTHER_PID...]

One JSON object per line, with the wall-clock time `ts` (seconds):
- `rss_kib`: the node's resident memory;
- `metrics`: the node's Prometheus histograms and counters (cumulative; the
  reader takes differences between seconds);
- `threads_ticks`: CPU ticks (user + system) of each thread of the node,
  cumulative, keyed `name/tid` (threads come and go: a checkpoint writer
  per checkpoint, tokio's blocking pool; the reader groups by name);
- `process_ticks`: the node's own cumulative ticks (exited threads included);
- `cpu`: the machine's cumulative /proc/stat ticks (user, nice, system, idle,
  iowait, irq, softirq, steal);
- `dirty_kib`, `writeback_kib`: page cache waiting to be written;
- `others_ticks`: CPU ticks of OTHER_PID (txgen), cumulative.
Stops when the node exits. Only the standard library: it runs on a fresh
machine with python3.
"""
import json
import os
import sys
import time
import urllib.request


def read_metrics(url):
    out = {}
    try:
        body = urllib.request.urlopen(url, timeout=0.5).read().decode()
    except Exception:
        return None
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith(("ruble_submit_latency", "ruble_commit_latency", "ruble_stage_latency", "ruble_ops_",
                            "ruble_queue_depth",
                            "ruble_block_ops_sum", "ruble_block_ops_count", "ruble_block_height",
                            "ruble_store_memory_bytes")):
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def proc_ticks(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def thread_ticks(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
        except OSError:
            continue  # exited meanwhile
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw.rsplit(")", 1)[1].split()
        out[f"{name}/{tid}"] = int(rest[11]) + int(rest[12])
    return out


def meminfo():
    m = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("Dirty", "Writeback"):
                m[k] = int(v.split()[0])
    return m


def main():
    addr, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    others = [int(p) for p in sys.argv[4:]]
    url = f"http://{addr}/metrics"
    with open(out, "a") as f:
        next_at = time.monotonic()
        while True:
            # The scrape first: it can take up to its timeout in a stalled
            # second, and `ts` must be when the rest was read.
            metrics = read_metrics(url)
            try:
                with open(f"/proc/{pid}/status") as s:
                    rss = next(int(l.split()[1]) for l in s if l.startswith("VmRSS:"))
                threads = thread_ticks(pid)
                process = proc_ticks(pid)
            except (OSError, StopIteration):
                return
            with open("/proc/stat") as s:
                cpu = [int(x) for x in s.readline().split()[1:9]]
            mi = meminfo()
            o = {}
            for p in others:
                try:
                    o[str(p)] = proc_ticks(p)
                except OSError:
                    pass
            rec = {"ts": time.time(), "rss_kib": rss, "metrics": metrics, "threads_ticks": threads,
                   "process_ticks": process,
                   "cpu": cpu, "dirty_kib": mi.get("Dirty"), "writeback_kib": mi.get("Writeback"), "others_ticks": o}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            next_at += 1.0
            time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    main()
