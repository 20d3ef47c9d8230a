#include "int_tables.hpp"

#include "rq/core/errors.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace rq::attn_detail {

namespace {

// The search below costs ~30 us; attention calls ask for the same few codebooks on every call.
IntCodebook fit_int_codebook(const float* centroids, int bits) {
  IntCodebook cb;
  cb.bits = bits;
  const int levels = 1 << bits;
  double cmax = 0.0;
  for (int k = 0; k < levels; ++k) cmax = std::fmax(cmax, std::fabs(static_cast<double>(centroids[k])));
  for (int k = 0; k < 16; ++k) cb.t[k] = static_cast<uint8_t>(kTableZero);
  if (!(cmax > 0.0)) {
    cb.alpha = 1.0f;
    return cb;
  }
  // Integer levels l_k = round(c_k m / cmax) for a top level m <= kTableTop, then the least-squares
  // scale alpha = sum c l / sum l^2 for those levels; the m (searched in steps of 1/16 from
  // kTableTop / 2 up) whose levels leave the smallest squared error wins. Deterministic, once per codec.
  double best_err = -1.0, best_alpha = cmax / kTableTop;
  long best[16] = {};
  for (int step = 16 * kTableTop / 2; step <= 16 * kTableTop; ++step) {
    const double m = step / 16.0;
    long lv[16] = {};
    double cl = 0.0, ll = 0.0;
    for (int k = 0; k < levels; ++k) {
      long l = std::lround(centroids[k] * m / cmax);
      l = l > kTableTop ? kTableTop : (l < -kTableTop ? -kTableTop : l);
      lv[k] = l;
      cl += static_cast<double>(centroids[k]) * static_cast<double>(l);
      ll += static_cast<double>(l) * static_cast<double>(l);
    }
    if (!(ll > 0.0)) continue;
    const double alpha = cl / ll;
    double err = 0.0;
    for (int k = 0; k < levels; ++k) {
      const double e = centroids[k] - alpha * static_cast<double>(lv[k]);
      err += e * e;
    }
    if (best_err < 0.0 || err < best_err) {
      best_err = err;
      best_alpha = alpha;
      for (int k = 0; k < levels; ++k) best[k] = lv[k];
    }
  }
  cb.alpha = static_cast<float>(best_alpha);
  for (int k = 0; k < levels; ++k) cb.t[k] = static_cast<uint8_t>(kTableZero + best[k]);
  return cb;
}

}  // namespace

IntCodebook make_int_codebook(const float* centroids, int bits) {
  // Per-thread memo of the last codebooks (a model has one or two per format): no locks, and a
  // miss only costs one search.
  struct Entry {
    int bits = -1;
    float centroids[16] = {};
    IntCodebook cb;
  };
  constexpr size_t kEntries = 8;
  thread_local Entry memo[kEntries];
  thread_local size_t next = 0;
  if (bits < 1 || bits > 4) throw InvalidArgument("integer attention tables need 1..4-bit codes");
  const size_t levels = size_t{1} << bits;
  for (const Entry& e : memo) {
    if (e.bits == bits && std::memcmp(e.centroids, centroids, levels * sizeof(float)) == 0) return e.cb;
  }
  Entry& e = memo[next];
  next = (next + 1) % kEntries;
  e.bits = bits;
  std::memcpy(e.centroids, centroids, levels * sizeof(float));
  e.cb = fit_int_codebook(centroids, bits);
  return e.cb;
}

bool quantize_queries(const float* q, size_t stride, size_t n, size_t groups, float k_alpha, IntQueries& out) {
  out.n = n;
  out.groups = groups;
  out.stride = (n + kIntBlock - 1) / kIntBlock * kIntBlock;
  const size_t pairs = (n + 1) / 2, pstride = out.stride / 2;
  const int64_t bound =
      ((int64_t{1} << 31) - 1) / (int64_t{kTableMax} * kQueryTop * static_cast<int64_t>(out.stride > 0 ? out.stride : 1));
  if (bound < 1) throw InvalidArgument("integer attention: too many coordinates for int32 sums");
  out.scale_top = static_cast<int32_t>(bound < 32767 ? bound : 32767);
  out.q8.assign(groups * out.stride, 0);
  out.pair_scale.assign(groups * pstride, 0);
  out.q_sum.assign(groups, 0);
  out.factor.assign(groups, 0.0f);
  for (size_t h = 0; h < groups; ++h) {
    const float* qh = q + h * stride;
    float qmax = 0.0f, nan_probe = 0.0f;
    for (size_t j = 0; j < n; ++j) {
      const float a = std::fabs(qh[j]);
      nan_probe += a * 0.0f;  // NaN if any value is NaN or infinite
      qmax = a > qmax ? a : qmax;
    }
    if (nan_probe != 0.0f) return false;
    if (!(qmax > 0.0f)) continue;  // zero query: all scores 0 (scales 0 too)
    // unit = qmax / (S * 64); pair m: s_m = ceil(S * max_m / qmax) in [1, S], q8 = round(q / (s_m unit)),
    // so |q8| <= 64 and each coordinate is rounded to 1/128 of its pair's larger magnitude or finer.
    // Plain comparisons and conversions instead of std::fmax / std::ceil / std::round: on the baseline
    // x86-64 target those are libm calls (no SSE4.1 rounding).
    const float top_scale = static_cast<float>(out.scale_top);
    const float unit = qmax / (top_scale * static_cast<float>(kQueryTop));
    const float to_scale = top_scale / qmax, qtop = static_cast<float>(kQueryTop);
    int16_t* ps = out.pair_scale.data() + h * pstride;
    int8_t* q8 = out.q8.data() + h * out.stride;
    const auto round_clamped = [qtop](float r) {  // round half away from zero, clamp to [-64, 64]
      r = r > qtop ? qtop : (r < -qtop ? -qtop : r);
      return static_cast<int32_t>(r + (r >= 0.0f ? 0.5f : -0.5f));
    };
    int32_t sum = 0;
    for (size_t m = 0; m < pairs; ++m) {
      const bool two = 2 * m + 1 < n;
      const float x0 = qh[2 * m], x1 = two ? qh[2 * m + 1] : 0.0f;
      const float a0 = std::fabs(x0), a1 = std::fabs(x1);
      const float x = (a0 > a1 ? a0 : a1) * to_scale;  // in [0, S]
      int32_t si = static_cast<int32_t>(x);             // ceil(x) for x >= 0
      si += static_cast<float>(si) < x ? 1 : 0;
      si = si < 1 ? 1 : (si > out.scale_top ? out.scale_top : si);
      ps[m] = static_cast<int16_t>(si);
      const float inv = 1.0f / (static_cast<float>(si) * unit);
      const int32_t v0 = round_clamped(x0 * inv), v1 = two ? round_clamped(x1 * inv) : 0;
      q8[2 * m] = static_cast<int8_t>(v0);
      if (two) q8[2 * m + 1] = static_cast<int8_t>(v1);
      sum += (v0 + v1) * si;
    }
    out.q_sum[h] = sum;
    out.factor[h] = k_alpha * unit;
  }
  return true;
}


}  // namespace rq::attn_detail
