#!/usr/bin/env python3
"""Writes ggml_oracle_<type>.bin (random blocks with sane fp16 scales) and ggml_oracle_<type>.f32
(the same blocks dequantized by the `gguf` Python package, an implementation independent of
ours). test_tensor_oracle.cpp checks that dequantize_row reproduces them bit for bit.
Needs: pip install gguf numpy. Run: python3 tests/model/data/make_block_oracle.py
"""
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261129)
# name: (type, bytes per block, offsets of fp16 scale fields, blocks)
SPEC = {
    "q4_0": (T.Q4_0, 18, [0], 4),
    "q4_1": (T.Q4_1, 20, [0, 2], 4),
    "q8_0": (T.Q8_0, 34, [0], 4),
    "q4_k": (T.Q4_K, 144, [0, 2], 2),
    "q5_k": (T.Q5_K, 176, [0, 2], 2),
    "q6_k": (T.Q6_K, 210, [208], 2),
}
for name, (qtype, nbytes, half_offsets, nb) in SPEC.items():
    raw = rng.integers(0, 256, size=(nb, nbytes), dtype=np.uint8)
    for o in half_offsets:
        raw[:, o:o + 2] = (rng.standard_normal(nb) * 0.05).astype(np.float16).view(np.uint8).reshape(nb, 2)
    ref = dequantize(raw.reshape(-1), qtype).astype(np.float32).ravel()
    raw.tofile(os.path.join(HERE, f"ggml_oracle_{name}.bin"))
    ref.astype("<f4").tofile(os.path.join(HERE, f"ggml_oracle_{name}.f32"))
