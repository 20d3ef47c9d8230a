// The integer query of the fast attention's integer path (src/attention/int_tables.*): 8-bit values
// with a 16-bit scale per coordinate pair. Every bound that keeps the SIMD sums exact is checked, and
// the rounding error of every coordinate is bounded by its own pair's magnitude (an outlier coarsens
// only its partner).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "attention/int_tables.hpp"
#include "rq/core/rng.hpp"

namespace rq::attn_detail {
namespace {

std::vector<float> gaussian_queries(size_t groups, size_t n, uint32_t seed) {
  Rng rng(seed);  // (the project's generator: <random>'s distributions differ between standard libraries)
  std::vector<float> q(groups * n);
  for (auto& v : q) v = static_cast<float>(rng.normal());
  return q;
}

TEST(IntQueries, BoundsAndPairwiseRounding) {
  for (const size_t n : {2, 3, 64, 97, 128, 130, 256}) {
    const size_t groups = 3;
    std::vector<float> q = gaussian_queries(groups, n, static_cast<uint32_t>(n));
    q[n / 2] = 40.0f;                 // an outlier in head 0
    q[n + (n - 1)] = -1e-3f;          // a tiny last coordinate in head 1
    for (size_t j = 0; j < n; ++j) q[2 * n + j] *= 1e-20f;  // a tiny head
    IntQueries iq;
    const float alpha = 0.37f;
    ASSERT_TRUE(quantize_queries(q.data(), n, n, groups, alpha, iq));
    const size_t padded = (n + kIntBlock - 1) / kIntBlock * kIntBlock;
    ASSERT_EQ(iq.stride, padded);
    EXPECT_LT(int64_t{kTableMax} * kQueryTop * iq.scale_top * static_cast<int64_t>(padded), int64_t{1} << 31) << n;
    for (size_t h = 0; h < groups; ++h) {  // zero padding: the SIMD blocks read it
      for (size_t j = n; j < padded; ++j) EXPECT_EQ(iq.q8[h * padded + j], 0);
      for (size_t m = (n + 1) / 2; m < padded / 2; ++m) EXPECT_EQ(iq.pair_scale[h * padded / 2 + m], 0);
    }
    for (size_t h = 0; h < groups; ++h) {
      const float unit = iq.factor[h] / alpha;
      int64_t sum = 0;
      float qmax = 0.0f;
      for (size_t j = 0; j < n; ++j) qmax = std::fmax(qmax, std::fabs(q[h * n + j]));
      for (size_t j = 0; j < n; ++j) {
        const int q8 = iq.q8[h * padded + j];
        const int s = iq.pair_scale[h * padded / 2 + j / 2];
        ASSERT_LE(std::abs(q8), kQueryTop);
        ASSERT_GE(s, 1);
        ASSERT_LE(s, iq.scale_top);
        sum += iq.value(h, j);
        const size_t j0 = j / 2 * 2, j1 = j0 + 1 < n ? j0 + 1 : j0;
        const float pair_max = std::fmax(std::fabs(q[h * n + j0]), std::fabs(q[h * n + j1]));
        const float err = std::fabs(q[h * n + j] - static_cast<float>(iq.value(h, j)) * unit);
        // s_m unit <= pair_max / 64 + unit, so the rounding error is <= pair_max / 128 + unit / 2.
        EXPECT_LE(err, (pair_max / 128.0f + unit / 2.0f) * 1.0001f + qmax * 1e-6f) << "n " << n << " head " << h << " j " << j;
      }
      EXPECT_EQ(sum, iq.q_sum[h]) << n;
    }
  }
}

TEST(IntQueries, ZeroAndNonFinite) {
  const size_t n = 64;
  std::vector<float> q(2 * n, 0.0f);
  q[n + 3] = 1.0f;
  IntQueries iq;
  ASSERT_TRUE(quantize_queries(q.data(), n, n, 2, 1.0f, iq));
  for (size_t j = 0; j < n; ++j) EXPECT_EQ(iq.value(0, j), 0);
  EXPECT_EQ(iq.q_sum[0], 0);
  EXPECT_EQ(iq.q8[iq.stride + 3], kQueryTop);
  q[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(quantize_queries(q.data(), n, n, 2, 1.0f, iq));
  q[5] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(quantize_queries(q.data(), n, n, 2, 1.0f, iq));
}

TEST(IntCodebook, LevelsStayInTheTable) {
  const float centroids[8] = {-2.15f, -1.34f, -0.76f, -0.25f, 0.25f, 0.76f, 1.34f, 2.15f};
  const IntCodebook cb = make_int_codebook(centroids, 3);
  for (int k = 0; k < 8; ++k) {
    EXPECT_GE(cb.t[k], kTableZero - kTableTop);
    EXPECT_LE(cb.t[k], kTableMax);
    EXPECT_NEAR(cb.alpha * (cb.t[k] - kTableZero), centroids[k], 0.01f);
  }
}

}  // namespace
}  // namespace rq::attn_detail
