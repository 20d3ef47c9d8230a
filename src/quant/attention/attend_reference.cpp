// Scalar reference decode attention over compressed pages (one KV head, a GQA group of queries).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "rq/attention/attention.hpp"
#include "rq/core/errors.hpp"

namespace rq {

size_t check_attention_problem(const AttentionProblem& p) {
  if (!p.k_codec || !p.v_codec || !p.queries || !p.out) throw InvalidArgument("attention: null codec, query or output");
  if (p.gqa_group == 0) throw InvalidArgument("attention: gqa_group must be >= 1");
  const size_t d = p.k_codec->dim();
  if (p.v_codec->dim() != d) {
    throw InvalidArgument("attention: K head_dim " + std::to_string(d) + " != V head_dim " + std::to_string(p.v_codec->dim()));
  }
  const auto check_pages = [](const std::vector<PageSpan>& pages, const Codec& c, const char* what) {
    size_t n = 0;
    for (const auto& s : pages) {
      if (s.n_tokens && (!s.codes || (c.layout().side_bytes && !s.side))) {
        throw InvalidArgument(std::string("attention: a ") + what + " page has null codes or side plane");
      }
      n += s.n_tokens;
    }
    return n;
  };
  if (!std::isfinite(p.scale)) throw InvalidArgument("attention: the softmax scale is not finite");
  for (size_t i = 0; i < p.gqa_group * d; ++i) {
    if (!std::isfinite(p.queries[i])) {
      throw InvalidArgument("attention: query value " + std::to_string(i) + " is not finite (NaN or infinity)");
    }
  }
  const size_t n_k = check_pages(p.k_pages, *p.k_codec, "key");
  const size_t n_v = check_pages(p.v_pages, *p.v_codec, "value");
  if (n_k != n_v) throw InvalidArgument("attention: " + std::to_string(n_k) + " keys but " + std::to_string(n_v) + " values");
  if (n_k == 0) throw InvalidArgument("attention: empty cache (no tokens to attend to)");
  return n_k;
}

void softmax_scaled_inplace(float* scores, size_t n, float scale) {
  float mx = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    scores[i] *= scale;
    mx = std::max(mx, scores[i]);
  }
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    scores[i] = std::exp(scores[i] - mx);
    sum += scores[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (size_t i = 0; i < n; ++i) scores[i] *= inv;
}

void attend_reference(const AttentionProblem& p) {
  const size_t n_k = check_attention_problem(p);
  const size_t d = p.k_codec->dim();

  std::vector<float> scores(n_k), acc(p.v_codec->accumulator_dim());
  for (size_t h = 0; h < p.gqa_group; ++h) {
    const PreparedQuery q = p.k_codec->prepare_query(p.queries + h * d);
    size_t t = 0;
    for (const auto& s : p.k_pages) {
      p.k_codec->score(q, s.n_tokens, s.codes, s.side, scores.data() + t);
      t += s.n_tokens;
    }
    softmax_scaled_inplace(scores.data(), n_k, p.scale);
    std::fill(acc.begin(), acc.end(), 0.0f);
    t = 0;
    for (const auto& s : p.v_pages) {
      p.v_codec->accumulate_rotated(s.n_tokens, scores.data() + t, s.codes, s.side, acc.data());
      t += s.n_tokens;
    }
    p.v_codec->finish_accumulate(acc.data(), p.out + h * d);
  }
}

}  // namespace rq
