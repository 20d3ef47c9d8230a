#!/usr/bin/env python3
"""Generation speed of the default model per KV-cache format, in interleaved rounds.

Runs `rotorquant generate` on the same long prompt once per format per round (formats interleaved,
so a noisy neighbour hits every format alike), parses prompt tokens/s, generation tokens/s and the
KV cache's milliseconds per decode step, prints the medians and writes one JSON file.

  scripts/bench_generate.py [--rounds 8] [--formats f16,rotor3,turbo3] [--out FILE.json]
      [--bin build/src/cli/rotorquant] [--model GGUF] [--text FILE] [--prompt-tokens 1984]
      [--tokens 64] [--threads 2]

The default setting is issue 4's: context 2048 at the end (1984 prompt tokens + 64 generated).
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATTERNS = {
    "prompt_tok_s": re.compile(r"^prompt: \d+ tokens in [\d.]+ s = ([\d.]+) tokens/s", re.M),
    "gen_tok_s": re.compile(r"^generation: \d+ tokens in [\d.]+ s = ([\d.]+) tokens/s", re.M),
    "kv_ms_per_step": re.compile(r"KV cache \(append \+ attention, all layers\) ([\d.]+) ms per step", re.M),
    "kv_bytes": re.compile(r"^KV cache: \d+ tokens, (\d+) bytes allocated", re.M),
}


def default_model():
    return os.path.expanduser("~/.cache/rotorquant/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def run_once(args, fmt):
    cmd = [args.bin, "generate", "-m", args.model, "-f", args.text, "--max-prompt", str(args.prompt_tokens),
           "-n", str(args.tokens), "--ignore-eos", "--ctk", fmt, "--ctv", fmt, "-t", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench_generate: {' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    text = out.stdout + out.stderr
    row = {"format": fmt}
    for key, pattern in PATTERNS.items():
        m = pattern.search(text)
        if not m:
            sys.exit(f"bench_generate: no '{key}' in the output of {' '.join(cmd)}:\n{text[-2000:]}")
        row[key] = float(m.group(1)) if key != "kv_bytes" else int(m.group(1))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--formats", default="f16,rotor3,turbo3")
    ap.add_argument("--out", default="")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/src/cli/rotorquant"))
    ap.add_argument("--model", default=default_model())
    ap.add_argument("--text", default=os.path.join(ROOT, "../shared/data/sotu/1981_jimmy_carter_d.txt"))
    ap.add_argument("--prompt-tokens", type=int, default=1984)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.rounds < 1:
        sys.exit("bench_generate: --rounds must be >= 1")
    for path, what in ((args.bin, "--bin"), (args.model, "--model"), (args.text, "--text")):
        if not os.path.exists(path):
            sys.exit(f"bench_generate: {what} {path} not found")
    formats = [f for f in args.formats.split(",") if f]
    runs = []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        for fmt in formats:
            row = run_once(args, fmt)
            row.update(round=r, load_before=load)
            runs.append(row)
            print(f"round {r + 1}/{args.rounds} {fmt:8s} gen {row['gen_tok_s']:6.1f} tok/s  "
                  f"KV {row['kv_ms_per_step']:6.3f} ms/step  (load {load:.2f})", file=sys.stderr)
    medians = []
    print(f"\n{'format':8s} {'prompt tok/s':>12s} {'gen tok/s':>10s} {'KV ms/step':>10s} {'KV bytes':>11s}   "
          f"(medians of {args.rounds} interleaved rounds)")
    for fmt in formats:
        rows = [x for x in runs if x["format"] == fmt]
        med = {"format": fmt, "rounds": len(rows)}
        for key in ("prompt_tok_s", "gen_tok_s", "kv_ms_per_step"):
            med[key] = statistics.median(x[key] for x in rows)
        med["kv_bytes"] = rows[0]["kv_bytes"]
        medians.append(med)
        print(f"{fmt:8s} {med['prompt_tok_s']:12.1f} {med['gen_tok_s']:10.1f} {med['kv_ms_per_step']:10.3f} "
              f"{med['kv_bytes']:11d}")
    if args.out:
        doc = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "command": "scripts/bench_generate.py " + " ".join(sys.argv[1:]),
            "median_rows": medians,
            "runs": runs,
        }
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
