#!/usr/bin/env python3
"""Per-kernel SASS instruction histogram of an object file (cuobjdump -sass), for tuning notes."""
import collections
import re
import subprocess
import sys

obj, pattern = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
txt = subprocess.run(["cuobjdump", "-sass", obj], capture_output=True, text=True).stdout
for f in re.split(r"\n\s+Function : ", txt)[1:]:
    name = f.split("\n")[0]
    if pattern not in name:
        continue
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", f)
    c = collections.Counter(ops)
    print(f"{name[:110]}\n  {len(ops)} instructions: " + ", ".join(f"{k} {v}" for k, v in c.most_common(18)))
