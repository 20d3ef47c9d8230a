// Helpers of the fast-attention tests: a random one-head cache split into pages of varying sizes,
// problems over it, and the relative error used by the comparisons.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "rq/attention/attention_fast.hpp"
#include "rq/core/rng.hpp"

namespace rq::test {

// A cache of one KV head: K and V codes in contiguous planes, exposed as pages of varying sizes.
struct HeadCache {
  std::unique_ptr<Codec> k_codec, v_codec;
  std::vector<uint8_t> k_codes, k_side, v_codes, v_side;
  std::vector<float> queries;  // gqa x d
  size_t n_tokens = 0;
};

// Gaussian vectors with a few strong channels (like real K), never all zero.
inline std::vector<float> random_vectors(Rng& rng, size_t n, size_t d, float outlier) {
  std::vector<float> x(n * d);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) x[i * d + j] = static_cast<float>(rng.normal()) * (j % 17 == 3 ? outlier : 1.0f);
  }
  return x;
}

inline HeadCache make_cache(const std::string& k_format, const std::string& v_format, size_t d, size_t n_tokens, size_t gqa,
                     uint64_t seed) {
  HeadCache c;
  Rng rng(seed);
  c.k_codec = std::make_unique<Codec>(find_format(k_format), d, RotationSeed{seed, 1, 2, KvRole::K});
  c.v_codec = std::make_unique<Codec>(find_format(v_format), d, RotationSeed{seed, 1, 2, KvRole::V});
  c.n_tokens = n_tokens;
  const auto k = random_vectors(rng, n_tokens, d, 6.0f);
  const auto v = random_vectors(rng, n_tokens, d, 1.0f);
  const auto& kl = c.k_codec->layout();
  const auto& vl = c.v_codec->layout();
  c.k_codes.resize(n_tokens * kl.code_bytes);
  c.k_side.resize(n_tokens * kl.side_bytes + 1);
  c.v_codes.resize(n_tokens * vl.code_bytes);
  c.v_side.resize(n_tokens * vl.side_bytes + 1);
  c.k_codec->encode(n_tokens, k.data(), c.k_codes.data(), c.k_side.data());
  c.v_codec->encode(n_tokens, v.data(), c.v_codes.data(), c.v_side.data());
  c.queries = random_vectors(rng, gqa, d, 2.0f);
  return c;
}

// Split [0, n) into spans of the given cyclic sizes.
inline std::vector<PageSpan> make_pages(const std::vector<uint8_t>& codes, const std::vector<uint8_t>& side, const Codec& codec,
                                 size_t n, const std::vector<size_t>& sizes) {
  std::vector<PageSpan> pages;
  const auto& l = codec.layout();
  size_t t = 0, k = 0;
  while (t < n) {
    const size_t len = std::min(n - t, sizes[k++ % sizes.size()]);
    pages.push_back({codes.data() + t * l.code_bytes, l.side_bytes ? side.data() + t * l.side_bytes : nullptr, len});
    t += len;
  }
  return pages;
}

inline AttentionProblem make_problem(const HeadCache& c, size_t gqa, float scale, float* out) {
  AttentionProblem p;
  p.k_codec = c.k_codec.get();
  p.v_codec = c.v_codec.get();
  p.gqa_group = gqa;
  p.queries = c.queries.data();
  p.scale = scale;
  p.k_pages = make_pages(c.k_codes, c.k_side, *c.k_codec, c.n_tokens, {64, 200, 1, 33});
  p.v_pages = make_pages(c.v_codes, c.v_side, *c.v_codec, c.n_tokens, {128, 7, 96});
  p.out = out;
  return p;
}

// max |a - b| / max |b|
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0.0, ref = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
    ref = std::max(ref, static_cast<double>(std::fabs(b[i])));
  }
  return err / std::max(ref, 1e-30);
}


}  // namespace rq::test
