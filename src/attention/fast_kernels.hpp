// Internal interface between the target-independent driver (attend_fast.cpp: checks, query
// preparation, splitting, threads, merging) and the per-target SIMD kernels (attend_kernels.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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
};

/// Run one work item on the dispatched SIMD target.
void run_work_item(const WorkItem& item);

/// Dispatch control (tests).
std::vector<std::string> simd_targets();
void force_simd_target(const std::string& name);
std::string current_simd_target();

}  // namespace rq::attn_detail
