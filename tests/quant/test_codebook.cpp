// Lloyd-Max codebooks against ALGORITHMS.md §2.
#include <gtest/gtest.h>

#include <cmath>

#include "rq/codebook/lloyd_max.hpp"
#include "rq/core/errors.hpp"

namespace rq {
namespace {

TEST(LloydMax, GaussianDistortionMatchesReference) {
  const double expected[] = {0.36338, 0.11748, 0.03455, 0.00950};
  for (size_t d : {2u, 64u, 128u, 1000u}) {
    for (int b = 1; b <= 4; ++b) {
      const Codebook& cb = lloyd_max_codebook(b, d, CodebookDensity::Gaussian);
      EXPECT_NEAR(cb.mse * static_cast<double>(d), expected[b - 1], 5e-5) << "d=" << d << " b=" << b;
    }
  }
}

TEST(LloydMax, GaussianCentroidsMatchReference) {
  const std::vector<std::vector<double>> positive = {
      {0.45278, 1.51042},
      {0.24509, 0.75601, 1.34391, 2.15195},
      {0.1284, 0.38805, 0.65676, 0.94234, 1.25623, 1.61805, 2.06902, 2.73259}};
  const size_t d = 128;
  for (int b = 2; b <= 4; ++b) {
    const Codebook& cb = lloyd_max_codebook(b, d, CodebookDensity::Gaussian);
    const auto& ref = positive[b - 2];
    const size_t half = ref.size();
    ASSERT_EQ(cb.centroids.size(), 2 * half);
    for (size_t i = 0; i < half; ++i) {
      EXPECT_NEAR(cb.centroids[half + i] * std::sqrt(double(d)), ref[i], 1e-4) << "b=" << b << " i=" << i;
      EXPECT_NEAR(cb.centroids[half - 1 - i] * std::sqrt(double(d)), -ref[i], 1e-4) << "b=" << b << " i=" << i;
    }
  }
}

TEST(LloydMax, ExactDensityAtD128MatchesReference) {
  const double expected[] = {0.3609, 0.1160, 0.0340, 0.0093};
  for (int b = 1; b <= 4; ++b) {
    const Codebook& cb = lloyd_max_codebook(b, 128, CodebookDensity::Exact);
    EXPECT_NEAR(cb.mse * 128.0, expected[b - 1], 1e-4) << "b=" << b;
  }
}

TEST(LloydMax, ExactDensityAtD3IsUniform) {
  // d = 3: each coordinate of a uniform unit vector is uniform on [-1, 1]; Lloyd-Max is the uniform
  // quantizer with distortion 4^-b / 3 per coordinate.
  for (int b = 1; b <= 4; ++b) {
    const Codebook& cb = lloyd_max_codebook(b, 3, CodebookDensity::Exact);
    EXPECT_NEAR(cb.mse, std::pow(4.0, -b) / 3.0, 1e-9) << "b=" << b;
  }
}

TEST(LloydMax, WithinTurboQuantBounds) {
  for (size_t d : {2u, 5u, 64u, 128u}) {
    for (int b = 1; b <= 4; ++b) {
      const Codebook& cb = lloyd_max_codebook(b, d, CodebookDensity::Exact);
      const double dmse = cb.mse * static_cast<double>(d);
      EXPECT_LE(dmse, std::sqrt(3.0) * M_PI / 2.0 * std::pow(4.0, -b)) << d << " " << b;
      EXPECT_GT(dmse, 0.0);
    }
  }
}

TEST(LloydMax, SymmetricSortedAndConverged) {
  for (auto density : {CodebookDensity::Exact, CodebookDensity::Gaussian}) {
    for (int b = 1; b <= 4; ++b) {
      const Codebook& cb = lloyd_max_codebook(b, 96, density);
      ASSERT_EQ(cb.centroids.size(), size_t{1} << b);
      for (size_t i = 0; i + 1 < cb.centroids.size(); ++i) EXPECT_LT(cb.centroids[i], cb.centroids[i + 1]);
      for (size_t i = 0; i < cb.centroids.size(); ++i) {
        EXPECT_NEAR(cb.centroids[i], -cb.centroids[cb.centroids.size() - 1 - i], 1e-14);
      }
      EXPECT_LT(cb.iterations, 200000);
    }
  }
}

TEST(LloydMax, QuantizeScalarPicksNearestLevel) {
  const Codebook& cb = lloyd_max_codebook(3, 128, CodebookDensity::Exact);
  for (double v = -0.5; v <= 0.5; v += 0.001) {
    const size_t k = quantize_scalar(cb, v);
    for (size_t j = 0; j < cb.centroids.size(); ++j) {
      EXPECT_LE(std::fabs(v - cb.centroids[k]), std::fabs(v - cb.centroids[j]) + 1e-15);
    }
  }
}

TEST(LloydMax, RejectsBadArguments) {
  EXPECT_THROW(lloyd_max_codebook(0, 128, CodebookDensity::Exact), InvalidArgument);
  EXPECT_THROW(lloyd_max_codebook(9, 128, CodebookDensity::Exact), InvalidArgument);
  EXPECT_THROW(lloyd_max_codebook(3, 1, CodebookDensity::Exact), InvalidArgument);
  EXPECT_THROW(lloyd_max_codebook(3, 0, CodebookDensity::Gaussian), InvalidArgument);
}

}  // namespace
}  // namespace rq
