#include "int_tables.hpp"

#include "rq/core/errors.hpp"

#include <cmath>
#include <cstring>
#include <limits>

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
  const int64_t padded = static_cast<int64_t>((n + kIntBlock - 1) / kIntBlock * kIntBlock);
  const int64_t bound = (int64_t{1} << 31) / (kTableMax * (padded > 0 ? padded : 1)) - 1;
  out.levels = static_cast<int32_t>(bound < 32767 ? bound : 32767);
  out.q16.assign(groups * n, 0);
  out.q16_sum.assign(groups, 0);
  out.factor.assign(groups, 0.0f);
  for (size_t h = 0; h < groups; ++h) {
    const float* qh = q + h * stride;
    float qmax = 0.0f;
    for (size_t j = 0; j < n; ++j) {
      const float a = std::fabs(qh[j]);
      qmax = a > qmax ? a : qmax;
    }
    if (!(qmax <= std::numeric_limits<float>::max())) {  // Inf, or a NaN somewhere (NaN compares false)
      for (size_t j = 0; j < n; ++j) {
        if (!std::isfinite(qh[j])) return false;
      }
    }
    if (!(qmax > 0.0f)) continue;  // zero query: all scores 0
    const float inv = static_cast<float>(out.levels) / qmax;
    const float top = static_cast<float>(out.levels);
    int32_t sum = 0;
    for (size_t j = 0; j < n; ++j) {  // round half away from zero, clamp (a loop the compiler vectorizes)
      float r = qh[j] * inv;
      r = r > top ? top : (r < -top ? -top : r);
      const int32_t v = static_cast<int32_t>(r + (r >= 0.0f ? 0.5f : -0.5f));
      out.q16[h * n + j] = static_cast<int16_t>(v);
      sum += v;
    }
    out.q16_sum[h] = sum;
    out.factor[h] = k_alpha * (qmax / static_cast<float>(out.levels));
  }
  return true;
}


}  // namespace rq::attn_detail
