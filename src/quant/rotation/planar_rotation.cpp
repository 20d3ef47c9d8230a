// PlanarQuant: one 2x2 Givens rotation per pair of coordinates, y = [[c, -s], [s, c]] x.
#include <cmath>

#include "rotation_detail.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq {

namespace {

constexpr size_t kPair = 2;

size_t padded_dim(size_t dim) { return kPair * ((dim + kPair - 1) / kPair); }

void planar_forward(const std::vector<float>& cs, size_t in_len, const float* x, float* y) {
  const size_t pairs = cs.size() / 2;
  const size_t full = in_len / kPair < pairs ? in_len / kPair : pairs;
  for (size_t p = 0; p < full; ++p) {
    const float c = cs[2 * p], s = cs[2 * p + 1];
    const float x0 = x[2 * p], x1 = x[2 * p + 1];
    y[2 * p] = c * x0 - s * x1;
    y[2 * p + 1] = s * x0 + c * x1;
  }
  for (size_t p = full; p < pairs; ++p) {
    float in[kPair];
    rotation_detail::load_block(x, in_len, p, kPair, in);
    const float c = cs[2 * p], s = cs[2 * p + 1];
    y[2 * p] = c * in[0] - s * in[1];
    y[2 * p + 1] = s * in[0] + c * in[1];
  }
}

}  // namespace

PlanarRotation::PlanarRotation(size_t dim, const RotationSeed& seed) : Rotation(dim, padded_dim(dim)) {
  const size_t pairs = rotated_dim() / kPair;
  cos_sin_.resize(pairs * 2);  // pairs x (cos, sin)
  for (size_t p = 0; p < pairs; ++p) {
    Rng rng = rotation_detail::stream(seed, rotation_detail::Salt::Planar, p);
    const double theta = 6.283185307179586476925 * rng.uniform();  // uniform in [0, 2 pi)
    cos_sin_[2 * p] = static_cast<float>(std::cos(theta));
    cos_sin_[2 * p + 1] = static_cast<float>(std::sin(theta));
    rotation_detail::normalize_unit(&cos_sin_[2 * p], 2, "planar");
  }
}

PlanarRotation::PlanarRotation(size_t dim, const std::vector<float>& cos_sin)
    : Rotation(dim, padded_dim(dim)), cos_sin_(cos_sin) {
  const size_t pairs = rotated_dim() / kPair;
  rotation_detail::check_count("planar", dim, cos_sin_, pairs * 2, "2 per pair: cos, sin");
  rotation_detail::check_finite("planar", cos_sin_);
  for (size_t p = 0; p < pairs; ++p) rotation_detail::normalize_unit(&cos_sin_[2 * p], 2, "planar");
}

void PlanarRotation::apply(const float* x, float* y) const { planar_forward(cos_sin_, dim(), x, y); }

void PlanarRotation::apply_padded(const float* x, float* y) const { planar_forward(cos_sin_, rotated_dim(), x, y); }

void PlanarRotation::apply_inverse(const float* y, float* x) const {
  // Transpose of [[c, -s], [s, c]] is [[c, s], [-s, c]].
  const size_t pairs = cos_sin_.size() / 2;
  const size_t d = dim();
  const size_t full = d / kPair;
  for (size_t p = 0; p < full; ++p) {
    const float c = cos_sin_[2 * p], s = cos_sin_[2 * p + 1];
    const float y0 = y[2 * p], y1 = y[2 * p + 1];
    x[2 * p] = c * y0 + s * y1;
    x[2 * p + 1] = -s * y0 + c * y1;
  }
  for (size_t p = full; p < pairs; ++p) {
    const float c = cos_sin_[2 * p], s = cos_sin_[2 * p + 1];
    const float y0 = y[2 * p], y1 = y[2 * p + 1];
    const float out[kPair] = {c * y0 + s * y1, -s * y0 + c * y1};
    rotation_detail::store_block(out, d, p, kPair, x);
  }
}

}  // namespace rq
