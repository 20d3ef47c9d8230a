// IsoQuant: per quad of coordinates v (read as a quaternion w + x i + y j + z k),
// fast: y = q_L (x) v; full: y = q_L (x) v (x) conj(q_R). Applied through the induced 4x4 matrix.
#include <array>
#include <cmath>

#include "rotation_detail.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq {

namespace {

constexpr size_t kQuad = 4;

size_t padded_dim(size_t dim) { return kQuad * ((dim + kQuad - 1) / kQuad); }

using Quat = std::array<double, 4>;  // (w, x, y, z)

// Hamilton product a (x) b.
Quat qmul(const Quat& a, const Quat& b) {
  return {a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
          a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
          a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
          a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0]};
}

Quat unit_quat(const float* p) {
  const double n = std::sqrt(double(p[0]) * p[0] + double(p[1]) * p[1] + double(p[2]) * p[2] + double(p[3]) * p[3]);
  return {p[0] / n, p[1] / n, p[2] / n, p[3] / n};
}

// y[4] = M[4x4] x[4] with M given column-major: four 4-wide multiply-adds.
inline void mat4_apply_columns(const float* cols, const float* x, float* y) {
  const float x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
  float out[4];
  for (int i = 0; i < 4; ++i) out[i] = cols[i] * x0 + cols[4 + i] * x1 + cols[8 + i] * x2 + cols[12 + i] * x3;
  for (int i = 0; i < 4; ++i) y[i] = out[i];
}

// x[4] = M^T y[4].
inline void mat4_apply_transposed(const float* m, const float* y, float* x) {
  const float y0 = y[0], y1 = y[1], y2 = y[2], y3 = y[3];
  for (int j = 0; j < 4; ++j) x[j] = m[j] * y0 + m[4 + j] * y1 + m[8 + j] * y2 + m[12 + j] * y3;
}

// Forward over all quads from the column-major matrices; only in_len input coordinates exist.
void iso_forward(const std::vector<float>& cols, size_t in_len, const float* x, float* y) {
  const size_t quads = cols.size() / 16;
  const size_t full = in_len / kQuad < quads ? in_len / kQuad : quads;
  for (size_t q = 0; q < full; ++q) mat4_apply_columns(&cols[q * 16], x + q * kQuad, y + q * kQuad);
  for (size_t q = full; q < quads; ++q) {
    float in[kQuad];
    rotation_detail::load_block(x, in_len, q, kQuad, in);
    mat4_apply_columns(&cols[q * 16], in, y + q * kQuad);
  }
}

}  // namespace

IsoRotation::IsoRotation(size_t dim, bool full, const RotationSeed& seed)
    : Rotation(dim, padded_dim(dim)), full_(full) {
  const size_t quads = rotated_dim() / kQuad;
  const size_t per_quad = full_ ? 8 : 4;
  quaternions_.resize(quads * per_quad);  // quads x (q_L [, q_R])
  const auto salt = full_ ? rotation_detail::Salt::IsoFull : rotation_detail::Salt::IsoFast;
  for (size_t q = 0; q < quads; ++q) {
    Rng rng = rotation_detail::stream(seed, salt, q);
    for (size_t k = 0; k < per_quad; k += 4) {
      // Uniform unit quaternion: 4 normals, normalized.
      float* out = &quaternions_[q * per_quad + k];
      const double a = rng.normal(), b = rng.normal(), c = rng.normal(), d = rng.normal();
      const double n = std::sqrt(a * a + b * b + c * c + d * d);
      out[0] = static_cast<float>(a / n);
      out[1] = static_cast<float>(b / n);
      out[2] = static_cast<float>(c / n);
      out[3] = static_cast<float>(d / n);
      rotation_detail::normalize_unit(out, 4, full_ ? "isofull" : "iso");
    }
  }
  build_matrices();
}

IsoRotation::IsoRotation(size_t dim, bool full, const std::vector<float>& quaternions)
    : Rotation(dim, padded_dim(dim)), full_(full), quaternions_(quaternions) {
  const char* name = full_ ? "isofull" : "iso";
  const size_t quads = rotated_dim() / kQuad;
  const size_t per_quad = full_ ? 8 : 4;
  rotation_detail::check_count(name, dim, quaternions_, quads * per_quad,
                               full_ ? "8 per quad: q_L (w,x,y,z) then q_R" : "4 per quad: q_L (w,x,y,z)");
  rotation_detail::check_finite(name, quaternions_);
  for (size_t i = 0; i < quaternions_.size(); i += 4) rotation_detail::normalize_unit(&quaternions_[i], 4, name);
  build_matrices();
}

void IsoRotation::build_matrices() {
  const size_t quads = rotated_dim() / kQuad;
  const size_t per_quad = full_ ? 8 : 4;
  matrices_.resize(quads * 16);  // quads x 4x4 row-major
  for (size_t q = 0; q < quads; ++q) {
    const Quat left = unit_quat(&quaternions_[q * per_quad]);
    Quat right_conj = {1.0, 0.0, 0.0, 0.0};
    if (full_) {
      const Quat right = unit_quat(&quaternions_[q * per_quad + 4]);
      right_conj = {right[0], -right[1], -right[2], -right[3]};
    }
    // Column j is the image of the basis quaternion e_j.
    for (size_t j = 0; j < 4; ++j) {
      Quat e = {0.0, 0.0, 0.0, 0.0};
      e[j] = 1.0;
      const Quat image = qmul(qmul(left, e), right_conj);
      for (size_t i = 0; i < 4; ++i) matrices_[q * 16 + i * 4 + j] = static_cast<float>(image[i]);
    }
  }
  columns_.resize(quads * 16);  // quads x 4x4 column-major
  for (size_t q = 0; q < quads; ++q)
    for (size_t i = 0; i < 4; ++i)
      for (size_t j = 0; j < 4; ++j) columns_[q * 16 + j * 4 + i] = matrices_[q * 16 + i * 4 + j];
}

void IsoRotation::apply(const float* x, float* y) const { iso_forward(columns_, dim(), x, y); }

void IsoRotation::apply_padded(const float* x, float* y) const { iso_forward(columns_, rotated_dim(), x, y); }

void IsoRotation::apply_inverse(const float* y, float* x) const {
  const size_t quads = matrices_.size() / 16;
  const size_t d = dim();
  const size_t full = d / kQuad;
  for (size_t q = 0; q < full; ++q) mat4_apply_transposed(&matrices_[q * 16], y + q * kQuad, x + q * kQuad);
  for (size_t q = full; q < quads; ++q) {
    float out[kQuad];
    mat4_apply_transposed(&matrices_[q * 16], y + q * kQuad, out);
    rotation_detail::store_block(out, d, q, kQuad, x);
  }
}

}  // namespace rq
