// attend_cache: GQA decode attention over the paged cache through one swappable kernel.
#include "rq/kvcache/kv_attention.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "rq/core/errors.hpp"
#include "rq/threads/thread_pool.hpp"

namespace rq {

namespace {

std::atomic<AttentionKernel> g_kernel{nullptr};
std::atomic<AttentionBatchKernel> g_batch_kernel{nullptr};

// Segments with different codecs (fp16 sinks/window beside compressed pages): exact softmax over
// scores from Codec::score, values via Codec::accumulate, per query head of the group.
void attend_segments(const std::vector<KvSegment>& segs, size_t gqa_group, size_t d, const float* q, float scale,
                     float* out) {
  size_t n = 0;
  for (const auto& s : segs) n += s.k.n_tokens;
  std::vector<float> scores(n);  // n_tokens
  std::vector<float> part(d);    // head_dim
  for (size_t g = 0; g < gqa_group; ++g) {
    const float* qg = q + g * d;
    float* og = out + g * d;
    size_t off = 0;
    for (const auto& s : segs) {
      PreparedQuery pq = s.k_codec->prepare_query(qg);
      s.k_codec->score(pq, s.k.n_tokens, s.k.codes, s.k.side, scores.data() + off);
      off += s.k.n_tokens;
    }
    softmax_scaled_inplace(scores.data(), n, scale);
    std::fill(og, og + d, 0.0f);
    off = 0;
    for (const auto& s : segs) {
      s.v_codec->accumulate(s.v.n_tokens, scores.data() + off, s.v.codes, s.v.side, part.data());
      for (size_t j = 0; j < d; ++j) og[j] += part[j];
      off += s.v.n_tokens;
    }
  }
}

}  // namespace

void set_attention_kernel(AttentionKernel kernel) { g_kernel.store(kernel); }

AttentionKernel attention_kernel() {
  AttentionKernel k = g_kernel.load();
  return k != nullptr ? k : &attend_reference;
}

namespace {

// The problem of one kv head (false: its segments mix codecs; it was computed by attend_segments).
bool make_problem(const PagedKvCache& cache, SeqId seq, size_t layer, size_t n_tokens, size_t kv_head,
                  size_t gqa_group, const float* q, float scale, float* out, AttentionProblem& p) {
  if (n_tokens == 0) throw InvalidArgument("attend_cache: no tokens to attend to");
  if (q == nullptr || out == nullptr) throw InvalidArgument("attend_cache: null q or out");
  if (gqa_group == 0) throw InvalidArgument("attend_cache: gqa_group must be >= 1");
  std::vector<KvSegment> segs = cache.segments(seq, layer, kv_head, n_tokens);
  bool uniform = true;
  for (const auto& s : segs) uniform = uniform && s.k_codec == segs[0].k_codec && s.v_codec == segs[0].v_codec;
  if (!uniform) {
    attend_segments(segs, gqa_group, cache.head_dim(), q, scale, out);
    return false;
  }
  p.k_codec = segs[0].k_codec;
  p.v_codec = segs[0].v_codec;
  p.gqa_group = gqa_group;
  p.queries = q;
  p.scale = scale;
  p.out = out;
  p.k_pages.reserve(segs.size());
  p.v_pages.reserve(segs.size());
  for (const auto& s : segs) {
    p.k_pages.push_back(s.k);
    p.v_pages.push_back(s.v);
  }
  return true;
}

}  // namespace

void set_attention_batch_kernel(AttentionBatchKernel kernel) { g_batch_kernel.store(kernel); }

void attend_cache_head(const PagedKvCache& cache, SeqId seq, size_t layer, size_t n_tokens, size_t kv_head,
                       size_t gqa_group, const float* q, float scale, float* out) {
  AttentionProblem p;
  if (make_problem(cache, seq, layer, n_tokens, kv_head, gqa_group, q, scale, out, p)) attention_kernel()(p);
}

void attend_cache_causal(const PagedKvCache& cache, SeqId seq, size_t layer, size_t p0, size_t n, size_t n_heads,
                         const float* q, float scale, float* out) {
  const size_t H = cache.n_kv_heads(), d = cache.head_dim();
  if (n_heads == 0 || n_heads % H != 0) {
    throw InvalidArgument("attend_cache: n_heads " + std::to_string(n_heads) + " is not a multiple of n_kv_heads " +
                          std::to_string(H));
  }
  if (q == nullptr || out == nullptr) throw InvalidArgument("attend_cache: null q or out");
  const size_t group = n_heads / H;
  std::vector<AttentionProblem> problems(n * H);
  std::vector<char> ready(n * H, 0);
  // Building problems is cheap; mixed-codec heads (sinks, fp16 window) are computed right here.
  // (An exception in a job reaches the caller through parallel_for.)
  parallel_for(n * H, 1, [&](size_t begin, size_t end) {
    for (size_t job = begin; job < end; ++job) {
      const size_t t = job / H, h = job % H;
      ready[job] = make_problem(cache, seq, layer, p0 + t + 1, h, group, q + (t * n_heads + h * group) * d, scale,
                                out + (t * n_heads + h * group) * d, problems[job]);
    }
  });
  size_t kept = 0;
  for (size_t i = 0; i < problems.size(); ++i) {
    if (!ready[i]) continue;
    if (kept != i) problems[kept] = std::move(problems[i]);
    ++kept;
  }
  problems.resize(kept);
  if (const AttentionBatchKernel batch = g_batch_kernel.load()) {
    batch(problems.data(), problems.size());
    return;
  }
  const AttentionKernel kernel = attention_kernel();
  parallel_for(problems.size(), 1, [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) kernel(problems[i]);
  });
}

void attend_cache(const PagedKvCache& cache, SeqId seq, size_t layer, size_t n_tokens, size_t n_heads,
                  const float* q, float scale, float* out) {
  if (n_tokens == 0) throw InvalidArgument("attend_cache: no tokens to attend to");
  attend_cache_causal(cache, seq, layer, n_tokens - 1, 1, n_heads, q, scale, out);  // one query at n_tokens - 1
}

}  // namespace rq
