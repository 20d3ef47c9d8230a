// Lloyd-Max scalar codebooks for one coordinate of a rotated unit vector, computed in code for any
// dimension and 1..8 bits, for the exact coordinate density f_d(z) ~ (1 - z^2)^((d-3)/2) on [-1, 1]
// or its Gaussian approximation N(0, 1/d). Results are cached per (bits, dim, density).
#pragma once

#include <cstddef>
#include <vector>

namespace rq {

enum class CodebookDensity : unsigned char { Exact, Gaussian };

struct Codebook {
  int bits = 0;
  size_t dim = 0;
  CodebookDensity density = CodebookDensity::Exact;
  /// 2^bits increasing levels, in the units of a coordinate of a unit vector of `dim` coordinates.
  std::vector<double> centroids;
  /// 2^bits - 1 decision thresholds: midpoints between consecutive centroids.
  std::vector<double> thresholds;
  /// Expected squared error of one coordinate (under `density`); dim * mse is the d*MSE of a unit vector.
  double mse = 0.0;
  /// Lloyd iterations until the largest centroid move fell under 1e-10 (in units of sigma).
  int iterations = 0;
};

/// The Lloyd-Max codebook; throws rq::InvalidArgument for bits outside 1..8 or dim < 2.
const Codebook& lloyd_max_codebook(int bits, size_t dim, CodebookDensity density);

/// Index of the nearest centroid of `value`: binary search over the thresholds (ties go up).
size_t quantize_scalar(const Codebook& codebook, double value);

}  // namespace rq
