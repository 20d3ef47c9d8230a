// Driver of the fast decode attention: checks problems (as attend_reference does), turns codecs
// into kernel formats, rotates each query once, splits every head's tokens into work items, runs
// them on the thread pool (rq/threads) (SIMD kernels in attend_kernels.cpp) and merges the split-KV partial
// softmax states exactly, then un-rotates each output row once.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fast_kernels.hpp"
#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"
#include "rq/threads/thread_pool.hpp"

namespace rq {
namespace attn_detail {
namespace {

constexpr size_t kMinSplitTokens = 512;   // a work item is never shorter (threading overhead)
constexpr size_t kSerialTokens = 1024;    // below this many tokens in total, no threads
constexpr size_t kItemsPerThread = 4;     // load balance of the dynamic schedule
constexpr size_t kIntegerMinTokens = 256;  // shorter heads take the float kernels (less set-up per head)
constexpr size_t kCacheLine = 64;

size_t round_up_to_line(size_t bytes) { return (bytes + kCacheLine - 1) / kCacheLine * kCacheLine; }

// Byte layout of one work item's partial state: denom (G doubles), max (G floats), acc (G x the V
// stride floats), each part starting on its own cache line.
struct ItemStateLayout {
  size_t max_at, acc_at, bytes;
  ItemStateLayout(size_t G, size_t v_stride)
      : max_at(round_up_to_line(G * sizeof(double))),
        acc_at(max_at + round_up_to_line(G * sizeof(float))),
        bytes(acc_at + round_up_to_line(G * v_stride * sizeof(float))) {}
};

// False when the format has no SIMD kernel (QJL, codes wider than 4 bits).
bool make_kernel_format(const Codec& codec, KernelFormat& f) {
  const FormatSpec& spec = codec.format();
  const FormatLayout& l = codec.layout();
  if (spec.qjl) return false;
  f = KernelFormat{};
  f.n = l.rotated_dim;
  f.stride = f.n;
  f.code_bytes = l.code_bytes;
  f.side_bytes = l.side_bytes;
  switch (spec.scheme) {
    case Scheme::F32:
      f.kind = CodeKind::F32;
      return true;
    case Scheme::F16:
      f.kind = CodeKind::F16;
      return true;
    case Scheme::Int8:
      f.kind = CodeKind::Int8;
      f.row_scale = true;
      return true;
    case Scheme::Int4:
      f.kind = CodeKind::Packed;
      f.bits = 4;
      f.block_scale = true;
      f.n_blocks = (f.n + 31) / 32;
      f.stride = (f.n + 7) / 8 * 8;
      for (int k = 0; k < 16; ++k) f.table[k] = static_cast<float>(k - 8);
      return true;
    case Scheme::LloydMax: {
      if (l.code_bits < 1 || l.code_bits > 4) return false;
      f.kind = CodeKind::Packed;
      f.bits = l.code_bits;
      f.row_scale = true;
      f.stride = (f.n + 7) / 8 * 8;
      const auto& c = codec.centroids();
      for (size_t k = 0; k < c.size() && k < 16; ++k) f.table[k] = c[k];
      return true;
    }
  }
  return false;
}

// Everything prepared for one problem.
struct HeadPlan {
  const AttentionProblem* problem = nullptr;
  bool fast = false;
  size_t n_tokens = 0;
  KernelFormat k_format, v_format;
  std::vector<PageSpan> k_pages, v_pages;  // without empty spans
  std::vector<float> queries;              // G x k n: rotated, times scale
  bool integer = false;                    // integer path (int_tables.hpp)
  IntCodebook k_int, v_int;
  IntQueries int_queries;
  size_t first_item = 0, n_items = 0;
};

// The 8-bit codebook of a format the integer path reads (integer_capable): int8 codes are their own
// table value (code + 128, alpha 1, no lookup); int4's table k - 8 fits exactly (alpha 1/8).
IntCodebook int_codebook_for(const KernelFormat& f) {
  if (f.kind == CodeKind::Int8) {
    IntCodebook cb;
    cb.bits = 8;
    cb.alpha = 1.0f;
    return cb;
  }
  return make_int_codebook(f.table, f.bits);
}

// What the integer path reads: Lloyd-Max codes of 2..4 bits with an fp16 norm, int4 codes with an
// fp16 scale per 32 coordinates, or int8 codes with an fp16 row scale.
bool integer_capable(const KernelFormat& f) {
  if (f.kind == CodeKind::Int8) return f.row_scale && f.side_bytes == 2;  // int8 codes, fp16 row scale
  if (f.kind != CodeKind::Packed) return false;
  if (f.block_scale) return f.bits == 4 && f.side_bytes == 2 * f.n_blocks;
  return f.row_scale && f.side_bytes == 2 && f.bits >= 2 && f.bits <= 4;
}

void prepare_head(const AttentionProblem& p, size_t n_tokens, FastArithmetic arithmetic, HeadPlan& plan) {
  plan.problem = &p;
  plan.n_tokens = n_tokens;
  plan.fast = make_kernel_format(*p.k_codec, plan.k_format) && make_kernel_format(*p.v_codec, plan.v_format);
  if (!plan.fast) return;
  for (const auto& s : p.k_pages) if (s.n_tokens) plan.k_pages.push_back(s);
  for (const auto& s : p.v_pages) if (s.n_tokens) plan.v_pages.push_back(s);
  const size_t d = p.k_codec->dim(), n = plan.k_format.n, G = p.gqa_group;
  plan.queries.assign(G * plan.k_format.stride, 0.0f);  // zero lanes beyond n
  for (size_t h = 0; h < G; ++h) {
    float* qr = plan.queries.data() + h * plan.k_format.stride;
    p.k_codec->rotation().apply(p.queries + h * d, qr);
    for (size_t j = 0; j < n; ++j) qr[j] *= p.scale;
  }
  plan.integer = (arithmetic == FastArithmetic::IntegerAlways ||
                  (arithmetic == FastArithmetic::Integer && n_tokens >= kIntegerMinTokens)) &&
                 integer_capable(plan.k_format) && integer_capable(plan.v_format);
  if (plan.integer) {
    plan.k_int = int_codebook_for(plan.k_format);
    plan.v_int = int_codebook_for(plan.v_format);
    plan.integer = quantize_queries(plan.queries.data(), plan.k_format.stride, n, G, plan.k_int.alpha, plan.int_queries);
  }
}

// Merge the items of one head and write its output rows (the items' partial states are theirs).
void finish_head(const HeadPlan& plan, const WorkItem* items) {
  const AttentionProblem& p = *plan.problem;
  const size_t G = p.gqa_group, vn = plan.v_format.n, vs = plan.v_format.stride, d = p.v_codec->dim();
  std::vector<float> total(vn);
  for (size_t h = 0; h < G; ++h) {
    float m = -std::numeric_limits<float>::infinity();
    for (size_t i = 0; i < plan.n_items; ++i) m = std::max(m, items[i].max[h]);
    double l = 0.0;
    std::fill(total.begin(), total.end(), 0.0f);
    for (size_t i = 0; i < plan.n_items; ++i) {
      const float mi = items[i].max[h];
      if (mi == -std::numeric_limits<float>::infinity()) continue;
      const float f = std::exp(mi - m);
      l += items[i].denom[h] * f;
      const float* a = items[i].acc + h * vs;
      for (size_t j = 0; j < vn; ++j) total[j] += f * a[j];
    }
    const float inv = static_cast<float>(1.0 / l);
    for (auto& v : total) v *= inv;
    p.v_codec->rotation().apply_inverse(total.data(), p.out + h * d);
  }
}

}  // namespace
}  // namespace attn_detail

bool attend_fast_supported(const Codec& k_codec, const Codec& v_codec) {
  attn_detail::KernelFormat k, v;
  return attn_detail::make_kernel_format(k_codec, k) && attn_detail::make_kernel_format(v_codec, v);
}

void attend_fast_batch(const AttentionProblem* problems, size_t count, int n_threads, FastArithmetic arithmetic) {
  using namespace attn_detail;
  if (count == 0) return;
  if (!problems) throw InvalidArgument("attention: null problem list");
  std::vector<HeadPlan> plans(count);
  size_t total_tokens = 0;
  for (size_t i = 0; i < count; ++i) {
    const size_t n = check_attention_problem(problems[i]);
    prepare_head(problems[i], n, arithmetic, plans[i]);
    if (plans[i].fast) total_tokens += n;
  }
  const int threads = n_threads > 0 ? n_threads : ThreadPool::global().threads();
  const size_t split = std::max(kMinSplitTokens, (total_tokens + threads * kItemsPerThread - 1) /
                                                     (static_cast<size_t>(threads) * kItemsPerThread));

  // Work items and their output slots: each item's partial state (acc, max, denom) starts on its own
  // cache line, so that items on different threads never write to one line.
  std::vector<WorkItem> items;
  size_t state_bytes = 0;
  for (size_t i = 0; i < count; ++i) {
    HeadPlan& plan = plans[i];
    if (!plan.fast) continue;
    plan.first_item = items.size();
    plan.n_items = (plan.n_tokens + split - 1) / split;
    const size_t G = plan.problem->gqa_group;
    state_bytes += plan.n_items * ItemStateLayout(G, plan.v_format.stride).bytes;
    for (size_t s = 0; s < plan.n_items; ++s) {
      WorkItem w;
      w.k_format = &plan.k_format;
      w.v_format = &plan.v_format;
      w.gqa_group = G;
      w.queries = plan.queries.data();
      w.k_pages = plan.k_pages.data();
      w.n_k_pages = plan.k_pages.size();
      w.v_pages = plan.v_pages.data();
      w.n_v_pages = plan.v_pages.size();
      w.begin = s * plan.n_tokens / plan.n_items;
      w.end = (s + 1) * plan.n_tokens / plan.n_items;
      if (plan.integer) {
        w.int_queries = &plan.int_queries;
        w.k_int = &plan.k_int;
        w.v_int = &plan.v_int;
      }
      items.push_back(w);
    }
  }
  std::vector<unsigned char> state(state_bytes + kCacheLine, 0);  // (each item initializes its own state)
  unsigned char* at = state.data() + (kCacheLine - reinterpret_cast<uintptr_t>(state.data()) % kCacheLine) % kCacheLine;
  for (size_t i = 0; i < count; ++i) {
    const HeadPlan& plan = plans[i];
    const ItemStateLayout layout(plan.problem->gqa_group, plan.v_format.stride);
    for (size_t s = 0; s < plan.n_items; ++s, at += layout.bytes) {
      WorkItem& w = items[plan.first_item + s];
      w.denom = reinterpret_cast<double*>(at);
      w.max = reinterpret_cast<float*>(at + layout.max_at);
      w.acc = reinterpret_cast<float*>(at + layout.acc_at);
    }
  }

  const long n_items = static_cast<long>(items.size());
  const auto run_item = [](const WorkItem& w) { w.int_queries ? run_int_work_item(w) : run_work_item(w); };
  if (total_tokens < kSerialTokens || threads == 1 || n_items == 1) {
    for (long i = 0; i < n_items; ++i) run_item(items[i]);
  } else {
    parallel_for(items.size(), 1, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) run_item(items[i]);
    }, threads);
  }
  for (size_t i = 0; i < count; ++i) {
    if (plans[i].fast) {
      finish_head(plans[i], items.data() + plans[i].first_item);
    } else {
      attend_reference(problems[i]);
    }
  }
}

void attend_fast(const AttentionProblem& problem) { attend_fast_batch(&problem, 1, 0, FastArithmetic::Integer); }
void attend_fast_float(const AttentionProblem& problem) { attend_fast_batch(&problem, 1, 0, FastArithmetic::Float); }

std::vector<std::string> attention_simd_targets() { return attn_detail::simd_targets(); }
void force_attention_simd_target(const std::string& name) { attn_detail::force_simd_target(name); }
std::string attention_simd_target() { return attn_detail::current_simd_target(); }

}  // namespace rq
