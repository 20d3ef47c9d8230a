#!/usr/bin/env python3
"""Joins the CUDA and PyTorch results of scripts/gpu_bench.sh into one JSON file (bench/results/
format: date, device, command, rows with bench, format, n or batch+context, us, bw_fraction,
speedup_vs_torch; append rows also us_stream, the per-launch time of back-to-back launches on cold
inputs, and torch_graph_us / speedup_vs_torch_graph, the PyTorch pipeline replayed from a CUDA graph;
every row also us_graph, torch_in_graph_us and speedup_in_graph: both sides per call inside a CUDA
graph of calls over rotating cold inputs) and prints a markdown table."""
import argparse
import datetime
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuda", required=True)
    ap.add_argument("--torch", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cu = json.load(open(a.cuda))
    try:
        th = json.load(open(a.torch))
    except (OSError, ValueError):
        th = {"rows": []}
    ref = {}
    for r in th["rows"]:
        key = (r["bench"], r.get("n"), r.get("batch"), r.get("context"))
        ref[key] = r
    rows = []
    for r in cu["rows"]:
        key = (r["bench"], r.get("n"), r.get("batch"), r.get("context"))
        t = ref.get(key)
        out = dict(r)
        out["torch_us"] = t["us"] if t else None
        out["torch_impl"] = t["impl"] if t else None
        out["speedup_vs_torch"] = (t["us"] / r["us"]) if t else None
        if t and t.get("us_graph"):  # append: the same pipeline replayed from a CUDA graph
            out["torch_graph_us"] = t["us_graph"]
            out["speedup_vs_torch_graph"] = t["us_graph"] / r["us"]
        # Both sides per call inside a CUDA graph of calls over rotating cold inputs (METHOD.md's timing
        # of small launches): us_graph (ours), torch_in_graph_us, speedup_in_graph.
        if t and t.get("us_in_graph") and r.get("us_graph"):
            out["torch_in_graph_us"] = t["us_in_graph"]
            out["speedup_in_graph"] = t["us_in_graph"] / r["us_graph"]
        rows.append(out)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": cu["device"],
        "sm_count": cu.get("sm_count"),
        "command": a.command,
        "l2_flush": cu.get("l2_flush", "dirty"),  # RQ_FLUSH (gpu_check_bench): the L2 state each timed call starts from
        "copy_gbps": cu["copy_gbps"],
        "empty_launch_us": cu.get("empty_launch_us"),
        "append_floor_us": cu.get("append_floor_us"),
        "torch": th.get("torch"),
        "rows": rows,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"L2 flush before each timed call: {result['l2_flush']}")
    print(f"device: {cu['device']}, copy bandwidth {cu['copy_gbps']:.0f} GB/s (read + write), "
          f"empty launch {cu.get('empty_launch_us') or 0:.2f} us")
    print("| bench | format | kernel | n / batch x context | us | GB/s | of copy BW | stream us | stream of copy BW "
          "| torch us | speedup | torch graph us | speedup vs graph | in graph: us | torch us | speedup |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        shape = str(r["n"]) if r["bench"] == "append" else f"{r['batch']} x {r['context']}"
        if r.get("page_size", 64) != 64:
            shape += f" (page {r['page_size']})"
        tu = f"{r['torch_us']:.1f}" if r["torch_us"] else "-"
        sp = f"{r['speedup_vs_torch']:.2f}x" if r["speedup_vs_torch"] else "-"
        gu = f"{r['torch_graph_us']:.1f}" if r.get("torch_graph_us") else "-"
        gs = f"{r['speedup_vs_torch_graph']:.2f}x" if r.get("speedup_vs_torch_graph") else "-"
        us_stream = r.get("us_stream")
        st = f"{us_stream:.2f} | {100 * r['bw_fraction'] * r['us'] / us_stream:.1f}%" if us_stream else "- | -"
        ig = (f"{r['us_graph']:.2f} | {r['torch_in_graph_us']:.1f} | {r['speedup_in_graph']:.2f}x"
              if r.get("speedup_in_graph") else (f"{r['us_graph']:.2f} | - | -" if r.get("us_graph") else "- | - | -"))
        print(f"| {r['bench']} | {r['format']} | {r.get('kernel', '')} | {shape} | {r['us']:.2f} | {r['gbps']:.0f} | "
              f"{100 * r['bw_fraction']:.1f}% | {st} | {tu} | {sp} | {gu} | {gs} | {ig} |")


if __name__ == "__main__":
    main()
