// TurboQuant paper rotation: a Haar-random dense d x d orthogonal matrix, the Q factor of a
// Gaussian matrix's QR decomposition with diag(R) made positive.
#include <cmath>
#include <string>

#include "rotation_detail.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq {

namespace {

// Largest dimension accepted for a dense rotation (d^2 floats of parameters).
constexpr size_t kMaxDenseDim = 8192;

void check_dense_dim(size_t dim) {
  if (dim > kMaxDenseDim) {
    throw InvalidArgument("rotation 'turbodense': dim " + std::to_string(dim) + " exceeds the limit " +
                          std::to_string(kMaxDenseDim));
  }
}

// Q[d x d] (row-major) of A = Q R by modified Gram-Schmidt over the columns, done twice for
// orthogonality to double precision. MGS gives r_jj = |column| > 0, i.e. the QR factorization
// whose diag(R) is positive: exactly "QR with the signs of diag(R) folded into Q", which makes Q
// Haar-distributed when A is i.i.d. Gaussian.
std::vector<double> orthonormalize_columns(std::vector<double> a, size_t d) {
  for (size_t j = 0; j < d; ++j) {
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t k = 0; k < j; ++k) {
        double dot = 0.0;
        for (size_t i = 0; i < d; ++i) dot += a[i * d + k] * a[i * d + j];
        for (size_t i = 0; i < d; ++i) a[i * d + j] -= dot * a[i * d + k];
      }
    }
    double sq = 0.0;
    for (size_t i = 0; i < d; ++i) sq += a[i * d + j] * a[i * d + j];
    const double inv = 1.0 / std::sqrt(sq);  // a Gaussian matrix is full rank with probability 1
    for (size_t i = 0; i < d; ++i) a[i * d + j] *= inv;
  }
  return a;
}

}  // namespace

DenseRotation::DenseRotation(size_t dim, const RotationSeed& seed) : Rotation(dim, dim) {
  check_dense_dim(dim);
  Rng rng = rotation_detail::stream(seed, rotation_detail::Salt::Dense, 0);
  std::vector<double> gaussian(dim * dim);  // d x d, row-major
  for (double& g : gaussian) g = rng.normal();
  const std::vector<double> q = orthonormalize_columns(std::move(gaussian), dim);
  matrix_.resize(dim * dim);  // d x d, row-major
  for (size_t i = 0; i < q.size(); ++i) matrix_[i] = static_cast<float>(q[i]);
}

DenseRotation::DenseRotation(size_t dim, const std::vector<float>& matrix) : Rotation(dim, dim), matrix_(matrix) {
  check_dense_dim(dim);
  rotation_detail::check_count("turbodense", dim, matrix_, dim * dim, "the d x d matrix, row-major");
  rotation_detail::check_finite("turbodense", matrix_);
  // A loaded matrix must be orthogonal: M M^T = I to float tolerance.
  for (size_t i = 0; i < dim; ++i) {
    for (size_t k = i; k < dim; ++k) {
      double dot = 0.0;
      for (size_t j = 0; j < dim; ++j) dot += double(matrix_[i * dim + j]) * matrix_[k * dim + j];
      if (std::fabs(dot - (i == k ? 1.0 : 0.0)) > 1e-3) {
        throw InvalidArgument("rotation 'turbodense': the loaded matrix is not orthogonal");
      }
    }
  }
}

void DenseRotation::apply(const float* x, float* y) const {
  const size_t d = dim();
  constexpr size_t kLanes = 8;  // independent partial sums, so the dot product vectorizes
  for (size_t i = 0; i < d; ++i) {
    const float* row = &matrix_[i * d];
    float acc[kLanes] = {};
    size_t j = 0;
    for (; j + kLanes <= d; j += kLanes) {
      for (size_t k = 0; k < kLanes; ++k) acc[k] += row[j + k] * x[j + k];
    }
    for (; j < d; ++j) acc[j % kLanes] += row[j] * x[j];
    float sum = 0.0f;
    for (size_t k = 0; k < kLanes; ++k) sum += acc[k];
    y[i] = sum;
  }
}

void DenseRotation::apply_padded(const float* x, float* y) const { apply(x, y); }

void DenseRotation::apply_inverse(const float* y, float* x) const {
  const size_t d = dim();
  for (size_t j = 0; j < d; ++j) x[j] = 0.0f;
  for (size_t i = 0; i < d; ++i) {
    const float* row = &matrix_[i * d];
    const float yi = y[i];
    for (size_t j = 0; j < d; ++j) x[j] += row[j] * yi;
  }
}

}  // namespace rq
