// Seeded random unit vectors: test data, synthetic evaluations and benchmarks all draw from here.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "rq/core/rng.hpp"

namespace rq {

/// n x d vectors, each uniform on the unit sphere (Gaussian draws from Rng(seed), normalized).
inline std::vector<float> random_unit_vectors(size_t n, size_t d, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(n * d);
  for (size_t i = 0; i < n; ++i) {
    double sq = 0;
    for (size_t j = 0; j < d; ++j) {
      const double v = rng.normal();
      x[i * d + j] = static_cast<float>(v);
      sq += v * v;
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(sq));
    for (size_t j = 0; j < d; ++j) x[i * d + j] *= inv;
  }
  return x;
}

}  // namespace rq
