// Internal interface between the target-independent driver (attend_fast.cpp: checks, query
// preparation, splitting, threads, merging) and the per-target SIMD kernels (attend_kernels.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "int_tables.hpp"
#include "rq/attention/attention.hpp"

namespace rq::attn_detail {

/// How a row of the codes plane is read.
enum class CodeKind : uint8_t {
  F32,     // n float32
  F16,     // n binary16 (F16C)
  Int8,    // n int8, one fp16 row scale
  Packed,  // n b-bit codes (b = 1..4) looked up in `table`; Lloyd-Max (fp16 row norm) or Int4
};

/// A format as the kernels see it (built once per codec by make_kernel_format).
struct KernelFormat {
  CodeKind kind = CodeKind::F32;
  int bits = 0;              // Packed: bits per code
  size_t n = 0;              // rotated_dim: coordinates per row
  size_t stride = 0;         // floats per query / accumulator row: n, rounded up to 8 for Packed
                             // (the last partial group of codes is decoded as a whole vector; its
                             // extra lanes meet zero query lanes and land in ignored accumulator lanes)
  size_t code_bytes = 0;     // bytes per row of the codes plane
  size_t side_bytes = 0;     // bytes per row of the side plane
  bool row_scale = false;    // side[0] is an fp16 factor for the whole row (norm or int8 scale)
  bool block_scale = false;  // Int4: one fp16 scale per 32 coordinates
  size_t n_blocks = 0;       // Int4: ceil(n / 32)
  alignas(64) float table[16] = {};  // Packed: value of each code (centroids, or k - 8 for Int4)
};

/// One unit of parallel work: a token range of one KV head, all its GQA queries.
struct WorkItem {
  const KernelFormat* k_format = nullptr;
  const KernelFormat* v_format = nullptr;
  size_t gqa_group = 1;
  const float* queries = nullptr;  // gqa_group x k_format->stride: rotated, times the softmax scale, 0-padded
  const PageSpan* k_pages = nullptr;
  size_t n_k_pages = 0;
  const PageSpan* v_pages = nullptr;
  size_t n_v_pages = 0;
  size_t begin = 0, end = 0;  // tokens [begin, end) of the head
  // Outputs: online-softmax partial state.
  float* acc = nullptr;      // gqa_group x v_format->stride: sum_i exp(s_i - m) v_i (rotated domain)
  float* max = nullptr;      // gqa_group: m
  double* denom = nullptr;   // gqa_group: sum_i exp(s_i - m)
  // Integer path (both formats Lloyd-Max with 2..4-bit codes, int_tables.hpp); null: float path.
  const IntQueries* int_queries = nullptr;
  const IntCodebook* k_int = nullptr;
  const IntCodebook* v_int = nullptr;
};

/// Readable bytes after rows [offset, offset + rows) of span s: its later rows plus readable_after.
inline size_t readable_tail(const PageSpan& s, size_t offset, size_t rows, size_t code_bytes) {
  return (s.n_tokens - offset - rows) * code_bytes + s.readable_after;
}

/// How many of a chunk's last rows have loads reaching `overrun` bytes past their own row end
/// beyond the `tail` readable bytes after the chunk (row i places from the end has
/// i * code_bytes + tail readable bytes after it).
inline size_t rows_past_readable(size_t overrun, size_t tail, size_t code_bytes) {
  return overrun > tail ? (overrun - tail + code_bytes - 1) / code_bytes : 0;
}

/// Position inside a list of pages (token order).
struct PageCursor {
  const PageSpan* pages;
  size_t page = 0, offset = 0;
  PageCursor(const PageSpan* p, size_t n_pages, size_t token) : pages(p) {
    while (page < n_pages && token >= pages[page].n_tokens) {
      token -= pages[page].n_tokens;
      ++page;
    }
    offset = token;
  }
  size_t remaining() const { return pages[page].n_tokens - offset; }
  void advance(size_t t) {
    offset += t;
    if (offset == pages[page].n_tokens) {
      ++page;
      offset = 0;
    }
  }
};

/// The chunk after the current one (for software prefetch): its first K and V code rows; rows 0: none.
struct ChunkAhead {
  const uint8_t* k_codes = nullptr;
  const uint8_t* v_codes = nullptr;
  size_t rows = 0;
};

/// Software prefetch of row r of the next chunk's codes (`ahead`, ahead_rows rows of row_bytes): one
/// `prefetcht0` of the row's first byte. The kernels call it once per row of the current chunk, so
/// the next chunk arrives spread over this one's time (the hardware prefetchers stop at 4 KB pages
/// and restart at each page of the paged cache; a burst at the chunk's start fills the line-fill
/// buffers: docs/decisions.md). Rows of <= 64 bytes start in every line; longer rows' other lines are
/// left to the hardware prefetchers: asking for every line of each row (or for each line once, by the
/// row holding its first byte) made the 3-bit path twice as slow from DRAM on the Xeon, and q4 / q8
/// slower too (session 13, same-binary A/B runs).
inline void prefetch_row(const uint8_t* ahead, size_t ahead_rows, size_t r, size_t row_bytes) {
  if (r < ahead_rows) __builtin_prefetch(ahead + r * row_bytes, 0, 3);
}

/// Software prefetch (`prefetcht0`; T1 / T2 measured the same on the Xeon) of every cache line of the
/// `rows` side values of side_bytes at `side` (the next chunk's, a few lines).
inline void prefetch_side(const uint8_t* side, size_t rows, size_t side_bytes) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(side), end = begin + rows * side_bytes;
  for (uintptr_t line = begin & ~uintptr_t{63}; line < end; line += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 3);
  }
}

