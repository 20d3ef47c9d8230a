// Random test data for the quantizer tests (never all-zero).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "rq/core/random_vectors.hpp"
#include "rq/core/rng.hpp"

namespace rq::testing {

using rq::random_unit_vectors;

/// n x d Gaussian vectors scaled by `scale`, with a few large "outlier" channels as in real keys.
inline std::vector<float> random_anisotropic_vectors(size_t n, size_t d, uint64_t seed, float scale = 3.0f) {
  Rng rng(seed);
  std::vector<float> x(n * d);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) {
      const float channel_scale = (j % 17 == 3) ? 8.0f : 1.0f;
      x[i * d + j] = scale * channel_scale * static_cast<float>(rng.normal());
    }
  }
  return x;
}

inline double dot(const float* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

inline double norm(const float* a, size_t n) { return std::sqrt(dot(a, a, n)); }

}  // namespace rq::testing
