// Random inputs for the CLI's synthetic evaluations and benchmarks.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "rq/core/rng.hpp"

namespace rq::cli::synthetic {

/// n x d vectors uniform on the unit sphere.
inline std::vector<float> unit_vectors(size_t n, size_t d, uint64_t seed) {
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

}  // namespace rq::cli::synthetic
