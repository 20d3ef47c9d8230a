// The paged KV-cache layout on the GPU (docs/formats.md, "GPU paged layout").
//
// One cache = the K (or the V) vectors of one layer, all KV heads. Tokens live in fixed-size pages;
// a page holds `page_size` consecutive tokens of one sequence for every KV head. A sequence's
// logical token t is in page page_table[seq][t / page_size] at offset t % page_size.
//
// Each cache is three planes, allocated apart (each 256-byte aligned by cudaMalloc):
//   codes: [num_pages][n_kv_heads][page_size][row_main_bytes]   first floor(payload/16)*16 bytes
//   tail:  [num_pages][n_kv_heads][page_size][row_tail_bytes]   the remaining payload bytes (< 16)
//   norms: [num_pages][n_kv_heads][page_size]                   fp16 stored norms (binary16 bits)
// so every codes row is 16-byte aligned and nothing is padded: row main ++ row tail is exactly the
// CPU codec's codes row (docs/formats.md), and the norm is its side row.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rq/core/hd.hpp"

namespace rq::cuda {

/// Sizes of one cache in the paged layout.
struct PagedGeometry {
  int n_kv_heads = 0;
  int page_size = 0;       // tokens per page
  int num_pages = 0;       // pages in the pool
  int row_main_bytes = 0;  // multiple of 16
  int row_tail_bytes = 0;  // 0..15

  RQ_HD size_t rows() const { return static_cast<size_t>(num_pages) * n_kv_heads * page_size; }
  size_t codes_bytes() const { return rows() * static_cast<size_t>(row_main_bytes); }
  size_t tail_bytes() const { return rows() * static_cast<size_t>(row_tail_bytes); }
  size_t norms_bytes() const { return rows() * 2; }
  /// Row index of (page, head, offset): the same index addresses all three planes.
  RQ_HD size_t row(int page, int head, int offset) const {
    return (static_cast<size_t>(page) * n_kv_heads + head) * page_size + offset;
  }
};

/// Splits a codes row of `payload_bytes` into its 16-byte aligned main part and tail.
inline PagedGeometry make_paged_geometry(int n_kv_heads, int page_size, int num_pages, int payload_bytes) {
  PagedGeometry g;
  g.n_kv_heads = n_kv_heads;
  g.page_size = page_size;
  g.num_pages = num_pages;
  g.row_main_bytes = payload_bytes / 16 * 16;
  g.row_tail_bytes = payload_bytes - g.row_main_bytes;
  return g;
}

/// Device pointers of one cache's planes.
struct PagedPlanes {
  uint8_t* codes = nullptr;   // rows x row_main_bytes
  uint8_t* tail = nullptr;    // rows x row_tail_bytes (may be null when row_tail_bytes == 0)
  uint16_t* norms = nullptr;  // rows fp16 values
};

}  // namespace rq::cuda
