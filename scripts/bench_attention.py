#!/usr/bin/env python3
"""Runs `rotorquant bench-attn --json` several times and publishes medians.

On a shared 2-core machine single runs swing by +-30 % (other tenants, OpenMP threads losing their
core); the median over interleaved repeats is what we publish. Writes a JSON file (date, machine,
command, every run's rows, median rows with speedups recomputed against the median f16 of the same
configuration) and prints a markdown table.

usage: scripts/bench_attention.py [--repeats 5] [--out bench/results/cpu_attention.json] -- <bench-attn args>
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "src", "cli", "rotorquant"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "cpu_attention.json"))
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then bench-attn arguments")
    o = ap.parse_args()
    bench_args = [a for a in o.args if a != "--"]
    cmd = [o.binary, "bench-attn", "--json"] + bench_args
    runs = []
    for i in range(o.repeats):
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows = json.loads(out)
        runs.append({"load_before": float(load), "rows": rows})
        print(f"run {i + 1}/{o.repeats} done (load {load})", file=sys.stderr)

    def key(r):
        return (r["format"], r["head_dim"], r["gqa"], r["context"])

    per_key = {}
    for run in runs:
        for r in run["rows"]:
            per_key.setdefault(key(r), []).append(r)
    medians = []
    for k, rs in per_key.items():
        us = statistics.median(r["us"] for r in rs)
        f16 = per_key.get(("f16",) + k[1:])
        f16_us = statistics.median(r["us"] for r in f16) if f16 else float("nan")
        first = rs[0]
        medians.append({
            "format": k[0], "head_dim": k[1], "gqa": k[2], "context": k[3],
            "arithmetic": first.get("arithmetic", ""), "us": us, "bytes_read": first["bytes_read"],
            "gbps": first["bytes_read"] / (us * 1e-6) / 1e9, "speedup_vs_f16": f16_us / us,
            "us_runs": [r["us"] for r in rs], "mem_read_gbps_runs": [r["mem_read_gbps"] for r in rs],
        })
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "simd_target": runs[0]["rows"][0]["simd_target"]},
        "command": "scripts/bench_attention.py --repeats %d -- %s" % (o.repeats, " ".join(bench_args)),
        "median_rows": medians,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(o.out), exist_ok=True)
    with open(o.out, "w") as f:
        json.dump(result, f, indent=1)
    print("| format | d | gqa | context | us (median) | GB/s | vs f16 | us per run |")
    print("|---|---|---|---|---|---|---|---|")
    for m in medians:
        runs_txt = " / ".join("%.0f" % u for u in m["us_runs"])
        print(f"| {m['format']} | {m['head_dim']} | {m['gqa']} | {m['context']} | {m['us']:.1f} | {m['gbps']:.1f} "
              f"| {m['speedup_vs_f16']:.2f}x | {runs_txt} |")
    print(f"written {o.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