/// Resets the item's partial state (max -inf, denom 0, the first acc_n accumulators of each query 0)
/// and calls fn(k_page, k_offset, v_page, v_offset, rows, ahead) for consecutive chunks of at most
/// max_rows tokens of [item.begin, item.end), each inside one K page and one V page; `ahead` is the
/// next such chunk, whose side values it prefetches before each call (the kernels prefetch its code
/// rows, prefetch_row).
template <class Fn>
void for_each_chunk(const WorkItem& item, size_t acc_stride, size_t max_rows, Fn&& fn) {
  for (size_t h = 0; h < item.gqa_group; ++h) {
    item.max[h] = -std::numeric_limits<float>::infinity();
    item.denom[h] = 0.0;
  }
  for (size_t i = 0; i < item.gqa_group * acc_stride; ++i) item.acc[i] = 0.0f;
  PageCursor kc(item.k_pages, item.n_k_pages, item.begin);
  PageCursor vc(item.v_pages, item.n_v_pages, item.begin);
  const auto chunk_rows = [&](const PageCursor& k, const PageCursor& v, size_t t) {
    size_t rows = item.end - t;
    if (rows > max_rows) rows = max_rows;
    if (rows > k.remaining()) rows = k.remaining();
    if (rows > v.remaining()) rows = v.remaining();
    return rows;
  };
  size_t rows = item.begin < item.end ? chunk_rows(kc, vc, item.begin) : 0;
  for (size_t t = item.begin; t < item.end;) {
    PageCursor kn = kc, vn = vc;
    kn.advance(rows);
    vn.advance(rows);
    ChunkAhead ahead;
    if (t + rows < item.end) {
      const PageSpan& kp = item.k_pages[kn.page];
      const PageSpan& vp = item.v_pages[vn.page];
      const KernelFormat& kf = *item.k_format;
      const KernelFormat& vf = *item.v_format;
      ahead = {kp.codes + kn.offset * kf.code_bytes, vp.codes + vn.offset * vf.code_bytes, chunk_rows(kn, vn, t + rows)};
      if (kp.side) prefetch_side(kp.side + kn.offset * kf.side_bytes, ahead.rows, kf.side_bytes);
      if (vp.side) prefetch_side(vp.side + vn.offset * vf.side_bytes, ahead.rows, vf.side_bytes);
    }
    fn(item.k_pages[kc.page], kc.offset, item.v_pages[vc.page], vc.offset, rows, ahead);
    kc = kn;
    vc = vn;
    t += rows;
    rows = ahead.rows;
  }
}

/// Run one work item on the dispatched SIMD target (float path).
void run_work_item(const WorkItem& item);
/// Run one work item of the integer path (item.int_queries set) on the dispatched SIMD target.
void run_int_work_item(const WorkItem& item);

/// Dispatch control (tests).
std::vector<std::string> simd_targets();
void force_simd_target(const std::string& name);
std::string current_simd_target();

}  // namespace rq::attn_detail
