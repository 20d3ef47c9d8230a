// RotorQuant: one Haar-uniform Cl(3,0) rotor per group of 3 coordinates. The rotors are the
// parameters; the 3x3 matrices used on the hot path are derived from them through the Clifford
// algebra (Rotor::matrix, i.e. R e_j R~), so the algebra is what defines the rotation.
#include <cmath>

#include "rotation_detail.hpp"
#include "rq/clifford/cl3.hpp"
#include "rq/rotation/block_rotations.hpp"

namespace rq {

namespace {

constexpr size_t kGroup = 3;
constexpr size_t kRotorFloats = 4;  // (s, e12, e13, e23)

size_t padded_dim(size_t dim) { return kGroup * ((dim + kGroup - 1) / kGroup); }

// y[3] = M[3x3] x[3]: 9 FMAs.
inline void mat3_apply(const float* m, const float* x, float* y) {
  const float x0 = x[0], x1 = x[1], x2 = x[2];
  y[0] = m[0] * x0 + m[1] * x1 + m[2] * x2;
  y[1] = m[3] * x0 + m[4] * x1 + m[5] * x2;
  y[2] = m[6] * x0 + m[7] * x1 + m[8] * x2;
}

// x[3] = M^T y[3]: 9 FMAs.
inline void mat3_apply_transposed(const float* m, const float* y, float* x) {
  const float y0 = y[0], y1 = y[1], y2 = y[2];
  x[0] = m[0] * y0 + m[3] * y1 + m[6] * y2;
  x[1] = m[1] * y0 + m[4] * y1 + m[7] * y2;
  x[2] = m[2] * y0 + m[5] * y1 + m[8] * y2;
}

// Forward over all groups; only the first in_len input coordinates exist (the rest are zero).
void rotor_forward(const std::vector<float>& mats, size_t in_len, const float* x, float* y) {
  const size_t groups = mats.size() / 9;
  const size_t full = in_len / kGroup < groups ? in_len / kGroup : groups;
  for (size_t g = 0; g < full; ++g) mat3_apply(&mats[g * 9], x + g * kGroup, y + g * kGroup);
  for (size_t g = full; g < groups; ++g) {
    float in[kGroup];
    rotation_detail::load_block(x, in_len, g, kGroup, in);
    mat3_apply(&mats[g * 9], in, y + g * kGroup);
  }
}

}  // namespace

RotorRotation::RotorRotation(size_t dim, const RotationSeed& seed) : Rotation(dim, padded_dim(dim)) {
  const size_t g_count = groups();
  rotors_.resize(g_count * kRotorFloats);  // groups x (s, e12, e13, e23)
  for (size_t g = 0; g < g_count; ++g) {
    // Haar on SO(3): a uniform unit quaternion (4 normals, normalized), mapped onto a rotor.
    Rng rng = rotation_detail::stream(seed, rotation_detail::Salt::Rotor, g);
    const double w = rng.normal(), qx = rng.normal(), qy = rng.normal(), qz = rng.normal();
    const cl3::Rotor r = cl3::Rotor::from_quaternion(w, qx, qy, qz);
    float* out = &rotors_[g * kRotorFloats];
    out[0] = static_cast<float>(r.mv[cl3::kScalar]);
    out[1] = static_cast<float>(r.mv[cl3::kE12]);
    out[2] = static_cast<float>(r.mv[cl3::kE13]);
    out[3] = static_cast<float>(r.mv[cl3::kE23]);
    rotation_detail::normalize_unit(out, kRotorFloats, "rotor");
  }
  build_matrices();
}

RotorRotation::RotorRotation(size_t dim, const std::vector<float>& rotors)
    : Rotation(dim, padded_dim(dim)), rotors_(rotors) {
  rotation_detail::check_count("rotor", dim, rotors_, groups() * kRotorFloats, "4 per group: s, e12, e13, e23");
  rotation_detail::check_finite("rotor", rotors_);
  for (size_t g = 0; g < groups(); ++g) rotation_detail::normalize_unit(&rotors_[g * kRotorFloats], kRotorFloats, "rotor");
  build_matrices();
}

void RotorRotation::build_matrices() {
  const size_t g_count = groups();
  matrices_.resize(g_count * 9);  // groups x 3x3 row-major
  for (size_t g = 0; g < g_count; ++g) {
    const float* p = &rotors_[g * kRotorFloats];
    cl3::Multivector even = cl3::Multivector::scalar(p[0]) + cl3::Multivector::bivector(p[1], p[2], p[3]);
    const std::array<double, 9> m = cl3::Rotor::normalized(even).matrix();
    for (size_t i = 0; i < 9; ++i) matrices_[g * 9 + i] = static_cast<float>(m[i]);
  }
}

void RotorRotation::apply(const float* x, float* y) const { rotor_forward(matrices_, dim(), x, y); }

void RotorRotation::apply_padded(const float* x, float* y) const { rotor_forward(matrices_, rotated_dim(), x, y); }

void RotorRotation::apply_inverse(const float* y, float* x) const {
  const size_t g_count = groups();
  const size_t d = dim();
  const size_t full = d / kGroup;
  for (size_t g = 0; g < full; ++g) mat3_apply_transposed(&matrices_[g * 9], y + g * kGroup, x + g * kGroup);
  for (size_t g = full; g < g_count; ++g) {
    float out[kGroup];
    mat3_apply_transposed(&matrices_[g * 9], y + g * kGroup, out);
    rotation_detail::store_block(out, d, g, kGroup, x);
  }
}

}  // namespace rq
