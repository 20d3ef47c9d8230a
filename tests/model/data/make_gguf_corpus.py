#!/usr/bin/env python3
"""Writes the GGUF regression corpus next to this script:
  gguf_ok_*.bin   valid files that must open,
  gguf_bad_*.bin  malformed files on which GgufFile::open must throw rq::FormatError.
(The extension is .bin because *.gguf is git-ignored.) Files found by fuzzing are added by hand
as gguf_bad_fuzz_*.bin. Run: python3 tests/model/data/make_gguf_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def tensor_info(name, dims, ttype, offset):
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) \
        + struct.pack("<IQ", ttype, offset)


def gguf(kvs, tensors, data=b"", version=3, align=32, n_tensors=None, n_kv=None, magic=b"GGUF"):
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    pad = (-len(body)) % align if align else 0
    return body + b"\0" * pad + data


def f32_data(n):
    return b"".join(struct.pack("<f", 0.25 * (i + 1)) for i in range(n))


def write(name, blob):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(blob)


# A small valid file: every metadata type, nested arrays, two tensors (f32 and q8_0).
q8_block = struct.pack("<e", 0.5) + bytes((i * 7 - 100) & 0xFF for i in range(32))
kvs = [
    kv("general.architecture", STRING, s("llama")),
    kv("t.u8", U8, struct.pack("<B", 200)),
    kv("t.i8", I8, struct.pack("<b", -5)),
    kv("t.u16", U16, struct.pack("<H", 60000)),
    kv("t.i16", I16, struct.pack("<h", -30000)),
    kv("t.u32", U32, struct.pack("<I", 4000000000)),
    kv("t.i32", I32, struct.pack("<i", -2000000000)),
    kv("t.f32", F32, struct.pack("<f", 1.5)),
    kv("t.bool", BOOL, struct.pack("<B", 1)),
    kv("t.u64", U64, struct.pack("<Q", 1 << 40)),
    kv("t.i64", I64, struct.pack("<q", -(1 << 40))),
    kv("t.f64", F64, struct.pack("<d", 2.25)),
    kv("t.strings", ARRAY, struct.pack("<IQ", STRING, 3) + s("a") + s("") + s("héllo")),
    kv("t.ints", ARRAY, struct.pack("<IQ", I32, 3) + struct.pack("<iii", 1, -2, 3)),
    kv("t.floats", ARRAY, struct.pack("<IQ", F32, 2) + struct.pack("<ff", 0.5, -1.0)),
    kv("t.nested", ARRAY, struct.pack("<IQ", ARRAY, 2)
       + struct.pack("<IQ", STRING, 1) + s("x") + struct.pack("<IQ", STRING, 2) + s("y") + s("z")),
]
tensors = [tensor_info("w.f32", [4, 2], 0, 0), tensor_info("w.q8", [32], 8, 32)]
data = f32_data(8) + q8_block
write("gguf_ok_small_v3.bin", gguf(kvs, tensors, data))
write("gguf_ok_small_v2.bin", gguf(kvs, tensors, data, version=2))
write("gguf_ok_no_tensors.bin", gguf([kv("general.architecture", STRING, s("x"))], [], align=0))
write("gguf_ok_alignment_64.bin",
      gguf([kv("general.alignment", U32, struct.pack("<I", 64))],
           [tensor_info("w", [4], 0, 0)], f32_data(4), align=64))

good = gguf(kvs, tensors, data)
write("gguf_bad_truncated_header.bin", good[:10])
write("gguf_bad_empty.bin", b"")
write("gguf_bad_truncated_metadata.bin", good[:200])
write("gguf_bad_truncated_data.bin", good[:-5])
write("gguf_bad_wrong_magic.bin", b"GGML" + good[4:])
write("gguf_bad_version_1.bin", gguf(kvs, tensors, data, version=1))
write("gguf_bad_version_big_endian.bin", gguf(kvs, tensors, data, version=0x03000000))
write("gguf_bad_absurd_tensor_count.bin", gguf(kvs, tensors, data, n_tensors=(1 << 62)))
write("gguf_bad_absurd_kv_count.bin", gguf(kvs, tensors, data, n_kv=(1 << 61)))
write("gguf_bad_absurd_string_length.bin",
      gguf([s("k")[:0] + struct.pack("<Q", 1 << 60) + b"key"], []))
write("gguf_bad_absurd_value_string_length.bin",
      gguf([s("k") + struct.pack("<IQ", STRING, (1 << 64) - 1) + b"x"], []))
write("gguf_bad_absurd_array_count.bin",
      gguf([kv("a", ARRAY, struct.pack("<IQ", U64, (1 << 61) + 1))], []))
write("gguf_bad_array_count_overflow.bin",
      gguf([kv("a", ARRAY, struct.pack("<IQ", STRING, (1 << 61)))], []))
write("gguf_bad_unknown_value_type.bin", gguf([kv("a", 13, b"\0" * 8)], []))
write("gguf_bad_unknown_array_type.bin", gguf([kv("a", ARRAY, struct.pack("<IQ", 99, 1) + b"\0" * 8)], []))
deep = struct.pack("<IQ", ARRAY, 1) * 40 + struct.pack("<IQ", U8, 0)
write("gguf_bad_nested_too_deep.bin", gguf([kv("a", ARRAY, deep)], []))
write("gguf_bad_duplicate_key.bin", gguf([kv("a", U8, b"\1"), kv("a", U8, b"\2")], []))
write("gguf_bad_duplicate_tensor.bin",
      gguf([], [tensor_info("w", [4], 0, 0), tensor_info("w", [4], 0, 32)], f32_data(16)))
write("gguf_bad_offset_beyond_file.bin", gguf([], [tensor_info("w", [4], 0, 1 << 20)], f32_data(4)))
write("gguf_bad_offset_overflow.bin",
      gguf([], [tensor_info("w", [4], 0, (1 << 64) - 32)], f32_data(4)))
write("gguf_bad_tensor_past_end.bin", gguf([], [tensor_info("w", [64], 0, 0)], f32_data(4)))
write("gguf_bad_misaligned_data.bin", gguf([], [tensor_info("w", [4], 0, 4)], f32_data(8)))
write("gguf_bad_unknown_tensor_type.bin", gguf([], [tensor_info("w", [4], 77, 0)], f32_data(4)))
write("gguf_bad_alignment_zero.bin",
      gguf([kv("general.alignment", U32, struct.pack("<I", 0))], [tensor_info("w", [4], 0, 0)],
           f32_data(4)))
write("gguf_bad_alignment_not_pow2.bin",
      gguf([kv("general.alignment", U32, struct.pack("<I", 48))], [tensor_info("w", [4], 0, 0)],
           f32_data(4), align=48))
write("gguf_bad_alignment_wrong_type.bin",
      gguf([kv("general.alignment", STRING, s("32"))], [tensor_info("w", [4], 0, 0)], f32_data(4)))
write("gguf_bad_dims_overflow.bin",
      gguf([], [tensor_info("w", [1 << 32, 1 << 32, 1 << 32, 1], 0, 0)], f32_data(4)))
write("gguf_bad_dim_negative.bin", gguf([], [tensor_info("w", [(1 << 64) - 1], 0, 0)], f32_data(4)))
write("gguf_bad_too_many_dims.bin", gguf([], [tensor_info("w", [1, 1, 1, 1, 4], 0, 0)], f32_data(4)))
write("gguf_bad_row_not_block_multiple.bin", gguf([], [tensor_info("w", [33], 8, 0)], q8_block * 2))
write("gguf_bad_bytes_overflow.bin",
      gguf([], [tensor_info("w", [(1 << 62) // 32 * 32, 1], 8, 0)], q8_block))

# A tiny byte-level BPE vocabulary: the 256 byte tokens, three merges and two special tokens.
def byte_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]


def tokenizer_kvs(tokens, types, merges, extra=()):
    return [
        kv("general.architecture", STRING, s("llama")),
        kv("tokenizer.ggml.model", STRING, s("gpt2")),
        kv("tokenizer.ggml.pre", STRING, s("smollm")),
        kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, len(tokens))
           + b"".join(s(t) for t in tokens)),
        kv("tokenizer.ggml.token_type", ARRAY, struct.pack("<IQ", I32, len(types))
           + b"".join(struct.pack("<i", t) for t in types)),
        kv("tokenizer.ggml.merges", ARRAY, struct.pack("<IQ", STRING, len(merges))
           + b"".join(s(m) for m in merges)),
        kv("tokenizer.ggml.bos_token_id", U32, struct.pack("<I", 256 + 3)),
        kv("tokenizer.ggml.eos_token_id", U32, struct.pack("<I", 256 + 4)),
    ] + list(extra)


tiny_tokens = byte_chars() + ["he", "ll", "hell", "<|im_start|>", "<|im_end|>", "\u0120w"]
tiny_types = [1] * 256 + [1, 1, 1, 3, 3, 1]
tiny_merges = ["h e", "l l", "he ll", "\u0120 w"]
write("gguf_ok_tiny_tokenizer.bin", gguf(tokenizer_kvs(tiny_tokens, tiny_types, tiny_merges), []))
write("tok_bad_unk_out_of_range.bin", gguf(tokenizer_kvs(
    tiny_tokens, tiny_types, tiny_merges,
    [kv("tokenizer.ggml.unknown_token_id", U32, struct.pack("<I", 99999))]), []))
