// Scalar reference decode attention over compressed pages (one KV head, a GQA group of queries).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "rq/attention/attention.hpp"
#include "rq/core/errors.hpp"

namespace rq {

void attend_reference(const AttentionProblem& p) {
  if (!p.k_codec || !p.v_codec || !p.queries || !p.out) throw InvalidArgument("attention: null codec, query or output");
  if (p.gqa_group == 0) throw InvalidArgument("attention: gqa_group must be >= 1");
  const size_t d = p.k_codec->dim();
  if (p.v_codec->dim() != d) {
    throw InvalidArgument("attention: K head_dim " + std::to_string(d) + " != V head_dim " + std::to_string(p.v_codec->dim()));
  }
  size_t n_k = 0, n_v = 0;
  for (const auto& s : p.k_pages) n_k += s.n_tokens;
  for (const auto& s : p.v_pages) n_v += s.n_tokens;
  if (n_k != n_v) {
    throw InvalidArgument("attention: " + std::to_string(n_k) + " keys but " + std::to_string(n_v) + " values");
  }
  if (n_k == 0) throw InvalidArgument("attention: empty cache (no tokens to attend to)");

  std::vector<float> scores(n_k), acc(p.v_codec->accumulator_dim());
  for (size_t h = 0; h < p.gqa_group; ++h) {
    const PreparedQuery q = p.k_codec->prepare_query(p.queries + h * d);
    size_t t = 0;
    for (const auto& s : p.k_pages) {
      p.k_codec->score(q, s.n_tokens, s.codes, s.side, scores.data() + t);
      t += s.n_tokens;
    }
    float mx = -INFINITY;
    for (auto& v : scores) {
      v *= p.scale;
      mx = std::max(mx, v);
    }
    double sum = 0.0;
    for (auto& v : scores) {
      v = std::exp(v - mx);
      sum += v;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (auto& v : scores) v *= inv;
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
